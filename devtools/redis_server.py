"""Start a private, throw-away redis-server when none answers at the configured URL."""
from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass

import redis


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(url: str) -> bool:
    """True when a Redis server answers PING at `url`."""
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


@dataclass
class PrivateRedis:
    url: str
    process: subprocess.Popen
    directory: str
    port: int
    persist: bool = False

    def shut_down(self) -> None:
        """Stop the server, keeping its directory (with `persist`, its data: Redis writes its
        append-only file on the way down, as a production Redis restarting does)."""
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def start_again(self) -> None:
        """Start the server again on the same port and directory, after `shut_down`."""
        self.process = _launch(self.port, self.directory, self.persist)
        _wait_until_it_answers(self.url, self.process, self.port)

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        self.shut_down()
        shutil.rmtree(self.directory, ignore_errors=True)


def start_private_redis(port: int | None = None, db: int = 0, persist: bool = False) -> PrivateRedis:
    """Start redis-server on loopback; nothing is persisted unless `persist` (an append-only file,
    so that a restart keeps the data). Raises RuntimeError if it can't start."""
    port = port or free_port()
    directory = tempfile.mkdtemp(prefix="portal-redis-")
    process = _launch(port, directory, persist)
    url = f"redis://127.0.0.1:{port}/{db}"
    _wait_until_it_answers(url, process, port)
    return PrivateRedis(url, process, directory, port, persist)


def _launch(port: int, directory: str, persist: bool) -> subprocess.Popen:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (Debian: apt-get install redis-server)")
    return subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "yes" if persist else "no", "--appendfsync", "always" if persist else "everysec",
         "--dir", directory, "--logfile", f"{directory}/redis.log"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_until_it_answers(url: str, process: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if answers(url):
            return
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"redis-server did not start on port {port}")
