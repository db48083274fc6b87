"""`make run`: migrate, load demo data, then run Redis (if none answers), the Sage sandbox, an RQ
worker and the web server together until Ctrl-C, which stops them all."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from devtools.mail_sink import MailSink
from devtools.redis_server import answers, start_private_redis

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _flask(*args: str, env: dict) -> None:
    subprocess.run([str(BIN / "flask"), "--app", "app", *args], cwd=ROOT, env=env, check=True)


def _wait_for(url: str, seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1)
            return True
        except requests.RequestException:
            time.sleep(0.2)
    return False


def main() -> int:
    port = os.environ.get("PORT", "5000")
    sandbox_port = os.environ.get("SANDBOX_PORT", "5001")
    env = dict(os.environ, PORTAL_ENV=os.environ.get("PORTAL_ENV", "development"), SANDBOX_PORT=sandbox_port)
    env.setdefault("PORTAL_PUBLIC_URL", f"http://127.0.0.1:{port}")
    redis_url = env.setdefault("PORTAL_REDIS_URL", "redis://127.0.0.1:6379/0")

    private_redis = None
    if not answers(redis_url):
        private_redis = start_private_redis()
        env["PORTAL_REDIS_URL"] = private_redis.url
        print(f"No Redis answered at {redis_url}; started a private one at {private_redis.url}")

    # A local SMTP server: password-reset mail lands in instance/dev-mail, shown at /_dev/mail.
    mail_sink = MailSink(ROOT / "instance" / "dev-mail").start()
    env["PORTAL_SMTP_HOST"], env["PORTAL_SMTP_PORT"] = mail_sink.host, str(mail_sink.port)
    env["PORTAL_SMTP_STARTTLS"] = "false"
    env["PORTAL_DEV_MAILBOX"] = str(mail_sink.directory)

    processes: list[subprocess.Popen] = []
    try:
        _flask("db", "upgrade", env=env)
        _flask("demo-data", env=env)
        sandbox_url = f"http://127.0.0.1:{sandbox_port}"
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "sage_sandbox", "--port", sandbox_port], cwd=ROOT, env=env))
        if _wait_for(f"{sandbox_url}/_sandbox/state"):
            requests.post(f"{sandbox_url}/_sandbox/redirect-uris",
                          json={"uri": f"{env['PORTAL_PUBLIC_URL']}/integrations/sage/callback"}, timeout=5)
            _flask("demo-connect", sandbox_url, env=env)  # Sydney on Sage from the start
        processes.append(subprocess.Popen(
            [str(BIN / "flask"), "--app", "app", "worker"], cwd=ROOT, env=env))
        processes.append(subprocess.Popen(  # scheduled syncs, idle sign-ins renewed, dead jobs noticed
            [str(BIN / "flask"), "--app", "app", "scheduler"], cwd=ROOT, env=env))
        processes.append(subprocess.Popen(
            [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--access-logfile", "-", "app:app"],
            cwd=ROOT, env=env))  # processes and threads: gunicorn.conf.py
        _wait_for(f"http://127.0.0.1:{port}/login")
        print(
            "\n"
            f"  Portal        http://127.0.0.1:{port}\n"
            f"  Sage sandbox  {sandbox_url}/_sandbox/\n"
            f"  Health        http://127.0.0.1:{port}/healthz\n"
            f"  Mail sent     http://127.0.0.1:{port}/_dev/mail   (password-reset links)\n\n"
            "  Customer  owner@harbour-auto.test / demo-password\n"
            "  Support   support@portal.test / demo-password, then a two-step code:\n"
            "            .venv/bin/flask --app app demo-totp   (prints the current one)\n"
            "  Sage login (sandbox)        sage@harbour-auto.test / sandbox-password\n"
            "  Sage One AUS login (sandbox) newcastle@harbour-auto.test / sandbox-password\n\n"
            "  Ctrl-C stops everything.\n",
            flush=True,
        )
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
        print("A process stopped; shutting down the rest.")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        mail_sink.stop()
        if private_redis is not None:
            private_redis.stop()


if __name__ == "__main__":
    sys.exit(main())
