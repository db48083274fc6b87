"""The pages customers and support open most read a fixed number of SQL statements however long
the history (jobs, invoices, audit events, puppet sessions, and the people named in them) grows."""
from __future__ import annotations

import itertools
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import event

from portal.extensions import db
from portal.models import AuditEvent, Job, JobStatus, Provider, PuppetSession, SyncState, utcnow
from tests import factories

_step = itertools.count(1)


@pytest.fixture
def shop():
    """A business with a Sage branch and a Sage One AUS branch, its owner, and a running sync."""
    business = factories.business("Query Count Motors", branches=("Sydney", "Newcastle"))
    owner = factories.customer(business)
    sage, sage_one = business.branches
    factories.connection(sage, Provider.SAGE, sage_business_id="b-1", sage_business_name="Query Count Pty Ltd",
                         connected_by_id=owner.id, token_issued_at=utcnow())
    factories.connection(sage_one, Provider.SAGE_ONE_AUS, sage_one_username="owner@sage-one.test",
                         sage_one_company_id=7, credentials_owner_id=owner.id, connected_by_id=owner.id)
    running = Job(id=uuid.uuid4().hex, kind="sage.sync_contacts", branch_id=sage.id, requested_by_id=owner.id,
                  status=JobStatus.RUNNING, description="Sync contacts", progress_total=10,
                  lease_expires_at=utcnow() + timedelta(hours=1))
    db.session.add(running)
    db.session.commit()
    return {"business": business, "owner": owner, "sage": sage, "sage_one": sage_one, "running": running}


def grow(shop, steps: int) -> None:
    """`steps` more of history, each with new people in it: a customer who asks for a job on each
    branch, a support person who puppets them and writes, and per branch an invoice to a new contact
    in every sync state."""
    business, owner = shop["business"], shop["owner"]
    for _ in range(steps):
        n = next(_step)
        person = factories.customer(business, email=f"person{n}@query-count.test")
        helper = factories.support(email=f"helper{n}@portal.test", enrolled=False)
        session = PuppetSession(support_user_id=helper.id, customer_user_id=person.id, business_id=business.id,
                                reason=f"Ticket {n}", expires_at=utcnow() - timedelta(minutes=1),
                                ended_at=utcnow() - timedelta(minutes=2))
        db.session.add(session)
        db.session.flush()
        for branch, kinds in ((shop["sage"], ("sage.sync_invoices", "sage.void_invoice")),
                              (shop["sage_one"], ("sage_one_aus.sync", "sage_one_aus.void"))):
            # The sync fails, the void finishes (a failed void adds the checklist's look at its invoice).
            for kind, status in zip(kinds, (JobStatus.FAILED, JobStatus.FINISHED), strict=True):
                db.session.add(Job(id=uuid.uuid4().hex, kind=kind, branch_id=branch.id, requested_by_id=person.id,
                                   puppeteer_id=helper.id, status=status, description=f"{kind} {n}",
                                   error="Sage said no." if status == JobStatus.FAILED else None,
                                   result={"summary": "Done."}, ended_at=utcnow()))
            db.session.add(AuditEvent(kind="sage_one_aus.synced" if branch is shop["sage_one"] else "sage.synced",
                                      business_id=business.id, branch_id=branch.id, actor_id=helper.id,
                                      subject_user_id=person.id, puppet_session_id=session.id,
                                      summary=f"Synced ({n})", details={}))
            for state in (SyncState.SYNCED, SyncState.PENDING, SyncState.FAILED):
                contact = factories.contacts(branch, 1, kind="customer", sync_state=state)[0]
                factories.invoice(branch, contact, sync_state=state, sage_id=f"s-{n}-{state.value}",
                                  sync_error="Refused." if state == SyncState.FAILED else None)
        db.session.commit()
    assert owner.id


def statements(client, path: str, headers: dict | None = None) -> int:
    """How many SQL statements one GET of `path` runs (it must answer 200)."""
    seen = []

    def count(*_):
        seen.append(1)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        response = client.get(path, headers=headers or {})
        assert response.status_code == 200, (path, response.status_code)
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    return len(seen)


def _small_and_large(client, shop, path: str, headers: dict | None = None, first: int = 2) -> tuple[int, int]:
    grow(shop, first)
    client.get(path, headers=headers or {})  # anything cached on first sight is cached for both sizes
    small = statements(client, path, headers)
    grow(shop, 12)
    return small, statements(client, path, headers)


def test_the_sage_branch_page_reads_as_many_statements_with_a_long_history(client, auth, shop):
    auth.login(shop["owner"])
    small, large = _small_and_large(client, shop, f"/integrations/sage/branches/{shop['sage'].id}")
    assert large == small, (small, large)


def test_the_sage_branch_pages_invoice_lists_read_as_many_statements_with_more_invoices(client, auth, shop):
    auth.login(shop["owner"])
    small, large = _small_and_large(client, shop, f"/integrations/sage/branches/{shop['sage'].id}?kind=invoices",
                                    {"HX-Request": "true", "HX-Target": "sage-records"})
    assert large == small, (small, large)


def test_the_sage_one_aus_branch_page_reads_as_many_statements_with_a_long_history(client, auth, shop):
    auth.login(shop["owner"])
    small, large = _small_and_large(client, shop, f"/integrations/sage-one-aus/branches/{shop['sage_one'].id}")
    assert large == small, (small, large)


def test_the_sage_one_aus_invoice_list_reads_as_many_statements_with_more_invoices(client, auth, shop):
    auth.login(shop["owner"])
    small, large = _small_and_large(
        client, shop, f"/integrations/sage-one-aus/branches/{shop['sage_one'].id}?kind=invoices",
        {"HX-Request": "true"})
    assert large == small, (small, large)


def test_the_dashboard_reads_as_many_statements_with_more_support_visits(client, auth, shop):
    auth.login(shop["owner"])
    small, large = _small_and_large(client, shop, "/")
    assert large == small, (small, large)


def test_the_support_customer_page_reads_as_many_statements_with_a_long_history(client, auth, shop):
    auth.login(factories.support())
    # From no history at all: a relation loaded by a separate select is sent only once some row has one.
    small, large = _small_and_large(client, shop, f"/support/customers/{shop['business'].id}", first=0)
    assert large == small, (small, large)
