"""Two processes of Procfile.dev that need more than a command line to stop cleanly.

honcho stops a run by sending every process SIGTERM at once, and SIGKILL, over and over, to any
still running 5 s later. Two of `make run`'s processes would not be gone by then:

* `python -m devtools.dev_processes worker`: an RQ worker (`flask --app app worker`). Its first
  SIGTERM only asks it to stop after the running job (a warm shutdown), and the job runs in a work
  horse with a process group of its own, which honcho's signals never reach: a sync would go on
  for minutes after Ctrl-C. So a moment after the first SIGTERM this sends a second one, RQ's cold
  shutdown, which takes the horse down with the worker. Nothing is lost: the job's lease lapses and
  the scheduler fails its row and queues a Sage sync again (README: the integration runs itself).
  A production worker keeps the warm shutdown (Procfile).
* `python -m devtools.dev_processes redis`: the private Redis on REDIS_PORT, in a throw-away
  folder. It runs in a session of its own and stops when its last client (web, workers, scheduler)
  has gone or 2.5 s have passed, so none of them waits for it on the way out.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

BIN = Path(sys.executable).parent
# RQ ignores a second signal that comes within a second of the first (worker pools send two).
COLD_SHUTDOWN_AFTER = 1.2
REDIS_GRACE_SECONDS = 2.5

_stop: list[int] = []  # the signals received, in order


def _stop_requested(signum, _frame) -> None:
    _stop.append(signum)


def _wait_for_stop_or_exit(process: subprocess.Popen) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _stop_requested)
    while not _stop and process.poll() is None:
        time.sleep(0.1)


def _wait(process: subprocess.Popen, seconds: float) -> bool:
    try:
        process.wait(timeout=seconds)
        return True
    except subprocess.TimeoutExpired:
        return False


def worker() -> int:
    """An RQ worker that stops at once, its running job too (cold shutdown), when asked to stop."""
    # The same process group as this one, so honcho's SIGTERM reaches the worker directly as well.
    process = subprocess.Popen([str(BIN / "flask"), "--app", "app", "worker"])
    _wait_for_stop_or_exit(process)
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # the first (a duplicate of honcho's, which RQ ignores)
        if not _wait(process, COLD_SHUTDOWN_AFTER):
            process.send_signal(signal.SIGTERM)  # the second: cold shutdown, the horse is killed
            if not _wait(process, 3):
                process.kill()
    return process.wait()


def private_redis() -> int:
    """redis-server on REDIS_PORT until asked to stop, then until its last client has gone."""
    port = os.environ["REDIS_PORT"]
    binary = shutil.which("redis-server")
    if binary is None:
        print("redis-server is not installed (Debian: apt-get install redis-server)", flush=True)
        return 1
    folder = Path(tempfile.mkdtemp(prefix="portal-redis-"))
    url = f"redis://127.0.0.1:{port}/0"
    try:
        server = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no",
             "--dir", str(folder), "--logfile", str(folder / "redis.log"),
             "--set-proc-title", "no"],  # a new title would overwrite its environment, which make run reads
            stdin=subprocess.DEVNULL, start_new_session=True)  # honcho's signals go to us, not to it
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=1)
        if _answers(client, server):
            print(f"Private Redis at {url} (nothing is kept when it stops)", flush=True)
        _wait_for_stop_or_exit(server)
        if server.poll() is not None:
            print(f"Redis stopped by itself:\n{_tail(folder / 'redis.log')}", flush=True)
            return server.returncode or 1
        deadline = time.monotonic() + REDIS_GRACE_SECONDS
        while time.monotonic() < deadline and _other_clients(client):
            time.sleep(0.1)
        server.terminate()
        if not _wait(server, 5):
            server.kill()
        server.wait()
        return 0
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _answers(client: redis.Redis, server: subprocess.Popen) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and server.poll() is None and not _stop:
        try:
            return bool(client.ping())
        except redis.RedisError:
            time.sleep(0.05)
    return False


def _other_clients(client: redis.Redis) -> int:
    try:
        return len(client.client_list()) - 1  # this connection is one of them
    except redis.RedisError:
        return 0


def _tail(path: Path, lines: int = 10) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def main(argv: list[str]) -> int:
    commands = {"worker": worker, "redis": private_redis}
    if len(argv) != 1 or argv[0] not in commands:
        print(f"usage: python -m devtools.dev_processes {{{'|'.join(commands)}}}", file=sys.stderr)
        return 2
    return commands[argv[0]]()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
