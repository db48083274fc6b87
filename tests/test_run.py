"""`make run` (devtools/run.py + Procfile.dev under honcho): its preparation, and one whole run started,
used and stopped with Ctrl-C, after which none of its processes is left."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import pytest
import requests
from honcho.environ import parse_procfile

from devtools.redis_server import free_port
from devtools.run import PROCESSES, port_free, prepare

ROOT = Path(__file__).resolve().parents[1]
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
# A request line as gunicorn's access log (or any other) would print it.
ACCESS_LINE = re.compile(r'"(?:GET|POST|HEAD) /|/(?:login|healthz|status|password/forgot|_dev/mail)\b')


def _ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _listening(port: int) -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


@pytest.fixture
def base_env(tmp_path, redis_url) -> dict:
    """An environment for prepare() that touches nothing outside tmp_path (a Redis that answers)."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("PORT", "SANDBOX_PORT", "PORTAL_PUBLIC_URL", "PORTAL_SMTP_PORT", "REDIS_PORT")}
    env.update(PORTAL_REDIS_URL=redis_url, PORTAL_DEV_MAILBOX=str(tmp_path / "mail"),
               PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"))
    return env


def test_production_runs_web_worker_and_scheduler_and_development_those_and_its_own():
    production = parse_procfile((ROOT / "Procfile").read_text()).processes
    development = parse_procfile((ROOT / "Procfile.dev").read_text()).processes
    assert list(production) == ["web", "worker", "scheduler"]
    assert list(development) == [*PROCESSES, "redis"]
    assert development["scheduler"] == production["scheduler"]


def test_prepare_takes_the_default_ports_when_free_and_others_when_they_are_taken(base_env):
    portal, sandbox = _ports(2)  # stand-ins for 5000 and 5001, which a developer's `make run` may hold

    env, _ = prepare(base_env, default_ports=(portal, sandbox))
    assert (env["PORT"], env["SANDBOX_PORT"]) == (str(portal), str(sandbox))

    with ExitStack() as stack:
        for port in (portal, sandbox):
            stack.enter_context(_listening(port))
        env, _ = prepare(base_env, default_ports=(portal, sandbox))
        chosen = {int(env["PORT"]), int(env["SANDBOX_PORT"]), int(env["PORTAL_SMTP_PORT"])}
        assert len(chosen) == 3 and not chosen & {portal, sandbox}
        assert all(port_free(port) for port in chosen)

    given = _ports(1)[0]
    env, _ = prepare(dict(base_env, PORT=str(given)), default_ports=(portal, sandbox))
    assert env["PORT"] == str(given) and env["SANDBOX_PORT"] == str(sandbox)


def test_the_public_url_follows_port_unless_it_is_set(base_env):
    port = _ports(1)[0]
    env, _ = prepare(dict(base_env, PORT=str(port)))
    assert env["PORTAL_PUBLIC_URL"] == f"http://127.0.0.1:{port}"

    env, _ = prepare(dict(base_env, PORT=str(port), PORTAL_PUBLIC_URL="https://portal.example"))
    assert env["PORTAL_PUBLIC_URL"] == "https://portal.example"


def test_a_private_redis_is_added_only_when_none_answers(base_env, redis_url):
    env, processes = prepare(base_env)
    assert processes == ["web", "worker", "scheduler", "sandbox", "smtp"]
    assert env["PORTAL_REDIS_URL"] == redis_url and "REDIS_PORT" not in env

    nobody = f"redis://127.0.0.1:{_ports(1)[0]}/0"
    env, processes = prepare(dict(base_env, PORTAL_REDIS_URL=nobody))
    assert processes[-1] == "redis"
    assert env["PORTAL_REDIS_URL"] == f"redis://127.0.0.1:{env['REDIS_PORT']}/0" != nobody
    assert env["REDIS_PORT"] not in (env["PORT"], env["SANDBOX_PORT"], env["PORTAL_SMTP_PORT"])


def test_each_run_starts_its_metrics_from_zero_and_keeps_other_files(base_env, tmp_path):
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "counter_123.db").write_bytes(b"old figures")
    (metrics / "notes.txt").write_text("not prometheus-client's")
    prepare(base_env)
    assert sorted(p.name for p in metrics.iterdir()) == ["notes.txt"]


# --- one whole run ------------------------------------------------------------------------------


def _processes_with(marker: str) -> list[str]:
    """The processes alive now whose environment holds `marker` (every process of the run inherits it)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if marker.encode() in (entry / "environ").read_bytes().split(b"\0"):
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{entry.name} {command}")
        except OSError:
            continue  # gone meanwhile
    return found


class _Output:
    """The run's terminal, read line by line in the background."""

    def __init__(self, process: subprocess.Popen):
        self.process = process
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, seconds: float) -> int:
        """The index of the first line holding `text`, once it appears."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for index, line in enumerate(list(self.lines)):
                if text in line:
                    return index
            assert self.process.poll() is None, "make run ended early:\n" + self.text()
            time.sleep(0.2)
        raise AssertionError(f"no {text!r} within {seconds} s:\n" + self.text())

    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.mark.timeout(150)
def test_make_run_starts_everything_quietly_and_ctrl_c_leaves_nothing_running(tmp_path):
    port, sandbox_port, smtp_port, nobody_port = _ports(4)
    marker_name, marker_value = "PORTAL_RUN_TEST_MARKER", uuid.uuid4().hex
    env = {key: value for key, value in os.environ.items() if not key.startswith("PORTAL_")}
    env.update(
        PORT=str(port), SANDBOX_PORT=str(sandbox_port), PORTAL_SMTP_PORT=str(smtp_port),
        PORTAL_DATABASE_URL=f"sqlite:///{tmp_path / 'portal.db'}",
        PORTAL_REDIS_URL=f"redis://127.0.0.1:{nobody_port}/0",  # nothing answers: the private Redis starts
        PORTAL_DEV_MAILBOX=str(tmp_path / "mail"), PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
        WORKERS="2",  # one takes Sydney's first sync (it runs for minutes), the other the reset mail
        WEB_CONCURRENCY="2",  # lighter on a shared 2-core machine
        **{marker_name: marker_value},
    )
    marker = f"{marker_name}={marker_value}"
    run = subprocess.Popen([sys.executable, "-m", "devtools.run"], cwd=ROOT, env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    output = _Output(run)
    try:
        url = f"http://127.0.0.1:{port}"
        output.wait_for(f"Portal ready at {url}", 90)  # PORTAL_PUBLIC_URL follows PORT
        end_of_banner = output.wait_for("Ctrl-C stops everything.", 5)
        assert output.text().count("Portal ready at") == 1
        assert "No Redis answered; a private one starts at redis://127.0.0.1:" in output.text()
        assert any(line.split("|")[0].strip().endswith("redis.1") and "Private Redis at" in line
                   for line in output.lines)

        browser = requests.Session()
        assert browser.get(f"{url}/login", timeout=10).status_code == 200
        health = browser.get(f"{url}/healthz", timeout=10)
        assert health.status_code == 200
        assert {key: health.json()[key] for key in ("status", "database", "redis", "workers")} == {
            "status": "ok", "database": "up", "redis": "up", "workers": 2}

        # Web, the private Redis, a worker and the SMTP sink together: a reset link for PORT at /_dev/mail.
        token = CSRF_FIELD.search(browser.get(f"{url}/password/forgot", timeout=10).text).group(1)
        sent = browser.post(f"{url}/password/forgot", timeout=10,
                            data={"email": "owner@harbour-auto.test", "csrf_token": token})
        assert sent.status_code == 200
        deadline = time.monotonic() + 30
        while f"{url}/password/reset?token=" not in (mail := browser.get(f"{url}/_dev/mail", timeout=10).text):
            assert time.monotonic() < deadline, "no reset mail at /_dev/mail:\n" + output.text()
            time.sleep(0.5)
        assert "owner@harbour-auto.test" in mail

        for _ in range(5):  # an open page's polls and a monitor's checks
            browser.get(f"{url}/healthz", timeout=10)
            browser.get(f"{url}/status", timeout=10)
        time.sleep(1)
        since_banner = output.lines[end_of_banner + 1:]
        assert [line for line in since_banner if ACCESS_LINE.search(line)] == [], "\n".join(since_banner)

        started = _processes_with(marker)
        # gunicorn and its 2 processes, 2 workers (each a wrapper and an RQ worker), the scheduler,
        # the sandbox, the SMTP sink, the private Redis (a wrapper and redis-server), honcho's shells
        assert len(started) >= 12 and any("redis-server" in line for line in started), started
    finally:
        os.kill(run.pid, signal.SIGINT)  # a terminal's Ctrl-C: honcho runs in a session of its own
        try:
            returncode = run.wait(timeout=30)
        finally:
            leftover = _processes_with(marker)
            for line in leftover:
                os.kill(int(line.split()[0]), signal.SIGKILL)
    assert leftover == [], "\n".join(leftover)
    assert returncode == 0, output.text()
    stopping = output.text().split("SIGTERM received", 1)[-1]
    assert "outlived honcho" not in stopping, stopping  # the worker's job and Redis stopped by themselves
    for used in (port, sandbox_port, smtp_port):
        assert port_free(used)
