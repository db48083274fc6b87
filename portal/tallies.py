"""What the pages count of a branch's records, read from the tallies the database keeps
(portal/models/tallies.py) instead of counted from the rows on every view.

A branch's tally rows (a few dozen, whatever the number of records) are read in one statement the
first time a request asks about the branch and answer the page's other questions from memory; any
write in the request forgets them. What the functions return is exactly what counting the rows
would (tests/test_record_tallies.py).
"""
from __future__ import annotations

from collections.abc import Iterable

from flask import g, has_request_context
from sqlalchemy import event
from sqlalchemy.orm import Session

from portal.extensions import db
from portal.models import ContactKind, InvoiceStatus, SyncState
from portal.models.tallies import FailureTally, RecordTally

CONTACT_KINDS = tuple(k.value for k in ContactKind)
ISSUED = (InvoiceStatus.ISSUED.value,)
NOT_VOID = tuple(s.value for s in InvoiceStatus if s != InvoiceStatus.VOID)
# The records whose waiting and failures a branch's pages show: contacts of every kind, issued invoices.
CONTACTS, ISSUED_INVOICES = ("contact", CONTACT_KINDS), ("invoice", ISSUED)
SHOWN = (CONTACTS, ISSUED_INVOICES)


def _rows(branch_ids: list[int]) -> dict[int, list]:
    """Every tally row with records of these branches, per branch: read once per request."""
    known = g.setdefault("record_tallies", {}) if has_request_context() else {}
    missing = [branch_id for branch_id in dict.fromkeys(branch_ids) if branch_id not in known]
    if missing:
        for branch_id in missing:
            known[branch_id] = []
        for row in db.session.execute(
                db.select(RecordTally.branch_id, RecordTally.record, RecordTally.category, RecordTally.sync_state,
                          RecordTally.deleted, RecordTally.in_sage, RecordTally.n)
                .where(RecordTally.branch_id.in_(missing), RecordTally.n > 0)):
            known[row.branch_id].append(row)
    return {branch_id: known[branch_id] for branch_id in branch_ids}


@event.listens_for(Session, "after_flush")
def _forget_after_flush(session, flush_context) -> None:
    _forget()


@event.listens_for(Session, "do_orm_execute")
def _forget_after_write(state) -> None:
    if not state.is_select:
        _forget()


def _forget() -> None:
    if has_request_context():
        g.pop("record_tallies", None)


def state_counts(branch_ids: list[int], record: str, categories: Iterable[str], *,
                 deleted: bool | None = False, in_sage: bool | None = None) -> dict[int, dict[str, int]]:
    """Per branch in `branch_ids`, how many of its `record`s ("contact" or "invoice") of these categories
    (contact kinds, invoice statuses) are in each sync state: every state is named, 0 when none.
    `deleted`: False counts rows not deleted, True deleted ones, None both; `in_sage` likewise."""
    categories = set(categories)
    found = {}
    for branch_id, rows in _rows(branch_ids).items():
        counts = found[branch_id] = {state.value: 0 for state in SyncState}
        for row in rows:
            if row.record == record and row.category in categories \
                    and deleted in (None, bool(row.deleted)) and in_sage in (None, bool(row.in_sage)):
                counts[row.sync_state] += row.n
    return found


def total(branch_id: int, record: str, categories: Iterable[str], states: Iterable[str], *,
          deleted: bool | None = False, in_sage: bool | None = None) -> int:
    """How many of the branch's records of these categories are in one of `states`."""
    counts = state_counts([branch_id], record, categories, deleted=deleted, in_sage=in_sage)[branch_id]
    return sum(counts[state] for state in states)


def top_failures(branch_ids: list[int], scopes=SHOWN) -> dict[int, tuple[str | None, int]]:
    """Per branch, the most common reason its failed records (not deleted) of `scopes` give and how
    many give it, the scopes' counts added up; ties go to the reason that sorts first, no reason last.
    Branches with no failures are absent; no reason recorded is None."""
    if not branch_ids:
        return {}
    in_scope = db.or_(*(db.and_(FailureTally.record == record, FailureTally.category.in_(tuple(categories)))
                        for record, categories in scopes))
    rows = db.session.execute(
        db.select(FailureTally.branch_id, FailureTally.reason, db.func.sum(FailureTally.n))
        .where(FailureTally.branch_id.in_(branch_ids), in_scope, FailureTally.n > 0)
        .group_by(FailureTally.branch_id, FailureTally.reason)
    ).all()
    best: dict[int, tuple[str, int]] = {}
    for branch_id, reason, n in rows:
        held = best.get(branch_id)
        if held is None or (-n, reason == "", reason) < (-held[1], held[0] == "", held[0]):
            best[branch_id] = (reason, int(n))
    return {branch_id: (reason or None, n) for branch_id, (reason, n) in best.items()}
