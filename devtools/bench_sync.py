"""Benchmark the Sage contact sync (not a test): `make bench-sync`.

Everything runs locally: a private Redis, a scratch SQLite database, the Sage sandbox in this
process, and both clients as subprocesses: real portal workers (`--worker`: one RQ SimpleWorker in
burst mode that prints its own peak memory) and the bare loop (`--bare`).

1. Throughput: a bare loop POSTs the same contact bodies to the sandbox (rate limiting off), then
   the sandbox is reset and a worker syncs the same contacts; prints contacts/second of each and
   the ratio (target ≥ 0.8).
2. Memory: the worker's peak RSS (ru_maxrss) syncing N contacts vs 10×N (target < 1.5×).
3. Pacing: the sandbox limits the Sage business to R requests a minute (Sage's shape: a rolling
   minute per business) and the portal is told the same R; two workers sync two branches of that
   business at once (1,000 contacts in all). Prints
   `pacing sage: N records, B blocks, Q × 429, rate F of the limit` (targets: 0 blocks, 0 × 429,
   F ≥ 0.85; F is the steady rate after the first minute, whose burst a moving window allows).
4. Mass re-sync cost: a branch whose contacts have no Sage ids is synced into a Sage business that
   already holds all, half or none of them; prints the Sage requests per contact (targets with
   10,000 contacts: ≤ 0.01, ≤ 0.51, ≤ 1.01) and how long that would take at 100 requests a minute.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from devtools.redis_server import start_private_redis

ROOT = Path(__file__).resolve().parent.parent
SAGE_USER = "solo@harbour-auto.test"
QUEUE = "portal-bench"


# --- The worker subprocess --------------------------------------------------------------------------


def run_worker() -> None:
    """`--worker`: drain the queue once with a SimpleWorker, printing its peak memory as JSON lines
    (every second while it works, so a run stopped early still reports what it reached)."""
    import threading

    from portal import create_app
    from portal.worker import build_worker

    def report() -> None:
        print(json.dumps({"maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}), flush=True)

    def keep_reporting() -> None:
        while True:
            time.sleep(1)
            report()

    threading.Thread(target=keep_reporting, daemon=True).start()
    app = create_app()
    build_worker(app, simple=True).work(burst=True, logging_level="WARNING")
    report()


def run_bare_loop(bodies_file: str) -> None:
    """`--bare FILE`: POST each contact body in FILE one after another, as a minimal client would,
    and print how many and how long as JSON. A process of its own, like the portal's worker, so
    neither client shares an interpreter with the sandbox."""
    spec = json.loads(Path(bodies_file).read_text())
    http = requests.Session()
    headers = {"Authorization": f"Bearer {spec['access_token']}", "X-Business": spec["business"]}
    started = time.perf_counter()
    for body in spec["bodies"]:
        response = http.post(f"{spec['url']}/v3.1/contacts", json={"contact": body}, headers=headers, timeout=15)
        if response.status_code != 201:
            raise SystemExit(f"bare POST answered {response.status_code}")
    print(json.dumps({"count": len(spec["bodies"]), "seconds": time.perf_counter() - started}), flush=True)


# --- The bench ----------------------------------------------------------------------------------


class Bench:
    def __init__(self, workdir: Path):
        from sage_sandbox.testing import start_sandbox

        self.redis = start_private_redis()
        self.database_url = f"sqlite:///{workdir / 'bench.db'}"
        self.sandbox = start_sandbox({"SANDBOX_SAGE_RATE_LIMIT": 0})
        self.settings = {
            "ENV_NAME": "test",
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis.url,
            "RQ_QUEUE": QUEUE,
            "SAGE_AUTH_URL": f"{self.sandbox.url}/oauth2/auth/central",
            "SAGE_TOKEN_URL": f"{self.sandbox.url}/token",
            "SAGE_REVOKE_URL": f"{self.sandbox.url}/revoke",
            "SAGE_API_URL": f"{self.sandbox.url}/v3.1",
            "SAGE_RATE_LIMIT_PER_MINUTE": 0,
            # The daily budget would pause these runs for a day: it is measured by the tests instead.
            "SAGE_DAILY_REQUEST_BUDGET": 0,
            "HTTP_TIMEOUT_SECONDS": 15.0,
        }
        from portal import create_app

        self.app = create_app(dict(self.settings))
        with self.app.app_context():
            from flask_migrate import upgrade

            upgrade()

    def close(self) -> None:
        self.sandbox.stop()
        self.redis.stop()

    def business_id(self) -> str:
        from sage_sandbox.seed import hex_id

        return hex_id("business", "Solo Tyres & Exhausts")

    # --- data

    def branch_with_contacts(self, name: str, count: int) -> int:
        """A branch connected to the sandbox's Solo business, with `count` pending contacts."""
        from portal.extensions import db
        from portal.integrations.sage.client import TokenSet
        from portal.integrations.sage.tokens import store_tokens
        from portal.models import Branch, Business, Connection, ConnectionState, Contact, Provider

        with self.app.app_context():
            business = Business(name=f"Bench {name}")
            branch = Branch(name=name, is_head_office=True)
            business.branches.append(branch)
            db.session.add(business)
            db.session.flush()
            connection = Connection(branch_id=branch.id, provider=Provider.SAGE, state=ConnectionState.CONNECTED,
                                    sage_business_id=self.business_id(), sage_business_name="Solo",
                                    ids_sage_business_id=self.business_id())
            db.session.add(connection)
            db.session.flush()
            tokens = self.sandbox.state.issue_tokens(SAGE_USER)
            store_tokens(connection, TokenSet(tokens["access_token"], tokens["refresh_token"],
                                              tokens["expires_in"], tokens["refresh_token_expires_in"]))
            db.session.commit()
            prefix = name[:2].upper()
            for start in range(0, count, 5000):
                db.session.execute(db.insert(Contact), [
                    {"branch_id": branch.id, "name": f"Bench Contact {n}", "email": f"c{n}@bench.test",
                     "reference": f"{prefix}{n:07d}"} for n in range(start, min(count, start + 5000))])
                db.session.commit()
            return branch.id

    def reset_sandbox(self, per_minute: int | None, *branch_ids: int) -> None:
        """Empty the sandbox and give the branches fresh tokens (a reset forgets every token)."""
        from portal.extensions import db
        from portal.integrations.sage.client import TokenSet
        from portal.integrations.sage.tokens import store_tokens
        from portal.models import Connection

        self.sandbox.state.reset()
        self.sandbox.state.set_sage_rate_limit(per_minute)
        with self.app.app_context():
            for branch_id in branch_ids:
                connection = db.session.scalar(db.select(Connection).where(Connection.branch_id == branch_id))
                tokens = self.sandbox.state.issue_tokens(SAGE_USER)
                store_tokens(connection, TokenSet(tokens["access_token"], tokens["refresh_token"],
                                                  tokens["expires_in"], tokens["refresh_token_expires_in"]))
            db.session.commit()

    def contact_bodies(self, branch_id: int):
        from portal.extensions import db
        from portal.integrations.sage.sync import contact_body
        from portal.models import Contact

        with self.app.app_context():
            for contact in db.session.scalars(db.select(Contact).where(Contact.branch_id == branch_id)
                                              .order_by(Contact.id).execution_options(yield_per=1000)):
                yield contact_body(contact)

    def enqueue_sync(self, branch_id: int) -> str:
        from portal.extensions import db
        from portal.jobqueue import enqueue
        from portal.models import Branch

        with self.app.app_context():
            job = enqueue("sage.sync_contacts", "jobs.sage.sync_contacts", branch=db.session.get(Branch, branch_id),
                          requested_by=None, description="Bench sync", args=(branch_id,))
            return job.id

    def job(self, job_id: str):
        from portal.extensions import db
        from portal.models import Job

        with self.app.app_context():
            row = db.session.get(Job, job_id)
            db.session.expunge(row)
            return row

    # --- workers

    def start_worker(self, extra: dict | None = None) -> subprocess.Popen:
        env = dict(os.environ, PORTAL_ENV="test")
        for key, value in {**self.settings, **(extra or {})}.items():
            if key != "ENV_NAME":
                env[f"PORTAL_{key}"] = str(value)
        return subprocess.Popen([sys.executable, "-m", "devtools.bench_sync", "--worker"], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, text=True)

    @staticmethod
    def finish_worker(process: subprocess.Popen, seconds: float | None = None) -> dict:
        """The worker's last memory report once it ends (or is stopped after `seconds`)."""
        try:
            out, _ = process.communicate(timeout=seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            out, _ = process.communicate()
        return json.loads(out.strip().splitlines()[-1])

    # --- measurements

    def bare_loop(self, branch_id: int) -> tuple[int, float]:
        """POST the branch's contact bodies from a separate process (`--bare`), timing only the POSTs."""
        tokens = self.sandbox.state.issue_tokens(SAGE_USER)
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as spec:
            json.dump({"url": self.sandbox.url, "access_token": tokens["access_token"],
                       "business": self.business_id(), "bodies": list(self.contact_bodies(branch_id))}, spec)
        try:
            out = subprocess.run([sys.executable, "-m", "devtools.bench_sync", "--bare", spec.name], cwd=ROOT,
                                 capture_output=True, text=True, check=True).stdout
        finally:
            os.unlink(spec.name)
        result = json.loads(out.strip().splitlines()[-1])
        return result["count"], result["seconds"]

    def portal_sync(self, branch_id: int, seconds: float | None = None) -> tuple[dict, float, dict]:
        """Run one sync in a worker subprocess; with `seconds`, stop it then (memory still reported)."""
        job_id = self.enqueue_sync(branch_id)
        started = time.monotonic()
        memory = self.finish_worker(self.start_worker(), seconds)
        job = self.job(job_id)
        if seconds is not None and job.status.value != "finished":
            from portal.jobqueue import live_progress

            with self.app.app_context():
                done = live_progress(job).get("done") or 0  # a running job's progress is in job.meta
            return {"done": done, "stopped": True}, time.monotonic() - started, memory
        if job.status.value != "finished":
            raise RuntimeError(f"sync failed: {job.error}")
        return job.result, (job.ended_at - job.started_at).total_seconds(), memory

    def throughput_and_memory(self, small: int, large: int, large_seconds: float | None) -> dict:
        branch = self.branch_with_contacts("Throughput", small)
        count, bare_seconds = self.bare_loop(branch)
        self.reset_sandbox(None, branch)
        result, sync_seconds, memory_small = self.portal_sync(branch)
        assert result["created"] == count, result
        figures = {"contacts": count, "bare_per_second": count / bare_seconds,
                   "portal_per_second": count / sync_seconds, "maxrss_small_kb": memory_small["maxrss_kb"]}
        figures["ratio"] = figures["portal_per_second"] / figures["bare_per_second"]
        if large:
            self.reset_sandbox(None)
            big = self.branch_with_contacts("Memory", large)
            result, big_seconds, memory_large = self.portal_sync(big, seconds=large_seconds)
            figures.update(large=large, maxrss_large_kb=memory_large["maxrss_kb"],
                           large_done=result["done"], large_stopped=bool(result.get("stopped")),
                           large_per_second=result["done"] / big_seconds,
                           memory_ratio=memory_large["maxrss_kb"] / memory_small["maxrss_kb"])
        return figures

    def pacing(self, per_minute: int, contacts: int) -> dict:
        """Two workers, two branches of one Sage business, the sandbox and the portal both at R a minute."""
        self.reset_sandbox(per_minute)
        branches = [self.branch_with_contacts(name, contacts // 2) for name in ("P1 Pace", "P2 Pace")]
        self.reset_sandbox(per_minute, *branches)
        jobs = [self.enqueue_sync(branch) for branch in branches]
        workers = [self.start_worker({"SAGE_RATE_LIMIT_PER_MINUTE": per_minute}) for _ in branches]
        business = self.sandbox.state.businesses[self.business_id()]
        series: list[tuple[float, int]] = []
        try:
            while any(worker.poll() is None for worker in workers):
                time.sleep(0.05)
                with self.sandbox.state.lock:
                    series.append((time.monotonic(), business.requests))
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
                worker.wait()
        results = [self.job(job_id) for job_id in jobs]
        if any(job.status.value != "finished" for job in results):
            raise RuntimeError(f"pacing run failed: {[job.error for job in results]}")
        with self.sandbox.state.lock:
            too_many = business.limited_per_minute + business.limited_per_day
        started = next(t for t, n in series if n)
        ended = next(t for t, n in series if n == series[-1][1])
        return {"records": sum(job.result["done"] for job in results), "blocks": 0, "too_many": too_many,
                "rate": steady_minute(series, started, ended) / per_minute, "seconds": ended - started,
                "requests": series[-1][1]}

    def mass_resync_cost(self, contacts: int, present: float) -> dict:
        """Sage requests of one mass re-sync into a business already holding `present` of the contacts."""
        from sage_sandbox import v31_records

        self.reset_sandbox(None)
        branch = self.branch_with_contacts(f"Resync {int(present * 100)}", contacts)
        self.reset_sandbox(None, branch)
        references = [body["reference"] for body in self.contact_bodies(branch)][:int(contacts * present)]
        with self.sandbox.state.lock:
            business = self.sandbox.state.businesses[self.business_id()]
            now = self.sandbox.state.now()
            for reference in references:
                business.put_contact(v31_records.apply_contact(
                    {"id": v31_records.new_id(), "created_at": now},
                    {"name": f"In Sage {reference}", "reference": reference, "contact_type_ids": ["CUSTOMER"]}, now))
            before = business.requests
        result, seconds, _ = self.portal_sync(branch)
        with self.sandbox.state.lock:
            used = business.requests - before
        assert result["linked"] == len(references) and result["created"] == contacts - len(references), result
        return {"contacts": contacts, "requests": used, "per_contact": used / contacts, "seconds": seconds,
                "minutes_at_100": used / 100, "matched_by": result["matched_by"]}


def steady_minute(series: list[tuple[float, int]], started: float, ended: float) -> float:
    """Requests in a rolling minute, as Sage counts them, once the run is past its first minute.

    The median over the steady part of the run: a moving-window limiter lets a window's worth go at
    once and then one more as each leaves the window, so a single span can mislead; the median of
    every minute-long span is what the business was served at. A run shorter than two minutes has
    no steady part, and its busiest minute is given instead.
    """
    import bisect

    times = [t for t, _ in series]

    def in_minute_before(t: float) -> int:
        i, j = bisect.bisect_right(times, t) - 1, bisect.bisect_right(times, t - 60) - 1
        return series[i][1] - (series[j][1] if j >= 0 else 0)

    steady = [in_minute_before(t) for t in times if started + 61 <= t <= ended]
    if not steady:
        return max(in_minute_before(t) for t in times)
    return sorted(steady)[len(steady) // 2]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.bench_sync")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bare", metavar="FILE", help=argparse.SUPPRESS)
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=100_000, help="contacts for the memory comparison (0 skips)")
    parser.add_argument("--large-seconds", type=float, default=120,
                        help="stop the large run after this long; 0 runs it to the end")
    parser.add_argument("--rate", type=int, default=300, help="R, requests per minute for pacing (0 skips)")
    parser.add_argument("--pacing-contacts", type=int, default=1000, help="contacts of the pacing run, in all")
    parser.add_argument("--resync", type=int, default=10_000, help="contacts of the mass re-sync cost runs (0 skips)")
    args = parser.parse_args(argv)
    if args.worker:
        run_worker()
        return
    if args.bare:
        run_bare_loop(args.bare)
        return

    with tempfile.TemporaryDirectory(prefix="bench-sync-") as workdir:
        bench = Bench(Path(workdir))
        try:
            figures = bench.throughput_and_memory(args.contacts, args.large, args.large_seconds or None)
            print(f"Throughput, {figures['contacts']} contacts, sandbox limit off:")
            print(f"  bare loop of POSTs   {figures['bare_per_second']:8.0f} contacts/s")
            print(f"  portal sync (worker) {figures['portal_per_second']:8.0f} contacts/s")
            print(f"  ratio                {figures['ratio']:8.2f}   (target >= 0.8)")
            print(f"Worker peak memory (ru_maxrss): {figures['maxrss_small_kb'] / 1024:.0f} MiB for "
                  f"{figures['contacts']} contacts", end="")
            if "memory_ratio" in figures:
                done = (f", stopped after {figures['large_done']} synced" if figures["large_stopped"] else "")
                print(f", {figures['maxrss_large_kb'] / 1024:.0f} MiB for {figures['large']} pending{done} "
                      f"({figures['large_per_second']:.0f} contacts/s): {figures['memory_ratio']:.2f}x (target < 1.5x)")
            else:
                print()
            for share, label in ((1.0, "all present in Sage"), (0.5, "half present in Sage"),
                                 (0.0, "into an empty business")):
                if not args.resync:
                    break
                cost = bench.mass_resync_cost(args.resync, share)
                print(f"mass re-sync, {label}: {cost['contacts']} contacts, {cost['requests']} Sage requests, "
                      f"{cost['per_contact']:.4f} requests per contact")
                print(f"  {cost['minutes_at_100']:.1f} min at 100 requests a minute (matched by {cost['matched_by']})")
            if args.rate:
                pace = bench.pacing(args.rate, args.pacing_contacts)
                print(f"pacing sage: {pace['records']} records, {pace['blocks']} blocks, {pace['too_many']} × 429, "
                      f"rate {pace['rate']:.3f} of the limit")
                print(f"  R={args.rate}/min, two workers, one business, {pace['requests']} requests in "
                      f"{pace['seconds']:.0f} s")
        finally:
            bench.close()


if __name__ == "__main__":
    main()
