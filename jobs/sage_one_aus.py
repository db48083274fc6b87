"""Sage One AUS jobs: sync a branch, void an invoice. Each receives the credentials owner's private
key sealed (`keys.seal_for_job`) and refuses a seal that has expired before touching anything."""
from __future__ import annotations

from jobs.runtime import JobFailure, portal_job
from portal import keys
from portal.extensions import db
from portal.integrations.sage_one_aus import sync
from portal.models import Job


def _unseal(sealed_key: str) -> bytes:
    try:
        return keys.unseal_for_job(sealed_key)
    except keys.SealExpired as exc:
        raise JobFailure(f"{exc} Nothing was sent to Sage One AUS.") from None


def _requested_by(progress) -> int | None:
    row = db.session.get(Job, progress.job_id)
    return row.requested_by_id if row is not None else None


@portal_job
def sync_branch(progress, branch_id: int, sealed_key: str):
    """Send the branch's pending customers and invoices to Sage One AUS; JobFailure says why it stopped."""
    private_key = _unseal(sealed_key)
    try:
        return sync.run_sync(branch_id, private_key, progress, actor_id=_requested_by(progress))
    except sync.SyncStopped as exc:
        raise JobFailure(str(exc)) from None


@portal_job
def void_invoice(progress, branch_id: int, invoice_id: int, sealed_key: str, reason: str):
    """Reverse one invoice in Sage One AUS with a credit note; JobFailure says why it could not."""
    private_key = _unseal(sealed_key)
    try:
        return sync.run_void(branch_id, invoice_id, private_key, reason, progress,
                             actor_id=_requested_by(progress))
    except sync.SyncStopped as exc:
        raise JobFailure(str(exc)) from None
