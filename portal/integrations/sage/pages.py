"""What the Sage pages show, read in a fixed number of queries (views stay free of queries)."""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, func, or_
from sqlalchemy.orm import joinedload
from sqlalchemy.orm.attributes import set_committed_value

from portal import like, tallies, timefmt
from portal.extensions import db
from portal.integrations.sage import sync
from portal.jobqueue import active_jobs
from portal.models import (
    Branch,
    Connection,
    ConnectionState,
    Contact,
    Invoice,
    InvoiceStatus,
    Job,
    JobStatus,
    Provider,
    SageAccountMapping,
    SyncState,
    unscoped,
    utcnow,
)
from portal.models.ledger import in_state_order

PAGE_SIZE = 25
SAGE_KINDS = (sync.KIND_CONTACTS, sync.KIND_INVOICES, sync.KIND_VOID)
KIND_LABELS = {sync.KIND_CONTACTS: "Contact sync", sync.KIND_INVOICES: "Invoice sync", sync.KIND_VOID: "Void"}
RECORD_KINDS = {"contacts": Contact, "invoices": Invoice}
RECORD_TALLIES = {"contacts": tallies.CONTACTS, "invoices": tallies.ISSUED_INVOICES}  # what each kind counts
RECORD_STATES = {"failed": (SyncState.FAILED,), "pending": (SyncState.PENDING,),
                 "open": (SyncState.PENDING, SyncState.FAILED)}


@dataclass
class TokenHealth:
    """Rule 1 on the page: how old the token is and when the customer must sign in again."""

    issued_at: datetime | None
    first_authorized_at: datetime | None
    refresh_expires_at: datetime | None


def next_sync_words(moment: datetime | None) -> str | None:
    """When the next scheduled sync is due, as the card and page say it: "in 12 minutes", or "within
    a minute" once it is due (the scheduler's next tick starts it); None when it never is."""
    if moment is None:
        return None
    if (moment - utcnow()).total_seconds() < 60:
        return "within a minute"
    return timefmt.ago(moment)


def token_health(connection: Connection | None) -> TokenHealth | None:
    if connection is None or connection.token_issued_at is None:
        return None
    return TokenHealth(connection.token_issued_at, connection.first_authorized_at, connection.refresh_token_expires_at)


def latest_ended_job_id(branch_id: int, kind: str):
    """The id of the branch's newest ended job of `kind`, as a subquery: read from the newest end of
    the (branch, kind, created) index, so its cost does not grow with the branch's history."""
    return (db.select(Job.id).where(Job.branch_id == branch_id, Job.kind == kind,
                                    Job.status.in_((JobStatus.FINISHED, JobStatus.FAILED)))
            .order_by(Job.created_at.desc(), Job.id.desc()).limit(1).scalar_subquery())


@functools.cache
def _last_jobs_statement():
    return (db.select(Job).where(or_(*(Job.id == latest_ended_job_id(bindparam("branch_id"), kind)
                                       for kind in SAGE_KINDS))).options(*JOB_PEOPLE))


def last_jobs_by_kind(branch_id: int) -> dict[str, Job]:
    """The latest ended job of each Sage kind for the branch (one statement, built once)."""
    return {job.kind: job for job in db.session.scalars(_last_jobs_statement(), {"branch_id": branch_id})}


def running_jobs(branch_id: int) -> list[Job]:
    """The Sage jobs queued or running for the branch (reconciled with RQ), in one statement."""
    return active_jobs(branch_id, SAGE_KINDS)


# Who asked for a job and who puppeted them, loaded with the job: the history names both, and one
# query per person would grow with the people in the branch's history.
JOB_PEOPLE = (joinedload(Job.requested_by), joinedload(Job.puppeteer))


@functools.cache
def _history_statement():
    return (db.select(Job).where(Job.branch_id == bindparam("branch_id"), Job.kind.in_(SAGE_KINDS))
            .order_by(Job.created_at.desc()).limit(bindparam("limit")).options(*JOB_PEOPLE))


def job_history(branch_id: int, limit: int = 20) -> list[Job]:
    """The branch's latest Sage jobs, newest first, with the people who asked for them."""
    return db.session.scalars(_history_statement(), {"branch_id": branch_id, "limit": limit}).all()


def record_counts(branch_id: int) -> dict[str, dict[str, int]]:
    """Counts of each sync state, for contacts and for issued invoices (from the kept tallies)."""
    return {name: tallies.state_counts([branch_id], record, categories)[branch_id]
            for name, (record, categories) in RECORD_TALLIES.items()}


@dataclass
class RecordsPage:
    kind: str
    state: str
    q: str
    page: int
    pages: int
    total: int
    rows: list


@functools.lru_cache(maxsize=32)
def _records_statements(kind: str, state: str, searched: bool):
    """(count, rows) of a filter, built once per kind, state and whether a text is searched for; the
    branch, the offset and the search pattern are parameters. Without a search there is no count
    (the tallies hold it) and each state is read in id order from its index, not every waiting row
    sorted."""
    model = RECORD_KINDS[kind]
    scope = [model.branch_id == bindparam("branch_id")]
    if model is Invoice:
        scope.append(Invoice.status == InvoiceStatus.ISSUED)
    if not searched:
        return None, in_state_order(model, tuple(scope), RECORD_STATES[state], PAGE_SIZE, by_state=False)
    needle = bindparam("needle")
    where = [*scope, model.sync_state.in_(RECORD_STATES[state]),
             or_(like.ilike(Contact.name, needle), like.ilike(Contact.reference, needle))
             if model is Contact else like.ilike(Invoice.number, needle)]
    count = db.select(func.count()).select_from(model).where(*where, model.deleted_at.is_(None))
    rows = (db.select(model).where(*where).order_by(model.id)
            .offset(bindparam("offset")).limit(PAGE_SIZE))
    if model is Invoice:
        rows = rows.options(joinedload(Invoice.contact))  # each row names its contact
    return count, rows


def records(branch_id: int, kind: str, state: str, q: str = "", page: int = 1) -> RecordsPage:
    """Pending and/or failed contacts or invoices of the branch, with their reasons, one page at a time."""
    kind = kind if kind in RECORD_KINDS else "contacts"
    state = state if state in RECORD_STATES else "open"
    q = (q or "").strip()[:100]
    count, rows = _records_statements(kind, state, bool(q))
    params = {"branch_id": branch_id, "needle": like.contains(q)} if q else {"branch_id": branch_id}
    if q:
        total = db.session.scalar(count, params) or 0
    else:  # the whole state, as the tallies hold it
        record, categories = RECORD_TALLIES[kind]
        total = tallies.total(branch_id, record, categories, [s.value for s in RECORD_STATES[state]])
    pages = max(1, math.ceil(total / PAGE_SIZE))
    page = min(max(1, page), pages)
    offset = (page - 1) * PAGE_SIZE
    return RecordsPage(kind, state, q, page, pages, total,
                       db.session.scalars(rows, {**params, "offset": offset, "upto": offset + PAGE_SIZE}).all())


def voidable_invoices(branch_id: int, q: str = "", page: int = 1) -> RecordsPage:
    """Invoices that are in Sage and not void — soft-deleted ones included (rule 4)."""
    where = [Invoice.branch_id == branch_id, Invoice.sage_id.is_not(None), Invoice.status != InvoiceStatus.VOID]
    q = (q or "").strip()[:100]
    if q:
        where.append(like.ilike(Invoice.number, like.contains(q)))
    if q:
        total = db.session.scalar(
            db.select(func.count()).select_from(Invoice).where(*where).execution_options(include_deleted=True)
        ) or 0
    else:  # every invoice in Sage and not void, deleted or not, as the tallies hold them
        total = tallies.total(branch_id, "invoice", tallies.NOT_VOID, [s.value for s in SyncState],
                              deleted=None, in_sage=True)
    pages = max(1, math.ceil(total / PAGE_SIZE))
    page = min(max(1, page), pages)
    rows = db.session.scalars(
        unscoped(Invoice).where(*where).order_by(Invoice.issued_on.desc(), Invoice.id.desc())
        .offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE).options(joinedload(Invoice.contact))
    ).all()
    return RecordsPage("invoices", "voidable", q, page, pages, total, rows)


def mappings(connection: Connection | None) -> list[SageAccountMapping]:
    if connection is None or not connection.sage_business_id:
        return []
    return db.session.scalars(
        db.select(SageAccountMapping).where(
            SageAccountMapping.branch_id == connection.branch_id,
            SageAccountMapping.sage_business_id == connection.sage_business_id,
        ).order_by(SageAccountMapping.kind, SageAccountMapping.code)
    ).all()


def needs_business_choice(connection: Connection | None) -> bool:
    """Signed in to Sage (tokens stored) but the Sage login has several businesses and none is chosen yet."""
    return (connection is not None and connection.provider == Provider.SAGE
            and connection.state == ConnectionState.CONNECTED and connection.access_token_enc is not None
            and not connection.sage_business_id)


def branch_connection(branch: Branch) -> Connection | None:
    """The branch's connection (any provider), also kept as `branch.connection` so the templates
    that read it there do not load it a second time."""
    connection = db.session.scalar(db.select(Connection).where(Connection.branch_id == branch.id))
    set_committed_value(branch, "connection", connection)
    return connection
