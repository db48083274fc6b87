"""Read-only checks: each looks at the live state of one customer and says what it saw.

Every check takes a CheckContext and returns a CheckResult: a result (pass / warn / fail / unknown),
one sentence, and the evidence (the values it read). Checks never write — not to the database
(no commits, no `jobqueue.active_job`, which may fail a dead job's row), not to Sage (GET only),
and never need the customer's private key, so they are safe in a puppet session.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, select

from portal import keys
from portal.extensions import db
from portal.jobqueue import live_progress
from portal.models import (
    ACTIVE_STATUSES,
    AuditEvent,
    Branch,
    Business,
    Connection,
    ConnectionState,
    Contact,
    Invoice,
    Job,
    JobStatus,
    Provider,
    PuppetSession,
    SyncState,
    utcnow,
)

PASS, WARN, FAIL, UNKNOWN = "pass", "warn", "fail", "unknown"
# A queued or running job this old with nothing done is stuck (a mass re-sync reports within seconds).
STUCK_AFTER = timedelta(minutes=30)
# Void outcomes written by both integrations, read from the job result or the void audit event.
VOID_DONE = {"voided", "already_void", "reversed", "already_reversed"}
VOID_NOTHING_TO_DO = {"never_synced"}
VOID_MISSING = {"missing_in_sage"}


@dataclass
class CheckContext:
    """What a check may look at: the customer, the branch and its connection, the invoice, the viewer."""

    business: Business
    branch: Branch | None = None
    connection: Connection | None = None
    invoice: Invoice | None = None
    puppet_session: PuppetSession | None = None
    now: datetime = field(default_factory=utcnow)

    @property
    def provider(self) -> str | None:
        return self.connection.provider.value if self.connection is not None else None


@dataclass
class CheckResult:
    """A check's verdict, in one sentence, with the values it saw."""

    result: str
    summary: str
    evidence: dict


REGISTRY: dict[str, callable] = {}


def check(name: str):
    """Register a check function under `name` (scenarios refer to checks by name)."""

    def register(func):
        REGISTRY[name] = func
        return func

    return register


def run_check(name: str, ctx: CheckContext) -> CheckResult:
    """Run one registered check; a check that breaks reports unknown instead of failing the page."""
    try:
        return REGISTRY[name](ctx)
    except Exception as exc:  # a check must never take the checklist down with it
        current_app.logger.exception("checklist check %s failed", name)
        return CheckResult(UNKNOWN, "The check could not read the data it needs.",
                           {"error": type(exc).__name__})


def when(value: datetime | None) -> str | None:
    """A timestamp as evidence shows it."""
    return f"{value:%Y-%m-%d %H:%M:%S} UTC" if value is not None else None


def _ago(value: datetime | None, now: datetime) -> str | None:
    if value is None:
        return None
    seconds = int((now - value).total_seconds())
    if seconds < 0:
        return f"in {_span(-seconds)}"
    return f"{_span(seconds)} ago"


def _span(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    if seconds < 48 * 3600:
        return f"{round(seconds / 3600, 1)} h"
    return f"{round(seconds / 86400, 1)} days"


def _state(connection: Connection | None) -> str:
    return connection.state.value if connection is not None else "not connected"


def _no_connection(ctx: CheckContext, provider: Provider) -> CheckResult | None:
    if ctx.connection is None or ctx.connection.provider != provider:
        return CheckResult(UNKNOWN, f"This branch isn't on {provider.label}.",
                           {"branch": ctx.branch.name if ctx.branch else None, "provider": ctx.provider})
    return None


# --- the viewer and the connection ---------------------------------------------------------------


@check("puppet_session")
def puppet_session(ctx: CheckContext) -> CheckResult:
    """Is the person running the checklist in a puppet session (Sage One AUS is read-only there)?"""
    session = ctx.puppet_session
    if session is None:
        return CheckResult(PASS, "You are not in a puppet session.", {"in_puppet_session": "no"})
    return CheckResult(
        WARN,
        "You are puppeting the customer: Sage One AUS authentication is blocked here by design.",
        {"in_puppet_session": "yes", "puppeting": session.customer_user.email,
         "puppet_since": when(session.started_at), "puppet_reason": session.reason},
    )


@check("branch_on_sage_one_aus")
def branch_on_sage_one_aus(ctx: CheckContext) -> CheckResult:
    """Is the branch on Sage One AUS (or not connected yet, about to be)?"""
    evidence = {"branch": ctx.branch.name if ctx.branch else None, "provider": ctx.provider or "none",
                "state": _state(ctx.connection)}
    if ctx.connection is None or ctx.connection.state == ConnectionState.DISCONNECTED:
        return CheckResult(PASS, "The branch has no live connection; the customer can connect Sage One AUS.",
                           evidence)
    if ctx.connection.provider == Provider.SAGE_ONE_AUS:
        return CheckResult(PASS, "The branch is on Sage One AUS.", evidence)
    return CheckResult(FAIL, "The branch is connected to Sage, not Sage One AUS.", evidence)


@check("sage_one_connection_state")
def sage_one_connection_state(ctx: CheckContext) -> CheckResult:
    """What state the branch's Sage One AUS connection is in, and as whom."""
    conn = ctx.connection
    if conn is None or conn.provider != Provider.SAGE_ONE_AUS:
        return CheckResult(WARN, "The branch has no Sage One AUS connection yet: the customer must connect it.",
                           {"state": _state(conn)})
    evidence = {
        "state": conn.state.value, "state_reason": conn.state_reason, "username": conn.sage_one_username,
        "company": conn.sage_one_company_name,
        "credentials_owner": conn.credentials_owner.email if conn.credentials_owner else None,
        "connected_at": when(conn.connected_at),
    }
    if conn.state == ConnectionState.CONNECTED:
        return CheckResult(PASS, f"Connected as {conn.sage_one_username}.", evidence)
    return CheckResult(WARN, f"The connection is {conn.state.label.lower()}: the customer must authenticate.",
                       evidence)


@check("sage_one_stored_username")
def sage_one_stored_username(ctx: CheckContext) -> CheckResult:
    """The Sage One username the branch is bound to (username continuity)."""
    missing = _no_connection(ctx, Provider.SAGE_ONE_AUS)
    if missing:
        return missing
    conn = ctx.connection
    evidence = {"username": conn.sage_one_username, "company": conn.sage_one_company_name,
                "connected_by": conn.connected_by.email if conn.connected_by else None,
                "connected_at": when(conn.connected_at), "state": conn.state.value}
    if not conn.sage_one_username:
        return CheckResult(PASS, "No username is stored: any Sage One login will be accepted.", evidence)
    return CheckResult(WARN, f"The branch is bound to {conn.sage_one_username}; another login is refused "
                             "until it is disconnected.", evidence)


@check("sage_one_credential_failures")
def sage_one_credential_failures(ctx: CheckContext) -> CheckResult:
    """Recent credential failures of the stored Sage One login."""
    missing = _no_connection(ctx, Provider.SAGE_ONE_AUS)
    if missing:
        return missing
    conn = ctx.connection
    evidence = {"state": conn.state.value, "state_reason": conn.state_reason,
                "login_failures": conn.login_failures or 0,
                "last_sync_at": when(conn.last_sync_at),
                "last_sync_outcome": conn.last_sync_outcome.value if conn.last_sync_outcome else None}
    if conn.state == ConnectionState.CREDENTIALS_REJECTED:
        return CheckResult(FAIL, "Sage One AUS rejects the stored login.", evidence)
    if conn.login_failures:
        return CheckResult(WARN, f"{conn.login_failures} failed logins recently.", evidence)
    return CheckResult(PASS, "No recent credential failures.", evidence)


@check("sage_one_lockout")
def sage_one_lockout(ctx: CheckContext) -> CheckResult:
    """Has Sage One locked the username after too many failed logins, and until when?"""
    missing = _no_connection(ctx, Provider.SAGE_ONE_AUS)
    if missing:
        return missing
    until = ctx.connection.locked_until
    evidence = {"username": ctx.connection.sage_one_username, "locked_until": when(until)}
    if until is not None and until > ctx.now:
        evidence["lock_lifts"] = _ago(until, ctx.now)
        return CheckResult(FAIL, f"Sage One has locked the username until {when(until)}.", evidence)
    return CheckResult(PASS, "The username is not locked.", evidence)


# --- Sage tokens and rate limits ------------------------------------------------------------------


@check("sage_refresh_token")
def sage_refresh_token(ctx: CheckContext) -> CheckResult:
    """Did Sage refuse the refresh token (invalid_grant → needs re-authentication)?"""
    missing = _no_connection(ctx, Provider.SAGE)
    if missing:
        return missing
    conn = ctx.connection
    expires = conn.refresh_token_expires_at
    evidence = {"state": conn.state.value, "state_reason": conn.state_reason,
                "sage_business": conn.sage_business_name, "token_issued_at": when(conn.token_issued_at),
                "token_age": _ago(conn.token_issued_at, ctx.now),
                "refresh_token_expires_at": when(expires),
                "has_refresh_token": "yes" if conn.refresh_token_enc else "no"}
    if conn.state == ConnectionState.NEEDS_REAUTH:
        return CheckResult(FAIL, "Sage no longer accepts the branch's sign-in: the customer must reconnect.",
                           evidence)
    if expires is not None and expires <= ctx.now:
        return CheckResult(FAIL, "The refresh token has expired.", evidence)
    if expires is not None and expires - ctx.now < timedelta(days=7):
        return CheckResult(WARN, f"The refresh token expires {_ago(expires, ctx.now)}.", evidence)
    return CheckResult(PASS, "The Sage sign-in is alive.", evidence)


@check("rate_limit")
def rate_limit(ctx: CheckContext) -> CheckResult:
    """Is the branch's connection held off by Sage's rate limit, and until when?"""
    conn = ctx.connection
    if conn is None:
        return CheckResult(UNKNOWN, "The branch isn't connected.", {"state": "not connected"})
    until = conn.rate_limited_until
    evidence = {"provider": conn.provider.label, "rate_limited_until": when(until)}
    if until is not None and until > ctx.now:
        evidence["lifts"] = _ago(until, ctx.now)
        return CheckResult(FAIL, f"{conn.provider.label} is rate-limiting this branch until {when(until)}.", evidence)
    return CheckResult(PASS, "Not rate-limited now.", evidence)


# --- jobs -----------------------------------------------------------------------------------------


def _branch_jobs(branch_id: int, kind_filter=None, limit: int = 20) -> list[Job]:
    jobs = db.session.scalars(
        select(Job).where(Job.branch_id == branch_id).order_by(Job.created_at.desc()).limit(limit)
    ).all()
    return [j for j in jobs if kind_filter is None or kind_filter(j.kind)]


def _is_sync(kind: str) -> bool:
    return "sync" in kind


def _is_contact_sync(kind: str) -> bool:
    return kind.startswith("sage.") and "contact" in kind


def _job_evidence(job: Job, now: datetime, prefix: str = "job") -> dict:
    return {f"{prefix}": job.description or job.kind, f"{prefix}_status": job.status.value,
            f"{prefix}_queued_at": when(job.created_at), f"{prefix}_age": _ago(job.created_at, now),
            f"{prefix}_ended_at": when(job.ended_at), f"{prefix}_error": job.error,
            f"{prefix}_summary": (job.result or {}).get("summary")}


@check("sync_jobs")
def sync_jobs(ctx: CheckContext) -> CheckResult:
    """Did the branch's last sync job fail, or is one queued/running with no progress for too long?"""
    if ctx.branch is None:
        return CheckResult(UNKNOWN, "No branch was chosen.", {})
    jobs = _branch_jobs(ctx.branch.id, _is_sync)
    if not jobs:
        return CheckResult(UNKNOWN, "This branch has never run a sync.", {"sync_jobs": 0})
    active = [j for j in jobs if j.status.value in ACTIVE_STATUSES]
    for job in active:
        progress = live_progress(job)
        evidence = {**_job_evidence(job, ctx.now), "done": progress.get("done") or 0,
                    "total": progress.get("total")}
        if ctx.now - job.created_at > STUCK_AFTER and not progress.get("done"):
            return CheckResult(FAIL, f"{job.description or job.kind} has been {job.status.value} for "
                                     f"{_span(int((ctx.now - job.created_at).total_seconds()))} with nothing done.",
                               evidence)
        return CheckResult(PASS, f"{job.description or job.kind} is {job.status.value} and moving.", evidence)
    last = jobs[0]
    evidence = _job_evidence(last, ctx.now, "last_job")
    if last.status == JobStatus.FAILED:
        return CheckResult(FAIL, f"The last sync failed: {last.error or 'no reason recorded'}", evidence)
    return CheckResult(PASS, "The last sync finished.", evidence)


# --- scenario 2: the mass re-sync -----------------------------------------------------------------


def _contact_counts(branch_id: int) -> dict:
    rows = db.session.execute(
        select(Contact.sync_state, func.count(), func.count(Contact.sage_id))
        .where(Contact.branch_id == branch_id).group_by(Contact.sync_state)
    ).all()
    counts = {state.value: 0 for state in SyncState}
    with_id = 0
    for state, count, ids in rows:
        counts[state.value if hasattr(state, "value") else state] = count
        with_id += ids
    return {"contacts": sum(counts.values()), "contacts_with_sage_id": with_id,
            "contacts_pending": counts["pending"], "contacts_failed": counts["failed"],
            "contacts_synced": counts["synced"]}


@check("mass_resync_flagged")
def mass_resync_flagged(ctx: CheckContext) -> CheckResult:
    """Did the last contact sync flag every contact because none had a Sage id?"""
    missing = _no_connection(ctx, Provider.SAGE)
    if missing:
        return missing
    conn = ctx.connection
    evidence = {"mass_resync_started_at": when(conn.mass_resync_started_at),
                "mass_resync_total": conn.mass_resync_total, **_contact_counts(ctx.branch.id)}
    flagged = db.session.scalar(
        select(AuditEvent.summary).where(AuditEvent.branch_id == ctx.branch.id, AuditEvent.kind.contains("resync"))
        .order_by(AuditEvent.occurred_at.desc()).limit(1)
    )
    if flagged:
        evidence["flag_event"] = flagged
    if conn.mass_resync_started_at is not None:
        return CheckResult(PASS, f"Every contact ({conn.mass_resync_total or evidence['contacts']}) was flagged for "
                                 "re-sync because none had a Sage id: this is expected after a reconnect.", evidence)
    if evidence["contacts"] and not evidence["contacts_with_sage_id"]:
        return CheckResult(WARN, "No contact has a Sage id yet, so the next contact sync will upload them all.",
                           evidence)
    return CheckResult(FAIL, "No mass re-sync is under way: contacts already have Sage ids.", evidence)


@check("connection_changed")
def connection_changed(ctx: CheckContext) -> CheckResult:
    """When did the connection last change (a reconnect explains a mass re-sync)?"""
    missing = _no_connection(ctx, Provider.SAGE)
    if missing:
        return missing
    conn = ctx.connection
    evidence = {"connected_at": when(conn.connected_at), "connected": _ago(conn.connected_at, ctx.now),
                "disconnected_at": when(conn.disconnected_at), "first_authorized_at": when(conn.first_authorized_at),
                "sage_business": conn.sage_business_name, "sage_business_id": conn.sage_business_id,
                "ids_belong_to_business": conn.ids_sage_business_id}
    if conn.ids_sage_business_id and conn.sage_business_id and conn.ids_sage_business_id != conn.sage_business_id:
        return CheckResult(WARN, "The branch was reconnected to a different Sage business than its Sage ids belong "
                                 "to, so every contact is uploaded to the new business.", evidence)
    if conn.disconnected_at is not None or (conn.first_authorized_at and conn.connected_at
                                            and conn.connected_at > conn.first_authorized_at):
        return CheckResult(PASS, f"The branch was reconnected {_ago(conn.connected_at, ctx.now)}.", evidence)
    return CheckResult(PASS, f"Connected {_ago(conn.connected_at, ctx.now)}.", evidence)


@check("contact_sync_progress")
def contact_sync_progress(ctx: CheckContext) -> CheckResult:
    """How far the running contact sync is: batches done and left, failures, and the finish at this rate."""
    missing = _no_connection(ctx, Provider.SAGE)
    if missing:
        return missing
    jobs = [j for j in _branch_jobs(ctx.branch.id, _is_contact_sync)]
    active = next((j for j in jobs if j.status.value in ACTIVE_STATUSES), None)
    counts = _contact_counts(ctx.branch.id)
    if active is None:
        evidence = {"running_job": "none", "contacts_pending": counts["contacts_pending"],
                    "contacts_failed": counts["contacts_failed"]}
        if jobs:
            evidence.update(_job_evidence(jobs[0], ctx.now, "last_job"))
        if counts["contacts_pending"]:
            return CheckResult(FAIL, f"No contact sync is running, and {counts['contacts_pending']} contacts are "
                                     "still waiting: run the sync again to carry on.", evidence)
        if counts["contacts_failed"]:
            return CheckResult(WARN, f"The sync finished with {counts['contacts_failed']} contacts failed.", evidence)
        return CheckResult(PASS, "Every contact is in Sage.", evidence)
    progress = live_progress(active)
    done, total = progress.get("done") or 0, progress.get("total")
    failures = progress.get("failures") or 0
    eta = progress.get("eta_seconds")
    evidence = {"running_job": active.description or active.kind, "job_status": active.status.value,
                "job_started_at": when(active.started_at or active.created_at), "done": done, "total": total,
                "batches_done": progress.get("batches_done"), "batches_total": progress.get("batches_total"),
                "batches_left": (progress["batches_total"] - (progress.get("batches_done") or 0))
                if progress.get("batches_total") else None,
                "failures": failures, "eta": f"about {max(1, round(eta / 60))} min" if eta else None,
                "estimated_finish": when(ctx.now + timedelta(seconds=eta)) if eta else None,
                "contacts_pending": counts["contacts_pending"]}
    if ctx.now - active.created_at > STUCK_AFTER and not done:
        return CheckResult(FAIL, "The contact sync has made no progress for a long time.", evidence)
    if failures:
        return CheckResult(WARN, f"The sync is running ({done} of {total or '…'}) with {failures} failures so far.",
                           evidence)
    return CheckResult(PASS, f"The sync is running: {done} of {total or '…'} done, no failures.", evidence)


# --- scenario 4: the void ---------------------------------------------------------------------------


@check("invoice_record")
def invoice_record(ctx: CheckContext) -> CheckResult:
    """The invoice as the portal holds it, soft-deleted or not (found unscoped, as the void does)."""
    inv = ctx.invoice
    if inv is None:
        return CheckResult(FAIL, "No such invoice on this branch, even among deleted ones.", {})
    evidence = {"invoice": inv.number, "status": inv.status.value, "soft_deleted": "yes" if inv.deleted_at else "no",
                "deleted_at": when(inv.deleted_at), "voided_at": when(inv.voided_at), "void_reason": inv.void_reason,
                "sage_id": inv.sage_id, "sync_state": inv.sync_state.value, "total": f"{inv.total:.2f}"}
    if inv.deleted_at is not None:
        return CheckResult(WARN, f"Invoice {inv.number} is soft-deleted: only the void (which looks it up "
                                 "unscoped) still sees it.", evidence)
    return CheckResult(PASS, f"Invoice {inv.number} is on the branch ({inv.status.value}).", evidence)


def _void_record(ctx: CheckContext) -> tuple[Job | None, str | None, str | None]:
    """The latest void job for the invoice and the outcome recorded for it (job result or audit event)."""
    inv = ctx.invoice
    jobs = [j for j in _branch_jobs(inv.branch_id, lambda k: "void" in k, limit=50)
            if (j.params or {}).get("invoice_id") == inv.id]
    job = jobs[0] if jobs else None
    outcome = (job.result or {}).get("outcome") if job is not None else None
    message = None
    events = db.session.scalars(
        select(AuditEvent).where(AuditEvent.branch_id == inv.branch_id, AuditEvent.kind.contains("void"))
        .order_by(AuditEvent.occurred_at.desc()).limit(50)
    ).all()
    event = next((e for e in events if (e.details or {}).get("invoice_id") == inv.id
                  and (e.details or {}).get("outcome")), None)
    if event is not None and (job is None or event.occurred_at >= (job.created_at or event.occurred_at)):
        outcome = outcome or event.details.get("outcome")
        message = event.details.get("message") or event.summary
    return job, outcome, message


@check("void_job")
def void_job(ctx: CheckContext) -> CheckResult:
    """Did the void job run for this invoice, and with what outcome?"""
    if ctx.invoice is None:
        return CheckResult(UNKNOWN, "No invoice to look for.", {})
    job, outcome, message = _void_record(ctx)
    if job is None:
        return CheckResult(FAIL, "No void job ever ran for this invoice.", {"void_job": "none"})
    evidence = {**_job_evidence(job, ctx.now, "void_job"), "void_outcome": outcome, "void_message": message}
    if job.status.value in ACTIVE_STATUSES:
        return CheckResult(WARN, "The void job hasn't finished yet.", evidence)
    if outcome in VOID_DONE:
        return CheckResult(PASS, f"The void job finished: {outcome.replace('_', ' ')}.", evidence)
    if outcome in VOID_NOTHING_TO_DO:
        return CheckResult(WARN, "The invoice was never sent to Sage, so there was nothing to void there.", evidence)
    if outcome in VOID_MISSING:
        return CheckResult(FAIL, "Sage had no such invoice when the void ran: it needs manual clean-up.", evidence)
    return CheckResult(FAIL, f"The void did not complete: {job.error or message or outcome or 'no outcome recorded'}",
                       evidence)


class _LiveReadImpossible(Exception):
    """A live read would need something a check may not do (refresh a token, unlock a password)."""


def _stored_access_token(conn: Connection, now: datetime):
    expires = conn.access_token_expires_at
    if conn.state != ConnectionState.CONNECTED or not conn.access_token_enc:
        raise _LiveReadImpossible("The branch has no live Sage sign-in.")
    if expires is None or expires <= now + timedelta(seconds=5):
        raise _LiveReadImpossible(
            f"The stored access token expired at {when(expires)}; refreshing it would rotate the branch's tokens, "
            "which a check never does. Open the branch's Sage page or run a sync, then re-check.")
    token = keys.decrypt_at_rest(conn.access_token_enc, f"connection/{conn.id}/access")

    def provide(force: bool = False) -> str:
        if force:
            raise _LiveReadImpossible("Sage refused the stored access token; a refresh is needed first.")
        return token

    return provide


def _sage_live_status(ctx: CheckContext) -> tuple[str, dict]:
    """GET the invoice from Sage with the stored token (no refresh, no write); returns (status, facts)."""
    from portal.integrations.sage.client import SageClient, SageError, SageNotFound
    from portal.integrations.sage.sync import rate_limit_for

    conn, inv = ctx.connection, ctx.invoice
    config = current_app.config
    # A support person waits on this page: take the business's shared slot without waiting for one.
    limiter = rate_limit_for(conn, max_wait=float(config["SAGE_PAGE_WAIT_SECONDS"]))
    client = SageClient(api_url=config["SAGE_API_URL"], business_id=conn.sage_business_id,
                        token=_stored_access_token(conn, ctx.now), limiter=limiter,
                        timeout=config["HTTP_TIMEOUT_SECONDS"], patient=False)
    try:
        body = client.get_invoice(inv.sage_id)
    except SageNotFound:
        return "missing", {}
    except SageError as exc:
        raise _LiveReadImpossible(f"Sage didn't answer the read: {exc}") from None
    status = body.get("status") or {}
    status_id = status.get("id") if isinstance(status, dict) else status
    return ("void" if str(status_id).upper() == "VOID" else "live"), {
        "sage_status": status.get("displayed_as") if isinstance(status, dict) else status_id,
        "sage_void_reason": body.get("void_reason")}


@check("sage_invoice_now")
def sage_invoice_now(ctx: CheckContext) -> CheckResult:
    """What the provider says about the invoice now: a live read-only GET for Sage, the record for Sage One AUS."""
    inv = ctx.invoice
    if inv is None or ctx.connection is None:
        return CheckResult(UNKNOWN, "No invoice or no connection to ask about.", {})
    evidence = {"invoice": inv.number, "sage_id": inv.sage_id, "provider": ctx.connection.provider.label}
    if inv.sage_note:  # what the daily look at Sage found (portal/integrations/sage/drift.py)
        evidence["seen_in_sage"] = inv.sage_note
    if not inv.sage_id:
        evidence["source"] = "portal record"
        return CheckResult(WARN, "The invoice was never sent to Sage, so Sage can't show it from this portal.",
                           evidence)
    live_failure = None
    if ctx.connection.provider == Provider.SAGE:
        try:
            status, facts = _sage_live_status(ctx)
        except _LiveReadImpossible as exc:
            live_failure = str(exc)
        else:
            evidence.update(source="live read from Sage", read_at=when(utcnow()), **facts)
            if status == "void":
                return CheckResult(PASS, f"Sage shows invoice {inv.number} as void.", evidence)
            if status == "missing":
                return CheckResult(WARN, f"Sage has no invoice {inv.sage_id}: it was deleted there or belongs to "
                                         "another Sage business.", evidence)
            return CheckResult(FAIL, f"Sage still shows invoice {inv.number} as {facts.get('sage_status')}.", evidence)
    else:
        live_failure = ("A live check isn't possible without the customer: Sage One AUS signs in with the customer's "
                        "own password, which only their private key opens.")
    # Fall back on what the void recorded.
    _, outcome, message = _void_record(ctx)
    evidence.update(source="recorded void outcome", live_check=live_failure, void_outcome=outcome,
                    void_message=message)
    if outcome in VOID_DONE:
        return CheckResult(PASS, "No live read; the recorded void says Sage has it void.", evidence)
    if outcome in VOID_MISSING:
        return CheckResult(WARN, "No live read; the recorded void found no such invoice in Sage.", evidence)
    if outcome is None:
        return CheckResult(UNKNOWN, "No live read, and no void outcome is recorded.", evidence)
    return CheckResult(FAIL, "No live read; the recorded void did not complete in Sage.", evidence)
