"""Benchmark the support console (not a test): `make bench-console`.

1. Builds a scratch database (a temporary SQLite file, or PORTAL_BENCH_DATABASE_URL for
   PostgreSQL — its tables are dropped and recreated) and a private Redis.
2. Seeds a small data set, counts the SQL queries each console page runs (SQLAlchemy
   `before_cursor_execute`), then grows the data to 10,000 businesses and 100,000 contacts with bulk
   inserts and counts again: the counts must not grow.
3. Serves the real portal under gunicorn on a free loopback port, signs in as support, and drives
   the same bounded concurrent load (a thread pool of `requests` sessions, loopback only, capped in
   count and time) at the login page (baseline), the live search and the console overview, in
   interleaved rounds so that every page is measured over the same stretch of time.
   Prints latencies and each page's ratio to the login page (target ≤ 3×).
"""
from __future__ import annotations

import argparse
import os
import random
import re
import runpy
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pyotp
import requests
import sqlalchemy as sa

from devtools.redis_server import free_port, start_private_redis

ROOT = Path(__file__).resolve().parent.parent
CSRF = re.compile(r'"X-CSRFToken": "([^"]+)"')
SUPPORT_EMAIL = "bench-support@portal.test"
RECOVERY_CODES: list[str] = []  # the bench support person's, one used per sign-in
SUPPORT_PASSWORD = "bench-support-password"
WORDS = ("Harbour", "Coastal", "Metro", "Valley", "Summit", "Northside", "Bayside", "Ridge", "Central",
         "Westgate", "Eastern", "Pacific", "Outback", "Gateway", "Capital", "Southern")
TRADES = ("Auto", "Motors", "Mechanics", "Tyres", "Brakes", "Panels", "Diesel", "Auto Electrics")
SUBURBS = ("Parramatta", "Newcastle", "Geelong", "Fremantle", "Ipswich", "Hobart", "Cairns", "Ballarat",
           "Bendigo", "Toowoomba", "Wollongong", "Launceston", "Mackay", "Bunbury")
SEARCHES = ("harbour", "valley motors", "parramatta", "owner42", "pty", "company 7", "diesel 19",
            "@workshop", "fremantle", "zzz-no-match")


def _settings(database_url: str, redis_url: str) -> dict:
    return {
        "ENV_NAME": "development",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "RQ_QUEUE": "portal-bench",
        "SERVER_NAME": None,
    }


# --- seeding --------------------------------------------------------------------------------------

def seed(app, start: int, stop: int, contacts_per_business: int, rng: random.Random) -> None:
    """Bulk-insert businesses [start, stop): two branches, one customer, connections, contacts."""
    from portal.extensions import db
    from portal.models import (
        Branch,
        Business,
        Connection,
        Contact,
        User,
        customer_search,
        utcnow,
    )

    now = utcnow()
    password_hash = "scrypt:32768:8:1$bench$not-a-real-hash"  # seeded customers never sign in
    with app.app_context():
        for chunk in range(start, stop, 1000):
            ids = range(chunk, min(chunk + 1000, stop))
            db.session.execute(sa.insert(Business), [
                {"id": i, "name": f"{WORDS[i % 16]} {TRADES[i % 8]} {i}", "created_at": now} for i in ids])
            branches, users, connections, contacts = [], [], [], []
            for i in ids:
                for j in (0, 1):
                    branch_id = i * 2 + j
                    branches.append({"id": branch_id, "business_id": i, "is_head_office": j == 0,
                                     "shares_with_head_office": j == 1 and i % 3 == 0,
                                     "name": SUBURBS[(i + j) % 14] if j else "Head office", "created_at": now})
                    if (i + j) % 5:
                        connections.append(_connection(branch_id, i, j, now, rng))
                    for n in range(contacts_per_business // 2):
                        contacts.append({"branch_id": branch_id, "kind": "customer", "name": f"Contact {n}",
                                         "email": f"c{n}@example.test", "reference": f"B{branch_id}-C{n:05d}",
                                         "sync_state": "synced" if n % 7 else "pending",
                                         "created_at": now, "updated_at": now})
                users.append({"id": i + 10, "email": f"owner{i}@workshop{i}.test", "password_hash": password_hash,
                              "role": "customer", "business_id": i, "is_support_lead": False, "name": "",
                              "key_generation": 1, "created_at": now})
            db.session.execute(sa.insert(Branch), branches)
            db.session.execute(sa.insert(User), users)
            db.session.execute(sa.insert(Connection), connections)
            db.session.execute(sa.insert(Contact), contacts)
            # Bulk Core inserts bypass the ORM flush hook that keeps the console's search rows.
            customer_search.reindex(db.session.connection(), ids)
            db.session.commit()


def _connection(branch_id: int, i: int, j: int, now, rng: random.Random) -> dict:
    sage = (i + j) % 3 != 0
    row = {
        "branch_id": branch_id, "provider": "sage" if sage else "sage_one_aus", "state": "connected",
        "connected_at": now - timedelta(days=rng.randint(1, 400)), "updated_at": now, "login_failures": 0,
        "last_sync_at": now - timedelta(minutes=rng.randint(5, 600)), "last_sync_outcome": "succeeded",
        "last_successful_sync_at": now - timedelta(minutes=rng.randint(5, 600)),
    }
    if sage:
        row.update(sage_business_name=f"{WORDS[i % 16]} Company {i} Pty Ltd", sage_business_id=f"biz-{branch_id}",
                   refresh_token_expires_at=now + timedelta(days=rng.randint(0, 31)),
                   token_issued_at=now - timedelta(minutes=rng.randint(1, 300)))
    else:
        row.update(sage_one_company_name=f"{TRADES[i % 8]} Company {i}", sage_one_username=f"owner{i}@workshop.test")
    roll = rng.random()
    if roll < 0.03:
        row["state"] = "needs_reauth" if sage else "credentials_rejected"
    elif roll < 0.05:
        row["rate_limited_until"] = now + timedelta(minutes=rng.randint(1, 30))
    elif roll < 0.08:
        row["last_sync_outcome"] = "failed"
    elif roll < 0.09:
        row["mass_resync_started_at"] = now - timedelta(minutes=rng.randint(1, 90))
        row["mass_resync_total"] = 2000
    elif roll < 0.10:
        row["state"] = "disconnected"
    elif roll < 0.14:
        row["last_successful_sync_at"] = now - timedelta(hours=rng.randint(25, 400))
    return row


# --- query counts ---------------------------------------------------------------------------------

def console_pages(business_id: int) -> dict[str, tuple[str, dict]]:
    """The console pages measured, by label: (path, headers)."""
    hx = {"HX-Request": "true"}
    return {
        "overview (GET /support/)": ("/support/", {}),
        "live search (htmx)": ("/support/?q=harbour", hx),
        "search page 3 (htmx)": ("/support/?q=motors&page=3", hx),
        "health filter": ("/support/?health=needs_reauth", hx),
        "stale filter, 48 h": ("/support/?health=stale&stale_hours=48", hx),
        "customer page": (f"/support/customers/{business_id}", {}),
        "active puppet sessions": ("/support/puppet/sessions", {}),
    }


def count_queries(app) -> dict[str, int]:
    """SQL statements each console page runs, in-process, signed in as support."""
    from portal.extensions import db

    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    client.post("/login", data={"email": SUPPORT_EMAIL, "password": SUPPORT_PASSWORD,
                                "csrf_token": CSRF.search(page).group(1)})
    page = client.get("/login/second-step").get_data(as_text=True)
    client.post("/login/second-step", data={"code": RECOVERY_CODES.pop(), "csrf_token": CSRF.search(page).group(1)})
    counts = {}
    with app.app_context():
        engine = db.engine
    for label, (path, headers) in console_pages(1).items():
        statements = []

        def before(conn, cursor, statement, *args, _s=statements):
            _s.append(statement)

        sa.event.listen(engine, "before_cursor_execute", before)
        try:
            response = client.get(path, headers=headers)
            assert response.status_code == 200, (path, response.status_code)
        finally:
            sa.event.remove(engine, "before_cursor_execute", before)
        counts[label] = len(statements)
    return counts


# --- load -----------------------------------------------------------------------------------------

def _serve(database_url: str, redis_url: str, port: int, workers: int | None, threads: int | None,
           log) -> subprocess.Popen:
    """gunicorn as `make run` starts it (gunicorn.conf.py), unless --workers / --threads say otherwise."""
    env = dict(os.environ, PORTAL_ENV="development", PORTAL_DATABASE_URL=database_url,
               PORTAL_REDIS_URL=redis_url, PORTAL_RQ_QUEUE="portal-bench")
    gunicorn = Path(sys.executable).with_name("gunicorn")
    process = subprocess.Popen(
        [str(gunicorn), "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
         *(["--workers", str(workers)] if workers else []), *(["--threads", str(threads)] if threads else []),
         "app:app"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/login", timeout=10)
            return process
        except requests.RequestException:
            time.sleep(0.2)
    process.terminate()
    process.wait(timeout=10)
    raise RuntimeError("gunicorn did not start")


def _server_shape(args) -> str:
    """The processes × threads gunicorn runs with here: the options, else gunicorn.conf.py."""
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    return f"{args.workers or conf['workers']} processes × {args.threads or conf['threads']} threads"


def _sign_in(base: str) -> requests.cookies.RequestsCookieJar:
    """Sign in as support like a browser: post the form, follow the redirect, keep the cookie jar.

    The jar (not a dict of values) goes to every load thread, so a cookie the portal updates
    replaces the one sent, as in a browser, instead of piling up beside it.
    """
    session = requests.Session()
    page = session.get(f"{base}/login", timeout=10).text
    response = session.post(f"{base}/login", data={"email": SUPPORT_EMAIL, "password": SUPPORT_PASSWORD,
                                                    "csrf_token": CSRF.search(page).group(1)}, timeout=30)
    response = session.post(f"{base}/login/second-step", timeout=30, data={
        "code": RECOVERY_CODES.pop(), "csrf_token": CSRF.search(response.text).group(1)})
    assert response.status_code == 200 and response.history and "/login" not in response.url, response.url
    return session.cookies


def drive(base: str, paths: list[tuple[str, dict]], cookies: requests.cookies.RequestsCookieJar | None,
          requests_total: int, concurrency: int, seconds: float) -> list[float]:
    """Send `requests_total` GETs over `concurrency` threads (stopping early after `seconds`)."""
    deadline = time.monotonic() + seconds
    per_thread = requests_total // concurrency

    def worker(n: int) -> list[float]:
        session = requests.Session()
        if cookies:
            session.cookies.update(cookies)
        timings = []
        for k in range(per_thread):
            if time.monotonic() > deadline:
                break
            path, headers = paths[(n + k) % len(paths)]
            started = time.perf_counter()
            response = session.get(f"{base}{path}", headers=headers, allow_redirects=False, timeout=30)
            timings.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(f"{path} answered {response.status_code}")
        return timings

    with ThreadPoolExecutor(concurrency) as pool:
        return [t for timings in pool.map(worker, range(concurrency)) for t in timings]


class Samples(dict):
    """Latencies per page, pooled over every round, with each round's own latencies in `rounds`."""

    def __init__(self, labels):
        super().__init__((label, []) for label in labels)
        self.rounds = {label: [] for label in labels}


def measure(base: str, plan: dict, args) -> Samples:
    """Drive each page in turn, in `args.rounds` rounds, rotating which page goes first.

    The machine's speed drifts (other work on the host, frequency changes), so measuring the
    baseline once and each console page after it would compare different machines. Interleaved
    rounds spread every page over the same stretch of time; the pooled p50s are compared.
    """
    samples = Samples(plan)
    labels = list(plan)
    per_round = max(args.concurrency, args.requests // args.rounds)
    for n in range(args.rounds):
        for label in labels[n % len(labels):] + labels[:n % len(labels)]:
            paths, jar = plan[label]
            timings = drive(base, paths, jar, per_round, args.concurrency, args.seconds / args.rounds)
            samples[label].extend(timings)
            samples.rounds[label].append(timings)
    return samples


def _summary(timings: list[float]) -> dict:
    ordered = sorted(timings)
    return {"n": len(ordered), "mean": statistics.fmean(ordered) * 1000,
            "p50": ordered[len(ordered) // 2] * 1000, "p95": ordered[int(len(ordered) * 0.95) - 1] * 1000}


def main(argv: list[str] | None = None) -> int:
    """Seed, count queries at two sizes, run the load, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--businesses", type=int, default=10_000)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=800, help="requests per page under load")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60, help="time cap per page under load")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of every page")
    parser.add_argument("--workers", type=int, help="gunicorn processes (default: gunicorn.conf.py)")
    parser.add_argument("--threads", type=int, help="threads per process (default: gunicorn.conf.py)")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)

    from flask_migrate import upgrade

    from portal import accounts, create_app, two_factor
    from portal.extensions import db
    from portal.models import Role

    scratch = tempfile.mkdtemp(prefix="portal-bench-")
    database_url = os.environ.get("PORTAL_BENCH_DATABASE_URL") or f"sqlite:///{scratch}/bench.db"
    redis = start_private_redis()
    server = None
    try:
        app = create_app(_settings(database_url, redis.url))
        with app.app_context():
            if database_url.startswith("postgresql"):
                db.session.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
                db.session.commit()
            upgrade()
            support = accounts.create_user(SUPPORT_EMAIL, SUPPORT_PASSWORD, Role.SUPPORT, is_support_lead=True)
            db.session.flush()
            # Support signs in with a second step: the bench uses a recovery code for each sign-in.
            RECOVERY_CODES.extend(two_factor.set_up(support, pyotp.random_base32()))
            db.session.commit()
        print(f"Database: {database_url.split('@')[-1]}")
        rng = random.Random(42)
        per_business = max(2, args.contacts // args.businesses)
        small = max(1, args.businesses // 100)
        t0 = time.perf_counter()
        seed(app, 1, small + 1, per_business, rng)
        small_counts = count_queries(app)
        seed(app, small + 1, args.businesses + 1, per_business, rng)
        with app.app_context():
            # Planner statistics, as PostgreSQL's autovacuum keeps them (SQLite needs asking).
            db.session.execute(sa.text("ANALYZE"))
            db.session.commit()
            sizes = {name: db.session.scalar(sa.text(f"SELECT count(*) FROM {name}"))
                     for name in ("businesses", "branches", "users", "connections", "contacts")}
        print(f"Seeded in {time.perf_counter() - t0:.1f} s: " + ", ".join(f"{v:,} {k}" for k, v in sizes.items()))
        large_counts = count_queries(app)

        print("\nSQL queries per console page")
        print(f"| page | {small:,} businesses | {args.businesses:,} businesses |\n|---|---|---|")
        for label in small_counts:
            print(f"| {label} | {small_counts[label]} | {large_counts[label]} |")
        grew = [label for label in small_counts if large_counts[label] > small_counts[label]]

        port = free_port()
        server_log = open(Path(scratch) / "gunicorn.log", "w")
        server = _serve(database_url, redis.url, port, args.workers, args.threads, server_log)
        base = f"http://127.0.0.1:{port}"
        cookies = _sign_in(base)
        searches = [(f"/support/?q={q.replace(' ', '+')}", {"HX-Request": "true"}) for q in SEARCHES]
        plan = {
            "login page (baseline)": ([("/login", {})], None),
            "console search (htmx)": (searches, cookies),
            "console overview": ([("/support/", {})], cookies),
        }
        drive(base, [("/login", {})], None, args.concurrency * 2, args.concurrency, 30)  # warm up
        drive(base, searches + [("/support/", {})], cookies, args.concurrency * 4, args.concurrency, 30)
        samples = measure(base, plan, args)
        print(f"\nUnder load: {args.concurrency} concurrent clients, up to {args.requests} requests per page "
              f"in {args.rounds} interleaved rounds, gunicorn {_server_shape(args)}, "
              f"{os.cpu_count()} CPUs")
        print("| page | requests | mean ms | p50 ms | p95 ms | p50 vs login | per round |\n"
              "|---|---|---|---|---|---|---|")
        baseline_label = next(iter(plan))
        baseline = _summary(samples[baseline_label])["p50"]
        ratios = {}
        for label, timings in samples.items():
            stats = _summary(timings)
            ratios[label] = stats["p50"] / baseline
            rounds = [statistics.median(r) / statistics.median(b)
                      for r, b in zip(samples.rounds[label], samples.rounds[baseline_label], strict=False)]
            print(f"| {label} | {stats['n']} | {stats['mean']:.1f} | {stats['p50']:.1f} | {stats['p95']:.1f} "
                  f"| {ratios[label]:.2f}× | {min(rounds):.2f}–{max(rounds):.2f}× |")
        worst = max(ratios.values())
        print(f"\nQuery counts {'do not grow' if not grew else 'GREW on: ' + ', '.join(grew)}; "
              f"worst console ratio {worst:.2f}× (target ≤ 3×): {'met' if worst <= 3 else 'NOT met'}")
        return 0 if not grew and worst <= 3 else 1
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
        redis.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
