"""The console's customer page: full connection state, jobs with errors, one merged timeline."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest

from portal import audit
from portal.extensions import db
from portal.models import ConnectionState, Job, JobStatus, Provider, PuppetSession, utcnow
from tests import factories
from tests.conftest import AuthActions


@pytest.fixture
def world(app):
    business = factories.business("Harbour Auto", branches=("Sydney", "Newcastle"))
    customer = factories.customer(business, email="owner@harbour-auto.test")
    sydney, newcastle = business.branches
    now = utcnow()
    factories.connection(sydney, sage_business_name="Harbour Auto Pty Ltd", sage_business_id="biz-1",
                         token_issued_at=now - timedelta(minutes=3),
                         refresh_token_expires_at=now + timedelta(days=28),
                         access_token_enc=b"secret-access-token", refresh_token_enc=b"secret-refresh-token")
    factories.connection(newcastle, Provider.SAGE_ONE_AUS, state=ConnectionState.CREDENTIALS_REJECTED,
                         state_reason="Sage One AUS refused the saved password: re-enter it.",
                         sage_one_username="newcastle@harbour-auto.test", sage_one_company_name="Harbour Newcastle")
    db.session.add_all([
        Job(id="job-failed", kind="sage.sync_contacts", branch_id=sydney.id, requested_by_id=customer.id,
            status=JobStatus.FAILED, description="Sync contacts", error="Sage answered 500 three times",
            created_at=now - timedelta(minutes=30)),
        Job(id="job-ok", kind="sage.sync_contacts", branch_id=sydney.id, requested_by_id=customer.id,
            status=JobStatus.FINISHED, description="Sync contacts", result={"summary": "12 contacts sent"},
            created_at=now - timedelta(minutes=20)),
    ])
    for kind, summary in [
        ("connection.connected", "Sydney connected to Sage"),
        ("connection.token_refreshed", "Sage token refreshed"),
        ("checklist.started", "Checklist: sync uploads all contacts"),
    ]:
        audit.record(kind, summary, branch=sydney, actor_id=customer.id)
    db.session.commit()
    return {"business": business, "customer": customer, "support": factories.support()}


def test_the_customer_page_shows_branches_and_each_connections_full_state(world, client, auth):
    auth.login(world["support"])
    body = client.get(f"/support/customers/{world['business'].id}").get_data(as_text=True)
    for text in ["Harbour Auto", "Sydney", "Newcastle", "Harbour Auto Pty Ltd", "biz-1", "Token issued",
                 "Refresh token expires", "Credentials rejected", "re-enter it", "newcastle@harbour-auto.test",
                 "Harbour Newcastle", "owner@harbour-auto.test"]:
        assert text in body, text
    assert "secret-access-token" not in body and "secret-refresh-token" not in body


def test_the_customer_page_lists_recent_jobs_with_errors(world, client, auth):
    auth.login(world["support"])
    body = client.get(f"/support/customers/{world['business'].id}").get_data(as_text=True)
    assert "Recent jobs with errors" in body and "Sage answered 500 three times" in body


def test_the_timeline_merges_audit_events_and_jobs_newest_first(world, client, auth):
    auth.login(world["support"])
    body = client.get(f"/support/customers/{world['business'].id}").get_data(as_text=True)
    timeline = body[body.index('id="timeline-title"'):]
    for text in ["Sydney connected to Sage", "Sage token refreshed", "Checklist: sync uploads all contacts",
                 "12 contacts sent", "Sage answered 500 three times"]:
        assert text in timeline, text
    # Audit events are from just now; the jobs ended 20 and 30 minutes ago.
    assert (timeline.index("Checklist: sync uploads") < timeline.index("12 contacts sent")
            < timeline.index("three times"))


def test_puppet_sessions_appear_in_the_timeline(world, client, auth):
    auth.login(world["support"])
    client.post(f"/support/customers/{world['business'].id}/puppet",
                data={"user_id": world["customer"].id, "reason": "Ticket 77"})
    client.post("/support/puppet/end")
    body = client.get(f"/support/customers/{world['business'].id}").get_data(as_text=True)
    assert "started puppeting owner@harbour-auto.test: Ticket 77" in body
    assert "(ended by support)" in body


def test_the_suggested_checklists_region_is_optional(world, client, auth, app):
    auth.login(world["support"])
    url = f"/support/customers/{world['business'].id}"
    with_checklists = client.get(url).get_data(as_text=True)
    assert 'id="suggested-checklists"' in with_checklists and "Troubleshooting checklists" in with_checklists
    # Without the checklists' template helpers the page still renders everything else, minus the region.
    removed = {name: app.jinja_env.globals.pop(name) for name in ("suggested_checklists", "open_checklist_runs")}
    try:
        response = client.get(url)
    finally:
        app.jinja_env.globals.update(removed)
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'id="suggested-checklists"' not in body and "Troubleshooting checklists" not in body
    assert world["business"].name in body and "Timeline" in body


def test_a_business_without_users_says_there_is_no_one_to_puppet(app, client, auth):
    business = factories.business("Empty Garage")
    auth.login(factories.support())
    body = client.get(f"/support/customers/{business.id}").get_data(as_text=True)
    assert "no customer users yet" in body and "Nothing has happened on this account yet" in body


def test_active_puppet_sessions_page_shows_who_whom_why_and_mode(world, client, auth, app):
    auth.login(world["support"])
    assert "No one is puppeting a customer" in client.get("/support/puppet/sessions").get_data(as_text=True)
    colleague = factories.support(email="colleague@portal.test")
    other = app.test_client()  # a second browser: the colleague's (a PortalClient, like `client`)
    AuthActions(other).login(colleague)
    other.post(f"/support/customers/{world['business'].id}/puppet",
               data={"user_id": world["customer"].id, "reason": "Ticket 88: void stuck"})
    body = client.get("/support/puppet/sessions").get_data(as_text=True)
    assert "colleague@portal.test" in body and "owner@harbour-auto.test" in body
    assert "Ticket 88: void stuck" in body and "Sage One AUS: read-only" in body

    # How long it has run reads as a person says it, through timefmt (not a hand-counted "12 min").
    live = db.session.scalar(db.select(PuppetSession).where(PuppetSession.ended_at.is_(None)))
    live.started_at = utcnow() - timedelta(minutes=12, seconds=10)
    db.session.commit()
    body = client.get("/support/puppet/sessions").get_data(as_text=True)
    assert "(12 minutes ago)" in body and " min)" not in body
    assert re.search(r'<time datetime="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d">', body)


def test_integration_events_are_labelled_by_what_they_did_in_the_timeline():
    from portal.support.timeline import CATEGORIES, _category

    labels = {kind: CATEGORIES.get(_category(kind), "Other") for kind in (
        "sage.connected", "sage_one_aus.credentials_rejected", "sage.sync_contacts_requested",
        "sage_one_aus.synced", "sage.void_result", "sync.mass_resync_flagged", "sage.token_refreshed",
        "puppet.started", "checklist.finished", "something.new")}
    assert labels == {
        "sage.connected": "Connection", "sage_one_aus.credentials_rejected": "Connection",
        "sage.sync_contacts_requested": "Job", "sage_one_aus.synced": "Job", "sage.void_result": "Job",
        "sync.mass_resync_flagged": "Sync", "sage.token_refreshed": "Token", "puppet.started": "Puppet session",
        "checklist.finished": "Checklist", "something.new": "Other"}
