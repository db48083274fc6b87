"""Job leases: a row is failed only when its lease has lapsed, a Sage sync that died is queued again
once by itself, a void never is, and a run that lost its lease writes nothing more."""
from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from rq.job import Job as RQJob

from portal import jobqueue, leases
from portal.extensions import db
from portal.models import Contact, Job, JobStatus, Provider, utcnow
from tests import factories

pytestmark = pytest.mark.postgres


@pytest.fixture
def app_settings(app_settings):
    return {**app_settings, "JOB_LEASE_SECONDS": 2}


def _running(branch, user, kind="test.count", **fields):
    row = jobqueue.enqueue(kind, "tests.jobs_for_tests.count_contacts", branch=branch, requested_by=user,
                           description="A job", args=(branch.id,), params=fields.pop("params", {}))
    row.status = JobStatus.RUNNING
    for name, value in fields.items():
        setattr(row, name, value)
    db.session.commit()
    return row


def test_a_running_job_whose_rq_hash_is_gone_lives_while_its_lease_holds(app, redis_client):
    """After a Redis restart (or a dead worker parent) RQ knows nothing; the lease still says alive."""
    business = factories.business()
    user = factories.customer(business)
    row = _running(business.branches[0], user, lease_expires_at=utcnow() + timedelta(seconds=30))
    RQJob.fetch(row.id, connection=redis_client).delete()
    assert jobqueue.reconcile(row) is True and row.status == JobStatus.RUNNING

    # The row's time has passed but its Redis key is fresh (renewed a moment ago): still alive.
    row.lease_expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    redis_client.set(leases.lease_key(row.id), "worker", ex=5)
    assert jobqueue.reconcile(row) is True

    redis_client.delete(leases.lease_key(row.id))  # both lapsed: dead
    assert jobqueue.reconcile(row) is False
    assert row.status == JobStatus.FAILED and "stopped" in row.error


def test_a_dead_sage_sync_is_queued_again_once_by_itself_and_a_dead_void_never(app):
    business = factories.business(branches=("A", "B"))
    user = factories.customer(business)
    for branch in business.branches:
        factories.connection(branch, Provider.SAGE, sage_business_id="b" * 32, sage_business_name="Solo")
    sync_row = _running(business.branches[0], user, kind="sage.sync_contacts", params={"what": "contacts"},
                        progress_done=350, progress_total=1000)
    void_row = _running(business.branches[1], user, kind="sage.void_invoice", params={"invoice_id": 1})

    assert jobqueue.reconcile_all() == 2

    db.session.expire_all()
    sync_row, void_row = db.session.get(Job, sync_row.id), db.session.get(Job, void_row.id)
    assert sync_row.status == JobStatus.FAILED and "at 350 of 1000" in sync_row.error
    assert "queued again by itself" in sync_row.error
    again = db.session.scalar(db.select(Job).where(Job.status == JobStatus.QUEUED))
    assert again.kind == "sage.sync_contacts" and again.params["requeued_from"] == sync_row.id
    assert again.requested_by_id == user.id
    assert void_row.status == JobStatus.FAILED and "check Sage before retrying" in void_row.error
    assert db.session.scalar(db.select(db.func.count()).select_from(Job)
                             .where(Job.kind == "sage.void_invoice")) == 1

    # The re-queued run dies too: it is not queued a third time.
    again.status, again.lease_expires_at = JobStatus.RUNNING, None
    db.session.commit()
    assert jobqueue.reconcile(again) is False
    assert "second time" in again.error
    assert db.session.scalar(db.select(db.func.count()).select_from(Job)
                             .where(Job.kind == "sage.sync_contacts")) == 2


def test_a_run_that_lost_its_lease_stops_before_writing_again(app, redis_client):
    """The portal failed the row while the run stalled; when it wakes it writes nothing more."""
    from portal.worker import build_worker

    business = factories.business()
    user = factories.customer(business)
    contacts = factories.contacts(business.branches[0], 6)
    row = jobqueue.enqueue("test.write", "tests.jobs_for_tests.write_slowly", branch=business.branches[0],
                           requested_by=user, description="Write slowly", args=(business.branches[0].id, 6, 0.4))

    def fail_it_meanwhile():
        time.sleep(1.0)  # two writes in
        with app.app_context():
            db.session.execute(db.update(Job).where(Job.id == row.id).values(status=JobStatus.FAILED,
                                                                            error="Failed by the portal."))
            db.session.commit()

    thread = threading.Thread(target=fail_it_meanwhile)
    thread.start()
    build_worker(app, simple=True).work(burst=True)
    thread.join()

    db.session.expire_all()
    written = [c.name for c in db.session.scalars(db.select(Contact).order_by(Contact.id))]
    assert 1 <= sum(name.startswith("written") for name in written) < len(contacts)
    row = db.session.get(Job, row.id)
    assert row.status == JobStatus.FAILED and row.error == "Failed by the portal."  # left as the portal set it
    assert not redis_client.exists(leases.lease_key(row.id))


def test_a_finished_job_leaves_no_lease_behind(app, redis_client, drain_jobs):
    business = factories.business()
    user = factories.customer(business)
    row = jobqueue.enqueue("test.count", "tests.jobs_for_tests.count_contacts", branch=business.branches[0],
                           requested_by=user, description="Count", args=(business.branches[0].id,))
    drain_jobs()
    db.session.expire_all()
    row = db.session.get(Job, row.id)
    assert row.status == JobStatus.FINISHED and row.lease_expires_at is None
    assert not redis_client.exists(leases.lease_key(row.id))
