"""The job machinery: one enqueue path, duplicates refused, a real worker, the progress partial."""
from datetime import timedelta

import pytest
from rq.job import Job as RQJob

from portal import jobqueue
from portal.extensions import db
from portal.models import Job, JobStatus, utcnow
from tests import factories

pytestmark = pytest.mark.postgres

COUNT = "tests.jobs_for_tests.count_contacts"


def _enqueue(branch, user, **kwargs):
    return jobqueue.enqueue("test.count", COUNT, branch=branch, requested_by=user,
                            description="Count contacts", args=(branch.id,), **kwargs)


def test_enqueue_writes_a_row_keyed_by_the_rq_job_id(app, redis_client):
    business = factories.business()
    user, helper = factories.customer(business), factories.support()
    row = _enqueue(business.branches[0], user, puppeteer=helper)
    rq_job = RQJob.fetch(row.id, connection=redis_client)
    assert rq_job.args[0] == row.id
    assert row.status == JobStatus.QUEUED
    assert (row.requested_by_id, row.puppeteer_id) == (user.id, helper.id)
    assert rq_job.timeout == jobqueue.JOB_TIMEOUT and rq_job.result_ttl == jobqueue.RESULT_TTL


def test_a_second_job_of_the_same_kind_for_the_branch_is_refused(app):
    business = factories.business(branches=("A", "B"))
    user = factories.customer(business)
    first = _enqueue(business.branches[0], user)
    with pytest.raises(jobqueue.JobAlreadyRunning) as refused:
        _enqueue(business.branches[0], user)
    assert refused.value.existing.id == first.id
    assert _enqueue(business.branches[1], user).id != first.id  # another branch is fine
    assert db.session.scalar(db.select(db.func.count()).select_from(Job)) == 2


def test_a_real_worker_runs_the_job_and_updates_its_row(app, drain_jobs, redis_client):
    business = factories.business()
    factories.contacts(business.branches[0], 25)
    row = _enqueue(business.branches[0], factories.customer(business))
    drain_jobs()
    db.session.expire_all()
    row = db.session.get(Job, row.id)
    assert row.status == JobStatus.FINISHED
    assert (row.progress_done, row.progress_total) == (25, 25)
    assert row.result["count"] == 25 and row.started_at and row.ended_at
    assert RQJob.fetch(row.id, connection=redis_client).meta["done"] == 25


def test_a_failed_job_records_its_message_and_frees_the_branch(app, drain_jobs):
    business = factories.business()
    user = factories.customer(business)
    row = jobqueue.enqueue("test.count", COUNT, branch=business.branches[0], requested_by=user,
                           description="Count contacts", args=(business.branches[0].id, True))
    drain_jobs()
    db.session.expire_all()
    row = db.session.get(Job, row.id)
    assert row.status == JobStatus.FAILED
    assert row.error == "Sage said no: the test asked for a failure."
    assert _enqueue(business.branches[0], user).status == JobStatus.QUEUED


def test_a_job_whose_worker_vanished_is_failed_and_no_longer_blocks(app, redis_client):
    business = factories.business()
    user = factories.customer(business)
    row = _enqueue(business.branches[0], user)
    db.session.execute(db.update(Job).where(Job.id == row.id).values(status=JobStatus.RUNNING))
    db.session.commit()
    RQJob.fetch(row.id, connection=redis_client).delete()
    again = _enqueue(business.branches[0], user)
    db.session.expire_all()
    assert db.session.get(Job, row.id).status == JobStatus.FAILED
    assert "stopped" in db.session.get(Job, row.id).error  # no lease: nothing renews it
    assert again.status == JobStatus.QUEUED


def test_progress_partial_polls_while_queued_and_stops_when_finished(app, client, auth, drain_jobs):
    business = factories.business()
    user = factories.customer(business)
    factories.contacts(business.branches[0], 12)
    row = _enqueue(business.branches[0], user)
    auth.login(user)
    queued = client.get(f"/jobs/{row.id}", headers={"HX-Request": "true"})
    assert queued.status_code == 200
    assert 'hx-trigger="every 1s"' in queued.get_data(as_text=True)
    assert "Waiting for a worker" in queued.get_data(as_text=True)
    assert "HX-Request" in queued.headers.get("Vary", "")
    drain_jobs()
    finished = client.get(f"/jobs/{row.id}", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "hx-trigger" not in finished
    assert "Counted 12 contacts." in finished


def test_progress_partial_shows_a_running_job_with_counts(app, client, auth):
    business = factories.business()
    user = factories.customer(business)
    row = _enqueue(business.branches[0], user)
    rq_job = RQJob.fetch(row.id, connection=app.extensions["redis"])
    rq_job.meta.update({"done": 40, "total": 160, "failures": 2, "eta_seconds": 90})
    rq_job.save_meta()
    rq_job.set_status("started")
    db.session.execute(db.update(Job).where(Job.id == row.id).values(
        status=JobStatus.RUNNING, lease_expires_at=utcnow() + timedelta(minutes=1)))
    db.session.commit()
    auth.login(user)
    html = client.get(f"/jobs/{row.id}", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert '<progress max="160" value="40"' in html
    assert "40 of 160 done" in html and "2 failed" in html and "about 2 min left" in html
    assert 'hx-trigger="every 1s"' in html


def test_progress_partial_of_another_business_is_not_found(app, client, auth):
    mine, theirs = factories.business(), factories.business()
    row = _enqueue(theirs.branches[0], factories.customer(theirs))
    auth.login(factories.customer(mine))
    assert client.get(f"/jobs/{row.id}").status_code == 404
