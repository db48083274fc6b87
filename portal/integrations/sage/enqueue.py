"""Starting Sage jobs: the one place a Sage sync or void is queued, for the pages and the checklists.

It refuses, before anything is queued, a branch that is not connected to Sage (a branch on Sage
One AUS is read-only in a puppet session and has jobs of its own) and a branch still waiting for
its Sage business; records who asked, and in a puppet session who puppeted, in the job row and
the audit log. The Sage One AUS counterpart is `sage_one_aus.sync.enqueue_sync`/`enqueue_void`.
"""
from __future__ import annotations

from portal import audit
from portal.extensions import db
from portal.integrations.sage import sync
from portal.jobqueue import JobRefused, enqueue
from portal.models import Job, Provider

SYNC_JOBS = {
    "contacts": (sync.KIND_CONTACTS, "jobs.sage.sync_contacts", "Sync contacts to Sage"),
    "invoices": (sync.KIND_INVOICES, "jobs.sage.sync_invoices", "Sync invoices to Sage"),
}


class NotOnSage(JobRefused):
    """The branch is not connected to Sage, so no Sage job may start for it."""


def refuse_unless_on_sage(branch) -> None:
    """Raise NotOnSage unless the branch's connection is a Sage one with a business chosen."""
    connection = branch.connection
    if connection is not None and connection.provider == Provider.SAGE_ONE_AUS:
        raise NotOnSage("This branch is connected to Sage One AUS, not Sage, so nothing was started.")
    if connection is None or connection.provider != Provider.SAGE or not connection.is_active:
        raise NotOnSage("This branch isn't connected to Sage, so nothing was started.")
    if not connection.sage_business_id:
        raise NotOnSage("Choose which Sage business this branch uses before syncing.")


def start_sync(branch, what: str, *, requested_by, puppeteer=None, puppet_session=None,
               params: dict | None = None, note: str = "", after: Job | None = None) -> Job:
    """Queue the branch's contact or invoice sync; raises NotOnSage, JobAlreadyRunning or JobRefused.

    `requested_by` None: the schedule asked. `after`: start once that job has ended.
    """
    kind, func, description = SYNC_JOBS[what]
    if requested_by is None:
        description = f"Scheduled: {description[0].lower()}{description[1:]}"
    return _start(branch, kind, func, description, args=(branch.id,), params={"what": what, **(params or {})},
                  requested_by=requested_by, puppeteer=puppeteer, puppet_session=puppet_session, note=note,
                  after=after)


def start_void(branch, invoice, reason: str, *, requested_by, puppeteer=None, puppet_session=None,
               params: dict | None = None, note: str = "") -> Job:
    """Queue the single void of one invoice (found unscoped by the job); raises like start_sync."""
    return _start(branch, sync.KIND_VOID, "jobs.sage.void_invoice", f"Void invoice {invoice.number} in Sage",
                  args=(branch.id, invoice.id, reason),
                  params={"invoice_id": invoice.id, "reason": reason, **(params or {})},
                  requested_by=requested_by, puppeteer=puppeteer, puppet_session=puppet_session, note=note)


def _start(branch, kind: str, func: str, description: str, *, args: tuple, params: dict, requested_by,
           puppeteer, puppet_session, note: str, after: Job | None = None) -> Job:
    refuse_unless_on_sage(branch)
    if puppet_session is not None:
        params = {**params, "puppet_session_id": puppet_session.id}
    job = enqueue(kind, func, branch=branch, requested_by=requested_by, puppeteer=puppeteer,
                  description=description, args=args, params=params, after=after)
    if puppeteer is not None:
        who = f" by support ({puppeteer.email}) for {requested_by.email}"
    else:
        who = "" if requested_by is not None else " by the schedule"
    audit.record(f"{kind}_requested", f"{description} requested{who}{note}", branch=branch,
                 details={"job_id": job.id, **{k: v for k, v in params.items() if k != "reason"},
                          "requested_by_id": requested_by.id if requested_by else None,
                          "puppeteer_id": puppeteer.id if puppeteer else None})
    db.session.commit()
    return job
