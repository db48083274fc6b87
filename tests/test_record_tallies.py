"""The record tallies the database keeps (portal/models/tallies.py) against counts of the rows
themselves, after every kind of change a writer makes: inserts, the sync's state changes, failure
reasons, soft deletes and restores, bulk updates the ORM never sees, moves between branches and
kinds, deletes; and the readers the pages use (portal/tallies.py) against the same counts."""
import pytest
import sqlalchemy as sa

from portal import tallies
from portal.extensions import db
from portal.models import Contact, ContactKind, Invoice, InvoiceLine, InvoiceStatus, SyncState, utcnow
from portal.models.ledger import REASON_LIMIT
from portal.models.tallies import FailureTally, RecordTally, backfill_sql
from tests import factories

pytestmark = pytest.mark.postgres


def _rows_counted() -> tuple[dict, dict]:
    """What the tallies must hold, counted from the rows (zero tallies left out)."""
    records, failures = {}, {}
    for table, record, category in ((Contact.__table__, "contact", "kind"), (Invoice.__table__, "invoice", "status")):
        for row in db.session.execute(sa.select(table.c.branch_id, table.c[category], table.c.sync_state,
                                                table.c.deleted_at, table.c.sage_id, table.c.sync_error)):
            branch_id, group, state, deleted_at, sage_id, error = row
            key = (branch_id, record, group, state, deleted_at is not None, sage_id is not None)
            records[key] = records.get(key, 0) + 1
            if state == "failed" and deleted_at is None:
                reason = (branch_id, record, group, (error or "")[:REASON_LIMIT])
                failures[reason] = failures.get(reason, 0) + 1
    return records, failures


def _tallied() -> tuple[dict, dict]:
    records = {(t.branch_id, t.record, t.category, t.sync_state, bool(t.deleted), bool(t.in_sage)): t.n
               for t in db.session.scalars(sa.select(RecordTally)) if t.n}
    failures = {(t.branch_id, t.record, t.category, t.reason): t.n for t in db.session.scalars(sa.select(FailureTally))}
    return records, failures


def _assert_tallies_match():
    db.session.flush()
    db.session.expire_all()
    assert _tallied() == _rows_counted()


def _ledger():
    business = factories.business(branches=("Sydney", "Newcastle"))
    sydney, newcastle = business.branches
    contacts = factories.contacts(sydney, 6) + factories.contacts(newcastle, 2, kind=ContactKind.SUPPLIER)
    invoices = [factories.invoice(sydney, contacts[i]) for i in range(4)]
    db.session.commit()
    return sydney, newcastle, contacts, invoices


def test_every_kind_of_change_keeps_the_tallies_equal_to_the_rows(app):
    sydney, newcastle, contacts, invoices = _ledger()
    _assert_tallies_match()
    assert _tallied()[0][(sydney.id, "contact", "customer", "pending", False, False)] == 6

    contacts[0].mark_synced("sage-1")
    contacts[1].mark_failed("The email address is not valid in Sage.")
    contacts[2].mark_failed("The email address is not valid in Sage.")
    contacts[3].mark_failed("A contact with this reference already exists in Sage.")
    invoices[0].mark_failed("Sage refused the tax rate GST on one line.")
    invoices[1].mark_synced("sage-inv-1")
    _assert_tallies_match()

    contacts[2].mark_failed("A contact with this reference already exists in Sage.")  # another reason
    contacts[3].mark_synced("sage-3")  # the last with that reason … until contacts[2] took it
    contacts[1].soft_delete()  # a deleted failure no longer counts as a failure
    invoices[1].status = InvoiceStatus.VOID
    _assert_tallies_match()

    contacts[1].deleted_at = None  # restored
    contacts[4].branch_id = newcastle.id  # moved
    contacts[5].kind = ContactKind.SUPPLIER
    contacts[0].name = "Renamed"  # not a tallied column: nothing moves
    _assert_tallies_match()

    # A bulk update and a bulk insert the ORM never loads, as a writer outside the portal does.
    db.session.execute(sa.update(Contact.__table__).where(Contact.__table__.c.branch_id == sydney.id)
                       .values(sync_state="pending", sync_error=None, sage_id=None))
    db.session.execute(sa.insert(Contact.__table__), [
        {"branch_id": newcastle.id, "kind": "customer", "name": f"Bulk {n}", "reference": f"B-{n}",
         "sync_state": "failed", "sync_error": "x" * (REASON_LIMIT + 40) if n % 2 else None,
         "created_at": utcnow(), "updated_at": utcnow()} for n in range(5)])
    _assert_tallies_match()

    db.session.execute(sa.delete(InvoiceLine.__table__).where(InvoiceLine.__table__.c.invoice_id == invoices[0].id))
    db.session.execute(sa.delete(Invoice.__table__).where(Invoice.__table__.c.id == invoices[0].id))
    db.session.execute(sa.delete(Contact.__table__).where(Contact.__table__.c.name.like("Bulk%"),
                                                          Contact.__table__.c.sync_error.is_(None)))
    _assert_tallies_match()
    db.session.commit()
    _assert_tallies_match()


def test_a_rolled_back_change_leaves_the_tallies_as_they_were(app):
    sydney, _, contacts, _ = _ledger()
    before = _tallied()
    contacts[0].mark_failed("Sage answered 500.")
    db.session.add_all([Contact(branch_id=sydney.id, name=f"Unsaved {n}", reference=f"U-{n}") for n in range(3)])
    db.session.flush()
    assert _tallied() != before
    db.session.rollback()
    assert _tallied() == before


def test_the_backfill_counts_what_was_there_before_the_triggers(app):
    sydney, _, contacts, invoices = _ledger()
    contacts[0].mark_failed("The email address is not valid in Sage.")
    invoices[2].mark_synced("sage-inv-2")
    db.session.commit()
    expected = _tallied()
    db.session.execute(sa.delete(RecordTally))
    db.session.execute(sa.delete(FailureTally))
    for statement in backfill_sql():
        db.session.execute(sa.text(statement))
    db.session.commit()
    assert _tallied() == expected == _rows_counted()


def test_the_readers_answer_what_counting_the_rows_answers(app):
    sydney, newcastle, contacts, invoices = _ledger()
    contacts[0].mark_failed("Reason B")
    contacts[1].mark_failed("Reason A")
    contacts[2].mark_failed("Reason B")
    contacts[3].mark_synced("sage-3")
    invoices[0].mark_failed("Reason A")
    invoices[1].mark_synced("sage-inv-1")
    invoices[2].mark_synced("sage-inv-2")
    invoices[2].soft_delete()
    invoices[3].mark_synced("sage-inv-3")
    invoices[3].status = InvoiceStatus.VOID
    db.session.commit()

    counts = tallies.state_counts([sydney.id, newcastle.id], *tallies.CONTACTS)
    assert counts[sydney.id] == {"pending": 2, "synced": 1, "failed": 3}
    assert counts[newcastle.id] == {"pending": 2, "synced": 0, "failed": 0}
    assert tallies.state_counts([sydney.id], *tallies.ISSUED_INVOICES)[sydney.id] == \
        {"pending": 0, "synced": 1, "failed": 1}  # the deleted one left out, the void one not issued
    # Voidable: in Sage and not void, soft-deleted ones included.
    assert tallies.total(sydney.id, "invoice", tallies.NOT_VOID, [s.value for s in SyncState],
                         deleted=None, in_sage=True) == 2
    # Reason A: one contact and one invoice; Reason B: two contacts. A tie goes to the first by name.
    assert tallies.top_failures([sydney.id, newcastle.id]) == {sydney.id: ("Reason A", 2)}
    contacts[4].mark_failed("Reason B")
    db.session.commit()
    assert tallies.top_failures([sydney.id]) == {sydney.id: ("Reason B", 3)}


def test_failures_with_no_reason_come_last_in_a_tie_and_read_as_none(app):
    sydney, _, contacts, _ = _ledger()
    for contact in contacts[:2]:
        contact.sync_state, contact.sync_error = SyncState.FAILED, None
    contacts[2].mark_failed("Sage answered 500.")
    contacts[3].mark_failed("Sage answered 500.")
    db.session.commit()
    assert tallies.top_failures([sydney.id]) == {sydney.id: ("Sage answered 500.", 2)}
    contacts[3].mark_synced("sage-3")
    db.session.commit()
    assert tallies.top_failures([sydney.id]) == {sydney.id: (None, 2)}


def test_the_pages_counts_follow_a_change_at_once(app, client, auth):
    """The dashboard card and the Sage page read the tallies: a record that fails is counted there
    on the next view, with its reason."""
    business = factories.business()
    branch = business.branches[0]
    user = factories.customer(business)
    factories.connection(branch)
    contact = factories.contacts(branch, 3)[0]
    db.session.commit()
    auth.login(user)
    assert "3 pending · 0 failed" in client.get("/").get_data(as_text=True)
    contact.mark_failed("The email address is not valid in Sage.")
    db.session.commit()
    dashboard = client.get("/").get_data(as_text=True)
    assert "2 pending · 1 failed" in dashboard
    assert "Most often (1): The email address is not valid in Sage." in dashboard
    page = client.get(f"/integrations/sage/branches/{branch.id}").get_data(as_text=True)
    assert "The email address is not valid in Sage." in page


def test_a_request_reads_a_branchs_tallies_once_and_forgets_them_at_any_write(app):
    sydney, newcastle, contacts, _ = _ledger()
    statements = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        with app.test_request_context():
            first = tallies.state_counts([sydney.id, newcastle.id], *tallies.CONTACTS)
            tallies.total(sydney.id, *tallies.ISSUED_INVOICES, ["pending"])
            tallies.state_counts([newcastle.id], *tallies.CONTACTS)
            assert len([s for s in statements if "record_tallies" in s]) == 1
            contacts[0].mark_failed("Sage answered 500.")
            db.session.flush()  # an ORM write
            assert tallies.state_counts([sydney.id], *tallies.CONTACTS)[sydney.id]["failed"] == \
                first[sydney.id]["failed"] + 1
            db.session.execute(sa.update(Contact).where(Contact.branch_id == newcastle.id)
                               .values(sync_state=SyncState.SYNCED))  # a bulk write the flush never sees
            assert tallies.state_counts([newcastle.id], *tallies.CONTACTS)[newcastle.id] == \
                {"pending": 0, "synced": 2, "failed": 0}
            assert len([s for s in statements if "record_tallies" in s]) == 3
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)
        db.session.rollback()
