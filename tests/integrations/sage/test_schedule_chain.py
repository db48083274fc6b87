"""A scheduled branch's invoices follow its contacts: at the front of the queue once the contacts
end (not behind every other branch's queued work), and after the run queued again in their place
when the contacts' worker died (not minutes later, when RQ would notice the dead run itself)."""
from __future__ import annotations

from collections import Counter
from datetime import timedelta

from rq.job import Job as RQJob
from rq.job import JobStatus as RQStatus

from portal import jobqueue, leases, schedule
from portal.extensions import db, get_redis
from portal.integrations.sage.sync import KIND_CONTACTS, KIND_INVOICES
from portal.models import Job, JobStatus, utcnow
from portal.worker import build_worker
from tests import factories
from tests.integrations.sage.conftest import connect, sage_contacts, sage_invoices


def _row(branch_id: int, kind: str) -> Job:
    return db.session.scalars(db.select(Job).where(Job.branch_id == branch_id, Job.kind == kind)
                              .order_by(Job.created_at.desc())).first()


def _connected_with_work(client, auth, workshop, sandbox):
    auth.login(workshop.owner)
    for branch in (workshop.head_office, db.session.get(type(workshop.head_office), workshop.sibling_id)):
        connect(client, sandbox, branch.id)
        contact = factories.contacts(branch, 3)[0]
        factories.invoice(branch, contact, tax_code="vat_standard")
    assert schedule.run_due() == Counter({"started": 2})


def test_a_branchs_invoices_go_to_the_front_of_the_queue_when_its_contacts_end(
        client, auth, workshop, sandbox, app):
    _connected_with_work(client, auth, workshop, sandbox)
    queue = jobqueue.get_queue()
    assert queue.job_ids == [_row(workshop.head_office_id, KIND_CONTACTS).id,
                             _row(workshop.sibling_id, KIND_CONTACTS).id]

    build_worker(app, simple=True).work(burst=True, max_jobs=1)  # the head office's contacts

    assert queue.job_ids == [_row(workshop.head_office_id, KIND_INVOICES).id,
                             _row(workshop.sibling_id, KIND_CONTACTS).id]


def test_invoices_waiting_for_contacts_whose_worker_died_wait_for_the_run_queued_again(
        client, auth, workshop, sandbox, app, run_jobs):
    _connected_with_work(client, auth, workshop, sandbox)
    redis = get_redis()
    # The head office's contacts were taken by a worker that then died: RQ still has them started,
    # and their row's lease has lapsed.
    dead = _row(workshop.head_office_id, KIND_CONTACTS)
    jobqueue.get_queue().remove(dead.id)
    RQJob.fetch(dead.id, connection=redis).set_status(RQStatus.STARTED)
    dead.status, dead.started_at = JobStatus.RUNNING, utcnow() - timedelta(minutes=1)
    dead.lease_expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert not leases.is_alive(redis, dead.id, dead.lease_expires_at)
    invoices = _row(workshop.head_office_id, KIND_INVOICES)

    assert jobqueue.reconcile_all() == 1

    again = _row(workshop.head_office_id, KIND_CONTACTS)
    assert again.id != dead.id and again.params["requeued_from"] == dead.id
    waiting = RQJob.fetch(invoices.id, connection=redis)
    assert waiting.get_status() == RQStatus.DEFERRED and waiting.dependency_ids == [again.id]
    assert RQJob.fetch(dead.id, connection=redis).dependent_ids == []

    run_jobs()

    invoices, again = db.session.get(Job, invoices.id), db.session.get(Job, again.id)
    assert again.status == invoices.status == JobStatus.FINISHED, (again.error, invoices.error)
    assert invoices.started_at >= again.ended_at
    assert len(sage_contacts(sandbox)) == 6 and len(sage_invoices(sandbox)) == 2
