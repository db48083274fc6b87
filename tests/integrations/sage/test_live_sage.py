"""The portal against Sage as it really answers: both shapes the sandbox serves (live by default, the
published spec's on request), lists followed through `$next`, the cost of a mass re-sync in Sage
requests, the hold after a 429, pages that never wait on the limiter, and the daily budget's pause."""
from __future__ import annotations

import time
from collections import Counter
from decimal import Decimal

import pytest

from portal.extensions import db
from portal.integrations.sage import sync
from portal.integrations.sage.client import SageAnswerUnusable, SageBusy, SageClient
from portal.integrations.sage.ratelimit import BusinessRateLimit
from portal.models import Contact, Invoice, InvoiceLine, Job, JobStatus, Provider, SyncState
from sage_sandbox import v31_records
from tests import factories
from tests.integrations.sage.conftest import SAGE_USER, SOLO_BUSINESS, connect, sage_contacts, sage_invoices


@pytest.fixture
def app_settings(app_settings):
    # The sandbox's and the portal's minute limits are off here unless a test turns them on:
    # these tests count requests, they don't wait for a minute to pass.
    return {**app_settings, "SAGE_RATE_LIMIT_PER_MINUTE": 0}


@pytest.fixture
def unlimited(sandbox):
    sandbox.state.set_sage_rate_limit(None)
    return sandbox


def _client(sandbox, business_id=SOLO_BUSINESS, **kwargs) -> SageClient:
    tokens = sandbox.state.issue_tokens(SAGE_USER)
    return SageClient(api_url=f"{sandbox.url}/v3.1", business_id=business_id,
                      token=lambda force=False: tokens["access_token"], **kwargs)


def _put_contacts_in_sage(sandbox, references, business_id=SOLO_BUSINESS) -> dict[str, str]:
    """Contacts Sage already holds (entered there before the branch connected); reference → Sage id."""
    ids = {}
    with sandbox.state.lock:
        business = sandbox.state.businesses[business_id]
        now = sandbox.state.now()
        for reference in references:
            contact = v31_records.apply_contact(
                {"id": v31_records.new_id(), "created_at": now},
                {"name": f"Entered in Sage {reference}", "reference": reference, "contact_type_ids": ["CUSTOMER"]},
                now)
            business.put_contact(contact)
            ids[reference] = contact["id"]
    return ids


def _requests_to(sandbox, business_id=SOLO_BUSINESS) -> int:
    with sandbox.state.lock:
        return sandbox.state.businesses[business_id].requests


def _sync(client, workshop, kind="contacts") -> Job:
    response = client.post(f"/integrations/sage/branches/{workshop.head_office_id}/sync/{kind}")
    assert response.status_code == 302, response.get_data(as_text=True)
    return db.session.scalars(db.select(Job).order_by(Job.created_at.desc())).first()


# --- Both shapes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape_name", ["live", "spec"])
def test_sync_and_mapping_against_each_shape(shape_name, client, auth, workshop, unlimited, run_jobs):
    sandbox = unlimited
    sandbox.state.config["SANDBOX_V31_SHAPE"] = shape_name
    try:
        rates = _client(sandbox).get("/tax_rates", params={"attributes": "percentage"})["$items"]
        strings = [isinstance(r["percentage"], str) for r in rates]
        assert all(strings) if shape_name == "live" else not any(strings), rates

        auth.login(workshop.owner)
        connect(client, sandbox, workshop.head_office_id)
        contacts = factories.contacts(workshop.head_office, 3)
        invoice = factories.invoice(workshop.head_office, contacts[0], "120.00", tax_code="vat_standard")
        invoice.lines.append(InvoiceLine(description="Tyre disposal", unit_price=Decimal("4.50"),
                                         quantity=Decimal("2"), tax_code="gst_free"))
        db.session.commit()
        assert _sync(client, workshop).id and run_jobs() is None
        assert _sync(client, workshop, "invoices").id and run_jobs() is None

        assert all(c.sync_state == SyncState.SYNCED for c in db.session.scalars(db.select(Contact)))
        assert db.session.get(Invoice, invoice.id).sync_state == SyncState.SYNCED
        [sent] = sage_invoices(sandbox)
        # The zero rate was found from "0.0" (live) as well as 0 (spec); the amounts went as decimals.
        assert [line["tax_rate_id"] for line in sent["lines"]] == ["GB_STANDARD", "GB_ZERO"]
        assert str(sent["lines"][1]["net"]) == "9.00"
        page = client.get(f"/integrations/sage/branches/{workshop.head_office_id}/mapping").get_data(as_text=True)
        assert "same rate as “gst_free” (0%)" in page
    finally:
        sandbox.state.config["SANDBOX_V31_SHAPE"] = "live"


# --- Lists ---------------------------------------------------------------------------------------------


def test_lists_are_read_to_the_end_through_next_as_sage_sends_it(app, unlimited):
    sandbox = unlimited
    references = [f"R{n:04d}" for n in range(450)]
    ids = _put_contacts_in_sage(sandbox, references)
    client = _client(sandbox)

    before = _requests_to(sandbox)
    assert dict(client.contact_references()) == ids
    assert _requests_to(sandbox) - before == 3  # 200 + 200 + 50

    # A search matches by substring: "R04" finds 50 references, the exact one among them.
    assert client.find_contact_by_reference(" r0449 ")["id"] == ids["R0449"]
    assert client.find_contact_by_reference("R9999") is None


def test_next_links_keep_the_query_as_sent(app, unlimited):
    """`sort=date:asc` comes back in `$next` with its colon; following it verbatim gives every page."""
    sandbox = unlimited
    client = _client(sandbox)
    contact = client.create_contact({"name": "Sorted", "contact_type_ids": ["CUSTOMER"], "reference": "S1"})
    for day in ("2026-03-02", "2026-01-05", "2026-02-10"):
        client.create_invoice({"contact_id": contact["id"], "date": day, "reference": day,
                               "invoice_lines": [{"description": "x", "unit_price": "10.00", "quantity": "1",
                                                  "ledger_account_id": next(iter(
                                                      sandbox.state.businesses[SOLO_BUSINESS].ledger_accounts))}]})
    first = client.request("GET", f"{client.api_url}/sales_invoices?items_per_page=1&attributes=date&sort=date:asc",
                           retry=True, absolute=True)
    assert "sort=date:asc" in first["$next"]  # echoed as sent, colon and all
    second = client.request("GET", client._follow(first["$next"]), retry=True, absolute=True)
    assert second["$items"][0]["date"] == "2026-02-10" and "sort=date:asc" in second["$next"]
    dates = [i["date"] for i in client.each("/sales_invoices", {"items_per_page": 1, "attributes": "date",
                                                                "sort": "date:asc"})]
    assert dates == ["2026-01-05", "2026-02-10", "2026-03-02"]


def test_an_answer_that_is_not_json_stops_with_a_clear_message(app, unlimited):
    """HTML where JSON belongs (a proxy's page, a maintenance page): nothing is read from it."""
    client = _client(unlimited)
    client.api_url = f"{unlimited.url}/_sandbox"  # the sandbox's own HTML overview
    with pytest.raises(SageAnswerUnusable, match="text/html where JSON was expected"):
        client.get("/")


# --- The cost of a mass re-sync --------------------------------------------------------------------


@pytest.mark.parametrize("present, ceiling", [(1.0, 0.01), (0.5, 0.51), (0.0, 1.01)],
                         ids=["all-present", "half-present", "empty-business"])
def test_a_mass_resync_costs_sage_about_one_request_per_missing_contact(
        present, ceiling, client, auth, workshop, unlimited, run_jobs):
    sandbox = unlimited
    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id)
    rows = factories.contacts(workshop.head_office, 400)
    already = _put_contacts_in_sage(sandbox, [c.reference.upper() if n % 2 else c.reference
                                              for n, c in enumerate(rows[:int(400 * present)])])

    before = _requests_to(sandbox)
    job = _sync(client, workshop)
    run_jobs()
    used = _requests_to(sandbox) - before

    job = db.session.get(Job, job.id)
    assert job.status == JobStatus.FINISHED, job.error
    assert used / 400 <= ceiling, (used, job.result)
    assert job.result["linked"] == len(already) and job.result["created"] == 400 - len(already)
    references = Counter(c["reference"].lower() for c in sage_contacts(sandbox))
    assert len(references) == 400 and max(references.values()) == 1
    # Each contact Sage held was linked to that record (matched trimmed and in any case), not a copy.
    for contact in db.session.scalars(db.select(Contact)):
        expected = already.get(contact.reference) or already.get(contact.reference.upper())
        if expected:
            assert contact.sage_id == expected


# --- Pacing ------------------------------------------------------------------------------------------


class FakeTime:
    """A clock that only moves when someone sleeps, moving the sandbox's clock with it."""

    def __init__(self, sandbox):
        self.sandbox = sandbox
        self.now = time.time()
        self.slept = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        self.sandbox.state.advance_clock(seconds)


def test_after_a_429_no_process_sends_the_business_anything_before_its_wait_is_over(app, unlimited):
    sandbox = unlimited
    fake = FakeTime(sandbox)
    redis_url = app.config["REDIS_URL"]
    worker_limit = BusinessRateLimit(redis_url, SOLO_BUSINESS, 0, sleep=fake.sleep, clock=fake.clock)
    client = _client(sandbox, limiter=worker_limit, sleep=fake.sleep)
    sandbox.state.set_sage_rate_limit(3)  # Sage counts tighter than we were told
    for _ in range(3):
        client.count_contacts()
    assert client.rate_limited_responses == 0

    client.count_contacts()  # the fourth in Sage's minute: 429, hold, wait, then answered

    assert client.rate_limited_responses == 1  # one 429 and no second one: the wait was long enough
    assert sum(fake.slept) >= 59
    # While a hold is on, another process's page gets "busy" at once instead of a request.
    worker_limit.hold_off(30)
    page_limit = BusinessRateLimit(redis_url, SOLO_BUSINESS, 0, max_wait=1.5, clock=fake.clock)
    before = _requests_to(sandbox)
    with pytest.raises(SageBusy):
        _client(sandbox, limiter=page_limit, patient=False).count_contacts()
    assert _requests_to(sandbox) == before


def test_the_limiter_keeps_a_margin_under_sages_rate(app):
    from portal.integrations.sage.ratelimit import paced_rate

    assert paced_rate(100, 0.1) == 90 and paced_rate(300, 0.1) == 270 and paced_rate(5, 0.5) == 2
    limit = BusinessRateLimit(app.config["REDIS_URL"], "margin-business", 10, margin=0.2, max_wait=0)
    for _ in range(8):
        limit.acquire()
    with pytest.raises(SageBusy):
        limit.acquire()


def test_the_mapping_page_answers_at_once_while_a_sync_uses_the_business_limit(
        client, auth, workshop, unlimited, app):
    sandbox = unlimited
    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id)
    contact = factories.contacts(workshop.head_office, 1)[0]
    factories.invoice(workshop.head_office, contact, tax_code="vat_standard")
    # A running sync has taken every slot of this business's minute.
    app.config["SAGE_RATE_LIMIT_PER_MINUTE"] = 20
    sync_limit = sync.rate_limit_for(workshop.connection())
    for _ in range(18):
        sync_limit.acquire()

    before, started = _requests_to(sandbox), time.monotonic()
    page = client.get(f"/integrations/sage/branches/{workshop.head_office_id}/mapping")
    elapsed = time.monotonic() - started

    assert page.status_code == 200 and "Sage is busy" in page.get_data(as_text=True)
    assert _requests_to(sandbox) == before
    assert elapsed < 20  # it did not wait the minute out (the page's own wait is 1.5 s)


# --- The daily budget ---------------------------------------------------------------------------------


def test_a_run_that_uses_up_the_daily_budget_pauses_and_resumes_by_itself(
        client, auth, workshop, unlimited, app):
    from portal.worker import build_worker

    app.config.update(SAGE_DAILY_REQUEST_BUDGET=25, SAGE_BUDGET_WINDOW_SECONDS=3)
    sandbox = unlimited
    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id)
    rows = factories.contacts(workshop.head_office, 40)
    job = _sync(client, workshop)
    build_worker(app, simple=True).work(burst=True, with_scheduler=True)
    db.session.expire_all()

    job = db.session.get(Job, job.id)
    assert job.status == JobStatus.QUEUED and job.resume_at is not None, (job.status, job.error)
    assert "daily request budget" in job.result["summary"] and "by itself" in job.result["summary"]
    assert 0 < job.progress_done < 40
    page = client.get(f"/integrations/sage/branches/{workshop.head_office_id}").get_data(as_text=True)
    assert "Paused until" in page
    # A second run is refused while this one waits to resume.
    assert client.post(f"/integrations/sage/branches/{workshop.head_office_id}/sync/contacts").status_code == 302
    assert db.session.scalar(db.select(db.func.count()).select_from(Job)) == 1

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        time.sleep(0.5)
        build_worker(app, simple=True).work(burst=True, with_scheduler=True)
        db.session.expire_all()
        if db.session.get(Job, job.id).status != JobStatus.QUEUED:
            break
    job = db.session.get(Job, job.id)
    assert job.status == JobStatus.FINISHED, (job.status, job.error, job.result)
    references = Counter(c["reference"] for c in sage_contacts(sandbox))
    assert set(references) == {c.reference for c in rows} and max(references.values()) == 1


# --- Provider guard -------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["customer", "puppet"])
def test_sage_jobs_are_refused_before_anything_is_queued_on_a_branch_not_on_sage(who, client, auth, workshop):
    from portal.models import Business
    from tests.checklists.helpers import start_puppet

    factories.connection(workshop.head_office, Provider.SAGE_ONE_AUS, sage_one_username="nc@harbour.test")
    contact = factories.contacts(workshop.head_office, 1)[0]
    invoice = factories.invoice(workshop.head_office, contact)
    if who == "customer":
        auth.login(workshop.owner)
    else:
        auth.login(factories.support())
        start_puppet(client, db.session.get(Business, workshop.business_id), workshop.owner)
    base = f"/integrations/sage/branches/{workshop.head_office_id}"
    for url, data in ((f"{base}/sync/contacts", None), (f"{base}/sync/invoices", None),
                      (f"{base}/invoices/{invoice.id}/void", {"reason": "wrong provider"})):
        response = client.post(url, data=data)
        assert response.status_code == 302, url
        htmx = client.post(url, data=data, headers={"HX-Request": "true"})
        assert htmx.status_code == 409 and "Sage One AUS, not Sage" in htmx.get_data(as_text=True), url
    assert db.session.scalar(db.select(db.func.count()).select_from(Job)) == 0


# --- Two workers, one business, Sage's limit ------------------------------------------------------------


def test_two_workers_syncing_one_business_never_trip_sages_limit(client, auth, workshop, sandbox, app_settings,
                                                                   tmp_path):
    """Sage's limit in miniature: 20 requests per rolling 2 s for the business, the portal told the
    same; two worker processes sync two branches of that business at once: no 429, nothing twice."""
    from tests.integrations.sage.test_worker_killed import _wait_for
    from tests.workers import kill_hard, start_worker

    sandbox.state.config["SANDBOX_SAGE_RATE_WINDOW_SECONDS"] = 2
    try:
        sandbox.state.set_sage_rate_limit(20)
        auth.login(workshop.owner)
        for branch_id in (workshop.head_office_id, workshop.sibling_id):
            connect(client, sandbox, branch_id)
        # The connects' lookups (/businesses on the sign-in's own budget, /user) are this test
        # process's, whose limiter is off here: let them leave Sage's 2 s window before the syncs.
        time.sleep(2.2)
        rows = [*factories.contacts(workshop.head_office, 25),
                *factories.contacts(db.session.get(type(workshop.head_office), workshop.sibling_id), 25)]
        for branch_id in (workshop.head_office_id, workshop.sibling_id):
            assert client.post(f"/integrations/sage/branches/{branch_id}/sync/contacts").status_code == 302
        settings = {**app_settings, "SAGE_RATE_LIMIT_PER_MINUTE": 20, "SAGE_RATE_WINDOW_SECONDS": 2}
        workers = [start_worker(settings, tmp_path / f"worker-{n}.log") for n in (1, 2)]
        try:
            _wait_for(lambda: db.session.scalar(db.select(db.func.count()).select_from(Job)
                                                .where(Job.status == JobStatus.FINISHED)) == 2,
                      90, "both syncs to finish")
        finally:
            for worker in workers:
                kill_hard(worker)
        with sandbox.state.lock:
            business = sandbox.state.businesses[SOLO_BUSINESS]
            assert business.limited_per_minute == 0
        references = Counter(c["reference"] for c in sage_contacts(sandbox))
        assert set(references) == {c.reference for c in rows} and max(references.values()) == 1
    finally:
        sandbox.state.config["SANDBOX_SAGE_RATE_WINDOW_SECONDS"] = 60


def test_a_mass_resync_that_lists_sage_through_5xx_and_dropped_connections_duplicates_nothing(
        client, auth, workshop, unlimited, run_jobs):
    sandbox = unlimited
    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id)
    rows = factories.contacts(workshop.head_office, 60)
    _put_contacts_in_sage(sandbox, [c.reference for c in rows[:30]])
    sandbox.state.set_fault_rates(error_rate=0.15, drop_rate=0.05, seed_value=7)

    job = _sync(client, workshop)
    run_jobs()

    job = db.session.get(Job, job.id)
    assert sandbox.state.snapshot()["requests"]["faults_5xx"] > 0
    assert job.status == JobStatus.FINISHED, job.error
    assert job.result["matched_by"] == "listed" and job.result["linked"] >= 30
    references = Counter(c["reference"] for c in sage_contacts(sandbox))
    assert set(references) == {c.reference for c in rows} and max(references.values()) == 1


def test_a_run_waits_out_a_sage_outage_and_resumes_by_itself(client, auth, workshop, unlimited, app):
    """Sage down (every request a 500) for a while: the run pauses and tries again later instead of
    failing in seconds, then finishes with every contact in Sage once."""
    from portal.worker import build_worker

    app.config["SAGE_OUTAGE_PAUSE_SECONDS"] = "1,1,30"
    sandbox = unlimited
    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id)
    rows = factories.contacts(workshop.head_office, 12)
    sandbox.state.set_fault_rates(error_rate=1.0, drop_rate=0.0, seed_value=3)
    job = _sync(client, workshop)
    build_worker(app, simple=True).work(burst=True, with_scheduler=True)
    db.session.expire_all()
    job = db.session.get(Job, job.id)
    assert job.status == JobStatus.QUEUED and job.resume_at is not None
    assert "isn't answering" in job.result["summary"] and "wait 1 of 3" in job.result["summary"]

    time.sleep(1.2)  # still down at the second try: it waits again
    build_worker(app, simple=True).work(burst=True, with_scheduler=True)
    db.session.expire_all()
    assert "wait 2 of 3" in db.session.get(Job, job.id).result["summary"]

    sandbox.state.set_fault_rates(error_rate=0.0, drop_rate=0.0)  # Sage is back
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and db.session.get(Job, job.id).status == JobStatus.QUEUED:
        time.sleep(0.3)
        build_worker(app, simple=True).work(burst=True, with_scheduler=True)
        db.session.expire_all()
    job = db.session.get(Job, job.id)
    assert job.status == JobStatus.FINISHED, (job.status, job.error, job.result)
    references = Counter(c["reference"] for c in sage_contacts(sandbox))
    assert set(references) == {c.reference for c in rows} and max(references.values()) == 1
