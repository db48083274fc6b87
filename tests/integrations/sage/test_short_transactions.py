"""A long invoice sync never blocks the portal: its writes are short (committed around each batch,
never held while it waits on Sage), so sign-ins and pages during a sync answer, on SQLite too."""
from __future__ import annotations

import time

import pytest

from portal.extensions import db
from portal.models import Job, JobStatus
from tests import factories
from tests.integrations.sage.conftest import connect
from tests.integrations.sage.test_worker_killed import _wait_for
from tests.workers import kill_hard, start_worker


@pytest.fixture
def app_settings(app_settings):
    return {**app_settings, "SAGE_RATE_LIMIT_PER_MINUTE": 0, "SAGE_SYNC_BATCH_SIZE": 50}


def test_sign_ins_and_pages_answer_while_a_long_invoice_sync_runs(client, auth, workshop, sandbox, app_settings,
                                                                  tmp_path):
    sandbox.state.set_sage_rate_limit(None)
    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id)
    contacts = factories.contacts(workshop.head_office, 20)
    for n in range(100):
        factories.invoice(workshop.head_office, contacts[n % 20], tax_code="vat_standard")
    sandbox.state.set_latency(120)  # Sage at a realistic pace: a batch of 50 takes longer than SQLite waits
    client.post(f"/integrations/sage/branches/{workshop.head_office_id}/sync/invoices")
    worker = start_worker(app_settings, tmp_path / "worker.log")
    statuses = []
    try:
        _wait_for(lambda: db.session.scalar(db.select(Job.status)) == JobStatus.RUNNING, 30, "the sync to start")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            db.session.expire_all()
            if db.session.scalar(db.select(Job.status)) != JobStatus.RUNNING:
                break
            auth.logout()
            statuses.append(auth.login(workshop.owner).status_code)
            statuses.append(client.get("/").status_code)
            statuses.append(client.get(f"/integrations/sage/branches/{workshop.head_office_id}").status_code)
            time.sleep(0.2)
    finally:
        sandbox.state.set_latency(0)
        kill_hard(worker)
    db.session.expire_all()
    job = db.session.scalar(db.select(Job))
    assert job.status == JobStatus.FINISHED, job.error
    assert len(statuses) >= 15, "the sync ended before the pages were tried"
    assert all(code < 500 for code in statuses), statuses
