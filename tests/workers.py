"""Real `flask --app app worker` (and `scheduler`) processes for tests that kill, stall or watch them from outside."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start_worker(app_settings: dict, log_path: Path) -> subprocess.Popen:
    """A worker process with the test app's settings (as PORTAL_* variables), writing to `log_path`."""
    return _start("worker", app_settings, log_path)


def start_scheduler(app_settings: dict, log_path: Path) -> subprocess.Popen:
    """A `flask --app app scheduler` process (stop it with stop_worker or kill_hard), writing to `log_path`."""
    return _start("scheduler", app_settings, log_path)


def _start(command: str, app_settings: dict, log_path: Path) -> subprocess.Popen:
    env = dict(os.environ, PORTAL_ENV="test")
    for key, value in app_settings.items():
        if key != "ENV_NAME" and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            env[f"PORTAL_{key}"] = str(value)
    with log_path.open("w") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", command], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)


def stop_worker(worker: subprocess.Popen) -> None:
    """Ask the worker to stop (a warm shut-down); kill it and its work horse if it does not."""
    worker.terminate()
    try:
        worker.wait(timeout=10)
    except subprocess.TimeoutExpired:
        kill_hard(worker)


def children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (the work horse RQ forks in a session of its own)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def kill_hard(worker: subprocess.Popen) -> None:
    """SIGKILL the worker and its work horse, as a crashed machine would stop them."""
    for pid in [*children(worker.pid), worker.pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    worker.wait(timeout=10)
