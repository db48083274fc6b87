"""Syncs that run by themselves: the schedule per branch (shown, changed, refused outside the set),
due syncs started only for what has something to send (contacts before invoices), skips recorded
with their reason, exactly one scheduler leading, and idle sign-ins renewed before they lapse."""
from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from portal import schedule
from portal.extensions import db
from portal.models import AuditEvent, ConnectionState, Job, JobStatus, utcnow
from portal.scheduler import build_scheduler
from tests import factories
from tests.integrations.sage.conftest import connect, sage_contacts, sage_invoices


@pytest.fixture
def connected(client, auth, workshop, sandbox):
    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id)
    return workshop


def _jobs():
    return db.session.scalars(db.select(Job).order_by(Job.created_at)).all()


def test_a_new_branch_syncs_every_15_minutes_and_says_when_next(client, connected):
    page = client.get(f"/integrations/sage/branches/{connected.head_office_id}").get_data(as_text=True)
    assert "Syncs by itself" in page and "every 15 minutes" in page
    card = client.get("/").get_data(as_text=True)
    assert "Every 15 minutes" in card


def test_the_customer_changes_the_schedule_and_a_value_outside_the_set_is_refused(client, connected):
    url = f"/integrations/sage/branches/{connected.head_office_id}/schedule"
    assert client.post(url, data={"every": "hourly"}).status_code == 302
    assert connected.connection().sync_every == "hourly"
    [event] = db.session.scalars(db.select(AuditEvent).where(AuditEvent.kind == "sage.schedule_changed")).all()
    assert event.details == {"from": "15m", "to": "hourly"}

    response = client.post(url, data={"every": "every 5 seconds"}, follow_redirects=True)
    assert "Choose how often to sync" in response.get_data(as_text=True)
    assert connected.connection().sync_every == "hourly"


def test_a_due_branch_gets_contacts_then_invoices_and_only_what_has_something_to_send(
        connected, sandbox, run_jobs):
    workshop = connected
    contact = factories.contacts(workshop.head_office, 3)[0]
    factories.invoice(workshop.head_office, contact, tax_code="vat_standard")

    assert schedule.run_due() == Counter({"started": 1})
    contacts_job, invoices_job = _jobs()
    assert (contacts_job.kind, invoices_job.kind) == ("sage.sync_contacts", "sage.sync_invoices")
    assert contacts_job.requested_by_id is None and contacts_job.description.startswith("Scheduled")
    run_jobs()  # the invoices job waits for the contacts job, then runs
    db.session.expire_all()
    assert {j.status for j in _jobs()} == {JobStatus.FINISHED}
    assert len(sage_contacts(sandbox)) == 3 and len(sage_invoices(sandbox)) == 1
    assert "Started at" in workshop.connection().schedule_note

    # Not due again for 15 minutes; when due with nothing new, no job is made.
    assert schedule.run_due() == Counter()
    assert schedule.run_due(utcnow() + timedelta(minutes=16)) == Counter({"nothing to send": 1})
    assert len(_jobs()) == 2


@pytest.mark.parametrize("situation, reason", [
    ("running", "a sync or void was already running"),
    ("rate_limited", "Sage is limiting this business"),
    ("needs_reauth", "it needs to sign in to Sage again"),
    ("budget", "used today's request budget"),
])
def test_a_due_run_is_skipped_with_the_reason_recorded(situation, reason, connected, app, client):
    workshop = connected
    factories.contacts(workshop.head_office, 2)
    connection = workshop.connection()
    if situation == "running":
        client.post(f"/integrations/sage/branches/{workshop.head_office_id}/sync/contacts")
    elif situation == "rate_limited":
        connection.rate_limited_until = utcnow() + timedelta(minutes=5)
    elif situation == "needs_reauth":
        connection.state = ConnectionState.NEEDS_REAUTH
    else:
        from portal.integrations.sage.sync import rate_limit_for

        app.config["SAGE_DAILY_REQUEST_BUDGET"] = 3
        limit = rate_limit_for(connection)
        for _ in range(3):
            limit.acquire()
    db.session.commit()
    jobs_before = len(_jobs())

    outcome = schedule.run_due()

    assert sum(outcome.values()) == 1 and next(iter(outcome)).startswith("skipped")
    assert reason in workshop.connection().schedule_note
    assert len(_jobs()) == jobs_before


def test_only_one_scheduler_leads_however_many_run(app, redis_client):
    first = build_scheduler(redis_client, app.config["RQ_QUEUE"])
    second = build_scheduler(redis_client, app.config["RQ_QUEUE"])
    assert first.is_leader() and not second.is_leader()
    assert second.enqueue_jobs() == []  # the stand-by runs nothing
    assert [job.func_name for job in first.enqueue_jobs()] == ["jobs.schedule.tick"]
    assert first.enqueue_jobs() == []  # not due again for a minute
    first.register_death()
    assert second.is_leader()  # the stand-by takes over once the leader is gone


def test_the_minutely_tick_runs_in_the_scheduler_and_its_syncs_in_a_worker(app, redis_client, connected, run_jobs):
    """The tick never waits behind a long job on a busy worker; what it starts goes to the workers."""
    factories.contacts(connected.head_office, 1)
    build_scheduler(redis_client, app.config["RQ_QUEUE"]).enqueue_jobs()
    assert [j.status for j in _jobs()] == [JobStatus.QUEUED]  # started by the tick, before any worker ran
    run_jobs()
    db.session.expire_all()
    assert [j.kind for j in _jobs()] == ["sage.sync_contacts"]
    assert _jobs()[0].status == JobStatus.FINISHED


def test_an_idle_branch_whose_sign_in_nears_its_31_days_is_renewed_by_itself(connected, sandbox):
    connection = connected.connection()
    old_expiry = utcnow() + timedelta(days=2)  # idle for 29 days
    connection.refresh_token_expires_at = old_expiry
    db.session.commit()

    assert schedule.refresh_idle_tokens() == Counter({"refreshed": 1})
    connection = connected.connection()
    assert connection.refresh_token_expires_at > old_expiry + timedelta(days=20)
    assert connection.state == ConnectionState.CONNECTED
    # A branch far from its expiry is left alone.
    assert schedule.refresh_idle_tokens() == Counter()


def test_a_renewal_sage_refuses_moves_the_branch_to_sign_in_again_with_the_reason(connected, sandbox):
    connection = connected.connection()
    connection.refresh_token_expires_at = utcnow() + timedelta(days=1)
    db.session.commit()
    with sandbox.state.lock:
        for token in sandbox.state.refresh_tokens.values():
            token.revoked = True  # e.g. the customer removed the app in Sage

    assert schedule.refresh_idle_tokens() == Counter({"needs sign-in": 1})
    connection = connected.connection()
    assert connection.state == ConnectionState.NEEDS_REAUTH and "Reconnect" in connection.state_reason
    # The schedule then skips it, saying why.
    factories.contacts(connected.head_office, 1)
    schedule.run_due()
    assert "sign in to Sage again" in connected.connection().schedule_note


def test_due_branches_are_started_one_sage_business_at_a_time_in_turn():
    """Three branches of business A and two of B start A, B, A, B, A: the first runs queued use both
    businesses' limits instead of every worker waiting on A's."""
    from portal.models import Connection

    rows = [Connection(id=n, sage_business_id=business) for n, business in enumerate("AAABB", start=1)]
    ordered = schedule._in_turn_across_businesses(rows)
    assert [(c.sage_business_id, c.id) for c in ordered] == [("A", 1), ("B", 4), ("A", 2), ("B", 5), ("A", 3)]
