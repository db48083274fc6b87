"""Running a failed job again from the Operations page, through the integrations' own guarded enqueue.

* A Sage sync is queued again with `sage.enqueue.start_sync`: refused as the branch page refuses
  (a job of that kind already queued or running, a branch not on Sage or without its business),
  and also while the branch is blocked (it must sign in to Sage again, Sage holds its business
  after a 429, or the business's daily budget is used), since a run then fails or waits at once.
  The enqueue audits it as `<kind>_requested`, naming the lead and the job it retries.
* A Sage void is never run again blindly: first Sage is asked what it shows now (as the void
  page's "check" does), and the void is queued again only while Sage shows the invoice not void.
* A Sage One AUS job takes the customer's private key, which support never holds (rule 8): the
  integration's own enqueue refuses it.

Every refusal is audited as `operations.retry_refused` with the reason.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from portal import audit, timefmt
from portal.extensions import db
from portal.integrations.sage import enqueue as sage_jobs
from portal.integrations.sage import sync
from portal.integrations.sage.client import SageError, SageNotFound
from portal.jobqueue import JobAlreadyRunning, JobRefused, active_job
from portal.models import ConnectionState, InvoiceStatus, Job, JobStatus, Provider
from portal.voids import find_invoice_unscoped

SAGE_SYNCS = {sync.KIND_CONTACTS: "contacts", sync.KIND_INVOICES: "invoices"}

# What the failed-jobs list offers for a job (the confirmation page and the POST check again).
OFFER_RETRY = "retry"  # a Sage sync: a retry, after a confirmation
OFFER_CHECK = "check"  # a Sage void: ask Sage first
OFFER_CUSTOMER = "customer"  # Sage One AUS: only the customer can run it (rule 8)
OFFER_NONE = "none"


class RetryRefused(Exception):
    """The job can't be run again now; the message says why and what to do instead."""

    def __init__(self, message: str, status: int = 409):
        super().__init__(message)
        self.status = status


@dataclass
class SageAnswer:
    """What Sage shows now for a void's invoice: `state` is void, not_void, missing, never_sent or unknown."""

    state: str
    words: str


def offer_for(job: Job) -> str:
    """What a failed job's row offers (no look at Sage or RQ)."""
    if job.kind.startswith("sage_one_aus."):
        return OFFER_CUSTOMER
    if job.kind in SAGE_SYNCS:
        return OFFER_RETRY
    if job.kind == sync.KIND_VOID:
        return OFFER_CHECK
    return OFFER_NONE


def blocked_reason(job: Job) -> str | None:
    """Why the job's branch can't run a Sage job now, or None (cheap: Redis and the row only)."""
    from portal.integrations.sage.sync import rate_limit_for

    connection = job.branch.connection
    if connection is None or connection.provider != Provider.SAGE or not connection.is_active:
        return "The branch isn't connected to Sage any more."
    if connection.state == ConnectionState.NEEDS_REAUTH:
        return ("The branch must sign in to Sage again (the customer reconnects from the branch page); "
                "a run now would stop at once.")
    if not connection.sage_business_id:
        return "The branch has no Sage business chosen yet."
    limit = rate_limit_for(connection)
    held = limit.held_until()
    if held is not None or connection.is_rate_limited():
        until = connection.rate_limited_until if held is None else None
        return (f"Sage is holding this business off after a 429 until "
                f"{timefmt.clock(until) if until else _clock_of(held)}; sending before then only extends it.")
    if limit.requests_left_today() == 0:
        return (f"This Sage business has used today's request budget; it renews "
                f"{timefmt.ago(limit.day_renews_at())}, and the schedule resumes its syncs then.")
    return None


def _clock_of(posix: float) -> str:
    return timefmt.clock(datetime.fromtimestamp(posix, UTC))


def refusal_now(job: Job) -> str | None:
    """Why a retry would be refused now, before Sage is asked (for the confirmation page and the POST)."""
    if job.status != JobStatus.FAILED:
        return f"Only a failed job can be run again from here; this one is {job.status.value}."
    offer = offer_for(job)
    if offer == OFFER_CUSTOMER:
        return CUSTOMER_ONLY
    if offer == OFFER_NONE:
        return "This kind of job isn't run again from here."
    running = active_job(job.branch_id, job.kind)
    if running is not None:
        how = "queued" if running.status == JobStatus.QUEUED else "running"
        retried = (running.params or {}).get("retry_of") == job.id
        return (f"{'It was already retried: ' if retried else ''}a job of this kind is {how} for this branch now "
                f"(“{running.description}”), so nothing was queued again. Follow it under Workers.")
    later = db.session.scalar(db.select(Job).where(
        Job.branch_id == job.branch_id, Job.kind == job.kind, Job.created_at > job.created_at)
        .order_by(Job.created_at.desc()).limit(1))
    if later is not None:
        return (f"A later run of this job on the branch has already {later.status.value} "
                f"({timefmt.ago(later.ended_at or later.created_at)}); only the newest run is retried from here.")
    return blocked_reason(job)


CUSTOMER_ONLY = ("Sage One AUS jobs take the customer's own key, which exists only while they are signed in, so "
                 "support can't run them (rule 8). Ask the customer to run it again from their branch page.")


def sage_shows(job: Job) -> SageAnswer:
    """Ask Sage now about the invoice of a failed void (one read that never waits on the limiter)."""
    invoice = _invoice_of(job)
    if invoice is None:
        return SageAnswer("unknown", "The invoice of this void is no longer on the branch.")
    if invoice.status == InvoiceStatus.VOID:
        return SageAnswer("void", "The portal already records this invoice as void: there is nothing more to do.")
    if not invoice.sage_id:
        return SageAnswer("never_sent", "Nothing: it was never sent to Sage, so there is nothing to void there.")
    try:
        found = sync.page_client_for(sync.usable_connection(job.branch_id)).get_invoice(invoice.sage_id)
    except sync.SyncStopped as stopped:
        return SageAnswer("unknown", f"Can't ask Sage: {stopped}")
    except SageNotFound:
        return SageAnswer("missing", "Sage has no invoice with this id (deleted there, or in another Sage "
                                     "business): it needs manual clean-up, not another void.")
    except SageError as error:
        return SageAnswer("unknown", f"Can't ask Sage right now: {error}")
    status = found.get("status") if isinstance(found, dict) else None
    if isinstance(status, dict) and status.get("id") == "VOID":
        reason = found.get("void_reason")
        return SageAnswer("void", "Void in Sage" + (f" (reason: {reason})" if reason else "")
                          + ": the void reached Sage, so there is nothing to run again.")
    label = status.get("displayed_as") or status.get("id") if isinstance(status, dict) else None
    return SageAnswer("not_void", f"{label or 'Not void'}: it is not void in Sage yet.")


def _invoice_of(job: Job):
    invoice_id = (job.params or {}).get("invoice_id")
    return find_invoice_unscoped(job.branch_id, invoice_id) if isinstance(invoice_id, int) else None


def retry(job: Job, lead) -> Job:
    """Queue the failed job again as `lead`; raises RetryRefused (audited) saying why not."""
    try:
        return _retry(job, lead)
    except RetryRefused as refused:
        db.session.rollback()
        audit.record("operations.retry_refused", f"Retry of “{job.description}” refused: {refused}",
                     branch=job.branch, details={"job_id": job.id, "kind": job.kind})
        db.session.commit()
        raise


def _retry(job: Job, lead) -> Job:
    if job.kind.startswith("sage_one_aus."):
        _through_sage_one_aus(job, lead)  # its own enqueue refuses: support holds no customer key
    refused = refusal_now(job)
    if refused is not None:
        raise RetryRefused(refused)
    note = (f" by {lead.email} (support lead) from the Operations page, retrying the job that failed "
            f"{timefmt.for_business(job.ended_at, job.branch.business)}")
    params = {"retry_of": job.id}
    try:
        if job.kind in SAGE_SYNCS:
            return sage_jobs.start_sync(job.branch, SAGE_SYNCS[job.kind], requested_by=lead, params=params, note=note)
        answer = sage_shows(job)
        if answer.state != "not_void":
            raise RetryRefused(f"Sage was asked first and the void was not queued again. Sage shows: {answer.words}")
        invoice = _invoice_of(job)
        reason = (job.params or {}).get("reason") or "Voided again from the Operations page"
        return sage_jobs.start_void(job.branch, invoice, reason, requested_by=lead, params=params, note=note)
    except JobAlreadyRunning:
        raise RetryRefused("A job of this kind is already queued or running for this branch, so nothing was "
                           "queued again; follow it under Workers.") from None
    except JobRefused as refusal:
        raise RetryRefused(f"{refusal} Nothing was queued.") from None


def _through_sage_one_aus(job: Job, lead) -> None:
    """Ask the Sage One AUS enqueue itself, without a key (support never holds one): it refuses."""
    from portal.integrations.sage_one_aus import sync as sage_one_sync

    try:
        if job.kind == sage_one_sync.VOID_KIND:
            invoice = _invoice_of(job)
            if invoice is not None:
                sage_one_sync.enqueue_void(job.branch, lead, None, invoice, (job.params or {}).get("reason") or "")
        else:
            sage_one_sync.enqueue_sync(job.branch, lead, None)
    except (sage_one_sync.SyncRefused, JobRefused):
        raise RetryRefused(CUSTOMER_ONLY, 403) from None
    # Reaching here would mean the enqueue took a job without the customer's key: a broken guard.
    raise RetryRefused(CUSTOMER_ONLY, 403)
