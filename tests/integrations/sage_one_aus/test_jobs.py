"""Sage One AUS sync and void jobs: the private key as a sealed parameter, exactly-once delivery,
void outcomes, rejected credentials, the rate-limit hold-off, and password change or reset."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet

from portal import accounts, jobqueue, keys, timefmt
from portal.extensions import db
from portal.integrations.sage_one_aus import ratelimit
from portal.integrations.sage_one_aus import sync as sage_one_sync
from portal.models import (
    AuditEvent,
    Connection,
    ConnectionState,
    Invoice,
    InvoiceStatus,
    Job,
    JobStatus,
    SyncState,
    utcnow,
)
from tests import factories
from tests.integrations.sage_one_aus.conftest import (
    USERNAME,
    company,
    connect,
    sandbox_requests,
    sync,
    void,
)


def _connection(branch) -> Connection:
    return db.session.scalar(db.select(Connection).where(Connection.branch_id == branch.id))


def _jobs(kind: str = sage_one_sync.SYNC_KIND) -> list[Job]:
    return db.session.scalars(db.select(Job).where(Job.kind == kind).order_by(Job.created_at)).all()


def _flashes(client) -> str:
    return client.get("/").get_data(as_text=True)


@pytest.fixture
def connected(world, client, auth, sandbox):
    """The owner signed in with Newcastle connected to Sage One AUS."""
    auth.login(world.owner)
    assert connect(client, world.branch).status_code == 302
    return world


def _ledger(branch, contacts: int = 3, invoices: int = 2):
    rows = factories.contacts(branch, contacts)
    made = [factories.invoice(branch, rows[i % contacts], amount=f"{110 * (i + 1)}.00") for i in range(invoices)]
    return rows, made


# --- with the key: everything lands once ----------------------------------------------------------


def test_sync_sends_customers_and_invoices_exactly_once(connected, client, sandbox, drain_jobs):
    contacts, invoices = _ledger(connected.branch)
    assert sync(client, connected.branch).status_code == 302
    drain_jobs()

    job = _jobs()[0]
    assert job.status == JobStatus.FINISHED, job.error
    assert job.result["contacts"] == 3 and job.result["invoices"] == 2 and job.result["failures"] == 0
    assert (job.progress_done, job.progress_total) == (5, 5)
    sage = company(sandbox)
    assert sorted(c["Name"] for c in sage.customers.values()) == sorted(c.name for c in contacts)
    assert len(sage.invoices) == 2
    for invoice in db.session.scalars(db.select(Invoice)):
        assert invoice.sync_state == SyncState.SYNCED
        stored = sage.invoices[int(invoice.sage_id)]
        assert stored["Reference"] == invoice.number
        assert stored["Total"] == invoice.total  # lines mapped to GST-inclusive account lines
        assert all(line["LineType"] == 1 for line in stored["Lines"])
    connection = _connection(connected.branch)
    assert connection.last_sync_outcome.value == "succeeded" and connection.last_successful_sync_at

    # A second sync sends nothing again.
    sync(client, connected.branch)
    drain_jobs()
    assert (len(sage.customers), len(sage.invoices)) == (3, 2)
    assert "already in Sage One AUS" in _jobs()[-1].result["summary"]


def test_a_row_left_in_flight_is_looked_up_instead_of_sent_twice(connected, client, sandbox, drain_jobs):
    contacts, _ = _ledger(connected.branch, contacts=1, invoices=0)
    sync(client, connected.branch)
    drain_jobs()
    # As if the worker died after Sage created the customer but before the id was saved.
    contacts[0].sage_id, contacts[0].sync_state = None, SyncState.PENDING
    contacts[0].sync_error = sage_one_sync.IN_FLIGHT
    db.session.commit()

    sync(client, connected.branch)
    drain_jobs()
    assert len(company(sandbox).customers) == 1
    assert db.session.get(type(contacts[0]), contacts[0].id).sync_state == SyncState.SYNCED


def test_an_invoice_line_without_a_sage_one_account_fails_with_the_reason(connected, client, sandbox, drain_jobs):
    contacts, invoices = _ledger(connected.branch, contacts=1, invoices=1)
    invoices[0].lines[0].account_code = "nonsense"
    db.session.commit()
    sync(client, connected.branch)
    drain_jobs()

    invoice = db.session.get(Invoice, invoices[0].id)
    assert invoice.sync_state == SyncState.FAILED
    assert "no Sage One AUS account matches code “nonsense”" in invoice.sync_error
    assert _jobs()[0].result["failures"] == 1
    page = client.get(f"/integrations/sage-one-aus/branches/{connected.branch.id}").get_data(as_text=True)
    assert "no Sage One AUS account matches code" in page
    assert _connection(connected.branch).last_sync_outcome.value == "failed"


# --- void -----------------------------------------------------------------------------------------


@pytest.fixture
def synced_invoice(connected, client, sandbox, drain_jobs):
    _, invoices = _ledger(connected.branch, contacts=1, invoices=1)
    sync(client, connected.branch)
    drain_jobs()
    return db.session.get(Invoice, invoices[0].id)


def _void_outcome() -> str:
    return db.session.scalars(db.select(AuditEvent).where(AuditEvent.kind == "sage_one_aus.void")
                              .order_by(AuditEvent.id.desc())).first().details["outcome"]


def test_void_creates_one_credit_note_for_the_full_amount(connected, synced_invoice, client, sandbox, drain_jobs):
    assert void(client, connected.branch, synced_invoice).status_code == 302
    drain_jobs()

    job = _jobs(sage_one_sync.VOID_KIND)[0]
    assert job.status == JobStatus.FINISHED, job.error
    assert job.result["outcome"] == sage_one_sync.REVERSED
    notes = list(company(sandbox).credit_notes.values())
    assert len(notes) == 1
    assert notes[0]["Total"] == synced_invoice.total
    assert notes[0]["FromDocumentId"] == int(synced_invoice.sage_id)
    invoice = db.session.get(Invoice, synced_invoice.id)
    assert invoice.status == InvoiceStatus.VOID and invoice.void_reason == "Raised in error"


def test_voiding_again_finds_it_already_reversed_and_makes_no_second_credit_note(
        connected, synced_invoice, client, sandbox, drain_jobs):
    void(client, connected.branch, synced_invoice)
    drain_jobs()
    void(client, connected.branch, synced_invoice)
    drain_jobs()
    assert _jobs(sage_one_sync.VOID_KIND)[-1].result["outcome"] == sage_one_sync.ALREADY_REVERSED
    assert len(company(sandbox).credit_notes) == 1


def test_void_reaches_a_soft_deleted_invoice(connected, synced_invoice, client, sandbox, drain_jobs):
    synced_invoice.soft_delete()
    db.session.commit()
    assert void(client, connected.branch, synced_invoice).status_code == 302
    drain_jobs()
    assert _void_outcome() == sage_one_sync.REVERSED
    assert len(company(sandbox).credit_notes) == 1


def test_void_of_an_invoice_never_synced_calls_nothing(connected, client, sandbox, drain_jobs):
    _, invoices = _ledger(connected.branch, contacts=1, invoices=1)
    before = sandbox_requests(sandbox)
    void(client, connected.branch, invoices[0])
    drain_jobs()
    assert _jobs(sage_one_sync.VOID_KIND)[0].result["outcome"] == sage_one_sync.NEVER_SYNCED
    assert sandbox_requests(sandbox) == before
    assert db.session.get(Invoice, invoices[0].id).status == InvoiceStatus.VOID


def test_void_of_an_invoice_missing_in_sage_says_so_and_changes_nothing(
        connected, synced_invoice, client, sandbox, drain_jobs):
    del company(sandbox).invoices[int(synced_invoice.sage_id)]
    void(client, connected.branch, synced_invoice)
    drain_jobs()
    job = _jobs(sage_one_sync.VOID_KIND)[0]
    assert job.status == JobStatus.FAILED
    assert "has no tax invoice" in job.error
    assert _void_outcome() == sage_one_sync.MISSING_IN_SAGE
    assert db.session.get(Invoice, synced_invoice.id).status == InvoiceStatus.ISSUED


def test_void_refused_by_sage_records_sages_words(connected, synced_invoice, client, sandbox, drain_jobs):
    from decimal import Decimal

    company(sandbox).invoices[int(synced_invoice.sage_id)]["AmountDue"] = Decimal("1.00")  # part paid
    void(client, connected.branch, synced_invoice)
    drain_jobs()
    job = _jobs(sage_one_sync.VOID_KIND)[0]
    assert job.status == JobStatus.FAILED
    assert "cannot exceed the amount due" in job.error
    assert _void_outcome() == sage_one_sync.SAGE_REFUSED
    assert not company(sandbox).credit_notes


# --- refusals: no key, expired seal, logged out -------------------------------------------------------


def test_enqueue_without_a_private_key_is_refused_and_writes_nothing(connected):
    with pytest.raises(sage_one_sync.SyncRefused, match="customer's own sign-in"):
        sage_one_sync.enqueue_sync(connected.branch, connected.owner, None)
    assert db.session.scalar(db.select(db.func.count(Job.id))) == 0


def test_a_logged_out_session_cannot_start_a_sync(connected, client, auth, sandbox):
    auth.logout()
    before = sandbox_requests(sandbox)
    response = sync(client, connected.branch)
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert db.session.scalar(db.select(db.func.count(Job.id))) == 0
    assert sandbox_requests(sandbox) == before


def test_a_job_with_an_expired_seal_is_refused_before_touching_anything(connected, client, sandbox, drain_jobs,
                                                                         redis_client):
    _ledger(connected.branch, contacts=2, invoices=1)
    private_key = keys.unwrap_private_key(connected.owner, factories.PASSWORD)
    old_seal = Fernet(_fernet_key()).encrypt_at_time(private_key, int(time.time()) - 3600).decode()
    reference = keys.hold_for_job(private_key)
    redis_client.set(f"{keys._JOB_KEY_PREFIX}{reference}", old_seal, keepttl=True)  # as if held an hour ago
    jobqueue.enqueue(sage_one_sync.SYNC_KIND, "jobs.sage_one_aus.sync_branch", branch=connected.branch,
                     requested_by=connected.owner, description="Sync with Sage One AUS",
                     args=(connected.branch.id, reference))
    before = sandbox_requests(sandbox)
    drain_jobs()

    job = _jobs()[0]
    assert job.status == JobStatus.FAILED
    assert "has expired" in job.error and "Nothing was sent" in job.error
    assert sandbox_requests(sandbox) == before
    assert not company(sandbox).customers
    assert _connection(connected.branch).last_sync_at is None


def _fernet_key() -> bytes:
    import base64

    return base64.urlsafe_b64encode(keys._app_key("job-seal"))


def test_a_seal_from_job_seal_seconds_ago_no_longer_opens(app, connected):
    private_key = keys.unwrap_private_key(connected.owner, factories.PASSWORD)
    sealed = Fernet(_fernet_key()).encrypt_at_time(private_key, int(time.time()) - app.config["JOB_SEAL_SECONDS"] - 5)
    with pytest.raises(keys.SealExpired):
        keys.unseal_for_job(sealed.decode())
    assert keys.unseal_for_job(keys.seal_for_job(private_key)) == private_key


def test_another_user_of_the_business_cannot_sync_with_the_owners_login(connected, client, auth, sandbox):
    auth.logout()
    auth.login(connected.colleague)
    sync(client, connected.branch)
    assert "Only owner@harbour-auto.test can unlock" in _flashes(client)
    assert not _jobs()


# --- credentials rejected, rate limit ---------------------------------------------------------------


def test_a_401_on_the_stored_login_stops_the_sync_and_asks_for_the_password(connected, client, sandbox, drain_jobs):
    _ledger(connected.branch, contacts=3, invoices=0)
    sandbox.state.set_sage_one_password(USERNAME, "changed-on-sage")
    before = sandbox_requests(sandbox)
    sync(client, connected.branch)
    drain_jobs()

    job = _jobs()[0]
    assert job.status == JobStatus.FAILED
    assert "Credentials rejected — re-enter your Sage One password" in job.error
    assert sandbox_requests(sandbox) == before + 1  # stopped at the first refusal, no retry
    connection = _connection(connected.branch)
    assert connection.state == ConnectionState.CREDENTIALS_REJECTED
    assert connection.state_reason == "Credentials rejected — re-enter your Sage One password"

    sync(client, connected.branch)  # refused at enqueue until the password is re-entered
    assert len(_jobs()) == 1
    assert "Credentials rejected" in _flashes(client)


def test_a_429_stops_the_run_and_holds_off_the_company_for_the_block(connected, client, sandbox, drain_jobs):
    _ledger(connected.branch, contacts=6, invoices=0)
    sandbox.state.set_sage_one_rate_limit(3, block_seconds=3600)
    sync(client, connected.branch)
    drain_jobs()

    job = _jobs()[0]
    assert job.status == JobStatus.FAILED
    assert job.error.startswith("Rate-limited until ")
    connection = _connection(connected.branch)
    assert connection.rate_limited_until > utcnow() + timedelta(minutes=55)
    business = connected.branch.business
    assert f"until {timefmt.for_business(connection.rate_limited_until, business)}:" in job.error  # its zone, named
    assert len(company(sandbox).customers) == 3
    page = client.get(f"/integrations/sage-one-aus/branches/{connected.branch.id}").get_data(as_text=True)
    until = timefmt.clock(connection.rate_limited_until, timefmt.zone_for(business.time_zone))
    assert f"Rate-limited until {until}" in page and "UTC" not in page

    # Nobody calls Sage for this company before the block ends: enqueue refuses with the time …
    sandbox.state.set_sage_one_rate_limit(None)
    before = sandbox_requests(sandbox)
    sync(client, connected.branch)
    assert len(_jobs()) == 1
    assert "Rate-limited until" in _flashes(client)
    # … and a job that was already queued stops before its first call.
    jobqueue.enqueue(sage_one_sync.SYNC_KIND, "jobs.sage_one_aus.sync_branch", branch=connected.branch,
                     requested_by=connected.owner, description="Sync with Sage One AUS",
                     args=(connected.branch.id, keys.hold_for_job(
                         keys.unwrap_private_key(connected.owner, factories.PASSWORD))))
    drain_jobs()
    assert _jobs()[-1].error.startswith("Rate-limited until")
    assert sandbox_requests(sandbox) == before


# --- the owner's portal password ----------------------------------------------------------------------


def test_a_password_change_keeps_the_connection_working(connected, client, sandbox, drain_jobs):
    _ledger(connected.branch, contacts=2, invoices=0)
    response = client.post("/account/password", data={
        "current_password": factories.PASSWORD, "new_password": "another-long-password",
        "confirm_password": "another-long-password"})
    assert response.status_code == 302
    sync(client, connected.branch)
    drain_jobs()
    assert _jobs()[0].status == JobStatus.FINISHED, _jobs()[0].error
    assert len(company(sandbox).customers) == 2


def test_a_reset_stops_jobs_with_the_reason_until_reauthenticated(connected, client, auth, sandbox, drain_jobs):
    _ledger(connected.branch, contacts=1, invoices=0)
    old_key = keys.unwrap_private_key(connected.owner, factories.PASSWORD)
    accounts.reset_password(connected.owner, "a-brand-new-password")
    # A job sealed before the reset cannot open the password any more.
    jobqueue.enqueue(sage_one_sync.SYNC_KIND, "jobs.sage_one_aus.sync_branch", branch=connected.branch,
                     requested_by=connected.owner, description="Sync with Sage One AUS",
                     args=(connected.branch.id, keys.hold_for_job(old_key)))
    drain_jobs()
    job = _jobs()[0]
    assert job.status == JobStatus.FAILED and "password was reset" in job.error
    assert not company(sandbox).customers

    auth.login(connected.owner, "a-brand-new-password")
    sync(client, connected.branch)
    assert "password was reset" in _flashes(client)
    assert len(_jobs()) == 1


def test_a_runs_estimate_is_paced_by_sage_ones_limit_and_counts_every_request(connected, sandbox):
    """The estimate must not promise the first minute's burst for the rest of a long run (jobs/runtime's
    Progress.paced_by), so the run tells it Sage One's slots a minute and counts every request it sends."""
    from jobs.runtime import Progress

    _ledger(connected.branch, contacts=3, invoices=2)
    private_key = keys.unwrap_private_key(connected.owner, factories.PASSWORD)
    progress = Progress("not-an-rq-job")  # outside a worker: it keeps the figures, writes no meta
    before = sandbox_requests(sandbox)

    sage_one_sync.run_sync(connected.branch.id, private_key, progress)

    per_window, window, requests_sent = progress._pace
    assert (per_window, window) == (ratelimit.slots_per_window(), ratelimit.WINDOW_SECONDS)
    assert requests_sent() == sandbox_requests(sandbox) - before > 0  # what Sage One AUS received
