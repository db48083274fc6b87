"""Contacts and invoices of a branch: soft-deleted, each with its Sage id and sync state."""
from __future__ import annotations

import enum
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Date, ForeignKey, Index, Numeric, String, Text, text
from sqlalchemy.orm import Mapped, joinedload, mapped_column, relationship

from portal.extensions import db
from portal.models.base import SoftDeleteMixin, UTCDateTime, utcnow, value_enum


class SyncState(str, enum.Enum):
    PENDING = "pending"
    SYNCED = "synced"
    FAILED = "failed"


class ContactKind(str, enum.Enum):
    CUSTOMER = "customer"
    SUPPLIER = "supplier"


class InvoiceStatus(str, enum.Enum):
    DRAFT = "draft"
    ISSUED = "issued"
    VOID = "void"


REASON_LIMIT = 500  # characters of a failure reason kept (at most 2,000 bytes in UTF-8)


class SyncedRecordMixin:
    """The accounting-side id and where the row stands in the sync."""

    sage_id: Mapped[str | None] = mapped_column(String(64))
    sync_state: Mapped[SyncState] = mapped_column(value_enum(SyncState, 20), default=SyncState.PENDING)
    sync_error: Mapped[str | None] = mapped_column(Text)
    synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def mark_synced(self, sage_id: str) -> None:
        self.sage_id = sage_id
        self.sync_state = SyncState.SYNCED
        self.sync_error = None
        self.synced_at = utcnow()

    def mark_failed(self, reason: str) -> None:
        self.sync_state = SyncState.FAILED
        # Sage's words can run on (every message of a refusal, joined); the error is also the last
        # column of the (branch, state …) indexes, whose entries must stay small.
        self.sync_error = reason if len(reason) <= REASON_LIMIT else reason[:REASON_LIMIT - 1] + "…"


# How a contact's error starts when the daily drift look found it deleted in Sage
# (portal/integrations/sage/drift.py), and the predicate of the partial index that holds those contacts.
DELETED_IN_SAGE = "Deleted in Sage"
DELETED_IN_SAGE_WHERE = f"sync_error LIKE '{DELETED_IN_SAGE}%'"


class Contact(SoftDeleteMixin, SyncedRecordMixin, db.Model):
    """A workshop's customer or supplier."""

    __tablename__ = "contacts"
    __table_args__ = (
        # The pages' counts per sync state read this index alone (deleted rows and the kind included),
        # not every row of a branch; so do the dashboard's failure reasons (the error, last; it is
        # bounded by mark_failed, so an entry always fits PostgreSQL's index row).
        Index("ix_contacts_branch_sync", "branch_id", "sync_state", "deleted_at", "kind", "sync_error"),
        Index("ix_contacts_branch_sage_id", "branch_id", "sage_id"),
        Index("ix_contacts_branch_reference", "branch_id", "reference"),
        # The pages' waiting-or-failed lists, a state at a time in id order (`in_state_order`).
        Index("ix_contacts_branch_state_id", "branch_id", "sync_state", "id"),
        # The Sage page's drift panel: contacts the daily look found deleted in Sage, without reading
        # every contact's error (the query must spell the predicate as a literal to use the index, and
        # order by id, which only this index gives: SQLite keeps no statistics for it while empty).
        Index("ix_contacts_deleted_in_sage", "branch_id", "id",
              sqlite_where=text(DELETED_IN_SAGE_WHERE), postgresql_where=text(DELETED_IN_SAGE_WHERE)),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    branch_id: Mapped[int] = mapped_column(ForeignKey("branches.id"))
    kind: Mapped[ContactKind] = mapped_column(value_enum(ContactKind, 20), default=ContactKind.CUSTOMER)
    name: Mapped[str] = mapped_column(String(200), index=True)
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(50))
    # Stable reference sent to Sage; lets a re-sync find a contact Sage already has.
    reference: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    branch = relationship("Branch")

    def __repr__(self) -> str:
        return f"<Contact {self.id} {self.reference} {self.sync_state.value}>"


class Invoice(SoftDeleteMixin, SyncedRecordMixin, db.Model):
    """An invoice raised by a branch for one of its contacts."""

    __tablename__ = "invoices"
    __table_args__ = (
        # As the contacts' (counts and failure reasons from the index alone).
        Index("ix_invoices_branch_sync", "branch_id", "sync_state", "deleted_at", "status", "sync_error"),
        # The Sage page lists voidable invoices newest first: read in that order, not sorted whole.
        Index("ix_invoices_branch_issued", "branch_id", "issued_on", "id"),
        # How many invoices can be voided (in Sage, not void), counted from this index alone.
        Index("ix_invoices_branch_voidable", "branch_id", "status", "sage_id"),
        Index("ix_invoices_branch_number", "branch_id", "number"),
        Index("ix_invoices_branch_state_id", "branch_id", "sync_state", "id"),  # as the contacts'
        # The drift panel's invoices voided in Sage outside the portal, newest first.
        Index("ix_invoices_sage_note", "branch_id", "id",
              sqlite_where=text("sage_note IS NOT NULL"), postgresql_where=text("sage_note IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    branch_id: Mapped[int] = mapped_column(ForeignKey("branches.id"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"), index=True)
    number: Mapped[str] = mapped_column(String(40))
    status: Mapped[InvoiceStatus] = mapped_column(value_enum(InvoiceStatus, 20), default=InvoiceStatus.ISSUED)
    issued_on: Mapped[date] = mapped_column(Date)
    due_on: Mapped[date | None] = mapped_column(Date)
    total: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal("0"))
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    void_reason: Mapped[str | None] = mapped_column(String(255))
    # What Sage showed about it outside the portal (voided or deleted there), found by the daily look.
    sage_note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    branch = relationship("Branch")
    contact: Mapped[Contact] = relationship()
    lines: Mapped[list[InvoiceLine]] = relationship(
        back_populates="invoice", order_by="InvoiceLine.id", cascade="all, delete-orphan"
    )

    def __repr__(self) -> str:
        return f"<Invoice {self.id} {self.number} {self.status.value}>"


class InvoiceLine(db.Model):
    """One line of an invoice; `account_code` and `tax_code` are mapped to the provider's ids."""

    __tablename__ = "invoice_lines"

    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id"), index=True)
    description: Mapped[str] = mapped_column(String(255))
    quantity: Mapped[Decimal] = mapped_column(Numeric(10, 2), default=Decimal("1"))
    unit_price: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    account_code: Mapped[str] = mapped_column(String(20), default="sales")
    tax_code: Mapped[str] = mapped_column(String(20), default="gst")

    invoice: Mapped[Invoice] = relationship(back_populates="lines")

    @property
    def amount(self) -> Decimal:
        return self.quantity * self.unit_price


def in_state_order(model, scope: tuple, states: tuple, page_size: int, *, by_state: bool):
    """A page of `model` rows (contacts or invoices) of `scope` in one of `states`, by id, or by
    state in the order of `states` and then id when `by_state`; not deleted.

    Each state's part reads the (branch, state, id) index in order and stops after `upto` rows
    (the parameter: the page's offset plus its size); the parts are joined by UNION ALL. Ordering
    every waiting row of the branch for a page of 25 read them all (thousands, a millisecond or
    more per view and growing with them). Run it with `offset` and `upto`; its rows are `model`s.
    """
    from sqlalchemy import bindparam, literal, select, union_all
    from sqlalchemy.orm import aliased

    parts = [select(model, literal(place).label("place"))
             .where(*scope, model.sync_state == state, model.deleted_at.is_(None))
             .order_by(model.id).limit(bindparam("upto")).subquery().select()
             for place, state in enumerate(states)]
    found = union_all(*parts).subquery("in_state_order")
    row = aliased(model, found)
    order = (found.c.place, row.id) if by_state else (row.id,)
    statement = select(row).order_by(*order).offset(bindparam("offset")).limit(page_size)
    return statement.options(joinedload(row.contact)) if model is Invoice else statement
