"""What both providers' single void share: the unscoped lookup of rule 4 and the outcomes.

Rule 4: the single void finds and processes soft-deleted invoices that every other query ignores,
so this is the one place that looks an invoice up for a void; every caller (the Sage and Sage One
AUS voids, their pages, the void checklist) uses it.
"""
from __future__ import annotations

import enum

from portal.extensions import db
from portal.models import Invoice, unscoped


class VoidOutcome(str, enum.Enum):
    """How a void ended, as recorded in the job result and the audit log."""

    VOIDED = "voided"  # Sage v3.1 voided it now
    REVERSED = "reversed"  # Sage One AUS reversed it with a credit note now
    ALREADY_VOID = "already_void"  # Sage already showed it void: nothing sent again
    ALREADY_REVERSED = "already_reversed"
    NEVER_SYNCED = "never_synced"  # it was never sent, so there is nothing to void there
    MISSING_IN_SAGE = "missing_in_sage"  # Sage has no record with its id: manual clean-up
    SAGE_REFUSED = "sage_refused"
    STOPPED = "stopped"  # Sage or the sign-in stopped it before an answer

    @property
    def done_in_sage(self) -> bool:
        """Sage shows the invoice void (or reversed) after this outcome."""
        return self in (VoidOutcome.VOIDED, VoidOutcome.REVERSED, VoidOutcome.ALREADY_VOID,
                        VoidOutcome.ALREADY_REVERSED)


def find_invoice_unscoped(branch_id: int, invoice_id: int) -> Invoice | None:
    """The branch's invoice by id, soft-deleted ones included."""
    return db.session.scalar(unscoped(Invoice).where(Invoice.id == invoice_id, Invoice.branch_id == branch_id))


def find_invoices_unscoped(wanted: list[tuple[int, int]] | set[tuple[int, int]]) -> dict[tuple[int, int], Invoice]:
    """Invoices by (branch id, invoice id), soft-deleted ones included, in one statement; a pair whose
    invoice is not that branch's is left out."""
    wanted = set(wanted)
    if not wanted:
        return {}
    rows = db.session.scalars(unscoped(Invoice).where(Invoice.id.in_({invoice_id for _, invoice_id in wanted})))
    return {key: invoice for invoice in rows if (key := (invoice.branch_id, invoice.id)) in wanted}
