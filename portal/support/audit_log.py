"""The audit log for support leads: search it, page through it, export it as CSV."""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import aliased

from portal import timefmt
from portal.extensions import db
from portal.models import AuditEvent, Business, User

PER_PAGE = 50
CSV_COLUMNS = (
    "occurred_at", "kind", "summary", "actor_email", "subject_email", "business", "business_id",
    "branch_id", "puppet_session_id", "address", "details",
)


class BadAuditQuery(ValueError):
    """A search field could not be understood; the message says which and why."""


@dataclass(frozen=True)
class AuditQuery:
    email: str = ""
    kind: str = ""
    date_from: date | None = None
    date_to: date | None = None

    @property
    def is_empty(self) -> bool:
        return not (self.email or self.kind or self.date_from or self.date_to)

    def as_args(self) -> dict:
        """The query as URL parameters (for pagination and the CSV link)."""
        args = {"email": self.email, "kind": self.kind,
                "from": self.date_from.isoformat() if self.date_from else "",
                "to": self.date_to.isoformat() if self.date_to else ""}
        return {k: v for k, v in args.items() if v}


def _date(value: str | None, label: str) -> date | None:
    value = (value or "").strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadAuditQuery(f"{label} must be a date like 2026-03-31.") from None


def parse(args) -> AuditQuery:
    """An AuditQuery from request args; raises BadAuditQuery for an unreadable date."""
    query = AuditQuery(
        email=(args.get("email") or "").strip()[:254],
        kind=(args.get("kind") or "").strip()[:60],
        date_from=_date(args.get("from"), "From"),
        date_to=_date(args.get("to"), "To"),
    )
    if query.date_from and query.date_to and query.date_from > query.date_to:
        raise BadAuditQuery("The From date is after the To date.")
    return query


def _statement(query: AuditQuery):
    actor, subject = aliased(User), aliased(User)
    stmt = (
        select(AuditEvent, actor.email, subject.email, Business.name)
        .outerjoin(actor, actor.id == AuditEvent.actor_id)
        .outerjoin(subject, subject.id == AuditEvent.subject_user_id)
        .outerjoin(Business, Business.id == AuditEvent.business_id)
    )
    if query.email:
        # Resolve the email to user ids first so the event filter can use the actor/subject indexes.
        ids = select(User.id).where(func.lower(User.email).contains(query.email.lower(), autoescape=True))
        stmt = stmt.where(or_(AuditEvent.actor_id.in_(ids), AuditEvent.subject_user_id.in_(ids)))
    if query.kind:
        # "puppet" or "puppet." finds every puppet.* event; a full kind finds exactly that kind.
        prefix = query.kind if query.kind.endswith(".") else query.kind + "."
        stmt = stmt.where(or_(AuditEvent.kind == query.kind, AuditEvent.kind.startswith(prefix, autoescape=True)))
    if query.date_from:
        stmt = stmt.where(AuditEvent.occurred_at >= datetime.combine(query.date_from, time.min, UTC))
    if query.date_to:
        end = datetime.combine(query.date_to + timedelta(days=1), time.min, UTC)
        stmt = stmt.where(AuditEvent.occurred_at < end)
    return stmt.order_by(AuditEvent.occurred_at.desc(), AuditEvent.id.desc())


@dataclass
class AuditRow:
    event: AuditEvent
    actor_email: str | None
    subject_email: str | None
    business_name: str | None


@dataclass
class AuditPage:
    query: AuditQuery
    rows: list[AuditRow]
    page: int
    has_next: bool


def search(query: AuditQuery, page: int = 1) -> AuditPage:
    """One page of matching audit events, newest first."""
    page = max(1, page)
    found = db.session.execute(
        _statement(query).limit(PER_PAGE + 1).offset((page - 1) * PER_PAGE)
    ).all()
    rows = [AuditRow(*r) for r in found[:PER_PAGE]]
    return AuditPage(query, rows, page, len(found) > PER_PAGE)


def kinds() -> list[str]:
    """Every event kind recorded so far (for the search form's suggestions)."""
    return list(db.session.scalars(select(AuditEvent.kind).distinct().order_by(AuditEvent.kind)))


def csv_lines(query: AuditQuery) -> Iterator[str]:
    """The matching events as CSV text, one line at a time, read from the database in batches."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(CSV_COLUMNS)
    yield flush()
    result = db.session.execute(_statement(query).execution_options(yield_per=500))
    for event, actor_email, subject_email, business_name in result:
        writer.writerow((
            timefmt.iso(event.occurred_at), event.kind, _cell(event.summary), actor_email or "",
            subject_email or "", _cell(business_name or ""), event.business_id or "", event.branch_id or "",
            event.puppet_session_id or "", event.address or "", _cell(json.dumps(event.details or {}, sort_keys=True)),
        ))
        yield flush()


def _cell(text: str) -> str:
    # A cell starting with = + - @ would run as a formula in a spreadsheet; quote it as text.
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text
