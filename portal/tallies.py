"""What the pages count of a branch's records, read from the tallies the database keeps
(portal/models/tallies.py) instead of counted from the rows on every view.

Each function is one small statement over a few dozen tally rows per branch, whatever the number of
records; what it returns is exactly what counting the rows would (tests/test_record_tallies.py).
"""
from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func

from portal.extensions import db
from portal.models import ContactKind, InvoiceStatus, SyncState
from portal.models.tallies import FailureTally, RecordTally

CONTACT_KINDS = tuple(k.value for k in ContactKind)
ISSUED = (InvoiceStatus.ISSUED.value,)
NOT_VOID = tuple(s.value for s in InvoiceStatus if s != InvoiceStatus.VOID)
# The records whose waiting and failures a branch's pages show: contacts of every kind, issued invoices.
CONTACTS, ISSUED_INVOICES = ("contact", CONTACT_KINDS), ("invoice", ISSUED)
SHOWN = (CONTACTS, ISSUED_INVOICES)


def _scope(record: str, categories: Iterable[str]):
    return (RecordTally.record == record, RecordTally.category.in_(tuple(categories)))


def state_counts(branch_ids: list[int], record: str, categories: Iterable[str], *,
                 deleted: bool | None = False, in_sage: bool | None = None) -> dict[int, dict[str, int]]:
    """Per branch in `branch_ids`, how many of its `record`s ("contact" or "invoice") of these categories
    (contact kinds, invoice statuses) are in each sync state: every state is named, 0 when none.
    `deleted`: False counts rows not deleted, True deleted ones, None both; `in_sage` likewise."""
    where = [RecordTally.branch_id.in_(branch_ids), *_scope(record, categories), RecordTally.n > 0]
    if deleted is not None:
        where.append(RecordTally.deleted.is_(deleted))
    if in_sage is not None:
        where.append(RecordTally.in_sage.is_(in_sage))
    found = {branch_id: {state.value: 0 for state in SyncState} for branch_id in branch_ids}
    for branch_id, state, n in db.session.execute(
            db.select(RecordTally.branch_id, RecordTally.sync_state, func.sum(RecordTally.n))
            .where(*where).group_by(RecordTally.branch_id, RecordTally.sync_state)):
        found[branch_id][state] = int(n)
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
        db.select(FailureTally.branch_id, FailureTally.reason, func.sum(FailureTally.n))
        .where(FailureTally.branch_id.in_(branch_ids), in_scope, FailureTally.n > 0)
        .group_by(FailureTally.branch_id, FailureTally.reason)
    ).all()
    best: dict[int, tuple[str, int]] = {}
    for branch_id, reason, n in rows:
        held = best.get(branch_id)
        if held is None or (-n, reason == "", reason) < (-held[1], held[0] == "", held[0]):
            best[branch_id] = (reason, int(n))
    return {branch_id: (reason or None, n) for branch_id, (reason, n) in best.items()}
