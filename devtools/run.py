"""`make run`: prepare, migrate, load the demo data, then run the processes of Procfile.dev with
honcho until Ctrl-C (or SIGTERM), which stops them all.

Preparing is what a process manager does not do: choose the ports (PORT and SANDBOX_PORT when
given, else 5000 and 5001 when free, else free ones; PORTAL_PUBLIC_URL follows PORT unless set),
start a private Redis only when none answers at PORTAL_REDIS_URL, point the portal at the local
SMTP sink (its mail is shown at /_dev/mail) and empty the metrics folder. honcho then starts web,
worker × WORKERS (default 1), scheduler, the Sage sandbox, the SMTP sink and (when needed) Redis,
printing each line with its process's name. Once the sandbox answers, Sydney is signed in to it
(`flask demo-connect`); once /healthz is green, one banner says where the portal is, how to sign
in and how to stop. gunicorn writes no access log here: a line per request (or per progress poll)
would bury the lines worth reading.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests
from honcho import environ as honcho_environ

from devtools.redis_server import answers, free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DEFAULT_PORTS = (5000, 5001)  # the portal, the sandbox
SMTP_PORT = 8025  # the development configuration's default (portal/config.py)
PROCESSES = ("web", "worker", "scheduler", "sandbox", "smtp")  # and "redis" when none answers
RUN_ID = "PORTAL_DEV_RUN_ID"


def port_free(port: int) -> bool:
    """Whether nothing listens on `port` of 127.0.0.1."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _port(env: dict, name: str, default: int, taken: set[int]) -> None:
    """Set env[name]: as given, else `default` when free, else any free port not `taken` (0: any)."""
    if env.get(name):
        port = int(env[name])
    elif default and default not in taken and port_free(default):
        port = default
    else:
        port = free_port()
        while port in taken:
            port = free_port()
    taken.add(port)
    env[name] = str(port)


def prepare(environ: dict | None = None, *, default_ports: tuple[int, int] = DEFAULT_PORTS) -> tuple[dict, list[str]]:
    """The environment every process gets, and the Procfile.dev processes to start."""
    env = dict(os.environ if environ is None else environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # the venv's gunicorn, flask and python
    env.setdefault("PORTAL_ENV", "development")
    env["PYTHONUNBUFFERED"] = "1"  # lines appear as they are written, not when a buffer fills
    env[RUN_ID] = uuid.uuid4().hex  # every process of this run inherits it (see _leftovers)
    taken = {int(env[name]) for name in ("PORT", "SANDBOX_PORT", "PORTAL_SMTP_PORT") if env.get(name)}
    _port(env, "PORT", default_ports[0], taken)
    _port(env, "SANDBOX_PORT", default_ports[1], taken)
    env.setdefault("PORTAL_PUBLIC_URL", f"http://127.0.0.1:{env['PORT']}")
    processes = list(PROCESSES)

    redis_url = env.setdefault("PORTAL_REDIS_URL", "redis://127.0.0.1:6379/0")
    if not answers(redis_url):
        env.pop("REDIS_PORT", None)  # always a free one
        _port(env, "REDIS_PORT", 0, taken)
        env["PORTAL_REDIS_URL"] = f"redis://127.0.0.1:{env['REDIS_PORT']}/0"
        processes.append("redis")

    # The local SMTP sink keeps what the portal sends in a Maildir, shown at /_dev/mail.
    _port(env, "PORTAL_SMTP_PORT", SMTP_PORT, taken)
    env.update(PORTAL_SMTP_HOST="127.0.0.1", PORTAL_SMTP_STARTTLS="false")
    mailbox = Path(env.setdefault("PORTAL_DEV_MAILBOX", str(ROOT / "instance" / "dev-mail")))
    for part in ("new", "cur", "tmp"):
        (mailbox / part).mkdir(parents=True, exist_ok=True)

    # Every process of this machine writes its metrics here and /metrics adds them up; a new run
    # starts from zero, as a restarted production host does (prometheus-client's files are *.db).
    metrics = Path(env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(ROOT / "instance" / "metrics")))
    metrics.mkdir(parents=True, exist_ok=True)
    for stale in metrics.glob("*.db"):
        stale.unlink()
    return env, processes


def dotenv() -> dict:
    """The settings of a `.env` file beside the Procfile, which honcho reads too (they win over the
    environment, as with honcho)."""
    path = ROOT / ".env"
    return honcho_environ.parse(path.read_text()) if path.exists() else {}


def banner(env: dict) -> str:
    """What the terminal shows once the portal is healthy."""
    local = f"http://127.0.0.1:{env['PORT']}"
    return (
        "\n"
        f"  Portal ready at {env['PORTAL_PUBLIC_URL']}\n"
        f"  Sage sandbox    http://127.0.0.1:{env['SANDBOX_PORT']}/_sandbox/\n"
        f"  Health          {local}/healthz   (for people: {local}/status)   Metrics  {local}/metrics\n"
        f"  Mail sent       {local}/_dev/mail   (password-reset links)\n\n"
        "  Customer  owner@harbour-auto.test / demo-password\n"
        "  Support   support@portal.test / demo-password, then a two-step code:\n"
        "            .venv/bin/flask --app app demo-totp   (prints the current one)\n"
        "  Sage login (sandbox)         sage@harbour-auto.test / sandbox-password\n"
        "  Sage One AUS login (sandbox) newcastle@harbour-auto.test / sandbox-password\n\n"
        "  Ctrl-C stops everything.\n"
    )


class _Stop(Exception):
    """Ctrl-C, SIGTERM or SIGHUP reached this process."""


def _raise_stop(signum, _frame) -> None:
    raise _Stop(signum)


def _flask(*args: str, env: dict, check: bool = True) -> int:
    return subprocess.run([str(BIN / "flask"), "--app", "app", *args], cwd=ROOT, env=env, check=check).returncode


def _get(url: str):
    try:
        return requests.get(url, timeout=2)
    except requests.RequestException:
        return None


def _wait_for(url: str, seconds: float, alive, *, ok_only: bool = False):
    """The first answer from `url` (a 200 with `ok_only`) within `seconds`, or None."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and alive():
        response = _get(url)
        if response is not None and (response.status_code == 200 or not ok_only):
            return response
        time.sleep(0.3)
    return None


def _start_up(env: dict, alive) -> None:
    """Sign Sydney in to the sandbox, then print the banner once the portal reports healthy."""
    sandbox_url = f"http://127.0.0.1:{env['SANDBOX_PORT']}"
    local = f"http://127.0.0.1:{env['PORT']}"
    if _wait_for(f"{sandbox_url}/_sandbox/state", 30, alive) and _wait_for(f"{local}/login", 60, alive):
        try:
            requests.post(f"{sandbox_url}/_sandbox/redirect-uris",
                          json={"uri": f"{env['PORTAL_PUBLIC_URL']}/integrations/sage/callback"}, timeout=5)
        except requests.RequestException:
            pass  # demo-connect below says what went wrong
        if _flask("demo-connect", sandbox_url, env=env, check=False) != 0:
            print("Sydney could not be signed in to the sandbox (see above); connect it from its branch page.",
                  flush=True)
    if _wait_for(f"{local}/healthz", 60, alive, ok_only=True):
        print(banner(env), flush=True)
    elif alive():
        health = _get(f"{local}/healthz")
        print(f"\n  The portal is not healthy yet at {local}/healthz: "
              f"{health.text.strip() if health is not None else 'no answer'}\n  Ctrl-C stops everything.\n",
              flush=True)


def main() -> int:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_stop)
    env, processes = prepare({**os.environ, **dotenv()})
    if "redis" in processes:
        print(f"No Redis answered; a private one starts at {env['PORTAL_REDIS_URL']}", flush=True)
    honcho = None
    try:
        _flask("db", "upgrade", env=env)
        _flask("demo-data", env=env)
        # A session of its own: a terminal's Ctrl-C reaches this process only, which passes it on
        # once (honcho would otherwise get it twice). honcho gives each process PORT + 100 × its
        # place in the list; web comes first, so it gets PORT itself.
        # `.env` was read before preparing (dotenv()), so honcho must not apply it over the result.
        honcho = subprocess.Popen(
            [str(BIN / "honcho"), "start", "-f", "Procfile.dev", "-e", os.devnull, "-p", env["PORT"],
             "-c", f"worker={env.get('WORKERS', '1')}", *processes],
            cwd=ROOT, env=env, start_new_session=True)
        _start_up(env, alive=lambda: honcho.poll() is None)
        honcho.wait()
        print("A process stopped, so honcho stopped the others (see above).", flush=True)
        return 1
    except subprocess.CalledProcessError as failed:
        print(f"`flask {' '.join(failed.cmd[1:])}` failed (see above); nothing was started.", flush=True)
        return 1
    except _Stop:
        if honcho is not None and honcho.poll() is None:
            honcho.send_signal(signal.SIGTERM)
        return 0
    finally:
        if honcho is not None:
            _wait_quietly(honcho)
            _kill_leftovers(env[RUN_ID])


def _wait_quietly(honcho: subprocess.Popen) -> None:
    """Wait for honcho to stop everything (a further Ctrl-C does not cut this short)."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    try:
        honcho.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(honcho.pid, signal.SIGKILL)
        honcho.wait()


def leftovers(run_id: str) -> list[int]:
    """Processes of the run `run_id` still alive: each carries it in its environment, wherever it
    has gone (an RQ work horse or the private Redis run in process groups honcho's signals miss)."""
    marker = f"{RUN_ID}={run_id}".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return found


def _kill_leftovers(run_id: str) -> None:
    """The last safety net: anything of this run that outlived honcho is killed, and said so."""
    pids = leftovers(run_id)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    if pids:
        print(f"Killed {len(pids)} process(es) of this run that outlived honcho: {pids}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
