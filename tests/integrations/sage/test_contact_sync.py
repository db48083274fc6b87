"""Contact sync: mass re-sync (rule 3) in committed batches, lookups that prevent duplicates,
per-contact failures, 429/5xx survival and the shared rate limit."""
from __future__ import annotations

from collections import Counter, deque

import pytest
from sqlalchemy import event

from portal.extensions import db
from portal.integrations.sage import sync
from portal.integrations.sage.ratelimit import BusinessRateLimit
from portal.models import AuditEvent, Contact, ContactKind, Job, SyncState
from tests import factories
from tests.integrations.sage.conftest import (
    FLEET_BUSINESS,
    LEAD_BUSINESS,
    MULTI_SAGE_USER,
    SOLO_BUSINESS,
    connect,
    sage_contacts,
)


@pytest.fixture
def app_settings(app_settings):
    return {**app_settings, "SAGE_SYNC_BATCH_SIZE": 10}


def _sync(client, workshop, kind="contacts"):
    response = client.post(f"/integrations/sage/branches/{workshop.head_office_id}/sync/{kind}")
    assert response.status_code == 302
    return db.session.scalars(db.select(Job).order_by(Job.created_at.desc())).first()


def _assert_each_once_in_sage(sandbox, business_id=SOLO_BUSINESS, expected=None):
    references = Counter(c.get("reference") for c in sage_contacts(sandbox, business_id))
    assert all(n == 1 for n in references.values()), references.most_common(3)
    if expected is not None:
        assert set(references) == set(expected)


def test_mass_resync_flags_every_contact_and_finishes_in_batches(client, auth, workshop, sandbox, run_jobs):
    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id)
    rows = factories.contacts(workshop.head_office, 25)
    deleted = factories.contacts(workshop.head_office, 1)[0]
    deleted.soft_delete()
    rows[0].sync_state = SyncState.SYNCED  # even a contact marked synced is flagged: it has no Sage id
    db.session.commit()

    job = _sync(client, workshop)
    run_jobs()

    job = db.session.get(Job, job.id)
    assert job.status.value == "finished", job.error
    assert job.result["mass_resync_flagged"] == 25
    assert job.result["batches_done"] == job.result["batches_total"] == 3
    assert job.result["done"] == job.progress_done == job.progress_total == 25
    assert job.result["created"] == 25 and job.result["failures"] == 0
    event_row = db.session.scalar(db.select(AuditEvent).where(AuditEvent.kind == "sync.mass_resync_flagged"))
    assert event_row.details["count"] == 25 and event_row.branch_id == workshop.head_office_id
    conn = workshop.connection()
    assert conn.mass_resync_started_at is None and conn.mass_resync_total == 25
    assert conn.last_sync_outcome.value == "succeeded" and conn.last_successful_sync_at is not None
    _assert_each_once_in_sage(sandbox, expected=[c.reference for c in rows])
    assert db.session.get(Contact, deleted.id).sage_id is None


def test_flagging_is_one_update_statement(app, workshop, sandbox):
    factories.contacts(workshop.head_office, 30)
    conn = factories.connection(workshop.head_office, sage_business_id=SOLO_BUSINESS)
    statements = []

    def count(conn_, cursor, statement, *args):
        if statement.lstrip().upper().startswith("UPDATE CONTACTS"):
            statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        assert sync.flag_mass_resync(conn) == 30
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert len(statements) == 1
    assert db.session.get(type(conn), conn.id).mass_resync_started_at is not None
    assert sync.flag_mass_resync(conn) == 30  # still none has a Sage id: flagged again, harmlessly


def test_no_mass_resync_when_some_contact_has_a_sage_id(app, workshop):
    rows = factories.contacts(workshop.head_office, 3)
    rows[0].mark_synced("abc")
    rows[1].mark_failed("earlier failure")
    db.session.commit()
    conn = factories.connection(workshop.head_office, sage_business_id=SOLO_BUSINESS)
    assert sync.flag_mass_resync(conn) == 0
    assert db.session.get(Contact, rows[1].id).sync_state == SyncState.FAILED


def test_contacts_go_to_sage_as_customer_or_vendor_with_email_on_the_main_contact_person(
        client, auth, workshop, sandbox, run_jobs):
    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id)
    customer = factories.contacts(workshop.head_office, 1)[0]
    supplier = factories.contacts(workshop.head_office, 1, kind=ContactKind.SUPPLIER)[0]
    _sync(client, workshop)
    run_jobs()

    by_reference = {c["reference"]: c for c in sage_contacts(sandbox)}
    assert by_reference[customer.reference]["contact_type_ids"] == ["CUSTOMER"]
    assert by_reference[supplier.reference]["contact_type_ids"] == ["VENDOR"]
    assert by_reference[customer.reference]["main_contact_person"]["email"] == customer.email
    assert db.session.get(Contact, customer.id).sage_id == by_reference[customer.reference]["id"]


def test_a_contact_sage_refuses_is_recorded_with_sages_message_and_the_rest_carry_on(
        client, auth, workshop, sandbox, run_jobs):
    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id)
    good = factories.contacts(workshop.head_office, 3)
    bad = Contact(branch_id=workshop.head_office_id, name="Too Long Ref", reference="REFERENCE-TOO-LONG")
    db.session.add(bad)
    db.session.commit()

    job = _sync(client, workshop)
    run_jobs()

    bad = db.session.get(Contact, bad.id)
    assert bad.sync_state == SyncState.FAILED
    assert "reference is too long" in bad.sync_error
    assert all(db.session.get(Contact, c.id).sync_state == SyncState.SYNCED for c in good)
    job = db.session.get(Job, job.id)
    assert job.status.value == "finished" and job.result["failures"] == 1
    assert workshop.connection().last_sync_outcome.value == "failed"
    page = client.get(f"/integrations/sage/branches/{workshop.head_office_id}?state=failed").get_data(as_text=True)
    assert "Too Long Ref" in page and "reference is too long" in page
    fragment = client.get(f"/integrations/sage/branches/{workshop.head_office_id}",
                          query_string={"state": "failed", "q": "Too Long"},
                          headers={"HX-Request": "true", "HX-Target": "sage-records"})
    assert fragment.get_data(as_text=True).lstrip().startswith("<div id=\"sage-records\"")
    assert "Too Long Ref" in fragment.get_data(as_text=True)


def test_5xx_and_dropped_connections_are_survived_without_duplicates(client, auth, workshop, sandbox, run_jobs):
    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id)
    rows = factories.contacts(workshop.head_office, 20)
    sandbox.state.set_fault_rates(error_rate=0.25, drop_rate=0.1, seed_value=11)

    job = _sync(client, workshop)
    run_jobs()

    snapshot = sandbox.state.snapshot()["requests"]
    assert snapshot["faults_5xx"] > 0 and snapshot["faults_dropped"] > 0
    job = db.session.get(Job, job.id)
    assert job.status.value == "finished", job.error
    _assert_each_once_in_sage(sandbox, expected=[c.reference for c in rows])
    assert all(c.sync_state == SyncState.SYNCED for c in db.session.scalars(db.select(Contact)))


def test_429_is_honoured_with_retry_after_and_the_sync_finishes(client, auth, workshop, sandbox, run_jobs):
    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id)
    rows = factories.contacts(workshop.head_office, 4)
    # Sage's window for this business is full of requests made 58 s ago: it answers 429 with
    # Retry-After of about 2 s, then lets requests through again.
    with sandbox.state.lock:
        sandbox.state.set_sage_rate_limit(5)
        sandbox.state.sage_windows[SOLO_BUSINESS] = deque([sandbox.state.now() - 58] * 5)

    job = _sync(client, workshop)
    run_jobs()

    job = db.session.get(Job, job.id)
    assert job.status.value == "finished", job.error
    assert job.result["rate_limited_responses"] >= 1
    _assert_each_once_in_sage(sandbox, expected=[c.reference for c in rows])


def test_reconnect_to_the_same_business_creates_no_duplicates(client, auth, workshop, sandbox, run_jobs):
    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id)
    rows = factories.contacts(workshop.head_office, 5)
    _sync(client, workshop)
    run_jobs()
    client.post(f"/integrations/sage/branches/{workshop.head_office_id}/disconnect")
    connect(client, sandbox, workshop.head_office_id)
    rows += factories.contacts(workshop.head_office, 2)
    _sync(client, workshop)
    run_jobs()
    _assert_each_once_in_sage(sandbox, expected=[c.reference for c in rows])


def test_mass_resync_after_sage_ids_were_lost_links_contacts_sage_already_has(
        client, auth, workshop, sandbox, run_jobs):
    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id, MULTI_SAGE_USER, LEAD_BUSINESS)
    rows = factories.contacts(workshop.head_office, 12)
    _sync(client, workshop)
    run_jobs()
    business_url = f"/integrations/sage/branches/{workshop.head_office_id}/business"
    client.post(business_url, data={"business_id": FLEET_BUSINESS, "confirm": "yes"})
    _sync(client, workshop)
    run_jobs()
    # Disconnect, reconnect, and go back to the first business: the ids are cleared again, every
    # contact is flagged, and each is found in Sage by its reference instead of created twice.
    client.post(f"/integrations/sage/branches/{workshop.head_office_id}/disconnect")
    connect(client, sandbox, workshop.head_office_id, MULTI_SAGE_USER)
    client.post(business_url, data={"business_id": LEAD_BUSINESS, "confirm": "yes"})
    job = _sync(client, workshop)
    run_jobs()

    job = db.session.get(Job, job.id)
    assert job.result["mass_resync_flagged"] == 12 and job.result["linked"] == 12 and job.result["created"] == 0
    _assert_each_once_in_sage(sandbox, LEAD_BUSINESS, expected=[c.reference for c in rows])
    _assert_each_once_in_sage(sandbox, FLEET_BUSINESS, expected=[c.reference for c in rows])


def test_progress_reports_done_total_batches_failures_and_eta(client, auth, workshop, sandbox, run_jobs, redis_client):
    from rq.job import Job as RQJob

    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id)
    factories.contacts(workshop.head_office, 12)
    job = _sync(client, workshop)
    run_jobs()
    meta = RQJob.fetch(job.id, connection=redis_client).get_meta(refresh=True)
    assert {"done", "total", "failures", "batches_done", "batches_total", "eta_seconds"} <= set(meta)
    assert meta["done"] == meta["total"] == 12 and meta["batches_done"] == meta["batches_total"] == 2
    partial = client.get(f"/jobs/{job.id}").get_data(as_text=True)
    assert "Sent 12 contacts to Sage" in partial


def test_two_workers_share_one_rate_limit_per_sage_business(app, redis_client):
    url = app.config["REDIS_URL"]
    waits = []

    def stop(seconds):
        waits.append(seconds)
        raise TimeoutError

    first = BusinessRateLimit(url, "business-a", 5, sleep=stop)
    second = BusinessRateLimit(url, "business-a", 5, sleep=stop)
    other_business = BusinessRateLimit(url, "business-b", 5, sleep=stop)
    for limiter in (first, second, first, second, first):
        limiter.acquire()
    with pytest.raises(TimeoutError):
        second.acquire()  # the sixth request of the minute waits, whichever worker makes it
    assert waits and 0 < waits[0] <= 5
    other_business.acquire()  # another Sage business has its own window
