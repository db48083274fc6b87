"""Set-up for the Operations page tests: failed job rows as the portal leaves them."""
from __future__ import annotations

import uuid
from datetime import timedelta

from portal.extensions import db
from portal.models import Job, JobStatus, utcnow

DESCRIPTIONS = {
    "sage.sync_contacts": "Sync contacts to Sage",
    "sage.sync_invoices": "Sync invoices to Sage",
    "sage.void_invoice": "Void invoice {number} in Sage",
    "sage_one_aus.sync": "Sync with Sage One AUS",
    "sage_one_aus.void": "Void invoice {number} in Sage One AUS",
}


def failed_job(branch, kind: str, error: str, *, requested_by=None, minutes_ago: int = 10, commit: bool = True,
               **params) -> Job:
    """A job row that failed `minutes_ago` minutes ago with `error` (as a worker leaves it)."""
    ended = utcnow() - timedelta(minutes=minutes_ago)
    row = Job(id=uuid.uuid4().hex, kind=kind, branch_id=branch.id,
              requested_by_id=requested_by.id if requested_by else None, status=JobStatus.FAILED,
              description=DESCRIPTIONS[kind].format(number=params.get("invoice_number", "INV-1")),
              params=params, error=error, created_at=ended - timedelta(minutes=1),
              started_at=ended - timedelta(seconds=50), ended_at=ended)
    db.session.add(row)
    if commit:
        db.session.commit()
    return row
