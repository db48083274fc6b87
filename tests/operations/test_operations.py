"""The Operations page for support leads: who sees it, what each section says, and Retry."""
from __future__ import annotations

import time

import pytest
from rq import Queue
from sqlalchemy import event

from portal.extensions import db, get_redis
from portal.models import AuditEvent, Job, JobStatus, Provider
from tests import factories
from tests.conftest import AuthActions
from tests.integrations.sage.conftest import connect, sage_contacts, sage_invoices
from tests.operations.helpers import failed_job
from tests.workers import kill_hard, start_worker, stop_worker

PAGE = "/support/operations/"
LOST = ("The worker running this stopped at 40 of 120 (its process or machine died), for the second time; "
        "it was not queued again. Run it again to resume.")


@pytest.fixture
def people(app):
    business = factories.business("Harbour Auto", branches=("Sydney", "Newcastle"))
    return {"business": business, "customer": factories.customer(business, email="owner@harbour-auto.test"),
            "support": factories.support(email="sam@portal.test"),
            "lead": factories.support(email="lead@portal.test", lead=True)}


def _body(response) -> str:
    return response.get_data(as_text=True)


def _queued(app) -> int:
    """Jobs waiting in the portal's RQ queue."""
    return Queue(app.config["RQ_QUEUE"], connection=get_redis()).count


# --- who sees it -----------------------------------------------------------------------------------------


def test_a_lead_sees_every_section_and_the_nav_link(people, client, auth):
    auth.login(people["lead"])
    response = client.get(PAGE)
    body = _body(response)
    assert response.status_code == 200
    for heading in ("Failed jobs", "Queues", "Workers", "Scheduled runs", "Sage's request limits"):
        assert heading in body, heading
    assert "No job failed in the last 7 days" in body and "No worker is running" in body
    assert "No Sage branch syncs on a schedule." in body
    assert "HX-Request" in response.headers["Vary"]
    assert 'href="/support/operations/"' in _body(client.get("/support/"))


@pytest.mark.parametrize("section", ["queues", "workers", "failed", "schedule", "limiters"])
def test_each_section_is_a_fragment_that_polls(people, client, auth, section):
    auth.login(people["lead"])
    response = client.get(PAGE, query_string={"section": section}, headers={"HX-Request": "true"})
    body = _body(response)
    assert response.status_code == 200 and "HX-Request" in response.headers["Vary"]
    assert body.lstrip().startswith(f'<section id="ops-{section}"') and "<html" not in body
    assert 'hx-trigger="every 5s, job-ended from:body"' in body


def test_support_who_are_not_leads_get_403_and_no_link(people, client, auth):
    auth.login(people["support"])
    response = client.get(PAGE)
    assert response.status_code == 403 and "Only support leads" in _body(response)
    assert client.get(PAGE, query_string={"section": "failed"}, headers={"HX-Request": "true"}).status_code == 403
    assert "/support/operations/" not in _body(client.get("/support/"))


def test_customers_get_403_and_anonymous_people_the_sign_in_page(people, client, auth):
    job = failed_job(people["business"].branches[0], "sage.sync_contacts", LOST)
    assert client.get(PAGE).headers["Location"].startswith("/login")
    auth.login(people["customer"])
    assert client.get(PAGE).status_code == 403
    assert client.post(f"/support/operations/jobs/{job.id}/retry").status_code == 403
    assert db.session.scalar(db.select(db.func.count()).select_from(Job)) == 1


def test_a_lead_in_a_puppet_session_is_sent_back_to_end_it(people, client, auth):
    auth.login(people["lead"])
    client.post(f"/support/customers/{people['business'].id}/puppet",
                data={"user_id": people["customer"].id, "reason": "Ticket 77"})
    response = client.get(PAGE)
    assert response.status_code == 403 and "End the puppet session" in _body(response)


# --- failed jobs and Retry -----------------------------------------------------------------------------


def test_a_failed_sync_shows_its_error_and_retry_queues_it_once_audited(app, people, client, auth):
    sydney = people["business"].branches[0]
    factories.connection(sydney, sage_business_id="biz-1", sage_business_name="Harbour Auto Pty Ltd")
    job = failed_job(sydney, "sage.sync_contacts", LOST, requested_by=people["customer"], what="contacts")
    auth.login(people["lead"])

    body = _body(client.get(PAGE))
    assert LOST in body and "Sync contacts to Sage" in body and "owner@harbour-auto.test" in body
    assert f'href="/support/operations/jobs/{job.id}/retry"' in body

    confirm = _body(client.get(f"/support/operations/jobs/{job.id}/retry"))
    assert "Run “Sync contacts to Sage” again?" in confirm and ">Retry</button>" in confirm

    response = client.post(f"/support/operations/jobs/{job.id}/retry")
    assert response.status_code == 302
    retried = db.session.scalar(db.select(Job).where(Job.status == JobStatus.QUEUED))
    assert retried.kind == "sage.sync_contacts" and retried.branch_id == sydney.id
    assert retried.params["retry_of"] == job.id and retried.requested_by_id == people["lead"].id
    assert _queued(app) == 1
    event_row = db.session.scalar(db.select(AuditEvent).where(AuditEvent.kind == "sage.sync_contacts_requested"))
    assert event_row.actor_id == people["lead"].id and event_row.details["job_id"] == retried.id
    assert event_row.details["retry_of"] == job.id and "lead@portal.test (support lead)" in event_row.summary
    page = _body(client.get(response.headers["Location"]))
    assert "Queued again: “Sync contacts to Sage” for Sydney" in page
    assert "Retried by lead@portal.test" in page and ">queued</span>" in page

    # A second press while it is queued is refused with a message, and queues nothing.
    again = client.post(f"/support/operations/jobs/{job.id}/retry")
    assert again.status_code == 409
    assert "It was already retried: a job of this kind is queued for this branch now" in _body(again)
    assert db.session.scalar(db.select(db.func.count()).select_from(Job).where(Job.status == JobStatus.QUEUED)) == 1
    assert _queued(app) == 1
    refused = db.session.scalar(db.select(AuditEvent).where(AuditEvent.kind == "operations.retry_refused"))
    assert refused.actor_id == people["lead"].id and refused.details["job_id"] == job.id


def test_a_retried_sync_runs_on_a_real_worker_against_sage(app, people, client, auth, sandbox, drain_jobs):
    sydney = people["business"].branches[0]
    factories.contacts(sydney, 3)
    owner = AuthActions(customer_client := app.test_client())
    owner.login(people["customer"])
    sandbox.state.set_sage_rate_limit(None)
    connect(customer_client, sandbox, sydney.id)
    job = failed_job(sydney, "sage.sync_contacts", LOST, requested_by=people["customer"], what="contacts")
    auth.login(people["lead"])
    assert client.post(f"/support/operations/jobs/{job.id}/retry").status_code == 302
    drain_jobs()
    db.session.expire_all()
    retried = db.session.scalar(db.select(Job).where(Job.id != job.id))
    assert retried.status == JobStatus.FINISHED, retried.error
    assert len(sage_contacts(sandbox)) >= 3
    assert "Retried by lead@portal.test" in _body(client.get(PAGE))
    # Nothing is left to retry: the newest run of that sync finished.
    refused = client.post(f"/support/operations/jobs/{job.id}/retry")
    assert refused.status_code == 409 and "A later run of this job on the branch has already finished" in _body(refused)


def test_a_sage_one_aus_job_is_refused_saying_only_the_customer_can_run_it(app, people, client, auth):
    newcastle = people["business"].branches[1]
    factories.connection(newcastle, Provider.SAGE_ONE_AUS, sage_one_username="newcastle@harbour-auto.test",
                         sage_one_company_id=20001, sage_one_company_name="Harbour Newcastle",
                         credentials_owner_id=people["customer"].id)
    job = failed_job(newcastle, "sage_one_aus.sync", "Sage One AUS timed out.", requested_by=people["customer"])
    auth.login(people["lead"])
    assert "Only the customer can run it again" in _body(client.get(PAGE))
    response = client.post(f"/support/operations/jobs/{job.id}/retry")
    assert response.status_code == 403
    assert "take the customer&#39;s own key" in _body(response) and "rule 8" in _body(response)
    assert db.session.scalar(db.select(db.func.count()).select_from(Job)) == 1 and _queued(app) == 0
    refused = db.session.scalar(db.select(AuditEvent).where(AuditEvent.kind == "operations.retry_refused"))
    assert refused.actor_id == people["lead"].id and "customer" in refused.summary


def test_a_void_is_never_run_again_without_asking_sage_first(app, people, client, auth, sandbox):
    sydney = people["business"].branches[0]
    contact = factories.contacts(sydney, 1)[0]
    gone = factories.invoice(sydney, contact, sage_id="0000000000000000000000000000dead")
    never = factories.invoice(sydney, contact)
    owner = AuthActions(customer_client := app.test_client())
    owner.login(people["customer"])
    connect(customer_client, sandbox, sydney.id)
    void = failed_job(sydney, "sage.void_invoice", "The worker running this stopped. The void may or may not have "
                      "reached Sage: check Sage before retrying.", requested_by=people["customer"],
                      invoice_id=gone.id, reason="Duplicate", invoice_number=gone.number)
    auth.login(people["lead"])
    assert f'href="/support/operations/jobs/{void.id}/retry?check=1"' in _body(client.get(PAGE))

    unchecked = _body(client.get(f"/support/operations/jobs/{void.id}/retry"))
    assert "Check in Sage" in unchecked and "Void again</button>" not in unchecked
    checked = _body(client.get(f"/support/operations/jobs/{void.id}/retry", query_string={"check": 1}))
    assert "Sage has no invoice with this id" in checked and "Void again</button>" not in checked

    response = client.post(f"/support/operations/jobs/{void.id}/retry")  # crafted: Sage is asked anyway
    assert response.status_code == 409
    assert "Sage was asked first and the void was not queued again" in _body(response)
    assert "needs manual clean-up" in _body(response)

    never_sent = failed_job(sydney, "sage.void_invoice", "Lost.", invoice_id=never.id, reason="x",
                            invoice_number=never.number, minutes_ago=5)
    response = client.post(f"/support/operations/jobs/{never_sent.id}/retry")
    assert response.status_code == 409 and "it was never sent to Sage" in _body(response)
    assert db.session.scalar(db.select(db.func.count()).select_from(Job).where(Job.status == JobStatus.QUEUED)) == 0
    assert _queued(app) == 0
    kinds = db.session.scalars(db.select(AuditEvent.kind).where(AuditEvent.actor_id == people["lead"].id)).all()
    assert kinds.count("operations.retry_refused") == 2 and "sage.void_invoice_requested" not in kinds


def test_a_void_that_sage_shows_not_void_is_queued_again_and_reaches_sage(app, workshop, client, auth, sandbox,
                                                                            drain_jobs):
    from portal.models import Invoice, InvoiceStatus

    owner = AuthActions(customer_client := app.test_client())
    owner.login(workshop.owner)
    connect(customer_client, sandbox, workshop.head_office_id)
    contact = factories.contacts(workshop.head_office, 1)[0]
    invoice = factories.invoice(workshop.head_office, contact, "120.00", tax_code="vat_standard")
    customer_client.post(f"/integrations/sage/branches/{workshop.head_office_id}/sync/invoices")
    drain_jobs()
    db.session.expire_all()
    invoice = db.session.get(Invoice, invoice.id)
    assert invoice.sage_id
    void = failed_job(workshop.head_office, "sage.void_invoice", "The job was lost before it could finish. The void "
                      "may or may not have reached Sage: check Sage before retrying.", requested_by=workshop.owner,
                      invoice_id=invoice.id, reason="Raised in error", invoice_number=invoice.number)
    lead = factories.support(email="lead@portal.test", lead=True)
    auth.login(lead)
    checked = _body(client.get(f"/support/operations/jobs/{void.id}/retry", query_string={"check": 1}))
    assert "it is not void in Sage yet" in checked and "Void again</button>" in checked
    assert client.post(f"/support/operations/jobs/{void.id}/retry").status_code == 302
    again = db.session.scalar(db.select(Job).where(Job.kind == "sage.void_invoice", Job.id != void.id))
    assert again.params["retry_of"] == void.id and again.params["reason"] == "Raised in error"
    assert again.requested_by_id == lead.id
    drain_jobs()
    db.session.expire_all()
    assert db.session.get(Job, again.id).status == JobStatus.FINISHED, db.session.get(Job, again.id).error
    assert db.session.get(Invoice, invoice.id).status == InvoiceStatus.VOID
    in_sage = {i["id"]: i for i in sage_invoices(sandbox)}[invoice.sage_id]
    assert in_sage["status_id"] == "VOID" and in_sage["void_reason"] == "Raised in error"
    audited = db.session.scalar(db.select(AuditEvent).where(AuditEvent.kind == "sage.void_invoice_requested"))
    assert audited.actor_id == lead.id and audited.details["retry_of"] == void.id


def test_a_blocked_branch_is_not_retried_and_says_why(people, client, auth):
    sydney = people["business"].branches[0]
    from portal.models import ConnectionState

    factories.connection(sydney, state=ConnectionState.NEEDS_REAUTH, sage_business_id="biz-1")
    job = failed_job(sydney, "sage.sync_contacts", "Sage refused the sign-in.")
    auth.login(people["lead"])
    confirm = _body(client.get(f"/support/operations/jobs/{job.id}/retry"))
    assert "must sign in to Sage again" in confirm and ">Retry</button>" not in confirm
    assert client.post(f"/support/operations/jobs/{job.id}/retry").status_code == 409


# --- workers --------------------------------------------------------------------------------------------------


def _wait_for(predicate, seconds: float = 20.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_a_live_worker_is_listed_and_a_killed_one_shows_stale(app_settings, people, client, auth, tmp_path):
    auth.login(people["lead"])

    def workers_fragment() -> str:
        return _body(client.get(PAGE, query_string={"section": "workers"}, headers={"HX-Request": "true"}))

    def own_row(fragment: str) -> str | None:
        """This test's worker's row: another process's registration (one a test before left behind
        in the same Redis) is not what this test judges."""
        return next((row for row in fragment.split("<tr")[1:] if f"process {worker.pid}" in row), None)

    worker = start_worker(app_settings, tmp_path / "worker.log")
    try:
        fragment = _wait_for(lambda: (f := workers_fragment()) and own_row(f) and f)
        alive = own_row(fragment)
        assert "Stale" not in alive and "Idle" in alive and "portal-test" in alive, fragment
        kill_hard(worker)
        fragment = workers_fragment()
        stale = own_row(fragment)
        assert stale is not None and "Stale" in stale, fragment
        assert f"Its process ({worker.pid} on" in stale and "stopped without signing off" in stale, fragment
    finally:
        if worker.poll() is None:
            stop_worker(worker)


def test_a_worker_whose_heartbeat_is_overdue_is_stale(app):
    from datetime import UTC, datetime, timedelta

    from portal.operations.state import _stale_reason

    now = datetime.now(UTC)
    # Idle: RQ gave its key 480 s at the last beat and beats again after 405 s.
    assert _stale_reason("elsewhere", 7, now - timedelta(seconds=400), 80, now) is None
    overdue = _stale_reason("elsewhere", 7, now - timedelta(seconds=440), 40, now)
    assert overdue.startswith("No heartbeat for 7 minutes")
    # Busy: its key lives 90 s, the next beat is due after 30 s.
    assert _stale_reason("elsewhere", 7, now - timedelta(seconds=20), 70, now) is None
    assert _stale_reason("elsewhere", 7, now - timedelta(seconds=45), 45, now) is not None


# --- the schedule -----------------------------------------------------------------------------------------


def test_the_schedule_shows_whether_a_scheduler_leads_the_next_runs_and_the_skips_with_reasons(app, people, client,
                                                                                                auth):
    from datetime import timedelta

    from portal import schedule
    from portal.integrations.sage import enqueue as sage_jobs
    from portal.models import utcnow
    from portal.scheduler import PortalCron

    sydney = people["business"].branches[0]
    factories.connection(sydney, sage_business_id="biz-1", sage_business_name="Harbour Auto Pty Ltd")
    sage_jobs.start_sync(sydney, "contacts", requested_by=people["customer"])  # still queued at the next tick
    held = factories.business("Held Motors")
    factories.connection(held.branches[0], sage_business_id="biz-2",
                         rate_limited_until=utcnow() + timedelta(minutes=30))
    later = factories.business("Later Tyres")
    factories.connection(later.branches[0], sage_business_id="biz-3",
                         last_scheduled_at=utcnow() - timedelta(minutes=5), schedule_note="Checked.")
    schedule.run_due()
    auth.login(people["lead"])

    def fragment() -> str:
        return _body(client.get(PAGE, query_string={"section": "schedule"}, headers={"HX-Request": "true"}))

    body = fragment()
    assert "Not running" in body and "No scheduler leads" in body
    assert "A sync or void was already running" in body
    assert "Sage is limiting this business until" in body
    # The skips' table gives the reason alone (the row says when, in the reader's zone).
    assert '<div>A sync or void was already running</div>' in body
    assert "Later Tyres" in body and "in 10 minutes" in body and "every 15 minutes" in body
    cron = PortalCron(connection=get_redis())
    assert cron.is_leader()
    try:
        assert "A scheduler leads" in fragment()
    finally:
        cron.step_down()


# --- Sage's limiters --------------------------------------------------------------------------------------


def test_the_limiters_show_the_requests_each_business_made(app, people, client, auth):
    from portal.integrations.sage.sync import rate_limit_for
    from portal.integrations.sage_one_aus import ratelimit as sage_one_ratelimit

    sydney, newcastle = people["business"].branches
    busy = factories.connection(sydney, sage_business_id="biz-busy", sage_business_name="Busy Motors Pty Ltd")
    quiet = factories.business("Quiet Tyres")
    factories.connection(quiet.branches[0], sage_business_id="biz-quiet", sage_business_name="Quiet Tyres Pty Ltd")
    factories.connection(newcastle, Provider.SAGE_ONE_AUS, sage_one_username="n@harbour-auto.test",
                         sage_one_company_id=20001, sage_one_company_name="Harbour Newcastle")
    auth.login(people["lead"])

    def limiters() -> str:
        return _body(client.get(PAGE, query_string={"section": "limiters"}, headers={"HX-Request": "true"}))

    assert "No Sage business or Sage One AUS company is sending anything" in limiters()
    limit = rate_limit_for(busy)
    for _ in range(7):
        limit.acquire()
    for _ in range(3):
        sage_one_ratelimit.acquire([sage_one_ratelimit.company_bucket(20001)], wait=False)
    body = limiters()
    assert "Busy Motors Pty Ltd" in body and "7 of 90" in body
    assert "Harbour Newcastle" in body and "3 of 90" in body
    assert "Quiet Tyres Pty Ltd" not in body and "1 other sent nothing in the last minute" in body
    limit.hold_off(120)
    assert "after a 429" in limiters()


# --- query counts stay flat ------------------------------------------------------------------------------


def _queries(client, url: str) -> int:
    count = 0

    def counted(*_args):
        nonlocal count
        count += 1

    event.listen(db.engine, "before_cursor_execute", counted)
    try:
        assert client.get(url).status_code == 200
    finally:
        event.remove(db.engine, "before_cursor_execute", counted)
    return count


def _fail_many(businesses: list, customers: list, count: int, start: int = 0) -> None:
    kinds = ("sage.sync_contacts", "sage.void_invoice", "sage_one_aus.sync")
    for n in range(start, start + count):
        branch = businesses[n % len(businesses)].branches[0]
        failed_job(branch, kinds[n % 3], f"Failure {n}", requested_by=customers[n % len(customers)],
                   minutes_ago=1 + n % 600, commit=False, invoice_id=n)
    db.session.commit()


def test_the_page_runs_as_many_queries_with_200_failed_jobs_as_with_10(people, client, auth):
    businesses = [factories.business(f"Workshop {n}") for n in range(12)]
    customers = [factories.customer(b) for b in businesses]
    for n, business in enumerate(businesses):
        factories.connection(business.branches[0], sage_business_id=f"biz-{n}", sage_business_name=f"Biz {n}",
                             schedule_note="Skipped at 7:15 pm Sydney time (AEDT): a sync or void was already running.",
                             last_scheduled_at=None)
    auth.login(people["lead"])
    _fail_many(businesses, customers, 10)
    with_10 = _queries(client, PAGE)
    body = _body(client.get(PAGE))
    assert "10 jobs failed in the last 7 days" in body and "Failure 0" in body
    _fail_many(businesses, customers, 190, start=10)
    with_200 = _queries(client, PAGE)
    body = _body(client.get(PAGE))
    assert "200 jobs failed in the last 7 days; the newest 20 are shown" in body
    assert "A sync or void was already running" in body
    assert with_200 == with_10, (with_10, with_200)
