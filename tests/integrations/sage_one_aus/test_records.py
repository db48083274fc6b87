"""The "Waiting or failed" panel of the Sage One AUS branch page: filters, pages of 25, one fragment."""
from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from sqlalchemy import event

from portal.extensions import db
from portal.models import Contact, ContactKind, Invoice, InvoiceStatus, Provider, SyncState, utcnow
from tests import factories
from tests.integrations.sage_one_aus.conftest import start_puppet

HTMX = {"HX-Request": "true", "HX-Target": "sage-one-records"}  # as the filter form and the pager send it
REFUSED = "Sage One AUS refused the email address"


@dataclass
class Ledger:
    pending_customers: list
    failed_customers: list
    pending_invoices: list
    failed_invoices: list


def _named(branch, name: str, reference: str, **fields) -> Contact:
    contact = Contact(branch_id=branch.id, name=name, reference=reference, **fields)
    db.session.add(contact)
    db.session.commit()
    return contact


def _ledger(world, pending: int = 30, failed: int = 12) -> Ledger:
    """Newcastle's customers and invoices in every state, plus rows the panel must never list."""
    branch = world.branch
    pending_customers = factories.contacts(branch, pending)
    failed_customers = factories.contacts(branch, failed, sync_state=SyncState.FAILED, sync_error=REFUSED)
    failed_customers.append(_named(branch, "Zebra Panels", "ZEB-100", sync_state=SyncState.FAILED,
                                   sync_error="Sage One AUS says the customer name is taken"))
    synced = factories.contacts(branch, 5, sync_state=SyncState.SYNCED, sage_id="7")
    _named(branch, "Deleted Dan", "DEL-1", deleted_at=utcnow())
    _named(branch, "Parts Supplier", "SUP-1", kind=ContactKind.SUPPLIER)
    payer = synced[0]
    pending_invoices = [factories.invoice(branch, payer) for _ in range(3)]
    failed_invoices = [factories.invoice(branch, payer, sync_state=SyncState.FAILED,
                                         sync_error="no Sage One AUS account matches code “nonsense”")]
    factories.invoice(branch, payer, status=InvoiceStatus.DRAFT)
    factories.invoice(branch, payer, status=InvoiceStatus.VOID)
    factories.invoice(branch, payer, deleted_at=utcnow())
    elsewhere = factories.contacts(world.other_branch, 3)
    factories.invoice(world.other_branch, elsewhere[0])
    return Ledger(pending_customers, failed_customers, pending_invoices, failed_invoices)


@pytest.fixture
def ledger(world, auth) -> Ledger:
    ledger = _ledger(world)
    auth.login(world.owner)
    return ledger


def _url(world) -> str:
    return f"/integrations/sage-one-aus/branches/{world.branch.id}"


def _fragment(client, world, **args):
    response = client.get(_url(world), query_string=args, headers=HTMX)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response.get_data(as_text=True)


def _rows(body: str) -> list[str]:
    """The first cell of each row of the records table."""
    tbody = body.split('id="sync-rows"', 1)[1].split("</tbody>", 1)[0]
    return [cell.strip() for cell in re.findall(r"<tr[^>]*>\s*<td[^>]*>([^<]*)</td>", tbody)]


# --- filters ----------------------------------------------------------------------------------------


def test_customers_waiting_or_failed_are_listed_failed_first_with_their_reasons(world, ledger, client):
    body = _fragment(client, world, kind="customers", state="open")
    rows = _rows(body)
    assert len(rows) == 25
    assert rows[:13] == [c.name for c in ledger.failed_customers]
    assert rows[13:] == [c.name for c in ledger.pending_customers[:12]]
    # Newcastle is not connected here: its pending rows wait for a connection, not for a sync.
    assert REFUSED in body and "Sent once the branch is connected." in body
    assert "Sent at the next sync." not in body
    assert "Page 1 of 2 · 43 customers" in body


def test_pending_rows_of_a_connected_branch_wait_for_the_next_sync(world, ledger, client):
    factories.connection(world.branch, Provider.SAGE_ONE_AUS, sage_one_username="newcastle@harbour-auto.test",
                         sage_one_company_id=7, credentials_owner_id=world.owner.id)
    body = _fragment(client, world, kind="customers", state="pending")
    assert "Sent at the next sync." in body and "Sent once the branch is connected." not in body


def test_the_failed_filter_lists_only_failed_customers(world, ledger, client):
    body = _fragment(client, world, kind="customers", state="failed")
    assert _rows(body) == [c.name for c in ledger.failed_customers]
    assert "Sent at the next sync." not in body and "Sent once the branch is connected." not in body
    assert "13 customers" in body


def test_the_pending_filter_lists_only_pending_customers(world, ledger, client):
    body = _fragment(client, world, kind="customers", state="pending", page=2)
    assert _rows(body) == [c.name for c in ledger.pending_customers[25:]]
    assert "Page 2 of 2 · 30 customers" in body


def test_invoices_list_only_this_branchs_issued_ones_that_are_not_deleted(world, ledger, client):
    body = _fragment(client, world, kind="invoices", state="open")
    assert _rows(body) == [i.number for i in ledger.failed_invoices + ledger.pending_invoices]
    assert "no Sage One AUS account matches code" in body
    assert "1 of 1 · 4 invoices" in body


def test_suppliers_deleted_customers_and_other_branches_never_show(world, ledger, client):
    names = []
    for page in (1, 2):
        names += _rows(_fragment(client, world, kind="customers", page=page))
    assert "Parts Supplier" not in names and "Deleted Dan" not in names
    assert sorted(names) == sorted(c.name for c in ledger.failed_customers + ledger.pending_customers)


@pytest.mark.parametrize("q", ["zebra", "ZEB-1", "panels"])
def test_search_finds_a_customer_by_name_or_reference(world, ledger, client, q):
    body = _fragment(client, world, kind="customers", state="open", q=q)
    assert _rows(body) == ["Zebra Panels"]
    assert "the customer name is taken" in body
    assert f"1 customer matching “{q}”" in body


def test_search_finds_invoices_by_number_or_customer_name(world, ledger, client):
    number = ledger.pending_invoices[1].number
    assert _rows(_fragment(client, world, kind="invoices", q=number)) == [number]
    payer = db.session.get(Invoice, ledger.pending_invoices[0].id).contact.name
    assert len(_rows(_fragment(client, world, kind="invoices", q=payer))) == 4


def test_search_wildcards_are_taken_literally(world, ledger, client):
    body = _fragment(client, world, kind="customers", q="%")
    assert 'id="sync-rows"' not in body
    assert "No waiting or failed customer matches “%”" in body


def test_search_combines_with_the_state_filter(world, ledger, client):
    body = _fragment(client, world, kind="customers", state="pending", q="zebra")
    assert 'id="sync-rows"' not in body
    assert "No waiting customer matches “zebra”" in body


# --- pages ------------------------------------------------------------------------------------------


def test_the_second_page_continues_where_the_first_stopped(world, ledger, client):
    first = _rows(_fragment(client, world, kind="customers"))
    second_body = _fragment(client, world, kind="customers", page=2)
    second = _rows(second_body)
    assert len(first) == 25 and len(second) == 18
    assert not set(first) & set(second)
    assert "Page 2 of 2 · 43 customers" in second_body
    assert "← Previous" in second_body and "Next →" not in second_body


def test_pager_links_keep_the_filter_and_swap_the_table_by_htmx(world, ledger, client):
    body = _fragment(client, world, kind="customers", state="pending", q="Contact")
    link = re.search(r'<a class="btn" href="([^"]+)" hx-get="([^"]+)" hx-target="#sage-one-records"\s+'
                     r'hx-swap="outerHTML" hx-push-url="true">Next', body)
    assert link, body
    href = link.group(1).replace("&amp;", "&")
    assert link.group(1) == link.group(2)
    assert href == f"{_url(world)}?kind=customers&state=pending&q=Contact&page=2"
    assert "Page 2 of 2" in _fragment(client, world, kind="customers", state="pending", q="Contact", page=2)


def test_a_fragment_is_read_in_a_fixed_number_of_queries(world, auth, client):
    auth.login(world.owner)
    factories.contacts(world.branch, 30)
    with _counting() as small:
        _fragment(client, world, kind="customers")
    factories.contacts(world.branch, 300, sync_state=SyncState.FAILED, sync_error=REFUSED)
    with _counting() as large:
        _fragment(client, world, kind="customers", page=7)
    with _counting() as invoices:
        _fragment(client, world, kind="invoices")
    for _ in range(40):
        factories.invoice(world.branch, factories.contacts(world.branch, 1)[0])
    with _counting() as more_invoices:
        _fragment(client, world, kind="invoices", page=2)
    assert len(small) == len(large) == len(invoices) == len(more_invoices), (small, large, more_invoices)
    # The page's rows; the count of the whole state comes from the tallies, not from the rows.
    selects = [sql for sql in large if "FROM contacts" in sql]
    assert len(selects) == 1 and "LIMIT" in selects[0] and any("record_tallies" in sql for sql in large)


@contextmanager
def _counting():
    statements: list[str] = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


# --- one template, two uses -------------------------------------------------------------------------


def test_an_htmx_request_gets_only_the_fragment(world, ledger, client):
    response = client.get(_url(world), query_string={"kind": "invoices"}, headers=HTMX)
    body = response.get_data(as_text=True)
    assert "<html" not in body and "<form" not in body
    assert body.lstrip().startswith('<div id="sage-one-records"')
    assert "HX-Request" in response.headers.get("Vary", "")


def test_the_full_page_includes_the_same_fragment_for_a_bookmarked_filter(world, ledger, client):
    response = client.get(_url(world), query_string={"kind": "invoices", "state": "failed"})
    body = response.get_data(as_text=True)
    assert "<html" in body and '<div id="sage-one-records"' in body
    assert _rows(body) == [i.number for i in ledger.failed_invoices]
    assert '<option value="invoices" selected>' in body and '<option value="failed" selected>' in body
    assert "HX-Request" in response.headers["Vary"]
    assert 'hx-push-url="true"' in body and 'hx-target="#sage-one-records"' in body


def test_a_history_restore_gets_the_whole_page(world, ledger, client):
    body = client.get(_url(world), query_string={"kind": "customers"},
                      headers={**HTMX, "HX-History-Restore-Request": "true"}).get_data(as_text=True)
    assert "<html" in body and "Waiting or failed" in body


def test_the_page_opens_on_invoices_when_only_invoices_are_waiting(world, auth, client):
    payer = factories.contacts(world.branch, 1, sync_state=SyncState.SYNCED, sage_id="1")[0]
    invoice = factories.invoice(world.branch, payer)
    auth.login(world.owner)
    body = client.get(_url(world)).get_data(as_text=True)
    assert _rows(body) == [invoice.number]


# --- empty states -----------------------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    ({"kind": "customers", "state": "open"}, "Nothing is waiting: every customer is in Sage One AUS."),
    ({"kind": "invoices", "state": "open"}, "Nothing is waiting: every issued invoice is in Sage One AUS."),
    ({"kind": "customers", "state": "failed"}, "No customer has failed to reach Sage One AUS."),
    ({"kind": "invoices", "state": "pending"}, "No invoice is waiting for the next sync."),
    ({"kind": "invoices", "state": "failed", "q": "INV-9"}, "No failed invoice matches “INV-9”."),
])
def test_each_filter_has_its_own_empty_state(world, auth, client, args, message):
    factories.contacts(world.branch, 2, sync_state=SyncState.SYNCED, sage_id="1")
    auth.login(world.owner)
    body = _fragment(client, world, **args)
    assert message in body
    assert 'id="sync-rows"' not in body and "Page 1 of" not in body


# --- bad input and access ---------------------------------------------------------------------------


@pytest.mark.parametrize("args, kind, first_page", [
    ({"page": "abc"}, "customers", True),
    ({"page": "-4"}, "customers", True),
    ({"page": "0"}, "customers", True),
    ({"page": "99999999999999999999"}, "customers", False),
    ({"kind": "suppliers"}, "customers", True),
    ({"kind": "invoices", "state": "everything"}, "invoices", True),
    ({"state": "synced"}, "customers", True),
    ({"q": "x" * 5000}, "customers", True),
    ({"kind": ["invoices", "customers"]}, "invoices", True),
])
def test_bad_pages_and_filters_fall_back_cleanly(world, ledger, client, args, kind, first_page):
    for headers in (HTMX, {}):
        response = client.get(_url(world), query_string=args, headers=headers)
        assert response.status_code == 200, (args, headers)
    body = _fragment(client, world, **args)
    if "q" in args:
        assert "No waiting or failed customer matches “" + "x" * 100 + "”" in body
        return
    assert ("Page 1 of" in body) == first_page
    expected = ("Page 2 of 2 · 43 customers" if not first_page
                else "· 4 invoices" if kind == "invoices" else "Page 1 of 2 · 43 customers")
    assert expected in body


def test_another_business_gets_404_for_the_fragment(world, client, auth):
    _ledger(world)
    auth.login(factories.customer(factories.business("Elsewhere Motors")))
    for headers in (HTMX, {}):
        response = client.get(_url(world), query_string={"kind": "customers", "q": "Zebra"}, headers=headers)
        assert response.status_code == 404
        assert "Zebra" not in response.get_data(as_text=True)


def test_support_without_a_puppet_session_cannot_read_the_fragment(world, client, auth):
    _ledger(world)
    auth.login(factories.support())
    response = client.get(_url(world), headers=HTMX)
    assert response.status_code in (403, 404)
    assert "Zebra" not in response.get_data(as_text=True)


def test_anonymous_fragment_requests_are_sent_to_sign_in(world, client):
    response = client.get(_url(world), headers=HTMX)
    assert response.status_code == 401
    assert response.headers["HX-Redirect"].startswith("/login")


def test_a_puppet_session_can_filter_and_page(world, client, auth):
    ledger = _ledger(world)
    auth.login(factories.support())
    start_puppet(client, world.business, world.owner)
    body = _fragment(client, world, kind="customers", state="failed")
    assert _rows(body) == [c.name for c in ledger.failed_customers]
    assert "Page 2 of 2" in _fragment(client, world, kind="customers", page=2)
