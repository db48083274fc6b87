"""Drift: what changed in Sage outside the portal, seen once a day (and on the branch page on demand).

Sage has no webhooks (reference A4), so each Sage branch asks, at most daily, what was deleted or
changed since its last look: `GET /contacts?deleted_since=` and
`GET /sales_invoices?updated_or_created_since=` (with only the attributes needed). A contact
deleted in Sage loses its Sage id and is flagged to be sent again; an invoice voided in Sage
outside the portal is recorded on the invoice (`sage_note`), which the branch page and the void
checklist show. It costs two requests a day per branch when nothing changed.
"""
from __future__ import annotations

import functools
from datetime import datetime, timedelta

from sqlalchemy import bindparam

from portal import timefmt
from portal.extensions import db
from portal.integrations.sage import sync
from portal.integrations.sage.client import SageError
from portal.models import Connection, ConnectionState, Contact, Invoice, InvoiceStatus, Provider, SyncState, utcnow
from portal.models.ledger import DELETED_IN_SAGE, DELETED_IN_SAGE_WHERE

EVERY = timedelta(days=1)


def _since(connection: Connection) -> datetime:
    return connection.drift_checked_at or connection.first_authorized_at or utcnow() - EVERY


def look(connection: Connection, now: datetime | None = None, *, on_a_page: bool = False) -> dict:
    """Ask Sage what changed for this branch since its last look and record it; returns counts.

    `on_a_page`: a person waits, so the client never waits on the limiter (SageBusy instead).
    Raises SageError (and sync.SyncStopped) when Sage can't be asked; nothing is recorded then.
    """
    now = now or utcnow()
    since = _since(connection).strftime("%Y-%m-%dT%H:%M:%SZ")
    client = sync.page_client_for(connection) if on_a_page else sync.client_for(connection)
    branch_id = connection.branch_id
    seen = timefmt.for_business(now, connection.branch.business)
    deleted_ids = [item["id"] for item in client.each("/contacts", {"deleted_since": since,
                                                                    "items_per_page": 200})]
    flagged = 0
    for contact in db.session.scalars(db.select(Contact).where(
            Contact.branch_id == branch_id, Contact.sage_id.in_(deleted_ids))) if deleted_ids else ():
        contact.sage_id = None
        contact.sync_state = SyncState.PENDING
        contact.sync_error = f"{DELETED_IN_SAGE} (seen {seen}); it is sent again at the next sync."
        flagged += 1
    changed = {item["id"]: item for item in client.each("/sales_invoices", {
        "updated_or_created_since": since, "attributes": "status,void_reason", "items_per_page": 200})}
    voided = 0
    if changed:
        for invoice in db.session.scalars(db.select(Invoice).where(
                Invoice.branch_id == branch_id, Invoice.sage_id.in_(list(changed)))):
            status = (changed[invoice.sage_id].get("status") or {})
            if isinstance(status, dict) and status.get("id") == "VOID" and invoice.status != InvoiceStatus.VOID:
                reason = changed[invoice.sage_id].get("void_reason")
                invoice.sage_note = (f"Voided in Sage outside the portal (seen {seen})"
                                     + (f": {reason}" if reason else "") + ".")
                voided += 1
    connection.drift_checked_at = now
    db.session.commit()
    return {"contacts_deleted_in_sage": flagged, "invoices_voided_in_sage": voided}


def describe(found: dict) -> str:
    """What a look found, in words for a flash or a checklist: "1 invoice voided there outside the portal, …"."""
    invoices, contacts = found["invoices_voided_in_sage"], found["contacts_deleted_in_sage"]
    return (f"{invoices} invoice{'' if invoices == 1 else 's'} voided there outside the portal, "
            f"{contacts} contact{'' if contacts == 1 else 's'} deleted there (sent again at the next sync)")


def look_where_due(now: datetime | None = None) -> int:
    """The scheduler's daily look for every connected Sage branch not looked at for a day."""
    now = now or utcnow()
    due = db.session.scalars(db.select(Connection).where(
        Connection.provider == Provider.SAGE, Connection.state == ConnectionState.CONNECTED,
        Connection.sage_business_id.is_not(None),
        db.or_(Connection.drift_checked_at.is_(None), Connection.drift_checked_at < now - EVERY))).all()
    looked = 0
    for connection in due:
        try:
            look(connection, now, on_a_page=True)  # never waits on a busy business: next tick
            looked += 1
        except (SageError, sync.SyncStopped):
            db.session.rollback()  # tried again at the next tick
    return looked


@functools.cache
def _changed_statements():
    """The drift panel's two lists, built once (the Sage page reads them at every view)."""
    branch_id, limit = bindparam("branch_id"), bindparam("limit")
    return (db.select(Invoice).where(Invoice.branch_id == branch_id, Invoice.sage_note.is_not(None))
            .order_by(Invoice.id.desc()).limit(limit),
            db.select(Contact).where(Contact.branch_id == branch_id, db.text(DELETED_IN_SAGE_WHERE))
            .order_by(Contact.id).limit(limit))


def changed_in_sage(branch_id: int, limit: int = 20) -> dict:
    """What the last looks found, for the branch page: invoices voided in Sage, contacts deleted there.

    Each is read from its partial index (ix_invoices_sage_note, ix_contacts_deleted_in_sage), not by
    reading every row of the branch; the contacts' predicate is the index's own text, since a pattern
    sent as a parameter would not match it, and their id order is the index's (migration 0022).
    """
    invoices_found, contacts_found = _changed_statements()
    params = {"branch_id": branch_id, "limit": limit}
    invoices = db.session.scalars(invoices_found, params).all()
    contacts = db.session.scalars(contacts_found, params).all()
    return {"invoices": invoices, "contacts": contacts}
