"""Benchmark Sage One AUS pacing (not a test): `.venv/bin/python -m devtools.bench_sage_one_pacing`.

The demo's first Sage One AUS sync, run as a new user would: the demo data (Harbour Auto, whose
Newcastle branch has 465 customers and issued invoices waiting), the owner signs in, connects
Newcastle to Sage One AUS through the connect page and presses Sync. Everything runs locally and
in its own process: a private Redis, the Sage sandbox (`python -m sage_sandbox`, enforcing Sage
One's real 100 requests a minute per company and its hour-long block) and a real RQ worker; the
portal's pages run here. Prints

    pacing sage_one: N records, B blocks, Q × 429, rate F of the limit

where B and Q are the sandbox's own counts (blocks started, 429s answered) and F is the requests
Sage One received for the company per minute of the run, as a share of its limit (target: 0 blocks,
0 × 429, F ≥ 0.85). It takes about five minutes.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from devtools.redis_server import start_private_redis

ROOT = Path(__file__).resolve().parent.parent
QUEUE = "portal-bench-sage-one"
COMPANY = "20001"  # Harbour Auto Newcastle in the sandbox
SAGE_ONE_LOGIN = ("newcastle@harbour-auto.test", "sandbox-password")


def run_worker() -> None:
    """`--worker`: drain the queue once with a forking RQ worker (as `make run` starts one)."""
    from portal import create_app
    from portal.worker import build_worker

    app = create_app()
    build_worker(app).work(burst=True, logging_level="WARNING")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Bench:
    def __init__(self, workdir: Path, limit: int):
        self.limit = limit
        self.redis = start_private_redis()
        port = _free_port()
        self.sandbox_url = f"http://127.0.0.1:{port}"
        self.sandbox = subprocess.Popen([sys.executable, "-m", "sage_sandbox", "--port", str(port)], cwd=ROOT,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_for_sandbox()
        self._control("rate-limits", {"sage_one": limit, "sage_one_block_seconds": 3600})
        self.settings = {
            "ENV_NAME": "test",
            "DATABASE_URL": f"sqlite:///{workdir / 'bench.db'}",
            "REDIS_URL": self.redis.url,
            "RQ_QUEUE": QUEUE,
            "SAGE_ONE_API_URL": f"{self.sandbox_url}/api/2.0.0",
            "SAGE_ONE_API_KEY": "portal-dev-apikey",
            "SAGE_ONE_RATE_LIMIT_PER_MINUTE": limit,
            "HTTP_TIMEOUT_SECONDS": 15.0,
            "KEY_SCRYPT_N": 2**14,
        }
        from portal import create_app

        self.app = create_app({**self.settings, "WTF_CSRF_ENABLED": False})
        with self.app.app_context():
            from flask_migrate import upgrade

            from portal import demo

            upgrade()
            demo.load()

    def close(self) -> None:
        self.sandbox.terminate()
        try:
            self.sandbox.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.sandbox.kill()
        self.redis.stop()

    def _wait_for_sandbox(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                requests.get(f"{self.sandbox_url}/_sandbox/state", timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError("the sandbox did not start")

    def _control(self, path: str, body: dict) -> None:
        requests.post(f"{self.sandbox_url}/_sandbox/{path}", json=body, timeout=5).raise_for_status()

    def sandbox_state(self) -> dict:
        return requests.get(f"{self.sandbox_url}/_sandbox/state", timeout=5).json()

    def start_worker(self) -> subprocess.Popen:
        env = dict(os.environ, PORTAL_ENV="test")
        for key, value in self.settings.items():
            if key != "ENV_NAME":
                env[f"PORTAL_{key}"] = str(value)
        return subprocess.Popen([sys.executable, "-m", "devtools.bench_sage_one_pacing", "--worker"], cwd=ROOT,
                                env=env)

    def first_sync(self) -> dict:
        """Sign in, connect Newcastle, press Sync and watch the sandbox until the job ends."""
        from portal import demo
        from portal.extensions import db
        from portal.models import Branch, Job

        web = self.app.test_client()
        with self.app.app_context():
            newcastle = db.session.scalar(db.select(Branch).where(Branch.name == "Newcastle")).id
        web.post("/login", data={"email": demo.CUSTOMER_EMAIL, "password": demo.DEMO_PASSWORD})
        started = time.monotonic()
        answer = web.post(f"/integrations/sage-one-aus/branches/{newcastle}/connect",
                          data={"username": SAGE_ONE_LOGIN[0], "password": SAGE_ONE_LOGIN[1]})
        connect_seconds = time.monotonic() - started
        if answer.status_code != 302:
            raise RuntimeError(f"connect answered {answer.status_code}: "
                               f"{re.sub(r'<[^>]+>', ' ', answer.get_data(as_text=True))[:300]}")
        web.post(f"/integrations/sage-one-aus/branches/{newcastle}/sync")
        with self.app.app_context():
            job_id = db.session.scalar(db.select(Job.id).where(Job.branch_id == newcastle))
        worker = self.start_worker()
        first = last = None
        seen = 0
        try:
            while worker.poll() is None:
                time.sleep(0.05)
                requests_now = self.sandbox_state()["companies"][COMPANY]["requests"]
                if requests_now != seen:
                    seen, last = requests_now, time.monotonic()
                    first = first or last
        finally:
            if worker.poll() is None:
                worker.kill()
            worker.wait()
        state = self.sandbox_state()
        with self.app.app_context():
            job = db.session.get(Job, job_id)
            status, result, error, done = job.status.value, job.result, job.error, job.progress_done
        company = state["companies"][COMPANY]
        minutes = (last - first) / 60 if first and last and last > first else 0
        return {
            "status": status, "error": error,
            "records": result["contacts"] + result["invoices"] if result else done or 0,
            "failures": (result or {}).get("failures"),
            "blocks": state["rate_limits"]["sage_one_blocks"],
            "too_many": state["rate_limits"]["sage_one_rate_limit_429"] + state["rate_limits"]["sage_one_lockout_429"],
            "company_blocks": company["blocks"], "company_429": company["rate_limited"],
            "requests": seen, "minutes": minutes, "connect_seconds": connect_seconds,
            "rate": seen / minutes / self.limit if minutes else 0.0,
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.bench_sage_one_pacing")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, default=100, help="Sage One's requests a minute per company")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args(argv)
    if args.worker:
        run_worker()
        return
    with tempfile.TemporaryDirectory(prefix="bench-sage-one-") as workdir:
        bench = Bench(Path(workdir), args.limit)
        try:
            figures = bench.first_sync()
        finally:
            bench.close()
    if figures["status"] != "finished":
        print(f"the sync did not finish ({figures['status']}): {figures['error']}", file=sys.stderr)
    print(f"pacing sage_one: {figures['records']} records, {figures['blocks']} blocks, "
          f"{figures['too_many']} × 429, rate {figures['rate']:.2f} of the limit")
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
