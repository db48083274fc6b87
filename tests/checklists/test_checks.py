"""Each scenario's checks against seeded situations that make them pass and fail; checks write nothing."""
from __future__ import annotations

from datetime import timedelta

import pytest

from portal.checklists import checks, runs, scenarios
from portal.checklists.checks import CheckContext
from portal.extensions import db
from portal.models import (
    AuditEvent,
    ConnectionState,
    InvoiceStatus,
    JobStatus,
    Provider,
    PuppetSession,
    SyncState,
    utcnow,
)
from tests import factories
from tests.checklists.helpers import database_snapshot, job


def _ctx(branch, invoice=None, puppet_session=None) -> CheckContext:
    db.session.expire_all()
    return CheckContext(business=branch.business, branch=branch, connection=branch.connection,
                        invoice=invoice, puppet_session=puppet_session)


def _run(name, ctx):
    return checks.run_check(name, ctx)


@pytest.fixture
def business(app):
    return factories.business(branches=("Sydney", "Newcastle"))


# --- scenario 1: Sage One AUS can't be authenticated while puppeted ------------------------------


def test_puppet_auth_checks_warn_in_a_puppet_session_on_a_sage_one_aus_branch_needing_auth(business):
    branch = business.branches[1]
    factories.connection(branch, Provider.SAGE_ONE_AUS, ConnectionState.NEEDS_REAUTH, sage_one_username="nc@x.test",
                         state_reason="Password reset")
    customer, support = factories.customer(business), factories.support()
    session = PuppetSession(support_user_id=support.id, customer_user_id=customer.id, business_id=business.id,
                            reason="Ticket 9", started_at=utcnow(), expires_at=utcnow() + timedelta(hours=1))
    db.session.add(session)
    db.session.commit()
    ctx = _ctx(branch, puppet_session=session)

    assert _run("branch_on_sage_one_aus", ctx).result == "pass"
    puppeted = _run("puppet_session", ctx)
    assert puppeted.result == "warn" and puppeted.evidence["puppeting"] == customer.email
    state = _run("sage_one_connection_state", ctx)
    assert state.result == "warn"
    assert state.evidence["state"] == "needs re-authentication" and state.evidence["username"] == "nc@x.test"


def test_puppet_auth_checks_pass_outside_a_puppet_session_and_fail_on_a_sage_branch(business):
    factories.connection(business.branches[0], Provider.SAGE)
    factories.connection(business.branches[1], Provider.SAGE_ONE_AUS, sage_one_username="nc@x.test")
    assert _run("puppet_session", _ctx(business.branches[1])).result == "pass"
    assert _run("sage_one_connection_state", _ctx(business.branches[1])).result == "pass"
    wrong = _run("branch_on_sage_one_aus", _ctx(business.branches[0]))
    assert wrong.result == "fail" and wrong.evidence["provider"] == "Sage"


# --- scenario 2: mass re-sync ---------------------------------------------------------------------


def test_mass_resync_checks_pass_while_a_flagged_resync_runs_in_batches(business, redis_client):
    branch = business.branches[0]
    started = utcnow() - timedelta(minutes=3)
    factories.connection(branch, Provider.SAGE, mass_resync_started_at=started, mass_resync_total=5,
                         sage_business_id="biz-2", ids_sage_business_id="biz-2",
                         first_authorized_at=utcnow() - timedelta(days=40),
                         connected_at=utcnow() - timedelta(minutes=5),
                         disconnected_at=utcnow() - timedelta(minutes=6))
    factories.contacts(branch, 5)
    running = job(branch, "sage.sync_contacts", JobStatus.RUNNING, description="Sync contacts to Sage")
    # What the worker's progress reporter leaves in job.meta while the job runs.
    from rq import Queue
    rq_job = Queue("portal-test", connection=redis_client).enqueue("jobs.sage.sync_contacts", job_id=running.id)
    rq_job.meta.update({"done": 2, "total": 5, "batches_done": 1, "batches_total": 3, "failures": 0,
                        "eta_seconds": 120})
    rq_job.save_meta()

    ctx = _ctx(branch)
    flagged = _run("mass_resync_flagged", ctx)
    assert flagged.result == "pass"
    assert flagged.evidence["mass_resync_total"] == 5 and flagged.evidence["contacts_with_sage_id"] == 0
    assert _run("connection_changed", ctx).result == "reconnected"
    progress = _run("contact_sync_progress", ctx)
    assert progress.result == "running"
    assert progress.evidence["done"] == 2 and progress.evidence["batches_left"] == 2
    assert progress.evidence["eta"] == "2 minutes" and progress.evidence["estimated_finish"]


def test_mass_resync_checks_fail_when_contacts_already_have_ids_and_no_sync_runs(business):
    branch = business.branches[0]
    factories.connection(branch, Provider.SAGE)
    factories.contacts(branch, 2, sage_id="s-1", sync_state=SyncState.SYNCED)
    factories.contacts(branch, 1)  # one pending, nothing running
    ctx = _ctx(branch)
    assert _run("mass_resync_flagged", ctx).result == "fail"
    stalled = _run("contact_sync_progress", ctx)
    assert stalled.result == "fail" and stalled.evidence["contacts_pending"] == 1


def test_mass_resync_progress_warns_about_failures_so_far(business):
    branch = business.branches[0]
    factories.connection(branch, Provider.SAGE, mass_resync_started_at=utcnow(), mass_resync_total=3)
    factories.contacts(branch, 2, sync_state=SyncState.FAILED, sync_error="Email is invalid")
    job(branch, "sage.sync_contacts", JobStatus.FINISHED, ended_at=utcnow(), result={"summary": "2 failed"})
    result = _run("contact_sync_progress", _ctx(branch))
    assert result.result == "warn" and result.evidence["failures"] == 2


# --- scenario 3: Sage One AUS login changed --------------------------------------------------------


def test_mass_resync_progress_is_unknown_on_a_branch_that_is_not_on_sage(business):
    factories.contacts(business.branches[0], 3)
    factories.connection(business.branches[1], Provider.SAGE_ONE_AUS, sage_one_username="nc@x.test")
    for branch in business.branches:
        result = _run("contact_sync_progress", _ctx(branch))
        assert result.result == "other_provider" and "isn't on Sage" in result.summary


def test_login_changed_checks_fail_on_rejected_credentials_and_a_lock(business):
    branch = business.branches[1]
    until = utcnow() + timedelta(hours=20)
    factories.connection(branch, Provider.SAGE_ONE_AUS, ConnectionState.CREDENTIALS_REJECTED,
                         sage_one_username="old@x.test", login_failures=20, locked_until=until)
    ctx = _ctx(branch)
    username = _run("sage_one_stored_username", ctx)
    assert username.evidence["username"] == "old@x.test"
    failures = _run("sage_one_credential_failures", ctx)
    assert failures.result == "fail" and failures.evidence["login_failures"] == 20
    lock = _run("sage_one_lockout", ctx)
    assert lock.result == "fail" and lock.evidence["locked_until"] == checks.moment(until)


def test_login_changed_checks_pass_on_a_healthy_login(business):
    branch = business.branches[1]
    factories.connection(branch, Provider.SAGE_ONE_AUS, sage_one_username="ok@x.test",
                         locked_until=utcnow() - timedelta(hours=1))
    ctx = _ctx(branch)
    assert _run("sage_one_credential_failures", ctx).result == "pass"
    assert _run("sage_one_lockout", ctx).result == "pass"


# --- the three common ones ------------------------------------------------------------------------


def test_refresh_token_check_fails_after_invalid_grant_and_passes_when_alive(business):
    dead, alive = business.branches
    factories.connection(dead, Provider.SAGE, ConnectionState.NEEDS_REAUTH,
                         state_reason="Sage no longer accepts this branch's sign-in (invalid_grant)")
    factories.connection(alive, Provider.SAGE, refresh_token_expires_at=utcnow() + timedelta(days=20),
                         token_issued_at=utcnow() - timedelta(days=11))
    result = _run("sage_refresh_token", _ctx(dead))
    assert result.result == "fail" and "invalid_grant" in result.evidence["state_reason"]
    assert _run("sage_refresh_token", _ctx(alive)).result == "pass"


def test_rate_limit_check_fails_until_the_block_lifts(business):
    limited, free = business.branches
    until = utcnow() + timedelta(minutes=40)
    factories.connection(limited, Provider.SAGE, rate_limited_until=until)
    factories.connection(free, Provider.SAGE, rate_limited_until=utcnow() - timedelta(minutes=1))
    result = _run("rate_limit", _ctx(limited))
    assert result.result == "fail" and result.evidence["rate_limited_until"] == checks.moment(until)
    assert _run("rate_limit", _ctx(free)).result == "pass"


def test_sync_jobs_check_fails_on_a_failed_last_sync_and_on_a_stuck_one(business):
    failed_branch, stuck_branch = business.branches
    for branch in business.branches:
        factories.connection(branch, Provider.SAGE)
    job(failed_branch, "sage.sync_contacts", JobStatus.FAILED, error="Sage refused the sign-in.", ended_at=utcnow())
    job(stuck_branch, "sage.sync_invoices", JobStatus.QUEUED, created_at=utcnow() - timedelta(hours=2))
    failed = _run("sync_jobs", _ctx(failed_branch))
    assert failed.result == "failed" and failed.evidence["last_job_error"] == "Sage refused the sign-in."
    stuck = _run("sync_jobs", _ctx(stuck_branch))
    assert stuck.result == "stuck" and stuck.evidence["job_status"] == "queued"


def test_sync_jobs_check_passes_after_a_finished_sync(business):
    branch = business.branches[0]
    factories.connection(branch, Provider.SAGE)
    job(branch, "sage.sync_contacts", JobStatus.FINISHED, ended_at=utcnow(), result={"summary": "All sent."})
    assert _run("sync_jobs", _ctx(branch)).result == "pass"


def test_a_finished_sync_that_could_not_send_records_is_not_called_healthy_and_is_suggested(business):
    branch = business.branches[0]
    factories.connection(branch, Provider.SAGE)
    summary = "Sent 192 invoices to Sage: 0 created, 0 already there, 192 failed."
    job(branch, "sage.sync_invoices", JobStatus.FINISHED, ended_at=utcnow(),
        result={"summary": summary, "failures": 192})

    found = _run("sync_jobs", _ctx(branch))

    assert found.result == "records_failed" and "192 records could not be sent" in found.summary
    assert found.evidence["last_job_error"] == summary
    from portal.checklists import matching
    reasons = [s.reason for s in matching.for_business(business) if s.scenario is scenarios.SYNC_FAILED_OR_STUCK]
    assert reasons == ["The last sync finished with 192 records it could not send."]


# --- scenario 4: voided but Sage still shows it ----------------------------------------------------


def _sage_branch_with_live_token(business, sandbox):
    """A branch connected to the sandbox's Sage business with a real token stored as the integration does."""
    from portal.integrations.sage.client import TokenSet
    from portal.integrations.sage.tokens import store_tokens
    from sage_sandbox.testing import obtain_tokens

    branch = business.branches[0]
    body = obtain_tokens(sandbox.url, redirect_uri="http://localhost/integrations/sage/callback")
    tokens = TokenSet(access_token=body["access_token"], refresh_token=body["refresh_token"],
                      expires_in=int(body["expires_in"]),
                      refresh_token_expires_in=int(body["refresh_token_expires_in"]))
    sage_business = sorted(sandbox.state.businesses.values(), key=lambda b: b.name)[0]
    connection = factories.connection(branch, Provider.SAGE, sage_business_id=sage_business.id,
                                      sage_business_name=sage_business.name)
    store_tokens(connection, tokens)
    db.session.commit()
    return branch, connection, tokens


def _invoice_in_sage(branch, connection, tokens, sandbox):
    """An invoice sent to the sandbox through the integration's client (so Sage really holds it)."""
    from portal.integrations.sage.client import SageClient

    client = SageClient(api_url=f"{sandbox.url}/v3.1", business_id=connection.sage_business_id,
                        token=lambda force=False: tokens.access_token)
    contact = client.create_contact({"name": "Checklist Pty", "contact_type_ids": ["CUSTOMER"], "reference": "CHK-1"})
    ledger = client.ledger_accounts()[0]["id"]
    tax = client.tax_rates()[0]["id"]
    invoice_body = {"contact_id": contact["id"], "date": "2026-01-05", "reference": "INV-CHK-1",
                    "invoice_lines": [{"description": "Service", "ledger_account_id": ledger, "quantity": 1,
                                       "unit_price": 100, "tax_rate_id": tax}]}
    sage_invoice = client.create_invoice(invoice_body)
    local_contact = factories.contacts(branch, 1, sage_id=contact["id"], sync_state=SyncState.SYNCED)[0]
    invoice = factories.invoice(branch, local_contact, sage_id=sage_invoice["id"], sync_state=SyncState.SYNCED)
    return invoice, client


def test_void_checks_read_sage_live_and_fail_while_sage_still_shows_the_invoice(business, sandbox):
    branch, connection, tokens = _sage_branch_with_live_token(business, sandbox)
    invoice, _ = _invoice_in_sage(branch, connection, tokens, sandbox)
    invoice.soft_delete()
    invoice.status, invoice.voided_at = InvoiceStatus.VOID, utcnow()
    db.session.commit()
    job(branch, "sage.void_invoice", JobStatus.FAILED, error="Sage did not answer; try again.",
        params={"invoice_id": invoice.id}, ended_at=utcnow())

    ctx = _ctx(branch, invoice)
    record = _run("invoice_record", ctx)
    assert record.result == "soft_deleted" and record.evidence["soft_deleted"] == "yes"
    assert _run("void_job", ctx).result == "not_done"
    live = _run("sage_invoice_now", ctx)
    assert live.result == "live", live
    assert live.evidence["source"] == "live read from Sage" and live.evidence["read_at"]


def test_void_checks_pass_when_sage_has_the_invoice_void(business, sandbox):
    branch, connection, tokens = _sage_branch_with_live_token(business, sandbox)
    invoice, client = _invoice_in_sage(branch, connection, tokens, sandbox)
    client.void_invoice(invoice.sage_id, "Customer cancelled")
    job(branch, "sage.void_invoice", JobStatus.FINISHED, params={"invoice_id": invoice.id}, ended_at=utcnow(),
        result={"outcome": "voided", "summary": f"Invoice {invoice.number} is now void in Sage."})

    ctx = _ctx(branch, invoice)
    assert _run("void_job", ctx).result == "done"
    live = _run("sage_invoice_now", ctx)
    assert live.result == "void" and live.evidence["sage_status"]


def test_void_live_check_says_missing_in_sage_for_an_unknown_id(business, sandbox):
    branch, connection, tokens = _sage_branch_with_live_token(business, sandbox)
    contact = factories.contacts(branch, 1)[0]
    invoice = factories.invoice(branch, contact, sage_id="0" * 32, sync_state=SyncState.SYNCED)
    result = _run("sage_invoice_now", _ctx(branch, invoice))
    assert result.result == "missing" and result.evidence["source"] == "live read from Sage"


def test_void_checks_write_nothing_to_the_database_or_the_sandbox(business, sandbox):
    branch, connection, tokens = _sage_branch_with_live_token(business, sandbox)
    invoice, _ = _invoice_in_sage(branch, connection, tokens, sandbox)
    invoice.soft_delete()
    db.session.commit()
    before_db, before_sage = database_snapshot(), sandbox.state.snapshot()

    ctx = _ctx(branch, invoice)
    for step in scenarios.SAGE_VOID_STILL_SHOWN.checks:
        assert _run(step.check, ctx).result != "unknown"

    after_sage = sandbox.state.snapshot()
    assert database_snapshot() == before_db
    for key in ("businesses", "companies", "tokens", "settings"):
        for record in list(after_sage[key].values()) if isinstance(after_sage[key], dict) else []:
            if isinstance(record, dict):
                for counter in ("requests", "requests_today", "busy"):  # reads are counted and timed
                    record.pop(counter, None)
        for record in list(before_sage[key].values()) if isinstance(before_sage[key], dict) else []:
            if isinstance(record, dict):
                for counter in ("requests", "requests_today", "busy"):
                    record.pop(counter, None)
        assert after_sage[key] == before_sage[key], key


def test_every_scenarios_checks_write_nothing(business):
    """All checks of all scenarios against a busy customer leave every row as it was."""
    sage_branch, one_branch = business.branches
    factories.connection(sage_branch, Provider.SAGE, ConnectionState.NEEDS_REAUTH, mass_resync_started_at=utcnow(),
                         rate_limited_until=utcnow() + timedelta(minutes=5))
    factories.connection(one_branch, Provider.SAGE_ONE_AUS, ConnectionState.CREDENTIALS_REJECTED,
                         sage_one_username="u@x.test", login_failures=3)
    contact = factories.contacts(sage_branch, 3)[0]
    invoice = factories.invoice(sage_branch, contact, sage_id="abc")
    invoice.soft_delete()
    db.session.commit()
    job(sage_branch, "sage.sync_contacts", JobStatus.RUNNING, created_at=utcnow() - timedelta(hours=3))
    job(sage_branch, "sage.void_invoice", JobStatus.FAILED, params={"invoice_id": invoice.id})
    before = database_snapshot()
    for branch in business.branches:
        ctx = _ctx(branch, invoice)
        for name in checks.REGISTRY:
            checks.run_check(name, ctx)
    assert database_snapshot() == before


def test_sage_one_aus_void_check_says_a_live_read_needs_the_customer_and_uses_the_recorded_outcome(business):
    branch = business.branches[1]
    factories.connection(branch, Provider.SAGE_ONE_AUS, sage_one_username="u@x.test", sage_one_company_name="NC")
    contact = factories.contacts(branch, 1)[0]
    invoice = factories.invoice(branch, contact, sage_id="4711", status=InvoiceStatus.VOID)
    db.session.add(AuditEvent(kind="sage_one_aus.void", business_id=business.id, branch_id=branch.id,
                              summary="Void of invoice: missing",
                              details={"invoice_id": invoice.id, "outcome": "missing_in_sage",
                                       "message": "Sage One AUS has no tax invoice 4711"}))
    db.session.commit()
    result = _run("sage_invoice_now", _ctx(branch, invoice))
    assert result.result == "missing"
    assert "without the customer" in result.evidence["live_check"]
    assert result.evidence["source"] == "recorded void outcome"
    assert result.evidence["void_outcome"] == "missing_in_sage"


def test_invoice_check_fails_for_an_invoice_that_does_not_exist(business):
    assert _run("invoice_record", _ctx(business.branches[0], None)).result == "missing"


def test_a_run_finds_a_soft_deleted_invoice_by_number(business):
    branch = business.branches[0]
    contact = factories.contacts(branch, 1)[0]
    invoice = factories.invoice(branch, contact)
    invoice.soft_delete()
    db.session.commit()
    assert runs.find_invoice(branch, invoice.number).id == invoice.id
