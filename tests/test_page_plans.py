"""The heavy pages' lookups that once read every row of a branch read an index instead: each test
captures the statements a page's service sends, asks the database for their plan (PostgreSQL with
sequential scans discouraged, so a small test table cannot hide an unusable index) and checks both
the plan and what the lookup finds."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import event

from portal.customer import dashboard
from portal.extensions import db
from portal.integrations.sage import drift
from portal.models import InvoiceStatus, Job, JobStatus, Provider, SyncState, utcnow
from tests import factories


def plans(call) -> tuple[object, list[str]]:
    """What `call()` returns, and the plan of each SELECT it sent, as one string per statement."""
    result, found = statement_plans(call)
    return result, [plan for _, plan in found]


def statement_plans(call) -> tuple[object, list[tuple[str, str]]]:
    """What `call()` returns, and each SELECT it sent with its plan."""
    sent = []

    def record(conn, cursor, statement, parameters, *_):
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        result = call()
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    connection = db.session.connection()
    postgresql = connection.dialect.name == "postgresql"
    if postgresql:
        connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
    explain = "EXPLAIN " if postgresql else "EXPLAIN QUERY PLAN "
    found = [(statement, " / ".join(str(row[-1]) for row in connection.exec_driver_sql(explain + statement,
                                                                                          parameters)))
             for statement, parameters in sent]
    if postgresql:
        connection.exec_driver_sql("SET LOCAL enable_seqscan = on")
    return result, found


def test_the_drift_panel_reads_its_contacts_and_invoices_from_partial_indexes(app):
    business = factories.business("Drift Plans", branches=("Sydney", "Newcastle"))
    branch, other = business.branches
    contacts = factories.contacts(branch, 8)
    for contact in contacts[:5]:  # failed for other reasons: not drift
        contact.sync_state, contact.sync_error = SyncState.FAILED, "Sage refused the tax rate."
    for contact in contacts[5:7]:
        contact.sync_state, contact.sync_error = SyncState.PENDING, "Deleted in Sage (seen today); sent again."
    contacts[7].sync_error, contacts[7].deleted_at = "Deleted in Sage (seen today); sent again.", utcnow()
    elsewhere = factories.contacts(other, 1)[0]
    elsewhere.sync_error = "Deleted in Sage (seen today); sent again."
    noted = factories.invoice(branch, contacts[0], sage_note="Voided in Sage outside the portal (seen today).")
    factories.invoice(branch, contacts[1])
    factories.invoice(other, elsewhere, sage_note="Voided in Sage outside the portal (seen today).")
    branch_id, noted_id, deleted_ids = branch.id, noted.id, sorted(c.id for c in contacts[5:7])
    db.session.commit()

    found, (invoice_plan, contact_plan) = plans(lambda: drift.changed_in_sage(branch_id))

    assert [invoice.id for invoice in found["invoices"]] == [noted_id]
    assert sorted(contact.id for contact in found["contacts"]) == deleted_ids
    assert "ix_invoices_sage_note" in invoice_plan, invoice_plan
    assert "ix_contacts_deleted_in_sage" in contact_plan, contact_plan


def test_the_dashboards_counts_and_most_common_failure_reason_come_from_the_tallies_not_the_rows(app):
    business = factories.business("Reason Plans", branches=("Sydney", "Newcastle"))
    branch, other = business.branches
    refused, invalid = "Sage refused the tax rate GST.", "The email address is not valid in Sage."
    contacts = factories.contacts(branch, 6)
    suppliers = factories.contacts(branch, 1, kind="supplier")
    for contact, reason in zip(contacts[:4] + suppliers, (invalid, invalid, refused, None, invalid), strict=True):
        contact.mark_failed(reason) if reason else setattr(contact, "sync_state", SyncState.FAILED)
    contacts[4].mark_failed(refused)
    contacts[4].deleted_at = utcnow()  # deleted: not counted
    for reason in (refused, refused, refused):
        factories.invoice(branch, contacts[5]).mark_failed(reason)
    factories.invoice(branch, contacts[5], status=InvoiceStatus.VOID).mark_failed(invalid)  # void: not counted
    for contact in factories.contacts(other, 2):
        contact.mark_failed(invalid)
    branch_id, other_id = branch.id, other.id
    db.session.commit()

    cards, found_plans = plans(lambda: {card.branch.id: card for card in dashboard.branch_cards(business)})

    # Refused: one contact and three invoices (4) beats invalid: three contacts, one a supplier (3).
    assert cards[branch_id].top_failure == (refused, 4) and cards[branch_id].failed == 8
    assert cards[other_id].top_failure == (invalid, 2)
    # However many records the branches hold, the cards read a few tally rows: never the records.
    assert not [plan for plan in found_plans if re.search(r"\b(on|SCAN|SEARCH) (contacts|invoices)\b", plan)], \
        found_plans
    reasons_plan = next(plan for plan in found_plans if "failure_tallies" in plan)
    assert "failure_tallies_pkey" in reasons_plan or "sqlite_autoindex_failure_tallies" in reasons_plan, reasons_plan


def test_a_failure_reason_is_kept_to_500_characters(app):
    business = factories.business("Long Reasons")
    contact = factories.contacts(business.branches[0], 1)[0]
    contact.mark_failed("Sage refused this contact: " + "; ".join(["The name is too long."] * 100))
    db.session.commit()
    assert len(contact.sync_error) == 500 and contact.sync_error.endswith("…")
    assert contact.sync_error.startswith("Sage refused this contact: The name is too long.;")


def test_suggested_checklists_look_up_every_failed_voids_invoice_at_once(app):
    from portal.checklists import matching
    from tests.checklists.helpers import job

    business = factories.business("Void Plans", branches=("Sydney", "Newcastle"))
    sydney, newcastle = business.branches
    factories.connection(sydney, Provider.SAGE)
    factories.connection(newcastle, Provider.SAGE)
    contact = factories.contacts(sydney, 1)[0]

    def failed_void(branch, invoice_id, **fields):
        job(branch, "sage.void_invoice", JobStatus.FAILED, params={"invoice_id": invoice_id},
            error="Sage answered 500 twice.", **fields)

    def suggested():
        return plans(lambda: [(s.branch.name, s.invoice_number) for s in matching.for_business(business)
                              if s.scenario.slug == "sage-void-still-shown"])

    first = factories.invoice(sydney, contact)
    failed_void(sydney, first.id)
    job(sydney, "sage.sync_contacts", JobStatus.FINISHED)
    one, one_plans = suggested()
    assert one == [("Sydney", first.number)]

    deleted = factories.invoice(sydney, contact, deleted_at=utcnow())
    retried = factories.invoice(sydney, contact)
    elsewhere = factories.invoice(newcastle, factories.contacts(newcastle, 1)[0])
    old = factories.invoice(sydney, contact)
    failed_void(sydney, deleted.id)  # soft-deleted: the void's lookup still finds it
    failed_void(sydney, retried.id, created_at=utcnow() - timedelta(minutes=5))
    job(sydney, "sage.void_invoice", JobStatus.FINISHED, params={"invoice_id": retried.id},
        result={"outcome": "voided"})  # voided when tried again: no longer suggested
    failed_void(newcastle, elsewhere.id)
    failed_void(newcastle, first.id)  # Sydney's invoice named by a Newcastle job: not Newcastle's
    failed_void(sydney, old.id, created_at=utcnow() - timedelta(days=31))  # before the last 30 days
    numbers = {"first": first.number, "deleted": deleted.number, "elsewhere": elsewhere.number}
    more, more_plans = suggested()

    assert sorted(more) == sorted([("Newcastle", numbers["elsewhere"]), ("Sydney", numbers["deleted"]),
                                   ("Sydney", numbers["first"])])
    assert len(more_plans) == len(one_plans), (one_plans, more_plans)
    if db.engine.dialect.name == "sqlite":
        jobs_plan = next(plan for plan in more_plans if "jobs" in plan)
        # Per branch three index reads (its latest sync, its running syncs, its voids since a date),
        # none of every job there is.
        assert "SCAN jobs" not in jobs_plan and jobs_plan.count("SEARCH jobs USING") == 6, jobs_plan
        assert jobs_plan.count("created_at>?") == 2, jobs_plan


def test_a_branchs_active_job_of_a_kind_is_read_from_the_partial_index_of_active_jobs(app):
    from portal.jobqueue import active_job
    from tests.checklists.helpers import job

    business = factories.business("Active Plans")
    branch = business.branches[0]
    for status in (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.FINISHED):
        job(branch, "sage.sync_contacts", status)
    branch_id = branch.id

    found, (plan,) = plans(lambda: active_job(branch_id, "sage.sync_contacts"))

    assert found is None
    if db.engine.dialect.name == "sqlite":  # not every job of the branch and kind
        assert "uq_jobs_one_active_per_branch_kind" in plan, plan


def test_the_sage_one_aus_page_reads_its_active_jobs_from_the_partial_index(client, auth):
    from tests.checklists.helpers import job

    business = factories.business("Active Sage One Plans")
    owner = factories.customer(business)
    branch = business.branches[0]
    factories.connection(branch, Provider.SAGE_ONE_AUS, sage_one_username="owner@sage-one.test",
                         sage_one_company_id=7, credentials_owner_id=owner.id, connected_by_id=owner.id)
    for status in (JobStatus.FINISHED, JobStatus.FAILED):
        job(branch, "sage_one_aus.sync", status)
    path = f"/integrations/sage-one-aus/branches/{branch.id}"
    auth.login(owner)
    sent = []

    def record(conn, cursor, statement, parameters, *_):
        if "FROM jobs" in statement and "status IN" in statement:
            sent.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        assert client.get(path).status_code == 200
    finally:
        event.remove(db.engine, "before_cursor_execute", record)

    (statement, parameters), = sent
    if db.engine.dialect.name == "sqlite":
        # A tiny table's plan may read another index; INDEXED BY fails ("no query solution") unless
        # the statement can use the partial index at all.
        forced = statement.replace("FROM jobs", "FROM jobs INDEXED BY uq_jobs_one_active_per_branch_kind", 1)
        plan = db.session.connection().exec_driver_sql("EXPLAIN QUERY PLAN " + forced, parameters).all()
        assert "uq_jobs_one_active_per_branch_kind" in str(plan), plan


def test_the_sage_pages_running_jobs_are_one_statement_in_kind_order_and_reconciled(app):
    from portal.integrations.sage import pages
    from tests.checklists.helpers import job

    business = factories.business("Running Plans")
    branch = business.branches[0]
    lease = {"lease_expires_at": utcnow() + timedelta(hours=1)}
    void = job(branch, "sage.void_invoice", JobStatus.RUNNING, **lease)
    contacts = job(branch, "sage.sync_contacts", JobStatus.RUNNING, **lease)
    # Its lease lapsed and no worker holds it: failed as it is read, so not shown as running.
    dead = job(branch, "sage.sync_invoices", JobStatus.RUNNING, lease_expires_at=utcnow() - timedelta(minutes=5))
    job(branch, "sage.sync_invoices", JobStatus.FINISHED)
    branch_id, ids, dead_id = branch.id, [contacts.id, void.id], dead.id

    sent = []

    def record(conn, cursor, statement, *_):
        sent.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        running = [j.id for j in pages.running_jobs(branch_id)]
    finally:
        event.remove(db.engine, "before_cursor_execute", record)

    assert running == ids
    assert db.session.get(Job, dead_id).status == JobStatus.FAILED
    # One look for the branch's active jobs (the rest are the dead one's failing and reloads by id).
    looks = [st for st in sent if st.lstrip().startswith("SELECT") and "status IN ('queued', 'running')" in st]
    assert len(looks) == 1, sent


def test_the_support_customer_pages_failed_jobs_are_each_branchs_latest_from_an_index(app):
    from portal.support import customers
    from tests.checklists.helpers import job

    business = factories.business("Failed Plans", branches=("Sydney", "Newcastle"))
    sydney, newcastle = business.branches
    other = factories.business("Someone Else").branches[0]
    now = utcnow()
    for n in range(12):  # Sydney's twelve failures, an hour apart, and Newcastle's two in between
        job(sydney, "sage.sync_contacts", JobStatus.FAILED, created_at=now - timedelta(hours=n),
            description=f"Sydney {n}")
    for n in (1, 7):
        job(newcastle, "sage.sync_invoices", JobStatus.FAILED, created_at=now - timedelta(hours=n, minutes=30),
            description=f"Newcastle {n}")
    job(other, "sage.sync_contacts", JobStatus.FAILED, created_at=now, description="Someone else")
    job(sydney, "sage.sync_invoices", JobStatus.FINISHED, created_at=now, description="Sydney done")
    business_id = business.id

    page, found_plans = plans(lambda: customers.customer_page(business_id))

    assert [j.description for j in page.failed_jobs] == [
        "Sydney 0", "Sydney 1", "Newcastle 1", "Sydney 2", "Sydney 3", "Sydney 4", "Sydney 5", "Sydney 6",
        "Sydney 7", "Newcastle 7"]
    if db.engine.dialect.name == "sqlite":  # not every failed job of every business
        failed_plan = next(plan for plan in found_plans if "ix_jobs_branch_status_created" in plan)
        assert "ix_jobs_status " not in failed_plan, failed_plan


def test_the_dashboards_changes_by_support_read_the_partial_index_of_puppet_session_events(app):
    from portal import audit

    business = factories.business("Puppet Change Plans")
    for n in range(30):  # the business's own events: none made in a puppet session
        audit.record("sage.synced", summary=f"Synced ({n})", business_id=business.id)
    db.session.commit()

    business_id = business.id
    found, found_plans = plans(lambda: dashboard.puppet_writes(business_id))
    plan = next(plan for plan in found_plans if "audit_events" in plan)

    assert found == []
    assert "ix_audit_business_puppet_time" in plan, plan


def test_the_waiting_or_failed_lists_read_each_state_in_id_order_from_its_index(app):
    from portal.integrations.sage import pages
    from portal.integrations.sage_one_aus import overview

    business = factories.business("State Order Plans")
    branch = business.branches[0]
    failed = factories.contacts(branch, 30, sync_state=SyncState.FAILED, sync_error="Refused.")
    pending = factories.contacts(branch, 30)
    factories.contacts(branch, 5, sync_state=SyncState.SYNCED, sage_id="s")
    for contact in failed[:3]:
        contact.soft_delete()
    db.session.commit()
    shown = [c.id for c in failed[3:]], [c.id for c in pending]
    branch_id = branch.id

    page, found_plans = plans(lambda: pages.records(branch_id, "contacts", "open", page=2))
    # The Sage page: both states by id; page 2 of 57 rows is rows 26–50.
    assert [row.id for row in page.rows] == sorted(shown[0] + shown[1])[25:50]
    rows_plan = next(plan for plan in found_plans if "contacts" in plan)
    if db.engine.dialect.name == "sqlite":
        # Each state read from the index in id order, stopping at the page's end: the only sorts are
        # of those few rows, never of every waiting row the index search found.
        assert rows_plan.count("SEARCH contacts USING INDEX ix_contacts_branch_state_id") == 2, rows_plan
        assert not re.search(r"SEARCH contacts[^/]*/ USE TEMP B-TREE", rows_plan), rows_plan

    # The Sage One AUS page: failed first, then waiting, each by id.
    listed = overview.records(db.session.get(type(branch), branch_id), "customers", "open", page=2)
    assert [row.id for row in listed.rows] == (shown[0] + shown[1])[25:50]


# --- a large branch among many small ones, with the database's statistics gathered --------------------

def _skewed(big_rows: int = 400, small_branches: int = 80, before_analyze=lambda business: None):
    """One business whose Sydney branch holds `big_rows` contacts and jobs, beside `small_branches`
    branches of two of each, then ANALYZE: the statistics then say "a branch has a handful of rows",
    as they do in production, where a large branch is the exception. `before_analyze(business)`
    adds what the statistics should include. Returns the business."""
    import uuid

    import sqlalchemy as sa

    from portal.models import Contact

    business = factories.business("Skewed Plans", branches=("Sydney", "Newcastle"))
    others = factories.business("Many Small", branches=tuple(f"Small {n}" for n in range(small_branches)))
    now = utcnow()
    states = (SyncState.SYNCED, SyncState.SYNCED, SyncState.PENDING, SyncState.FAILED)
    contacts, jobs = [], []
    for branch, count in [(business.branches[0], big_rows)] + [(b, 2) for b in others.branches]:
        for n in range(count):
            state = states[n % 4]
            contacts.append({"branch_id": branch.id, "kind": "customer", "name": f"Customer {n}",
                             "reference": f"S{branch.id % 1000:03d}{n:05d}", "sync_state": state,
                             "sync_error": "Sage refused the tax rate." if state == SyncState.FAILED else None,
                             "created_at": now, "updated_at": now})
            jobs.append({"id": uuid.uuid4().hex, "kind": "sage.sync_contacts", "branch_id": branch.id,
                         "status": JobStatus.FINISHED, "description": f"Run {n}", "params": {},
                         "created_at": now - timedelta(minutes=n)})
    db.session.execute(sa.insert(Contact), contacts)
    db.session.execute(sa.insert(Job), jobs)
    db.session.commit()
    before_analyze(business)
    # On the session's own connection: a SQLite connection keeps the statistics it loaded.
    db.session.execute(sa.text("ANALYZE"))
    db.session.commit()
    return business


@pytest.fixture
def forget_statistics(app):
    """After the test, no statistics of its rows are left for the tests after it."""
    yield
    import sqlalchemy as sa

    from tests.conftest import _empty_database

    db.session.rollback()
    _empty_database()
    if db.engine.dialect.name == "sqlite":
        db.session.execute(sa.text("DELETE FROM sqlite_stat1"))
    else:
        db.session.execute(sa.text("ANALYZE"))
    db.session.commit()


@pytest.mark.usefixtures("forget_statistics")
def test_the_drift_panel_reads_its_partial_index_on_a_large_branch_when_it_is_empty(app):
    # SQLite keeps no statistics for an empty index: it once judged the (branch, state, id) index as
    # good a way to the branch's contacts deleted in Sage, and read all of them to find none.
    business = _skewed()
    branch_id = business.branches[0].id

    found, (_, contact_plan) = plans(lambda: drift.changed_in_sage(branch_id))

    assert found == {"invoices": [], "contacts": []}
    assert "ix_contacts_deleted_in_sage" in contact_plan, contact_plan


@pytest.mark.usefixtures("forget_statistics")
def test_the_dashboards_and_support_pages_running_jobs_read_the_partial_index_of_active_jobs(app):
    from portal.support import customers
    from tests.checklists.helpers import job

    made = []

    def running(business):
        sydney, newcastle = business.branches
        later = job(newcastle, "sage.sync_invoices", JobStatus.QUEUED)
        made.extend([job(sydney, "sage.sync_invoices", JobStatus.RUNNING,
                         created_at=later.created_at - timedelta(minutes=1)).id, later.id])

    # Running when the statistics were gathered, as in the load benchmark: SQLite then knows the
    # partial index is small. (Gathered while it is empty, SQLite has no figures for it and may read a
    # large branch's jobs through its (branch, created) index: the portal never runs ANALYZE there.)
    business = _skewed(before_analyze=running)
    expected, business_id = made, business.id

    def active_plan(found):
        return next(plan for statement, plan in found if "status IN ('queued', 'running')" in statement)

    cards, dashboard_plans = statement_plans(lambda: dashboard.branch_cards(db.session.get(type(business),
                                                                                          business_id)))
    page, support_plans = statement_plans(lambda: customers.customer_page(business_id))

    assert [j.id for card in cards for j in card.active_jobs] == expected
    assert [j.id for j in page.active_jobs] == expected
    for plan in (active_plan(dashboard_plans), active_plan(support_plans)):
        # Not every job there is (SQLite read them all when asked to sort them by time).
        assert "SCAN jobs" not in plan and "Seq Scan" not in plan, plan
        if db.engine.dialect.name == "sqlite":
            assert "uq_jobs_one_active_per_branch_kind" in plan, plan


def test_the_dashboards_support_access_log_is_the_latest_ten_read_from_the_business_time_index(app):
    from portal.models import PuppetSession

    business = factories.business("Access Log Plans")
    owner = factories.customer(business)
    helper = factories.support()
    elsewhere = factories.business("Someone Else")
    now = utcnow()
    for n in range(30):  # thirty sessions an hour apart, newest first as n grows older
        db.session.add(PuppetSession(support_user_id=helper.id, customer_user_id=owner.id, business_id=business.id,
                                     reason=f"Ticket {n}", started_at=now - timedelta(hours=n),
                                     expires_at=now - timedelta(hours=n) + timedelta(minutes=30)))
    db.session.add(PuppetSession(support_user_id=helper.id, customer_user_id=owner.id, business_id=elsewhere.id,
                                 reason="Not theirs", started_at=now, expires_at=now + timedelta(minutes=30)))
    db.session.commit()
    business_id = business.id

    found, (plan,) = plans(lambda: dashboard.support_access_log(business_id))

    assert [s.reason for s in found] == [f"Ticket {n}" for n in range(10)]
    assert "ix_puppet_sessions_business_started" in plan, plan
    if db.engine.dialect.name == "sqlite":  # read in order, not all sorted
        assert "TEMP B-TREE" not in plan, plan


def test_a_failed_void_behind_hundreds_of_newer_syncs_is_still_suggested_for_30_days(app):
    # Read as "the business's latest 200 jobs", a void failed two days ago had dropped out of sight
    # behind a day of syncs every 15 minutes on three branches.
    import uuid

    import sqlalchemy as sa

    from portal.checklists import matching
    from tests.checklists.helpers import job

    business = factories.business("Busy Voids", branches=("Sydney", "Newcastle", "Parramatta"))
    for branch in business.branches:
        factories.connection(branch, Provider.SAGE)
    sydney = business.branches[0]
    invoice = factories.invoice(sydney, factories.contacts(sydney, 1)[0])
    now = utcnow()
    job(sydney, "sage.void_invoice", JobStatus.FAILED, params={"invoice_id": invoice.id},
        error="Sage answered 500 twice.", created_at=now - timedelta(days=2))
    db.session.execute(sa.insert(Job), [
        {"id": uuid.uuid4().hex, "kind": "sage.sync_contacts", "branch_id": branch.id, "status": JobStatus.FINISHED,
         "description": "Sync contacts", "params": {}, "result": {"summary": "done"},
         "created_at": now - timedelta(minutes=15 * n)}
        for branch in business.branches for n in range(1, 100)])
    db.session.commit()

    suggested = [(s.branch.name, s.invoice_number) for s in matching.for_business(business)
                 if s.scenario.slug == "sage-void-still-shown"]

    assert suggested == [("Sydney", invoice.number)]
