"""RQ entry points for Sage: contact sync, invoice sync and the single void (they take ids only)."""
from __future__ import annotations

from jobs.runtime import JobFailure, JobPaused, portal_job
from portal import audit
from portal.extensions import db
from portal.integrations.sage import sync
from portal.models import Branch, Job


@portal_job
def sync_contacts(progress, branch_id: int):
    """Send the branch's pending contacts to Sage (mass re-sync when none has a Sage id)."""
    try:
        return sync.sync_contacts(branch_id, progress)
    except sync.RunPaused as paused:
        raise JobPaused(str(paused), paused.resume_at) from None
    except sync.SyncStopped as stopped:
        raise JobFailure(str(stopped)) from None


@portal_job
def sync_invoices(progress, branch_id: int):
    """Send the branch's issued invoices to Sage, their contacts first when needed."""
    try:
        return sync.sync_invoices(branch_id, progress)
    except sync.RunPaused as paused:
        raise JobPaused(str(paused), paused.resume_at) from None
    except sync.SyncStopped as stopped:
        raise JobFailure(str(stopped)) from None


@portal_job
def void_invoice(progress, branch_id: int, invoice_id: int, reason: str):
    """Void one invoice in Sage (found unscoped) and audit the outcome with who asked and who puppeted."""
    progress.update(0, 1)
    try:
        result = sync.void_invoice(branch_id, invoice_id, reason)
    except sync.SyncStopped as stopped:
        _audit_void(progress.job_id, branch_id, {"outcome": "stopped", "invoice_id": invoice_id,
                                                 "summary": str(stopped)})
        raise JobFailure(str(stopped)) from None
    progress.update(1, 1)
    _audit_void(progress.job_id, branch_id, result)
    return result


def _audit_void(job_id: str, branch_id: int, result: dict) -> None:
    job = db.session.get(Job, job_id)
    puppeteer_id = job.puppeteer_id if job else None
    requested_by_id = job.requested_by_id if job else None
    audit.record(
        "sage.void_result",
        result["summary"],
        branch=db.session.get(Branch, branch_id),
        # In a puppet session the support person acted on behalf of the customer: record both.
        actor_id=puppeteer_id or requested_by_id,
        subject_user_id=requested_by_id if puppeteer_id else None,
        puppet_session_id=(job.params or {}).get("puppet_session_id") if job else None,
        details={**result, "job_id": job_id, "requested_by_id": requested_by_id, "puppeteer_id": puppeteer_id},
    )
    db.session.commit()
