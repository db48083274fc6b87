"""The customer's dashboard: each card's state in words that are never green while something is
wrong, as whom the branch is connected, the last sync of each kind, what waits or failed and why,
buttons that say why they are off, a second queue refused, a card that re-fetches itself, and a
fixed number of queries however many branches."""
from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import event

from portal.customer.dashboard import CardState, card_state
from portal.extensions import db
from portal.models import ConnectionState, Job, JobStatus, Provider, SyncOutcome, SyncState, utcnow
from tests import factories


@pytest.fixture
def branch(app):
    business = factories.business("Harbour Auto", branches=("Sydney",))
    owner = factories.customer(business, email="owner@harbour-auto.test")
    return business.branches[0], owner


def _sage(branch, **fields):
    fields.setdefault("sage_business_id", "b-1")
    fields.setdefault("sage_business_name", "Harbour Auto Pty Ltd")
    return factories.connection(branch, Provider.SAGE, **fields)


def _card_html(client, branch) -> str:
    response = client.get(f"/branches/{branch.id}/card", headers={"HX-Request": "true"})
    assert response.status_code == 200
    return response.get_data(as_text=True)


def _state(html: str) -> tuple[str, str]:
    match = re.search(r'<span class="state state-tone-(\w+)">([^<]+)</span>', html)
    assert match, html
    return match.group(1), match.group(2)


def _job(branch, kind: str, status: JobStatus, **fields) -> Job:
    row = Job(id=uuid.uuid4().hex, kind=kind, branch_id=branch.id,
              description=f"{kind} run", status=status, **fields)
    db.session.add(row)
    db.session.commit()
    return row


def test_a_healthy_sage_branch_is_connected_in_green_with_its_token_age_and_who_signed_in(client, auth, branch):
    branch, owner = branch
    _sage(branch, connected_by_id=owner.id, token_issued_at=utcnow() - timedelta(minutes=4),
          refresh_token_expires_at=utcnow() + timedelta(days=31, minutes=1))
    auth.login(owner)
    html = _card_html(client, branch)
    assert _state(html) == ("ok", "Connected")
    assert "Signed in by" in html and "owner@harbour-auto.test" in html
    assert "4 minutes ago" in html and "in 31 days" in html
    assert " h<" not in html and "743" not in html  # durations as people say them, never hours with decimals


def test_a_rate_limited_branch_is_a_warning_that_says_until_when(client, auth, branch):
    branch, owner = branch
    _sage(branch, rate_limited_until=utcnow() + timedelta(minutes=40, seconds=30))
    auth.login(owner)
    html = _card_html(client, branch)
    assert _state(html) == ("warn", "Rate-limited")
    assert "Sage is limiting requests for this business; syncs wait and go on in 40 minutes" in html
    assert "Connected" not in _state(html)[1]
    # Its sync buttons are off and say why.
    assert re.search(r'<button type="submit" class="btn" disabled aria-describedby="why-\d+-sage-sync_contacts">'
                     r'Sync contacts</button>', html)
    assert "Sync contacts is off: Sage is limiting requests" in html


def test_a_branch_that_must_sign_in_again_is_a_warning_with_the_reason_and_no_token_age(client, auth, branch):
    branch, owner = branch
    _sage(branch, state=ConnectionState.NEEDS_REAUTH, token_issued_at=utcnow() - timedelta(days=3),
          state_reason="Sage no longer accepts this branch's sign-in (it was revoked). Reconnect to Sage.")
    auth.login(owner)
    html = _card_html(client, branch)
    assert _state(html) == ("warn", "Needs re-authentication")
    assert "Sage no longer accepts this branch&#39;s sign-in (it was revoked). Reconnect to Sage." in html
    assert "Reconnect Sage" in html and "Token issued" not in html
    assert "Sync contacts" not in html  # no sync is offered until it signs in again


def test_a_sync_that_ended_with_failed_records_says_so_not_that_it_stopped_early(client, auth, branch):
    branch, owner = branch
    _sage(branch, last_sync_outcome=SyncOutcome.FAILED, last_sync_at=utcnow())
    contact = factories.contacts(branch, 1, sync_state=SyncState.SYNCED, sage_id="c-1")[0]
    for _ in range(2):
        factories.invoice(branch, contact, sync_state=SyncState.FAILED, sync_error="Not sent: no 10% tax rate.")
    _job(branch, "sage.sync_invoices", JobStatus.FINISHED, result={"summary": "Sent 2 invoices to Sage: 2 failed."},
         created_at=utcnow() - timedelta(minutes=5), ended_at=utcnow() - timedelta(minutes=4))
    auth.login(owner)
    html = _card_html(client, branch)
    assert _state(html) == ("warn", "Last sync failed")
    assert "2 records could not be sent: the most common reason is below." in html
    assert "Most often (2): Not sent: no 10% tax rate." in html
    assert "stopped before the end" not in html


def test_a_branch_whose_last_sync_failed_is_a_warning_with_the_jobs_reason(client, auth, branch):
    branch, owner = branch
    _sage(branch, last_sync_outcome=SyncOutcome.FAILED, last_sync_at=utcnow())
    _job(branch, "sage.sync_contacts", JobStatus.FINISHED, result={"summary": "Sent 3 contacts to Sage."},
         created_at=utcnow() - timedelta(hours=2), ended_at=utcnow() - timedelta(hours=2))
    _job(branch, "sage.sync_invoices", JobStatus.FAILED, error="Sage is not answering right now. 2 of 5 invoices "
         "were processed; the rest stay pending.", created_at=utcnow() - timedelta(minutes=5),
         ended_at=utcnow() - timedelta(minutes=4))
    auth.login(owner)
    html = _card_html(client, branch)
    assert _state(html) == ("warn", "Last sync failed")
    assert html.count("Sage is not answering right now. 2 of 5 invoices were processed") == 2  # state and line
    assert re.search(r"<strong>Contacts:</strong>\s*<span class=\"outcome outcome-finished\">Finished</span>\s*"
                     r"<time [^>]*>2 hours ago</time> — Sent 3 contacts to Sage.", html)
    assert re.search(r"<strong>Invoices:</strong>\s*<span class=\"outcome outcome-failed\">Failed</span>\s*"
                     r"<time [^>]*>4 minutes ago</time>", html)
    assert "Sync contacts" in html and "is off" not in html  # a failed sync may be run again


def test_a_disconnected_branch_shows_no_token_age(client, auth, branch):
    branch, owner = branch
    _sage(branch, state=ConnectionState.DISCONNECTED, token_issued_at=utcnow() - timedelta(days=30),
          refresh_token_expires_at=utcnow() + timedelta(days=1))
    auth.login(owner)
    html = _card_html(client, branch)
    assert _state(html) == ("idle", "Disconnected")
    assert "Token" not in html and "Sign-in expires" not in html and "30 days" not in html
    assert "Reconnect Sage" in html


def test_a_sage_one_aus_branch_shows_its_login(client, auth, branch):
    branch, owner = branch
    factories.connection(branch, Provider.SAGE_ONE_AUS, sage_one_username="newcastle@harbour-auto.test",
                         sage_one_company_id=20001, sage_one_company_name="Harbour Auto Newcastle",
                         credentials_owner_id=owner.id)
    auth.login(owner)
    html = _card_html(client, branch)
    assert "<dt>Sage One login</dt><dd>newcastle@harbour-auto.test</dd>" in html
    assert "<dt>Provider</dt><dd>Sage One AUS</dd>" in html
    assert _state(html) == ("ok", "Connected")
    assert "<strong>Customers and invoices:</strong>" in html and "never yet" in html


def test_card_state_is_never_green_while_something_is_wrong(app, branch):
    branch, _ = branch
    connection = _sage(branch)
    assert card_state(connection) == CardState("ok", "Connected")
    assert card_state(None).tone == "idle"
    cases = {
        "rate_limited_until": (utcnow() + timedelta(seconds=90), "Rate-limited"),
        "sage_business_id": (None, "Choose the Sage business"),
        "last_sync_outcome": (SyncOutcome.FAILED, "Last sync failed"),
        "state": (ConnectionState.NEEDS_REAUTH, "Needs re-authentication"),
    }
    for name, (value, label) in cases.items():
        before = getattr(connection, name)
        setattr(connection, name, value)
        state = card_state(connection, "Sage said no.")
        assert (state.tone, state.label) == ("warn", label), name
        assert state.reason
        setattr(connection, name, before)
    db.session.rollback()


def test_pending_and_failed_counts_with_the_most_common_reason(client, auth, branch):
    branch, owner = branch
    _sage(branch)
    factories.contacts(branch, 3)
    factories.contacts(branch, 2, sync_state=SyncState.FAILED, sync_error="Sage refused the email address.")
    factories.contacts(branch, 1, sync_state=SyncState.FAILED, sync_error="Reference already used in Sage.")
    factories.contacts(branch, 4, sync_state=SyncState.SYNCED, sage_id="x")
    gone = factories.contacts(branch, 1)[0]
    gone.soft_delete()
    db.session.commit()
    auth.login(owner)
    html = _card_html(client, branch)
    assert "3 pending · 3 failed" in html
    assert "Most often (2): Sage refused the email address." in html


def test_a_running_job_disables_its_button_and_shows_its_progress(client, auth, branch):
    branch, owner = branch
    _sage(branch)
    running = _job(branch, "sage.sync_contacts", JobStatus.QUEUED)
    auth.login(owner)
    html = _card_html(client, branch)
    assert "Sync contacts is off: it is running now" in html
    assert re.search(r'class="btn"\s*>Sync invoices</button>', html)  # the other kind may still start
    assert f'id="job-{running.id}"' in html and 'hx-trigger="every 1s"' in html
    assert "<dt>Running now</dt><dd>sage.sync_contacts run</dd>" in html


def test_a_second_queue_from_the_card_is_refused_with_409_and_queues_nothing(client, auth, branch):
    branch, owner = branch
    _sage(branch)
    auth.login(owner)
    url = f"/branches/{branch.id}/card/sync/sage.sync_contacts"
    first = client.post(url, headers={"HX-Request": "true", "HX-Target": f"branch-card-{branch.id}"})
    assert first.status_code == 202
    assert "Sync contacts is off: it is running now" in first.get_data(as_text=True)
    second = client.post(url, headers={"HX-Request": "true", "HX-Target": f"branch-card-{branch.id}"})
    assert second.status_code == 409
    body = second.get_data(as_text=True)
    assert 'role="alert"' in body and "Already running." in body and "That is already running for this branch" in body
    assert f'id="branch-card-{branch.id}"' in body  # the card itself, the refusal on it
    assert db.session.scalar(db.select(db.func.count()).select_from(Job)) == 1


def test_a_blocked_branch_is_refused_by_the_server_too(client, auth, branch):
    branch, owner = branch
    _sage(branch, sage_business_id=None)
    auth.login(owner)
    response = client.post(f"/branches/{branch.id}/card/sync/sage.sync_invoices", headers={"HX-Request": "true"})
    assert response.status_code == 409
    assert "Not started." in response.get_data(as_text=True) and "before syncing" in response.get_data(as_text=True)
    assert db.session.scalar(db.select(db.func.count()).select_from(Job)) == 0


def test_the_card_fragment_varies_on_htmx_and_a_plain_visit_goes_to_the_dashboard(client, auth, branch):
    branch, owner = branch
    _sage(branch)
    auth.login(owner)
    fragment = client.get(f"/branches/{branch.id}/card", headers={"HX-Request": "true"})
    html = fragment.get_data(as_text=True)
    assert "HX-Request" in fragment.headers.get("Vary", "")
    assert "<html" not in html and f'id="branch-card-{branch.id}"' in html
    assert 'hx-trigger="job-ended from:body"' in html and f'hx-get="/branches/{branch.id}/card"' in html
    plain = client.get(f"/branches/{branch.id}/card")
    assert plain.status_code == 302 and plain.headers["Location"].endswith(f"/#branch-card-{branch.id}")
    assert "HX-Request" in plain.headers.get("Vary", "")


def test_another_business_cannot_fetch_the_card(client, auth, branch):
    branch, _ = branch
    auth.login(factories.customer(factories.business("Elsewhere Motors")))
    assert client.get(f"/branches/{branch.id}/card", headers={"HX-Request": "true"}).status_code == 404


def _queries(client, path: str) -> int:
    statements = []

    def count(*_):
        statements.append(1)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        assert client.get(path).status_code == 200
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    return len(statements)


def test_the_dashboard_reads_a_fixed_number_of_queries_however_many_branches(client, auth):
    def business_with(n: int, name: str):
        business = factories.business(name, branches=tuple(f"Branch {i}" for i in range(n)))
        owner = factories.customer(business)
        for i, b in enumerate(business.branches):
            if i % 2:
                factories.connection(b, Provider.SAGE_ONE_AUS, sage_one_username=f"u{i}@x.test",
                                     credentials_owner_id=owner.id)
            else:
                _sage(b, connected_by_id=owner.id, last_sync_outcome=SyncOutcome.FAILED)
            factories.contacts(b, 2, sync_state=SyncState.FAILED, sync_error=f"reason {i}")
            _job(b, "sage.sync_contacts", JobStatus.FAILED, error="no", ended_at=utcnow())
            _job(b, "sage.sync_invoices", JobStatus.QUEUED)
        return owner

    small, large = business_with(2, "Small Motors"), business_with(8, "Large Motors")
    auth.login(small)
    few = _queries(client, "/")
    auth.logout()
    auth.login(large)
    many = _queries(client, "/")
    assert many == few, (few, many)


def test_the_progress_endpoint_announces_a_job_that_ended(client, auth, branch, drain_jobs):
    from portal.jobqueue import enqueue

    branch, owner = branch
    factories.contacts(branch, 3)
    row = enqueue("test.count", "tests.jobs_for_tests.count_contacts", branch=branch, requested_by=owner,
                  description="Count contacts", args=(branch.id,))
    auth.login(owner)
    queued = client.get(f"/jobs/{row.id}", headers={"HX-Request": "true"})
    assert "HX-Trigger" not in queued.headers
    drain_jobs()
    ended = client.get(f"/jobs/{row.id}", headers={"HX-Request": "true"})
    assert json.loads(ended.headers["HX-Trigger"]) == {
        "job-ended": {"job_id": row.id, "branch_id": branch.id, "kind": "test.count"}}
    assert "hx-trigger" not in ended.get_data(as_text=True)  # it stops polling, so a page hears it once
