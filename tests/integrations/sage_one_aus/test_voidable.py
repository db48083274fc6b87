"""The Sage One AUS page's list of invoices to void: every one the void can reach, in pages of 25,
found by number, its own htmx fragment that keeps its search and page when a job ends."""
from __future__ import annotations

import re

import pytest

from portal.extensions import db
from portal.integrations.sage_one_aus import overview
from portal.models import InvoiceStatus, SyncState, utcnow
from tests import factories
from tests.integrations.sage_one_aus.conftest import start_puppet

HTMX = {"HX-Request": "true", "HX-Target": "sage-one-voidable"}  # as its search form and pager send it


@pytest.fixture
def invoices(world) -> list[int]:
    """Newcastle's 30 voidable invoices (INV-S1-001 … 030, one of them deleted in the portal), newest
    (highest id) first, beside invoices no void can reach: not in Sage One AUS, void, draft, elsewhere."""
    branch = world.branch
    payer = factories.contacts(branch, 1, sync_state=SyncState.SYNCED, sage_id="71")[0]
    made = [factories.invoice(branch, payer, number=f"INV-S1-{n:03d}", sage_id=f"9{n:03d}",
                              sync_state=SyncState.SYNCED) for n in range(1, 31)]
    made[4].deleted_at = utcnow()  # deleted here, still in Sage One AUS: the void reaches it
    factories.invoice(branch, payer, number="INV-NOT-SENT")
    factories.invoice(branch, payer, number="INV-VOID", sage_id="8001", status=InvoiceStatus.VOID)
    factories.invoice(branch, payer, number="INV-DRAFT", sage_id="8002", status=InvoiceStatus.DRAFT)
    other = factories.contacts(world.other_branch, 1, sync_state=SyncState.SYNCED, sage_id="72")[0]
    factories.invoice(world.other_branch, other, number="INV-ELSEWHERE", sage_id="8003")
    db.session.commit()
    return [invoice.id for invoice in reversed(made)]


def _numbers(body: str) -> list[str]:
    table = body.split('id="sage-one-voidable"', 1)[1]
    return [number.strip() for number in re.findall(r'<td data-label="Invoice">([^<]+)', table)]


def _get(client, world, headers=None, **args):
    response = client.get(f"/integrations/sage-one-aus/branches/{world.branch.id}", query_string=args,
                          headers=headers or {})
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response.get_data(as_text=True)


def test_every_invoice_a_void_can_reach_is_listed_newest_first_in_pages_of_25(world, invoices):
    first = overview.voidable_invoices(world.branch.id)
    second = overview.voidable_invoices(world.branch.id, page=2)

    assert (first.total, first.pages) == (30, 2)
    assert [i.id for i in first.rows] == invoices[:25]
    assert [i.id for i in second.rows] == invoices[25:]
    assert overview.voidable_invoices(world.branch.id, page=99).page == 2  # clamped to the pages there are
    assert overview.voidable_invoices(world.branch.id, page=-3).page == 1


def test_the_unsearched_total_from_the_tallies_is_the_count_of_the_rows(world, invoices):
    everything = [row.id for page in (1, 2) for row in overview.voidable_invoices(world.branch.id, page=page).rows]

    assert sorted(everything) == sorted(invoices)
    assert overview.voidable_invoices(world.branch.id).total == len(everything)


def test_search_finds_invoices_by_number_deleted_ones_too_and_takes_wildcards_literally(world, invoices):
    assert [i.number for i in overview.voidable_invoices(world.branch.id, "s1-005").rows] == ["INV-S1-005"]
    found = overview.voidable_invoices(world.branch.id, "INV-S1-01")
    assert (found.total, sorted(i.number for i in found.rows)) == (10, [f"INV-S1-{n:03d}" for n in range(10, 20)])
    assert overview.voidable_invoices(world.branch.id, "INV-VOID").total == 0  # void already
    assert overview.voidable_invoices(world.branch.id, "ELSEWHERE").total == 0  # another branch's
    assert overview.voidable_invoices(world.branch.id, "%").total == 0


def test_the_page_shows_the_first_page_and_its_pager_asks_for_the_fragment(world, invoices, client, auth):
    auth.login(world.owner)
    body = _get(client, world)

    assert _numbers(body) == [f"INV-S1-{n:03d}" for n in range(30, 5, -1)]
    assert "Deleted here" not in body.split("INV-S1-006", 1)[0].rsplit("<tr>", 1)[-1]
    link = re.search(r'<a class="btn" href="([^"]+)" hx-get="([^"]+)" hx-target="#sage-one-voidable"', body)
    assert link and "vpage=2" in link.group(1), body


def test_the_fragment_alone_answers_its_search_and_pager_and_keeps_them_for_the_next_refresh(world, invoices,
                                                                                            client, auth):
    auth.login(world.owner)
    second = _get(client, world, HTMX, vpage=2)

    assert second.lstrip().startswith("<div id=\"sage-one-voidable\"")
    assert "<html" not in second and 'id="sage-one-records"' not in second
    assert _numbers(second) == [f"INV-S1-{n:03d}" for n in range(5, 0, -1)]
    assert "Deleted here" in second  # INV-S1-005
    # When a job ends it reads the same page again, not the first.
    refresh = re.search(r'<div id="sage-one-voidable"[^>]*hx-get="([^"]+)"', second).group(1)
    assert "vpage=2" in refresh
    found = _get(client, world, HTMX, vq="S1-030")
    assert _numbers(found) == ["INV-S1-030"]
    assert "No invoice in Sage One AUS to void matching “nothing”." in _get(client, world, HTMX, vq="nothing")


def test_a_puppet_session_sees_the_list_with_the_void_buttons_off(world, invoices, client, auth):
    auth.login(factories.support())
    start_puppet(client, world.business, world.owner)
    body = _get(client, world, HTMX, vpage=2)

    assert _numbers(body) == [f"INV-S1-{n:03d}" for n in range(5, 0, -1)]
    assert "/void" not in body and 'disabled aria-disabled="true"' in body


def test_another_business_gets_404_for_the_fragment(world, invoices, client, auth):
    auth.login(factories.customer(factories.business("Someone Else")))
    response = client.get(f"/integrations/sage-one-aus/branches/{world.branch.id}", headers=HTMX)
    assert response.status_code == 404
