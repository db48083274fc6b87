"""Redis restarted in the middle of a run (a production Redis with its append-only file, so it
comes back with its data): the run waits for Redis, carries on, and leaves every contact in Sage
exactly once; the job's row says what happened."""
from __future__ import annotations

import time
from collections import Counter

import pytest

from devtools.redis_server import start_private_redis
from portal.extensions import db
from portal.models import Job, JobStatus
from tests import factories
from tests.integrations.sage.conftest import connect, sage_contacts
from tests.integrations.sage.test_worker_killed import _synced, _wait_for
from tests.workers import start_worker, stop_worker

CONTACTS = 80


@pytest.fixture
def restartable_redis():
    server = start_private_redis(persist=True)
    yield server
    server.stop()


@pytest.fixture
def app_settings(app_settings, restartable_redis):
    return {**app_settings, "REDIS_URL": restartable_redis.url, "SAGE_RATE_LIMIT_PER_MINUTE": 1000,
            "JOB_LEASE_SECONDS": 4}


def test_redis_restarted_mid_run_the_run_carries_on_and_every_contact_is_in_sage_once(
        client, auth, workshop, sandbox, app, app_settings, restartable_redis, tmp_path):
    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id)
    rows = factories.contacts(workshop.head_office, CONTACTS)
    sandbox.state.set_sage_rate_limit(1000)
    sandbox.state.set_latency(40)

    client.post(f"/integrations/sage/branches/{workshop.head_office_id}/sync/contacts")
    worker = start_worker(app_settings, tmp_path / "worker.log")
    try:
        _wait_for(lambda: _synced() >= 10, 60, "the run to be under way")
        restartable_redis.shut_down()
        time.sleep(3)  # Redis away for a few seconds, mid-batch
        restartable_redis.start_again()
        finished = _wait_for(lambda: db.session.scalar(db.select(Job).where(Job.status == JobStatus.FINISHED)),
                             90, "the run to finish")
    finally:
        stop_worker(worker)
    references = Counter(c["reference"] for c in sage_contacts(sandbox))
    assert set(references) == {c.reference for c in rows}
    assert max(references.values()) == 1
    assert _synced() == CONTACTS
    assert db.session.scalar(db.select(db.func.count()).select_from(Job)) == 1  # not queued twice
    assert "Redis" in (finished.result or {}).get("summary", ""), finished.result
