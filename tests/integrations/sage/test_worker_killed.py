"""A worker killed mid-run (SIGKILL, while Sage is slow): with no person involved, its lease lapses,
the portal fails the row and queues the sync again by itself, and the next worker finishes it with
every contact in Sage exactly once (batches commit, and the resumed mass re-sync matches Sage's
contacts before creating any)."""
from __future__ import annotations

import os
import signal
import time
from collections import Counter

import pytest

from portal import jobqueue
from portal.extensions import db
from portal.models import Contact, Job, JobStatus, SyncState
from tests import factories
from tests.integrations.sage.conftest import connect, sage_contacts
from tests.workers import children, kill_hard, start_worker, stop_worker

CONTACTS = 80  # the subprocess worker uses the default batch of 50


@pytest.fixture
def app_settings(app_settings):
    # About 200 requests in a few seconds: lift the per-minute limit so the test needn't wait for it;
    # a short lease so the dead run is noticed in seconds.
    return {**app_settings, "SAGE_RATE_LIMIT_PER_MINUTE": 1000, "JOB_LEASE_SECONDS": 2}


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
    worker = start_worker(app_settings, tmp_path / "worker-1.log")
    try:
        _wait_for(lambda: _synced() >= 50, 60, "the first batch to commit")
        time.sleep(0.5)  # well into the second batch, with a request to Sage in flight
        kill_hard(worker)
    finally:
        if worker.poll() is None:
            kill_hard(worker)
    assert _synced() < CONTACTS  # the batch in flight was lost locally …
    assert len(sage_contacts(sandbox)) > _synced()  # … though Sage had created some of it

    # No person: the lease lapses and the scheduler's minutely reconcile finds the row dead.
    killed = db.session.scalars(db.select(Job).order_by(Job.created_at)).first()
    assert jobqueue.reconcile(killed) is True  # the lease still holds for a moment
    time.sleep(2.5)
    assert jobqueue.reconcile_all() == 1
    db.session.expire_all()
    killed = db.session.get(Job, killed.id)
    assert killed.status == JobStatus.FAILED and "queued again by itself" in killed.error, killed.error
    assert f"at {killed.progress_done} of {CONTACTS}" in killed.error or killed.progress_total is None

    sandbox.state.set_latency(0)
    worker = start_worker(app_settings, tmp_path / "worker-2.log")
    try:
        resumed = _wait_for(lambda: db.session.scalar(db.select(Job).where(Job.status == JobStatus.FINISHED)),
                            60, "the run queued again to finish")
    finally:
        stop_worker(worker)

    # The resumed mass re-sync read Sage's contacts once and linked what the killed run created.
    assert resumed.params["requeued_from"] == killed.id
    assert resumed.result["matched_by"] == "listed" and resumed.result["linked"] >= 1, resumed.result
    references = Counter(c["reference"] for c in sage_contacts(sandbox))
    assert set(references) == {c.reference for c in rows}
    assert max(references.values()) == 1
    assert _synced() == CONTACTS
    assert workshop.connection().mass_resync_started_at is None


def test_a_stalled_worker_that_wakes_after_its_run_was_taken_over_writes_nothing_twice(
        client, auth, workshop, sandbox, app, app_settings, tmp_path):
    """Two workers racing on one branch: the first stalls (SIGSTOP) past its lease, the portal
    fails its row and queues the sync again, a second worker finishes it; when the first wakes
    (SIGCONT) it stops before writing again. Every contact is in Sage exactly once."""
    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id)
    rows = factories.contacts(workshop.head_office, CONTACTS)
    sandbox.state.set_sage_rate_limit(1000)
    sandbox.state.set_latency(40)
    client.post(f"/integrations/sage/branches/{workshop.head_office_id}/sync/contacts")
    first = start_worker(app_settings, tmp_path / "worker-1.log")
    second = None
    try:
        _wait_for(lambda: _synced() >= 50, 60, "the first batch to commit")
        horses = children(first.pid)
        for pid in horses:
            os.kill(pid, signal.SIGSTOP)
        time.sleep(2.5)  # past the 2 s lease
        assert jobqueue.reconcile_all() == 1
        sandbox.state.set_latency(0)
        second = start_worker(app_settings, tmp_path / "worker-2.log")
        taken_over = _wait_for(lambda: db.session.scalar(db.select(Job).where(Job.status == JobStatus.FINISHED)),
                               60, "the run queued again to finish")
        for pid in horses:
            os.kill(pid, signal.SIGCONT)
        first_log = tmp_path / "worker-1.log"  # the first wakes, finds its lease lost, and stops
        _wait_for(lambda: "lost its lease" in first_log.read_text(), 30, "the woken run to stop")
    finally:
        for worker in (first, second):
            if worker is not None and worker.poll() is None:
                kill_hard(worker)
    stalled = db.session.scalars(db.select(Job).order_by(Job.created_at)).first()
    db.session.expire_all()
    assert db.session.get(Job, stalled.id).status == JobStatus.FAILED  # left as the portal set it
    assert db.session.get(Job, taken_over.id).status == JobStatus.FINISHED
    assert "lost its lease" in (tmp_path / "worker-1.log").read_text()
    references = Counter(c["reference"] for c in sage_contacts(sandbox))
    assert set(references) == {c.reference for c in rows}
    assert max(references.values()) == 1
    assert _synced() == CONTACTS
