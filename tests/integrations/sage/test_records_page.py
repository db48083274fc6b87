"""The Sage page's waiting-or-failed list and its invoices to void, read by the service the page
uses: totals from the tallies without a search and from the rows with one, pages of 25, the
search by name, reference or number, soft-deleted rows left out of the list but kept for voids."""
from portal.extensions import db
from portal.integrations.sage import pages
from portal.models import InvoiceStatus, SyncState, utcnow
from tests import factories


def _branch_with_records():
    branch = factories.business("Records Page").branches[0]
    failed = factories.contacts(branch, 30, sync_state=SyncState.FAILED, sync_error="The email address is not valid.")
    harbour = factories.contacts(branch, 3)
    for n, contact in enumerate(harbour):
        contact.name = f"Harbour Motors {n}"
    gone = factories.contacts(branch, 2, sync_state=SyncState.FAILED)
    for contact in gone:
        contact.soft_delete()
    synced = factories.contacts(branch, 4, sync_state=SyncState.SYNCED, sage_id="sage-c")
    invoices = [factories.invoice(branch, synced[0]) for _ in range(3)]
    for n, invoice in enumerate(invoices):
        invoice.number = f"INV-{n:03d}"
        invoice.mark_synced(f"sage-{invoice.number}")
    invoices[1].soft_delete()  # still voidable (rule 4)
    void = factories.invoice(branch, synced[1], status=InvoiceStatus.VOID, sage_id="sage-v")
    void.number, void.voided_at = "INV-VOID", utcnow()
    db.session.commit()
    return branch.id, failed, harbour


def test_totals_pages_and_search_of_the_waiting_or_failed_list(app):
    branch_id, failed, harbour = _branch_with_records()

    everything = pages.records(branch_id, "contacts", "open")
    assert (everything.total, everything.pages, len(everything.rows)) == (33, 2, 25)
    second = pages.records(branch_id, "contacts", "open", page=2)
    assert len(second.rows) == 8 and {r.id for r in everything.rows}.isdisjoint(r.id for r in second.rows)
    assert pages.records(branch_id, "contacts", "failed").total == 30  # the deleted two are not counted
    waiting = pages.records(branch_id, "contacts", "pending")
    assert waiting.total == 3 and sorted(r.id for r in waiting.rows) == sorted(c.id for c in harbour)

    found = pages.records(branch_id, "contacts", "open", q="harbour")  # case-insensitive, from the rows
    assert (found.total, sorted(r.id for r in found.rows)) == (3, sorted(c.id for c in harbour))
    assert pages.records(branch_id, "contacts", "failed", q="harbour").total == 0
    by_reference = pages.records(branch_id, "contacts", "open", q=failed[0].reference)
    assert [r.id for r in by_reference.rows] == [failed[0].id]
    assert pages.records(branch_id, "contacts", "open", page=99).page == 2  # clamped to the pages there are


def test_invoices_to_void_count_soft_deleted_ones_and_search_by_number(app):
    branch_id, _, _ = _branch_with_records()

    voidable = pages.voidable_invoices(branch_id)
    assert voidable.total == 3 and sorted(i.number for i in voidable.rows) == ["INV-000", "INV-001", "INV-002"]
    assert [i.number for i in pages.voidable_invoices(branch_id, q="inv-002").rows] == ["INV-002"]
    assert pages.voidable_invoices(branch_id, q="VOID").total == 0  # void already: not offered
    issued = pages.records(branch_id, "invoices", "open")
    assert issued.total == 0  # every issued invoice is in Sage


def test_a_searched_percent_or_underscore_is_the_character_typed_not_a_wildcard(app):
    branch_id, _, harbour = _branch_with_records()
    harbour[0].name = "Harbour 100% Tyres"
    db.session.commit()

    assert pages.records(branch_id, "contacts", "open", q="%").total == 1  # "%" alone matched all 33
    assert [r.id for r in pages.records(branch_id, "contacts", "open", q="100%").rows] == [harbour[0].id]
    assert pages.records(branch_id, "contacts", "open", q="Harbour_Motors").total == 0  # "_" is no letter
    assert pages.voidable_invoices(branch_id, q="%").total == 0  # matched all three
    assert pages.voidable_invoices(branch_id, q="INV_00").total == 0
    assert pages.voidable_invoices(branch_id, q="INV-00").total == 3
