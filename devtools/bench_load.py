"""Load benchmark, 50 users (not a test): `make bench-load`.

For SQLite, then PostgreSQL (PORTAL_BENCH_DATABASE_URL; else a scratch database on the machine's
127.0.0.1:5432; else a private cluster from devtools/postgres.py):

1. Seeds the console benchmark's data (devtools/bench_console.seed) and one customer business
   with a Sage branch, a Sage One AUS branch and their history (jobs, contacts, invoices, audit
   events, puppet sessions); counts the SQL statements of every measured page at a small size and
   again at the full size (10,000 businesses, 100,000 contacts, long history): they must not grow.
2. Serves the portal under gunicorn as `make run` does (devtools/bench_console's start), signs in one
   customer and one support person like a browser, and runs Locust headless for `--run-time`
   (devtools/locustfile.py): 50 users at once, customers on the dashboard, the Sage and Sage One
   AUS branch pages and the job-progress partial, support on the console search, overview and
   customer page, visitors on the login page (the baseline), each waiting 1–3 s between pages.
3. Prints per page `load <database> <page>: p50 A ms, p95 B ms, p99 C ms, errors E, p95 vs login R×`.
   Targets: 0 errors, every p95 within 3× the login page's.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import pyotp
import requests
import sqlalchemy as sa

from devtools import bench_console, postgres
from devtools.redis_server import free_port, start_private_redis

ROOT = Path(__file__).resolve().parent.parent
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|"X-CSRFToken": "([^"]+)"')
CUSTOMER_EMAIL = "owner@bench-harbour.test"
PASSWORD = "bench-load-password"
BUSINESS_ID = 900_001  # beyond the console seed's ids
SAGE_BRANCH, SAGE_ONE_BRANCH, IDLE_BRANCH = 1_900_001, 1_900_002, 1_900_003
RUNNING_JOB = "bench-running-contact-sync"
BASELINE = "login page"
PAGES = ("dashboard", "Sage branch page", "Sage One AUS branch page", "job progress (htmx)",
         "console search (htmx)", "console overview", "support customer page")


# --- the customer business and its history ---------------------------------------------------------

def seed_customer(app) -> dict:
    """The customer business (three branches: Sage, Sage One AUS, not connected) and its owner;
    returns the owner's and support person's ids and the support person's recovery codes."""
    from portal import accounts, two_factor
    from portal.extensions import db
    from portal.models import (
        Branch,
        Business,
        Connection,
        ConnectionState,
        Job,
        JobStatus,
        Provider,
        Role,
        SyncOutcome,
        User,
        utcnow,
    )

    now = utcnow()
    with app.app_context():
        support = db.session.scalar(db.select(User).where(User.email == bench_console.SUPPORT_EMAIL))
        codes = two_factor.set_up(support, pyotp.random_base32())
        business = Business(id=BUSINESS_ID, name="Bench Harbour Auto", created_at=now)
        db.session.add(business)
        db.session.add_all([Branch(id=SAGE_BRANCH, business_id=BUSINESS_ID, name="Sydney", is_head_office=True),
                            Branch(id=SAGE_ONE_BRANCH, business_id=BUSINESS_ID, name="Newcastle"),
                            Branch(id=IDLE_BRANCH, business_id=BUSINESS_ID, name="Parramatta")])
        db.session.flush()
        owner = accounts.create_user(CUSTOMER_EMAIL, PASSWORD, Role.CUSTOMER, business=business)
        db.session.flush()
        db.session.add_all([
            Connection(branch_id=SAGE_BRANCH, provider=Provider.SAGE, state=ConnectionState.CONNECTED,
                       connected_by_id=owner.id,
                       connected_at=now - timedelta(days=200), sage_business_id="bench-sage-biz",
                       sage_business_name="Bench Harbour Auto Pty Ltd", ids_sage_business_id="bench-sage-biz",
                       token_issued_at=now - timedelta(minutes=3), first_authorized_at=now - timedelta(days=200),
                       access_token_expires_at=now + timedelta(minutes=2),
                       refresh_token_expires_at=now + timedelta(days=30), last_sync_at=now - timedelta(minutes=9),
                       last_sync_outcome=SyncOutcome.SUCCEEDED, last_successful_sync_at=now - timedelta(minutes=9)),
            Connection(branch_id=SAGE_ONE_BRANCH, provider=Provider.SAGE_ONE_AUS, state=ConnectionState.CONNECTED,
                       connected_by_id=owner.id, connected_at=now - timedelta(days=90),
                       sage_one_username="newcastle@bench-harbour.test", sage_one_company_id=7001,
                       sage_one_company_name="Bench Harbour Newcastle", credentials_owner_id=owner.id,
                       credentials_key_generation=1, last_sync_at=now - timedelta(hours=2),
                       last_sync_outcome=SyncOutcome.FAILED, last_successful_sync_at=now - timedelta(days=1)),
        ])
        db.session.commit()
        db.session.add(Job(id=RUNNING_JOB, kind="sage.sync_contacts", branch_id=SAGE_BRANCH, requested_by_id=owner.id,
                           status=JobStatus.RUNNING, description="Sync contacts to Sage", progress_done=120,
                           progress_total=2000, created_at=now - timedelta(seconds=30), started_at=now,
                           lease_expires_at=now + timedelta(days=1)))
        db.session.commit()
        return {"owner_id": owner.id, "support_id": support.id, "recovery_codes": list(codes)}


def seed_history(app, start: int, stop: int, ids: dict) -> None:
    """History numbered [start, stop) on the customer's branches: per step one contact and one invoice
    per connected branch, a job every 5th step, an audit event every 3rd, a puppet session every 50th."""
    from portal.extensions import db
    from portal.models import AuditEvent, Contact, Invoice, Job, PuppetSession, utcnow

    now = utcnow()
    owner, support = ids["owner_id"], ids["support_id"]
    states = ("synced", "synced", "synced", "synced", "pending", "failed")
    reasons = ("Sage refused the tax rate GST on one line.", "The email address is not valid in Sage.",
               "A contact with this reference already exists in Sage.")
    with app.app_context():
        for chunk in range(start, stop, 2000):
            steps = range(chunk, min(chunk + 2000, stop))
            contacts = []
            for n in steps:
                for branch in (SAGE_BRANCH, SAGE_ONE_BRANCH):
                    state = states[n % 6]
                    contacts.append({"branch_id": branch, "kind": "customer", "name": f"Customer {n}",
                                     "email": f"customer{n}@example.test", "reference": f"H{branch}-{n:06d}",
                                     "sync_state": state, "sync_error": reasons[n % 3] if state == "failed" else None,
                                     "sage_id": f"sage-{branch}-{n}" if state == "synced" else None,
                                     "deleted_at": now if n % 97 == 0 else None,
                                     "created_at": now - timedelta(minutes=n), "updated_at": now})
            db.session.execute(sa.insert(Contact), contacts)
            references = [c["reference"] for c in contacts]
            contact_ids = dict(db.session.execute(
                sa.select(Contact.reference, Contact.id)
                .where(Contact.branch_id.in_((SAGE_BRANCH, SAGE_ONE_BRANCH)), Contact.reference.in_(references))
                .execution_options(include_deleted=True)
            ).all())
            invoices = [{"branch_id": c["branch_id"], "contact_id": contact_ids[c["reference"]],
                         "number": f"INV-{c['reference']}", "status": "void" if i % 41 == 0 else "issued",
                         "issued_on": date(2026, 1, 1) + timedelta(days=i % 300), "total": 100 + i % 900,
                         "sync_state": c["sync_state"], "sync_error": c["sync_error"], "sage_id": c["sage_id"],
                         "deleted_at": c["deleted_at"], "created_at": c["created_at"], "updated_at": now}
                        for i, c in enumerate(contacts)]
            db.session.execute(sa.insert(Invoice), invoices)
            jobs, events, sessions = [], [], []
            for n in steps:
                at = now - timedelta(minutes=15 * n + 5)
                if n % 5 == 0:
                    failed = n % 4 == 0
                    for branch, kind in ((SAGE_BRANCH, ("sage.sync_contacts", "sage.sync_invoices",
                                                        "sage.void_invoice")[n % 3]),
                                         (SAGE_ONE_BRANCH, ("sage_one_aus.sync", "sage_one_aus.void")[n % 2])):
                        jobs.append({"id": f"bench-{branch}-{n}", "kind": kind, "branch_id": branch,
                                     "requested_by_id": owner, "puppeteer_id": support if n % 25 == 5 else None,
                                     "status": "failed" if failed else "finished", "description": f"{kind} run {n}",
                                     "params": {}, "progress_done": 40, "progress_total": 40,
                                     "result": None if failed else {"summary": f"40 sent, {n % 3} failed."},
                                     "error": "Sage answered 500 twice; the rest waits." if failed else None,
                                     "created_at": at, "started_at": at, "ended_at": at + timedelta(seconds=40)})
                if n % 3 == 0:
                    branch = (SAGE_BRANCH, SAGE_ONE_BRANCH)[n % 2]
                    kind = ("sage.synced", "connection.token_refreshed")[n % 2] if branch == SAGE_BRANCH \
                        else "sage_one_aus.synced"
                    events.append({"occurred_at": at, "kind": kind, "business_id": BUSINESS_ID, "branch_id": branch,
                                   "actor_id": owner, "summary": f"{kind} ({n})", "details": {}})
                if n % 50 == 0:
                    sessions.append({"support_user_id": support, "customer_user_id": owner, "business_id": BUSINESS_ID,
                                     "reason": f"Ticket {n}: sync questions", "started_at": at,
                                     "expires_at": at + timedelta(hours=1), "ended_at": at + timedelta(minutes=20),
                                     "end_reason": "ended by support"})
            for rows, model in ((jobs, Job), (events, AuditEvent), (sessions, PuppetSession)):
                if rows:
                    db.session.execute(sa.insert(model), rows)
            db.session.commit()


# --- pages, query counts, sign-in --------------------------------------------------------------------

def page_paths() -> dict[str, tuple[str, dict, str]]:
    """The measured pages by label: (path, headers, audience)."""
    hx = {"HX-Request": "true"}
    return {
        "dashboard": ("/", {}, "customer"),
        "Sage branch page": (f"/integrations/sage/branches/{SAGE_BRANCH}", {}, "customer"),
        "Sage One AUS branch page": (f"/integrations/sage-one-aus/branches/{SAGE_ONE_BRANCH}", {}, "customer"),
        "job progress (htmx)": (f"/jobs/{RUNNING_JOB}", hx, "customer"),
        "console search (htmx)": ("/support/?q=harbour", hx, "support"),
        "console overview": ("/support/", {}, "support"),
        "support customer page": (f"/support/customers/{BUSINESS_ID}", {}, "support"),
    }


def _token(html: str) -> str:
    found = CSRF.search(html)
    return found.group(1) or found.group(2)


def sign_in(session, base: str, email: str, codes: list[str] | None = None):
    """Sign in like a browser (form, redirect), with a recovery code as support's second step;
    `session` is a requests.Session or a Flask test client (base "")."""
    def get(path):
        return session.get(base + path).text

    def post(path, data):
        return session.post(base + path, data=data)

    post("/login", {"email": email, "password": PASSWORD if codes is None else bench_console.SUPPORT_PASSWORD,
                    "csrf_token": _token(get("/login"))})
    if codes is not None:
        post("/login/second-step", {"code": codes.pop(), "csrf_token": _token(get("/login/second-step"))})


def count_queries(app, codes: list[str]) -> dict[str, int]:
    """SQL statements each measured page runs when opened again, in-process, signed in as its audience."""
    from portal.extensions import db

    clients = {"customer": app.test_client(), "support": app.test_client()}
    sign_in(clients["customer"], "", CUSTOMER_EMAIL)
    sign_in(clients["support"], "", bench_console.SUPPORT_EMAIL, codes)
    with app.app_context():
        engine = db.engine
    counts = {}
    for label, (path, headers, audience) in page_paths().items():
        clients[audience].get(path, headers=headers)  # what a page caches (the console's counts) is cached
        statements = []

        def before(conn, cursor, statement, *args, _s=statements):
            _s.append(statement)

        sa.event.listen(engine, "before_cursor_execute", before)
        try:
            response = clients[audience].get(path, headers=headers)
            assert response.status_code == 200, (label, path, response.status_code)
        finally:
            sa.event.remove(engine, "before_cursor_execute", before)
        counts[label] = len(statements)
    return counts


# --- load ---------------------------------------------------------------------------------------------

def _percentile(ordered: list[float], share: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def run_locust(base: str, cookies: dict, args, scratch: str) -> dict:
    """Locust headless against `base`; the timings and errors per page it recorded."""
    plan_path, out_path = Path(scratch, "plan.json"), Path(scratch, "timings.json")
    paths = page_paths()
    plan_path.write_text(json.dumps({
        "out": str(out_path), "wait_seconds": [args.wait_min, args.wait_max],
        "customer_cookies": cookies["customer"], "support_cookies": cookies["support"],
        "searches": [q.replace(" ", "+") for q in bench_console.SEARCHES],
        "paths": {"dashboard": paths["dashboard"][0], "sage": paths["Sage branch page"][0],
                  "sage_one": paths["Sage One AUS branch page"][0], "progress": paths["job progress (htmx)"][0],
                  "support_customer": paths["support customer page"][0]},
    }))
    locust = Path(sys.executable).with_name("locust")
    subprocess.run(
        [str(locust), "-f", str(ROOT / "devtools" / "locustfile.py"), "--headless", "--host", base,
         "--users", str(args.users), "--spawn-rate", str(args.users), "--run-time", f"{args.run_time}s",
         "--reset-stats", "--only-summary", "--loglevel", "WARNING", "--stop-timeout", "60"],
        cwd=ROOT, env=dict(os.environ, BENCH_LOAD_PLAN=str(plan_path)), check=False,
        stdout=subprocess.DEVNULL, stderr=open(Path(scratch, "locust.log"), "w"), timeout=args.run_time + 180)
    return json.loads(out_path.read_text())


def report(database: str, found: dict) -> tuple[list[str], dict]:
    """The result lines, login page first, and per page (p50, p95, p99, errors, requests)."""
    stats = {}
    for label in (BASELINE, *PAGES):
        ordered = sorted(found["timings"].get(label, [])) or [float("nan")]
        stats[label] = (_percentile(ordered, 0.5), _percentile(ordered, 0.95), _percentile(ordered, 0.99),
                        found["errors"].get(label, 0), len(found["timings"].get(label, [])))
    login_p95 = stats[BASELINE][1]
    return [f"load {database} {label}: p50 {p50:.0f} ms, p95 {p95:.0f} ms, p99 {p99:.0f} ms, errors {errors}, "
            f"p95 vs login {p95 / login_p95:.1f}×" for label, (p50, p95, p99, errors, _) in stats.items()], stats


# --- one database ---------------------------------------------------------------------------------

def bench(database: str, database_url: str, args) -> bool:
    """Seed, count, load one database; True when every target was met."""
    from flask_migrate import upgrade

    from portal import accounts, create_app
    from portal.extensions import db
    from portal.models import Role

    scratch = tempfile.mkdtemp(prefix="portal-bench-load-")
    redis = start_private_redis()
    server = None
    try:
        app = create_app(bench_console._settings(database_url, redis.url))
        with app.app_context():
            if database_url.startswith("postgresql"):
                db.session.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
                db.session.commit()
            upgrade()
            accounts.create_user(bench_console.SUPPORT_EMAIL, bench_console.SUPPORT_PASSWORD, Role.SUPPORT,
                                 is_support_lead=True)
            db.session.commit()
        ids = seed_customer(app)
        rng = random.Random(42)
        per_business = max(2, args.contacts // args.businesses)
        small = max(1, args.businesses // 100)
        t0 = time.perf_counter()
        bench_console.seed(app, 1, small + 1, per_business, rng)
        seed_history(app, 1, 21, ids)
        small_counts = count_queries(app, ids["recovery_codes"])
        bench_console.seed(app, small + 1, args.businesses + 1, per_business, rng)
        seed_history(app, 21, args.history + 1, ids)
        with app.app_context():
            if database_url.startswith("postgresql"):
                # What autovacuum does in time: planner statistics and the visibility map, without
                # which PostgreSQL reads the table behind every index entry (no index-only counts).
                with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.execute(sa.text("VACUUM ANALYZE"))
            else:
                db.session.execute(sa.text("ANALYZE"))
                db.session.commit()
            sizes = {name: db.session.scalar(sa.text(f"SELECT count(*) FROM {name}"))
                     for name in ("businesses", "contacts", "invoices", "jobs", "audit_events")}
        print(f"\n{database}: seeded in {time.perf_counter() - t0:.0f} s: "
              + ", ".join(f"{v:,} {k}" for k, v in sizes.items()))
        large_counts = count_queries(app, ids["recovery_codes"])
        print(f"| page | SQL statements, {small:,} businesses, 20 steps of history "
              f"| {args.businesses:,} businesses, {args.history:,} steps |\n|---|---|---|")
        for label in small_counts:
            print(f"| {label} | {small_counts[label]} | {large_counts[label]} |")
        grew = [label for label in small_counts if large_counts[label] != small_counts[label]]

        port = free_port()
        with open(Path(scratch, "gunicorn.log"), "w") as server_log:
            server = bench_console._serve(database_url, redis.url, port, args.workers, args.threads, server_log)
        base = f"http://127.0.0.1:{port}"
        cookies = {}
        for audience, email, codes in (("customer", CUSTOMER_EMAIL, None),
                                       ("support", bench_console.SUPPORT_EMAIL, ids["recovery_codes"])):
            browser = requests.Session()
            sign_in(browser, base, email, codes)
            cookies[audience] = browser.cookies.get_dict()
        # Warm every gunicorn process (its first request compiles the templates) before the clock runs.
        for audience in ("customer", "support", "visitor"):
            paths = [(path, headers) for path, headers, who in page_paths().values() if who == audience] \
                or [("/login", {})]
            bench_console.drive(base, paths, cookies.get(audience), 40, 10, 60)
        load_before = os.getloadavg()[0]
        found = run_locust(base, cookies, args, scratch)
        lines, stats = report(database, found)
        print(f"Under load: {args.users} users for {args.run_time} s, gunicorn "
              f"{bench_console._server_shape(args)}, {os.cpu_count()} CPUs, load average "
              f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after; requests per page: "
              + ", ".join(f"{label} {s[4]}" for label, s in stats.items()))
        for line in lines:
            print(line)
        for label, message in found.get("first_error", {}).items():
            print(f"  first error on {label}: {message}")
        server_errors = [line for line in Path(scratch, "gunicorn.log").read_text(errors="replace").splitlines()
                         if any(word in line for word in ("ERROR", "CRITICAL", "Error:", "Exception:"))]
        for line in server_errors[:6]:
            print(f"  server: {line[:300]}")
        login_p95 = stats[BASELINE][1]
        missed = [label for label, s in stats.items() if s[3] or s[4] == 0 or s[1] > 3 * login_p95]
        print(f"Query counts {'do not grow' if not grew else 'GREW on: ' + ', '.join(grew)}; targets "
              f"{'met' if not missed else 'NOT met on: ' + ', '.join(missed)}")
        return not grew and not missed
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
        redis.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def _postgres_database():
    """(url, cleanup): PORTAL_BENCH_DATABASE_URL, else a scratch database on a PostgreSQL that
    answers (devtools/postgres candidates), else on a private cluster."""
    if os.environ.get("PORTAL_BENCH_DATABASE_URL"):
        return os.environ["PORTAL_BENCH_DATABASE_URL"], lambda: None
    server = next((url for url in postgres.candidates() if postgres.answers(url)), None)
    private = None
    if server is None:
        private = postgres.start_private_postgres()
        server = private.url
    name = f"portal_bench_load_{os.getpid()}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))

    def cleanup():
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()
        if private is not None:
            private.stop()

    return sa.engine.make_url(server).set(database=name).render_as_string(hide_password=False), cleanup


def main(argv: list[str] | None = None) -> int:
    """Both databases (or the one asked for); 0 when every target was met on each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--businesses", type=int, default=10_000)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--history", type=int, default=20_000,
                        help="steps of the customer's history (contacts and invoices per branch; a job per 5)")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--run-time", type=int, default=60, help="seconds of load per database")
    parser.add_argument("--wait-min", type=float, default=1.0, help="seconds a user waits between pages, at least")
    parser.add_argument("--wait-max", type=float, default=3.0)
    parser.add_argument("--workers", type=int, help="gunicorn processes (default: gunicorn.conf.py)")
    parser.add_argument("--threads", type=int, help="threads per process (default: gunicorn.conf.py)")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    met = True
    for database in args.databases.split(","):
        if database == "sqlite":
            scratch = tempfile.mkdtemp(prefix="portal-bench-load-db-")
            try:
                met = bench("sqlite", f"sqlite:///{scratch}/bench.db", args) and met
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        else:
            url, cleanup = _postgres_database()
            try:
                met = bench("postgresql", url, args) and met
            finally:
                cleanup()
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
