"""The heavy pages' lookups that once read every row of a branch read an index instead: each test
captures the statements a page's service sends, asks the database for their plan (PostgreSQL with
sequential scans discouraged, so a small test table cannot hide an unusable index) and checks both
the plan and what the lookup finds."""
from __future__ import annotations

from sqlalchemy import event

from portal.extensions import db
from portal.integrations.sage import drift
from portal.models import SyncState, utcnow
from tests import factories


def plans(call) -> tuple[object, list[str]]:
    """What `call()` returns, and the plan of each SELECT it sent, as one string per statement."""
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
    found = [" / ".join(str(row[-1]) for row in connection.exec_driver_sql(explain + statement, parameters))
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
