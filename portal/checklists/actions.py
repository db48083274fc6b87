"""Remediation actions a checklist offers, through the same enqueue paths, guards and audit as the
integrations' own pages.

* Sage syncs and voids run as the customer, exactly as on the Sage page: only in a puppet session of
  that business (support's rights there), enqueued with the same kind, job function and params, and
  audited as `<kind>_requested` with both people.
* Sage One AUS syncs and voids need the customer's private key. In a puppet session they hit the one
  read-only guard (`puppet.refuse_sage_one_aus_writes`, which audits the refusal and raises
  PuppetReadOnly); outside one, the integration's own enqueue refuses them for want of the key.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from portal import puppet
from portal.extensions import db
from portal.jobqueue import JobAlreadyRunning, JobRefused
from portal.models import Invoice, Job, Provider, PuppetSession, User
from portal.voids import find_invoice_unscoped


class ActionRefused(Exception):
    """The action can't run for this person now; the message says why and what to do instead."""


@dataclass
class Actor:
    """Who runs an action: the user the request acts as, the real person, their puppet session and key."""

    acting_as: User
    real: User
    puppet_session: PuppetSession | None = None
    private_key: bytes | None = None


@dataclass
class ActionResult:
    summary: str
    evidence: dict = field(default_factory=dict)
    job: Job | None = None


REGISTRY: dict[str, callable] = {}
LABELS: dict[str, str] = {}


def action(name: str, label: str):
    """Register an action under `name` with the button label pages show."""

    def register(func):
        REGISTRY[name] = func
        LABELS[name] = label
        return func

    return register


def _connection(run):
    connection = run.branch.connection if run.branch is not None else None
    if connection is None:
        raise ActionRefused("This branch isn't connected, so there is nothing to run.")
    return connection


def _as_customer_of(run, actor: Actor) -> None:
    """Sage jobs run as the customer (the Sage page is customers-only): support must be puppeting them."""
    session = actor.puppet_session
    if session is None or session.business_id != run.business_id or not actor.acting_as.is_customer:
        raise ActionRefused(
            "Sage syncs and voids run as the customer. Open a puppet session for this customer (below), "
            "then run the action from this checklist again; it is recorded with both of you."
        )


def _enqueue_sage(run, actor: Actor, start) -> ActionResult:
    """Start a Sage job through the Sage service, as the customer puppeted from this checklist."""
    _as_customer_of(run, actor)
    try:
        job = start(requested_by=actor.acting_as, puppeteer=actor.real, puppet_session=actor.puppet_session,
                    params={"checklist_run_id": run.id}, note=f" from checklist #{run.id}")
    except JobAlreadyRunning as running:
        existing = running.existing
        return ActionResult("Already running; follow it below.",
                            {"job_id": existing.id if existing else None}, existing)
    except JobRefused as refused:
        raise ActionRefused(str(refused)) from None
    return ActionResult(f"{job.description}: started.", {"job_id": job.id}, job)


def _sage_one_aus(run, actor: Actor, start) -> ActionResult:
    from portal.integrations.sage_one_aus import sync as sage_one_sync

    if actor.puppet_session is not None:
        # The same guard the Sage One AUS blueprint runs before every write: audits and raises PuppetReadOnly.
        puppet.refuse_sage_one_aus_writes()
    try:
        job = start(sage_one_sync)
    except sage_one_sync.SyncRefused as refused:
        raise ActionRefused(str(refused)) from None
    except JobAlreadyRunning as running:
        existing = running.existing
        return ActionResult("Already running; follow it below.", {"job_id": existing.id if existing else None},
                            existing)
    except JobRefused as refused:
        raise ActionRefused(str(refused)) from None
    return ActionResult(f"{job.description}: started.", {"job_id": job.id}, job)


def _sage_sync(run, actor: Actor, what: str) -> ActionResult:
    from portal.integrations.sage import enqueue as sage_jobs

    return _enqueue_sage(run, actor, lambda **who: sage_jobs.start_sync(run.branch, what, **who))


@action("rerun_sage_contact_sync", "Run the Sage contact sync")
def rerun_sage_contact_sync(run, actor: Actor) -> ActionResult:
    """Start the branch's Sage contact sync again (it resumes with what is still flagged)."""
    if _connection(run).provider != Provider.SAGE:
        raise ActionRefused("This branch isn't on Sage.")
    return _sage_sync(run, actor, "contacts")


@action("rerun_sync", "Run the sync again")
def rerun_sync(run, actor: Actor) -> ActionResult:
    """Start the branch's sync again with its provider's own enqueue path."""
    connection = _connection(run)
    if connection.provider == Provider.SAGE:
        last = db.session.scalar(db.select(Job).where(Job.branch_id == run.branch_id, Job.kind.like("sage.sync%"))
                                 .order_by(Job.created_at.desc()).limit(1))
        return _sage_sync(run, actor, "invoices" if last is not None and "invoice" in last.kind else "contacts")
    return _sage_one_aus(run, actor, lambda s: s.enqueue_sync(run.branch, actor.acting_as, actor.private_key,
                                                              puppeteer=actor.real if actor.puppet_session else None))


def _invoice(run) -> Invoice:
    invoice_id = (run.subject or {}).get("invoice_id")
    invoice = find_invoice_unscoped(run.branch_id, invoice_id) if invoice_id is not None else None
    if invoice is None:
        raise ActionRefused("This checklist has no invoice to void.")
    return invoice


@action("rerun_void", "Run the void again")
def rerun_void(run, actor: Actor) -> ActionResult:
    """Void the run's invoice again with its provider's own enqueue path (found unscoped)."""
    connection = _connection(run)
    invoice = _invoice(run)
    reason = invoice.void_reason or f"Voided again from checklist #{run.id}"
    if connection.provider == Provider.SAGE:
        from portal.integrations.sage import enqueue as sage_jobs

        return _enqueue_sage(run, actor, lambda **who: sage_jobs.start_void(run.branch, invoice, reason, **who))
    return _sage_one_aus(run, actor, lambda s: s.enqueue_void(
        run.branch, actor.acting_as, actor.private_key, invoice, reason,
        puppeteer=actor.real if actor.puppet_session else None))


@action("look_for_drift", "Ask Sage what changed there")
def look_for_drift(run, actor: Actor) -> ActionResult:
    """Ask Sage now what was deleted or voided there outside the portal, as the daily look does.

    Read-only towards Sage (its two lists, a request per page of 200, through the business's limiter and
    never waiting on it), so support may run it without a puppet session; what it records is what Sage
    said, audited by the run.
    """
    from portal.integrations.sage import drift, sync
    from portal.integrations.sage.client import SageError

    if _connection(run).provider != Provider.SAGE:
        raise ActionRefused("Only Sage can list what changed there; Sage One AUS keeps no such list.")
    try:
        found = drift.look(sync.usable_connection(run.branch_id), on_a_page=True)
    except sync.SyncStopped as stopped:
        raise ActionRefused(str(stopped)) from None
    except SageError as error:
        raise ActionRefused(f"Sage couldn't be asked right now: {error}") from None
    return ActionResult(f"Sage was asked what changed there: {drift.describe(found)}.", found)
