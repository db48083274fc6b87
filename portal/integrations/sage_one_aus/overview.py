"""What the Sage One AUS page of a branch shows, gathered in a fixed number of queries."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func

from portal.extensions import db
from portal.integrations.sage_one_aus import credentials, ratelimit, sync
from portal.models import (
    AuditEvent,
    Connection,
    ConnectionState,
    Contact,
    ContactKind,
    Invoice,
    InvoiceStatus,
    Job,
    Provider,
    SyncState,
    unscoped,
)

ROWS_SHOWN = 50


@dataclass
class Overview:
    branch: object
    connection: Connection | None  # the Sage One AUS connection, in any state
    other_provider: Connection | None  # an active connection to another provider
    counts: dict = field(default_factory=dict)
    pending: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    voidable: list = field(default_factory=list)
    active_jobs: list = field(default_factory=list)
    recent_jobs: list = field(default_factory=list)
    history: list = field(default_factory=list)
    locked_until: datetime | None = None
    attempts_left: int | None = None
    rate_limited_until: datetime | None = None

    @property
    def is_connected(self) -> bool:
        return self.connection is not None and self.connection.state == ConnectionState.CONNECTED

    @property
    def is_active(self) -> bool:
        return self.connection is not None and self.connection.is_active


def _counts(model, *criteria) -> dict:
    rows = db.session.execute(
        db.select(model.sync_state, func.count()).where(*criteria).group_by(model.sync_state)
    ).all()
    found = {state.value if hasattr(state, "value") else state: n for state, n in rows}
    return {s.value: found.get(s.value, 0) for s in SyncState}


def branch_overview(branch) -> Overview:
    """The branch's Sage One AUS connection, counts, pending and failed rows, jobs and history."""
    connection = credentials.connection_of(branch)
    other = None
    if connection is not None and connection.provider != Provider.SAGE_ONE_AUS:
        other, connection = (connection if connection.is_active else None), None
    overview = Overview(branch=branch, connection=connection, other_provider=other)
    contact_scope = (Contact.branch_id == branch.id, Contact.kind == ContactKind.CUSTOMER)
    invoice_scope = (Invoice.branch_id == branch.id, Invoice.status == InvoiceStatus.ISSUED)
    overview.counts = {"contacts": _counts(Contact, *contact_scope), "invoices": _counts(Invoice, *invoice_scope)}
    for state, bucket in ((SyncState.PENDING, overview.pending), (SyncState.FAILED, overview.failed)):
        for model, scope in ((Contact, contact_scope), (Invoice, invoice_scope)):
            bucket.extend(db.session.scalars(
                db.select(model).where(*scope, model.sync_state == state).order_by(model.id).limit(ROWS_SHOWN)))
    # Voids reach soft-deleted invoices too (the void is unscoped), so they are listed here.
    overview.voidable = db.session.scalars(
        unscoped(Invoice).where(Invoice.branch_id == branch.id, Invoice.status == InvoiceStatus.ISSUED,
                                Invoice.sage_id.is_not(None)).order_by(Invoice.id.desc()).limit(ROWS_SHOWN)).all()
    kinds = (sync.SYNC_KIND, sync.VOID_KIND)
    overview.active_jobs = db.session.scalars(
        db.select(Job).where(Job.branch_id == branch.id, Job.kind.in_(kinds),
                             Job.status.in_(("queued", "running"))).order_by(Job.created_at)).all()
    overview.recent_jobs = db.session.scalars(
        db.select(Job).where(Job.branch_id == branch.id, Job.kind.in_(kinds))
        .order_by(Job.created_at.desc()).limit(10)).all()
    overview.history = db.session.scalars(
        db.select(AuditEvent).where(
            AuditEvent.branch_id == branch.id,
            AuditEvent.kind.like("sage_one_aus.%") | AuditEvent.kind.in_(("connection.needs_reauth",
                                                                            "puppet.write_refused")))
        .order_by(AuditEvent.occurred_at.desc()).limit(20)).all()
    if connection is not None and connection.sage_one_username:
        overview.locked_until = credentials.locked_until(connection.sage_one_username)
        overview.attempts_left = credentials.attempts_left(connection.sage_one_username)
    if connection is not None and connection.sage_one_company_id:
        until = ratelimit.blocked_until(connection.sage_one_company_id)
        if until is None and connection.is_rate_limited():
            until = connection.rate_limited_until
        overview.rate_limited_until = until
    return overview
