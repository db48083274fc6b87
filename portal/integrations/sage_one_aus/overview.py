"""What the Sage One AUS page of a branch shows, gathered in a fixed number of queries."""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import bindparam, case, func, or_
from sqlalchemy.orm import joinedload

from portal import like, tallies
from portal.extensions import db
from portal.integrations.sage_one_aus import client, credentials, ratelimit, sync
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
from portal.models.jobs import ACTIVE_WHERE
from portal.models.ledger import in_state_order

PAGE_SIZE = 25
SEARCH_MAX = 100
RECORD_KINDS = ("customers", "invoices")
RECORD_STATES = {"open": (SyncState.PENDING, SyncState.FAILED), "pending": (SyncState.PENDING,),
                 "failed": (SyncState.FAILED,)}


@dataclass
class Overview:
    branch: object
    connection: Connection | None  # the Sage One AUS connection, in any state
    other_provider: Connection | None  # an active connection to another provider
    counts: dict = field(default_factory=dict)
    active_jobs: list = field(default_factory=list)
    recent_jobs: list = field(default_factory=list)
    history: list = field(default_factory=list)
    locked_until: datetime | None = None
    attempts_left: int | None = None
    rate_limited_until: datetime | None = None
    api_key_refused: str | None = None  # Sage refused the portal's own key (support has been told)

    @property
    def is_connected(self) -> bool:
        return self.connection is not None and self.connection.state == ConnectionState.CONNECTED

    @property
    def is_active(self) -> bool:
        return self.connection is not None and self.connection.is_active


def _contact_scope(branch) -> tuple:
    return Contact.branch_id == branch.id, Contact.kind == ContactKind.CUSTOMER


def _invoice_scope(branch) -> tuple:
    return Invoice.branch_id == branch.id, Invoice.status == InvoiceStatus.ISSUED


# What each kind counts in the kept tallies (portal/tallies.py): the scopes above, deleted rows left out.
TALLIES = {"customers": ("contact", (ContactKind.CUSTOMER.value,)), "invoices": tallies.ISSUED_INVOICES}


@functools.cache
def _statements() -> dict:
    """The page's lists, built once (it is read at every view) with the branch as a parameter."""
    branch_id = bindparam("branch_id")
    kinds = (sync.SYNC_KIND, sync.VOID_KIND)
    return {
        # From the partial index of active jobs (its predicate, spelt so).
        "active": db.select(Job).where(Job.branch_id == branch_id, Job.kind.in_(kinds), db.text(ACTIVE_WHERE))
        .order_by(Job.created_at),
        "recent": db.select(Job).where(Job.branch_id == branch_id, Job.kind.in_(kinds))
        .order_by(Job.created_at.desc()).limit(10)
        .options(joinedload(Job.requested_by), joinedload(Job.puppeteer)),  # the history names both
        "history": db.select(AuditEvent).where(
            AuditEvent.branch_id == branch_id,
            AuditEvent.kind.like("sage_one_aus.%") | AuditEvent.kind.in_(("connection.needs_reauth",
                                                                            "puppet.write_refused")))
        .order_by(AuditEvent.occurred_at.desc()).limit(20),
    }


_READ = object()


def branch_overview(branch, connection=_READ) -> Overview:
    """The branch's Sage One AUS connection, counts, pending and failed rows, jobs and history;
    `connection`, when the caller loaded it with the branch (else it is read now)."""
    if connection is _READ:
        connection = credentials.connection_of(branch)
    other = None
    if connection is not None and connection.provider != Provider.SAGE_ONE_AUS:
        other, connection = (connection if connection.is_active else None), None
    overview = Overview(branch=branch, connection=connection, other_provider=other)
    overview.counts = {"contacts": tallies.state_counts([branch.id], *TALLIES["customers"])[branch.id],
                       "invoices": tallies.state_counts([branch.id], *TALLIES["invoices"])[branch.id]}
    params = {"branch_id": branch.id}
    overview.active_jobs = db.session.scalars(_statements()["active"], params).all()
    overview.recent_jobs = db.session.scalars(_statements()["recent"], params).all()
    overview.history = db.session.scalars(_statements()["history"], params).all()
    if connection is not None and connection.sage_one_username:
        overview.locked_until = credentials.locked_until(connection.sage_one_username)
        overview.attempts_left = credentials.attempts_left(connection.sage_one_username)
    if connection is not None and connection.is_active and client.api_key_refused_at() is not None:
        overview.api_key_refused = client.API_KEY_REFUSED
    if connection is not None and connection.sage_one_company_id:
        until = ratelimit.blocked_until(connection.sage_one_company_id)
        if until is None and connection.is_rate_limited():
            until = connection.rate_limited_until
        overview.rate_limited_until = until
    return overview


@dataclass
class RecordsPage:
    """One page of the branch's waiting or failed customers or invoices, and the filter that chose it."""

    kind: str  # customers | invoices
    state: str  # open (pending or failed) | pending | failed
    q: str
    page: int
    pages: int
    total: int
    rows: list

    @property
    def has_previous(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages

    def filter_args(self, **changes) -> dict:
        """The query arguments that reproduce this page (for links), with `changes` applied."""
        args = {"kind": self.kind, "state": self.state, "q": self.q or None, "page": self.page}
        args.update(changes)
        return args


def waiting_kind(counts: dict) -> str:
    """The kind the page opens on: customers, unless only invoices are waiting or failed."""
    def waiting(name):
        return counts[name][SyncState.PENDING.value] + counts[name][SyncState.FAILED.value]
    return "invoices" if waiting("contacts") == 0 and waiting("invoices") > 0 else "customers"


@functools.cache
def _voidable_statements(searched: bool):
    """A page of the invoices a void can reach, and (for a search by number) their count, built once
    each (the page reads them at every view); parameters `branch_id`, `offset` and `needle`."""
    where = [Invoice.branch_id == bindparam("branch_id"), Invoice.status == InvoiceStatus.ISSUED,
             Invoice.sage_id.is_not(None)]
    if searched:
        where.append(like.ilike(Invoice.number, bindparam("needle")))
    rows = (unscoped(Invoice).where(*where).order_by(Invoice.id.desc()).offset(bindparam("offset")).limit(PAGE_SIZE)
            .options(joinedload(Invoice.contact)))  # each row names its customer: not one statement per row
    count = db.select(func.count()).select_from(Invoice).where(*where).execution_options(include_deleted=True)
    return rows, count


def voidable_invoices(branch_id: int, q: str | None = "", page: int | None = 1) -> RecordsPage:
    """One page of the issued invoices that are in Sage One AUS, newest first, soft-deleted ones
    included (the void reaches them, and Sage One AUS still shows them: rule 4); `q` finds them by
    number. Unsearched, the total is the tallies' (no count of the rows)."""
    q = (q or "").strip()[:SEARCH_MAX]
    rows, count = _voidable_statements(bool(q))
    params = {"branch_id": branch_id, **({"needle": like.contains(q)} if q else {})}
    if q:
        total = db.session.scalar(count, params) or 0
    else:
        total = tallies.total(branch_id, "invoice", (InvoiceStatus.ISSUED.value,), [s.value for s in SyncState],
                              deleted=None, in_sage=True)
    pages = max(1, math.ceil(total / PAGE_SIZE))
    page = min(max(1, page or 1), pages)
    found = db.session.scalars(rows, {**params, "offset": (page - 1) * PAGE_SIZE}).all()
    return RecordsPage("invoices", "voidable", q, page, pages, total, found)


def records(branch, kind: str | None, state: str | None, q: str | None = "", page: int | None = 1) -> RecordsPage:
    """One page of the branch's pending and/or failed customers or issued invoices, failed first.

    Unknown kinds and states fall back to customers and "pending or failed"; the page is clamped to
    the pages there are. Two queries whatever the data: the count, then the page's rows (an
    invoice's customer is joined in, not loaded per row).
    """
    kind = kind if kind in RECORD_KINDS else "customers"
    state = state if state in RECORD_STATES else "open"
    q = (q or "").strip()[:SEARCH_MAX]
    model = Contact if kind == "customers" else Invoice
    scope = _contact_scope(branch) if model is Contact else _invoice_scope(branch)
    where = [*scope, model.sync_state.in_(RECORD_STATES[state])]  # deleted rows are hidden by every ORM select
    if q:
        needle = like.contains(q)
        if model is Contact:
            where.append(or_(like.ilike(Contact.name, needle), like.ilike(Contact.reference, needle)))
        else:
            named = db.select(Contact.id).where(Contact.branch_id == branch.id,
                                                like.ilike(Contact.name, needle))
            where.append(or_(like.ilike(Invoice.number, needle), Invoice.contact_id.in_(named)))
    if q:
        total = db.session.scalar(db.select(func.count()).select_from(model).where(*where)) or 0
    else:  # the whole state, as the tallies hold it
        total = tallies.total(branch.id, *TALLIES[kind], [s.value for s in RECORD_STATES[state]])
    pages = max(1, math.ceil(total / PAGE_SIZE))
    page = min(max(1, page or 1), pages)
    offset = (page - 1) * PAGE_SIZE
    if not q:  # failed first, then waiting, each read in id order from its index
        rows = db.session.scalars(_in_state_order(kind, state),
                                  {"branch_id": branch.id, "offset": offset, "upto": offset + PAGE_SIZE}).all()
        return RecordsPage(kind, state, q, page, pages, total, rows)
    query = (db.select(model).where(*where)
             .order_by(case((model.sync_state == SyncState.FAILED, 0), else_=1), model.id)
             .offset(offset).limit(PAGE_SIZE))
    if model is Invoice:
        query = query.options(joinedload(Invoice.contact))
    return RecordsPage(kind, state, q, page, pages, total, db.session.scalars(query).all())


@functools.lru_cache(maxsize=16)
def _in_state_order(kind: str, state: str):
    """A page of the unsearched list of `kind` and `state`, failed first: built once per kind and state."""
    model = Contact if kind == "customers" else Invoice
    scope = (model.branch_id == bindparam("branch_id"),
             Contact.kind == ContactKind.CUSTOMER if model is Contact else Invoice.status == InvoiceStatus.ISSUED)
    states = tuple(sorted(RECORD_STATES[state], key=lambda s: s != SyncState.FAILED))
    return in_state_order(model, scope, states, PAGE_SIZE, by_state=True)
