"""A worker killed mid-run (SIGKILL, while Sage is slow) and a fresh run afterwards leave every
contact in Sage exactly once: batches commit, and the resumed mass re-sync looks contacts up first."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from rq.registry import StartedJobRegistry

from portal.extensions import db
from portal.jobqueue import get_queue
from portal.models import Contact, Job, JobStatus, SyncState
from tests import factories
from tests.integrations.sage.conftest import connect, sage_contacts

ROOT = Path(__file__).resolve().parents[3]
CONTACTS = 80  # the subprocess worker uses the default batch of 50


@pytest.fixture
def app_settings(app_settings):
    # About 200 requests in a few seconds: lift the per-minute limit so the test needn't wait for it.
    return {**app_settings, "SAGE_RATE_LIMIT_PER_MINUTE": 1000}


def _start_worker(app_settings: dict, log_path: Path) -> subprocess.Popen:
    env = dict(os.environ, PORTAL_ENV="test")
    for key, value in app_settings.items():
        if key != "ENV_NAME" and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            env[f"PORTAL_{key}"] = str(value)
    return subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "worker"], cwd=ROOT, env=env,
                            stdout=log_path.open("w"), stderr=subprocess.STDOUT)


def _children(pid: int) -> list[int]:
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


def _kill_hard(worker: subprocess.Popen) -> None:
    """SIGKILL the worker and its work horse, as a crashed machine would stop them."""
    for pid in [*_children(worker.pid), worker.pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    worker.wait(timeout=10)


def _wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.session.expire_all()
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _synced() -> int:
    return db.session.scalar(db.select(db.func.count()).select_from(Contact)
                             .where(Contact.sync_state == SyncState.SYNCED)) or 0


def test_a_worker_killed_mid_run_then_restarted_leaves_every_contact_in_sage_once(
        client, auth, workshop, sandbox, app, app_settings, tmp_path):
    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id)
    rows = factories.contacts(workshop.head_office, CONTACTS)
    sandbox.state.set_sage_rate_limit(1000)
    sandbox.state.set_latency(40)

    client.post(f"/integrations/sage/branches/{workshop.head_office_id}/sync/contacts")
    worker = _start_worker(app_settings, tmp_path / "worker-1.log")
    try:
        _wait_for(lambda: _synced() >= 50, 60, "the first batch to commit")
        time.sleep(0.5)  # well into the second batch, with a request to Sage in flight
        _kill_hard(worker)
    finally:
        if worker.poll() is None:
            _kill_hard(worker)
    assert _synced() < CONTACTS  # the batch in flight was lost locally …
    assert len(sage_contacts(sandbox)) > _synced()  # … though Sage had created some of it

    # RQ notices a dead worker when its heartbeat lapses (about 90 s); don't wait for it here.
    StartedJobRegistry(queue=get_queue()).cleanup(timestamp=time.time() + 3600)
    response = client.post(f"/integrations/sage/branches/{workshop.head_office_id}/sync/contacts")
    assert response.status_code == 302
    killed = db.session.scalars(db.select(Job).order_by(Job.created_at)).first()
    assert killed.status == JobStatus.FAILED and "interrupted" in killed.error

    sandbox.state.set_latency(0)
    worker = _start_worker(app_settings, tmp_path / "worker-2.log")
    try:
        resumed = _wait_for(lambda: db.session.scalar(db.select(Job).where(Job.status == JobStatus.FINISHED)),
                            60, "the resumed run to finish")
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _kill_hard(worker)

    # The resumed mass re-sync read Sage's contacts once and linked what the killed run created.
    assert resumed.result["matched_by"] == "listed" and resumed.result["linked"] >= 1, resumed.result
    references = Counter(c["reference"] for c in sage_contacts(sandbox))
    assert set(references) == {c.reference for c in rows}
    assert max(references.values()) == 1
    assert _synced() == CONTACTS
    assert workshop.connection().mass_resync_started_at is None
