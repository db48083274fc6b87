"""Sage One AUS jobs: sync a branch, void an invoice.

Each receives the credentials owner's private key as a reference to its seal (`keys.hold_for_job`),
never the seal itself: RQ keeps a job's arguments for a day after it ends (a week when it fails),
far longer than the seal may open. The job takes the seal first (which deletes it from Redis),
refuses one that has expired before touching anything, and deletes it in any case when it ends,
so after a job, finished, failed or killed, nothing in Redis opens the key.
"""
from __future__ import annotations

from jobs.runtime import JobFailure, portal_job
from portal import keys
from portal.extensions import db
from portal.integrations.sage_one_aus import sync
from portal.models import Job


def _take(key_reference: str) -> bytes:
    try:
        return keys.take_for_job(key_reference)
    except keys.SealExpired as exc:
        raise JobFailure(f"{exc} Nothing was sent to Sage One AUS.") from None


def _requested_by(progress) -> int | None:
    row = db.session.get(Job, progress.job_id)
    return row.requested_by_id if row is not None else None


@portal_job
def _sync_branch(progress, branch_id: int, key_reference: str):
    private_key = _take(key_reference)
    try:
        return sync.run_sync(branch_id, private_key, progress, actor_id=_requested_by(progress))
    except sync.SyncStopped as exc:
        raise JobFailure(str(exc)) from None


@portal_job
def _void_invoice(progress, branch_id: int, invoice_id: int, key_reference: str, reason: str):
    private_key = _take(key_reference)
    try:
        return sync.run_void(branch_id, invoice_id, private_key, reason, progress,
                             actor_id=_requested_by(progress))
    except sync.SyncStopped as exc:
        raise JobFailure(str(exc)) from None


def sync_branch(job_id: str, branch_id: int, key_reference: str):
    """Send the branch's pending customers and invoices to Sage One AUS; JobFailure says why it stopped."""
    try:
        return _sync_branch(job_id, branch_id, key_reference)
    finally:
        keys.drop_for_job(key_reference)


def void_invoice(job_id: str, branch_id: int, invoice_id: int, key_reference: str, reason: str):
    """Reverse one invoice in Sage One AUS with a credit note; JobFailure says why it could not."""
    try:
        return _void_invoice(job_id, branch_id, invoice_id, key_reference, reason)
    finally:
        keys.drop_for_job(key_reference)
