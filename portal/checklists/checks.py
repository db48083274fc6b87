"""Read-only checks: each looks at the live state of one customer and says what it saw.

Every check takes a CheckContext and returns a CheckResult: a result (pass / warn / fail / unknown),
one sentence, and the evidence (the values it read). Checks never write — not to the database
(no commits, no `jobqueue.active_job`, which may fail a dead job's row), not to Sage (GET only),
and never need the customer's private key, so they are safe in a puppet session.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from flask import current_app
from sqlalchemy import func, select

from portal import keys, timefmt
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
    InvoiceStatus,
    Job,
    JobStatus,
    Provider,
    PuppetSession,
    SyncState,
    utcnow,
)

PASS, WARN, FAIL, UNKNOWN = "pass", "warn", "fail", "unknown"
OTHER_PROVIDER = "other_provider"  # the branch isn't on the provider the check is about
# How a result reads at a glance: its colour on the page.
GOOD, WARNING, BAD, NEUTRAL = "good", "warning", "bad", "neutral"
# What every check's label starts with: it says what was found, never pass/fail of a question.
FOUND, NOT_FOUND, NEEDS_A_LOOK = "Found", "Not found", "Needs a look"
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
    def zone(self):
        """The customer's time zone: a check's sentences say times as the customer reads them."""
        return timefmt.zone_for(self.business.time_zone if self.business is not None else None)

    def when(self, moment: datetime | None) -> str:
        return timefmt.when(moment, self.zone)

    def ago(self, moment: datetime | None) -> str:
        return timefmt.ago(moment, self.now)


@dataclass
class CheckResult:
    """A check's verdict, in one sentence, with the values it saw."""

    result: str
    summary: str
    evidence: dict


@dataclass(frozen=True)
class Finding:
    """How one result of a check reads: a label saying what was found, and its colour."""

    label: str
    tone: str


REGISTRY: dict[str, callable] = {}
RESULTS: dict[str, dict[str, Finding]] = {}
_UNREAD = Finding(f"{NEEDS_A_LOOK}: the check couldn't read it", NEUTRAL)


def check(name: str, results: dict[str, tuple[str, str]]):
    """Register a check under `name` with every result it can give: result -> (label, tone).

    Scenarios branch on these results; a test walks each of them. Every check can also answer
    UNKNOWN (run_check does when the check breaks), which reads "Needs a look" unless declared.
    """

    def register(func):
        REGISTRY[name] = func
        RESULTS[name] = {UNKNOWN: _UNREAD, **{key: Finding(*value) for key, value in results.items()}}
        return func

    return register


def finding(name: str | None, result: str | None) -> Finding | None:
    """The label and colour of a check's result (None when the step has no result yet)."""
    if result is None:
        return None
    return RESULTS.get(name or "", {}).get(result, Finding(NEEDS_A_LOOK, NEUTRAL))


def run_check(name: str, ctx: CheckContext) -> CheckResult:
    """Run one registered check; a check that breaks reports unknown instead of failing the page."""
    try:
        result = REGISTRY[name](ctx)
    except Exception as exc:  # a check must never take the checklist down with it
        current_app.logger.exception("checklist check %s failed", name)
        return CheckResult(UNKNOWN, "The check could not read the data it needs.",
                           {"error": type(exc).__name__})
    if result.result not in RESULTS[name]:
        raise ValueError(f"check {name} answered {result.result!r}, which it does not declare")
    return result


def moment(value: datetime | None) -> str | None:
    """A moment as evidence keeps it: ISO 8601 in UTC, shown in the customer's zone wherever it is read."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="seconds")


def _state(connection: Connection | None) -> str:
    return connection.state.label.lower() if connection is not None else "not connected"


def _no_connection(ctx: CheckContext, provider: Provider) -> CheckResult | None:
    if ctx.connection is None or ctx.connection.provider != provider:
        return CheckResult(OTHER_PROVIDER, f"This branch isn't on {provider.label}.",
                           {"branch": ctx.branch.name if ctx.branch else None,
                            "provider": ctx.connection.provider.label if ctx.connection else "none"})
    return None


_NOT_ON_SAGE = {OTHER_PROVIDER: (f"{NOT_FOUND}: the branch isn't on Sage", NEUTRAL)}
_NOT_ON_SAGE_ONE_AUS = {OTHER_PROVIDER: (f"{NOT_FOUND}: the branch isn't on Sage One AUS", NEUTRAL)}


# --- the viewer and the connection ---------------------------------------------------------------


@check("puppet_session", {WARN: (FOUND, WARNING), PASS: (NOT_FOUND, GOOD)})
def puppet_session(ctx: CheckContext) -> CheckResult:
    """Is the person running the checklist in a puppet session (Sage One AUS is read-only there)?"""
    session = ctx.puppet_session
    if session is None:
        return CheckResult(PASS, "You are not in a puppet session.", {"in_puppet_session": "no"})
    return CheckResult(
        WARN,
        "You are puppeting the customer: Sage One AUS authentication is blocked here by design.",
        {"in_puppet_session": "yes", "puppeting": session.customer_user.email,
         "puppet_since": moment(session.started_at), "puppet_reason": session.reason},
    )


@check("branch_on_sage_one_aus", {PASS: (FOUND, GOOD), "not_connected": (f"{NOT_FOUND}: not connected yet", NEUTRAL),
                                  FAIL: (f"{NOT_FOUND}: the branch is on Sage", BAD)})
def branch_on_sage_one_aus(ctx: CheckContext) -> CheckResult:
    """Is the branch on Sage One AUS (or not connected yet, about to be)?"""
    evidence = {"branch": ctx.branch.name if ctx.branch else None,
                "provider": ctx.connection.provider.label if ctx.connection else "none",
                "state": _state(ctx.connection)}
    if ctx.connection is None or ctx.connection.state == ConnectionState.DISCONNECTED:
        return CheckResult("not_connected", "The branch has no live connection; the customer can connect "
                                            "Sage One AUS.", evidence)
    if ctx.connection.provider == Provider.SAGE_ONE_AUS:
        return CheckResult(PASS, "The branch is on Sage One AUS.", evidence)
    return CheckResult(FAIL, "The branch is connected to Sage, not Sage One AUS.", evidence)


@check("sage_one_connection_state", {PASS: (f"{FOUND}: connected", GOOD),
                                     WARN: (f"{FOUND}: needs the customer to authenticate", WARNING),
                                     "none": (NOT_FOUND, WARNING)})
def sage_one_connection_state(ctx: CheckContext) -> CheckResult:
    """What state the branch's Sage One AUS connection is in, and as whom."""
    conn = ctx.connection
    if conn is None or conn.provider != Provider.SAGE_ONE_AUS:
        return CheckResult("none", "The branch has no Sage One AUS connection yet: the customer must connect it.",
                           {"state": _state(conn)})
    evidence = {
        "state": _state(conn), "state_reason": conn.state_reason, "username": conn.sage_one_username,
        "company": conn.sage_one_company_name,
        "credentials_owner": conn.credentials_owner.email if conn.credentials_owner else None,
        "connected_at": moment(conn.connected_at),
    }
    if conn.state == ConnectionState.CONNECTED:
        return CheckResult(PASS, f"Connected as {conn.sage_one_username}.", evidence)
    return CheckResult(WARN, f"The connection is {_state(conn)}: the customer must authenticate.", evidence)


@check("sage_one_stored_username", {WARN: (FOUND, NEUTRAL), PASS: (NOT_FOUND, NEUTRAL),
                                    **_NOT_ON_SAGE_ONE_AUS})
def sage_one_stored_username(ctx: CheckContext) -> CheckResult:
    """The Sage One username the branch is bound to (username continuity)."""
    missing = _no_connection(ctx, Provider.SAGE_ONE_AUS)
    if missing:
        return missing
    conn = ctx.connection
    evidence = {"username": conn.sage_one_username, "company": conn.sage_one_company_name,
                "connected_by": conn.connected_by.email if conn.connected_by else None,
                "connected_at": moment(conn.connected_at), "state": _state(conn)}
    if not conn.sage_one_username:
        return CheckResult(PASS, "No username is stored: any Sage One login will be accepted.", evidence)
    return CheckResult(WARN, f"The branch is bound to {conn.sage_one_username}; another login is refused "
                             "until it is disconnected.", evidence)


@check("sage_one_credential_failures", {FAIL: (f"{FOUND}: Sage One AUS rejects the login", BAD),
                                        WARN: (f"{FOUND}: failed logins", WARNING), PASS: (NOT_FOUND, GOOD),
                                        **_NOT_ON_SAGE_ONE_AUS})
def sage_one_credential_failures(ctx: CheckContext) -> CheckResult:
    """Recent credential failures of the stored Sage One login."""
    missing = _no_connection(ctx, Provider.SAGE_ONE_AUS)
    if missing:
        return missing
    conn = ctx.connection
    evidence = {"state": _state(conn), "state_reason": conn.state_reason,
                "login_failures": conn.login_failures or 0,
                "last_sync_at": moment(conn.last_sync_at),
                "last_sync_outcome": conn.last_sync_outcome.value if conn.last_sync_outcome else None}
    if conn.state == ConnectionState.CREDENTIALS_REJECTED:
        return CheckResult(FAIL, "Sage One AUS rejects the stored login.", evidence)
    if conn.login_failures:
        failures = conn.login_failures
        return CheckResult(WARN, f"{failures} failed login{'' if failures == 1 else 's'} recently.", evidence)
    return CheckResult(PASS, "No recent credential failures.", evidence)


@check("sage_one_lockout", {FAIL: (FOUND, BAD), PASS: (NOT_FOUND, GOOD), **_NOT_ON_SAGE_ONE_AUS})
def sage_one_lockout(ctx: CheckContext) -> CheckResult:
    """Has Sage One locked the username after too many failed logins, and until when?"""
    missing = _no_connection(ctx, Provider.SAGE_ONE_AUS)
    if missing:
        return missing
    until = ctx.connection.locked_until
    evidence = {"username": ctx.connection.sage_one_username}
    if until is not None and until > ctx.now:
        evidence["locked_until"] = moment(until)
        return CheckResult(FAIL, f"Sage One has locked the username until {ctx.when(until)} "
                                 f"({ctx.ago(until)}).", evidence)
    return CheckResult(PASS, "The username is not locked.", evidence)


# --- Sage tokens and rate limits ------------------------------------------------------------------


@check("sage_refresh_token", {FAIL: (f"{FOUND}: Sage refuses the sign-in", BAD),
                              "expired": (f"{FOUND}: the sign-in has expired", BAD),
                              WARN: (f"{FOUND}: the sign-in expires within a week", WARNING),
                              PASS: (NOT_FOUND, GOOD),
                              **_NOT_ON_SAGE})
def sage_refresh_token(ctx: CheckContext) -> CheckResult:
    """Did Sage refuse the refresh token (invalid_grant → needs re-authentication)?"""
    missing = _no_connection(ctx, Provider.SAGE)
    if missing:
        return missing
    conn = ctx.connection
    expires = conn.refresh_token_expires_at
    evidence = {"state": _state(conn), "state_reason": conn.state_reason,
                "sage_business": conn.sage_business_name, "token_issued_at": moment(conn.token_issued_at),
                "refresh_token_expires_at": moment(expires),
                "has_refresh_token": "yes" if conn.refresh_token_enc else "no"}
    if conn.state == ConnectionState.NEEDS_REAUTH:
        return CheckResult(FAIL, "Sage no longer accepts the branch's sign-in: the customer must reconnect.",
                           evidence)
    if expires is not None and expires <= ctx.now:
        return CheckResult("expired", f"The Sage sign-in expired {ctx.ago(expires)}: the customer must reconnect.",
                           evidence)
    if expires is not None and expires - ctx.now < timedelta(days=7):
        return CheckResult(WARN, f"The Sage sign-in expires {ctx.ago(expires)} unless a sync uses it first.",
                           evidence)
    return CheckResult(PASS, "The Sage sign-in is alive.", evidence)


@check("rate_limit", {FAIL: (FOUND, BAD), PASS: (NOT_FOUND, GOOD),
                      "not_connected": (f"{NOT_FOUND}: the branch isn't connected", NEUTRAL)})
def rate_limit(ctx: CheckContext) -> CheckResult:
    """Is the branch's connection held off by its provider's rate limit, and until when?"""
    conn = ctx.connection
    if conn is None or conn.state == ConnectionState.DISCONNECTED:
        return CheckResult("not_connected", "The branch isn't connected, so no rate limit applies.",
                           {"state": _state(conn)})
    until = conn.rate_limited_until
    evidence = {"provider": conn.provider.label}
    if until is not None and until > ctx.now:
        evidence["rate_limited_until"] = moment(until)
        return CheckResult(FAIL, f"{conn.provider.label} is rate-limiting this branch until {ctx.when(until)} "
                                 f"({ctx.ago(until)}).", evidence)
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


def _job_evidence(job: Job, prefix: str = "job") -> dict:
    return {f"{prefix}": job.description or job.kind, f"{prefix}_status": job.status.value,
            f"{prefix}_queued_at": moment(job.created_at), f"{prefix}_ended_at": moment(job.ended_at),
            f"{prefix}_error": job.error, f"{prefix}_summary": (job.result or {}).get("summary")}


@check("sync_jobs", {"failed": (f"{FOUND}: the last sync failed", BAD),
                     "records_failed": (f"{FOUND}: the last sync finished, some records could not be sent", BAD),
                     "stuck": (f"{FOUND}: a sync is stuck", BAD),
                     PASS: (NOT_FOUND, GOOD),
                     "no_sync": (f"{NOT_FOUND}: no sync has run yet", NEUTRAL)})
def sync_jobs(ctx: CheckContext) -> CheckResult:
    """Did the branch's last sync job fail, or is one queued/running with no progress for too long?"""
    if ctx.branch is None:
        return CheckResult(UNKNOWN, "No branch was chosen.", {})
    jobs = _branch_jobs(ctx.branch.id, _is_sync)
    if not jobs:
        return CheckResult("no_sync", "This branch has never run a sync.", {"sync_jobs": 0})
    active = [j for j in jobs if j.status.value in ACTIVE_STATUSES]
    for job in active:
        progress = live_progress(job)
        evidence = {**_job_evidence(job), "done": progress.get("done") or 0, "total": progress.get("total")}
        name = job.description or job.kind
        if ctx.now - job.created_at > STUCK_AFTER and not progress.get("done"):
            return CheckResult("stuck", f"{name} has been {job.status.value} for "
                                        f"{timefmt.duration(ctx.now - job.created_at)} with nothing done.", evidence)
        return CheckResult(PASS, f"{name} is {job.status.value} and moving.", evidence)
    last = jobs[0]
    evidence = _job_evidence(last, "last_job")
    if last.status == JobStatus.FAILED:
        return CheckResult("failed", f"The last sync failed: {last.error or 'no reason was recorded.'}", evidence)
    failures = sync_failures(last)
    if failures:
        evidence["last_job_error"] = evidence.get("last_job_summary")
        return CheckResult("records_failed", f"The last sync finished, but {failures} record"
                                             f"{'' if failures == 1 else 's'} could not be sent: "
                                             f"{evidence.get('last_job_summary') or 'see the branch page'}", evidence)
    return CheckResult(PASS, "The last sync finished.", evidence)


def sync_failures(job: Job) -> int:
    """How many records a finished sync could not send (its summary's count; 0 when it says none)."""
    try:
        return int((job.result or {}).get("failures") or 0)
    except (TypeError, ValueError):
        return 0


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


@check("mass_resync_flagged", {PASS: (FOUND, GOOD),
                               WARN: (f"{NEEDS_A_LOOK}: no contact has a Sage id yet", WARNING),
                               FAIL: (NOT_FOUND, BAD), **_NOT_ON_SAGE})
def mass_resync_flagged(ctx: CheckContext) -> CheckResult:
    """Did the last contact sync flag every contact because none had a Sage id?"""
    missing = _no_connection(ctx, Provider.SAGE)
    if missing:
        return missing
    conn = ctx.connection
    evidence = {"mass_resync_started_at": moment(conn.mass_resync_started_at),
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


@check("connection_changed", {"other_business": (f"{FOUND}: reconnected to another Sage business", WARNING),
                              "reconnected": (f"{FOUND}: reconnected", GOOD),
                              PASS: (f"{NOT_FOUND}: no reconnect", NEUTRAL), **_NOT_ON_SAGE})
def connection_changed(ctx: CheckContext) -> CheckResult:
    """When did the connection last change (a reconnect explains a mass re-sync)?"""
    missing = _no_connection(ctx, Provider.SAGE)
    if missing:
        return missing
    conn = ctx.connection
    evidence = {"connected_at": moment(conn.connected_at), "disconnected_at": moment(conn.disconnected_at),
                "first_authorized_at": moment(conn.first_authorized_at),
                "sage_business": conn.sage_business_name, "sage_business_id": conn.sage_business_id,
                "ids_belong_to_business": conn.ids_sage_business_id}
    if conn.ids_sage_business_id and conn.sage_business_id and conn.ids_sage_business_id != conn.sage_business_id:
        return CheckResult("other_business", "The branch was reconnected to a different Sage business than its "
                                             "Sage ids belong to, so every contact is uploaded to the new business.",
                           evidence)
    if conn.disconnected_at is not None or (conn.first_authorized_at and conn.connected_at
                                            and conn.connected_at > conn.first_authorized_at):
        return CheckResult("reconnected", f"The branch was reconnected {ctx.ago(conn.connected_at)}.", evidence)
    return CheckResult(PASS, f"Connected {ctx.ago(conn.connected_at)}, with no reconnect since.", evidence)


@check("contact_sync_progress", {"running": (f"{FOUND}: running, no failures", GOOD),
                                 "finished": (f"{FOUND}: every contact is in Sage", GOOD),
                                 WARN: (f"{FOUND}: contacts refused by Sage", WARNING),
                                 FAIL: (f"{NEEDS_A_LOOK}: the sync has stopped", BAD), **_NOT_ON_SAGE})
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
                    "failures": counts["contacts_failed"]}
        if jobs:
            evidence.update(_job_evidence(jobs[0], "last_job"))
        if counts["contacts_pending"]:
            return CheckResult(FAIL, f"No contact sync is running, and {counts['contacts_pending']} contacts are "
                                     "still waiting: run the sync again to carry on.", evidence)
        if counts["contacts_failed"]:
            return CheckResult(WARN, f"The sync finished with {counts['contacts_failed']} contacts refused by Sage.",
                               evidence)
        return CheckResult("finished", "Every contact is in Sage.", evidence)
    progress = live_progress(active)
    done, total = progress.get("done") or 0, progress.get("total")
    failures = progress.get("failures") or 0
    eta = progress.get("eta_seconds")
    evidence = {"running_job": active.description or active.kind, "job_status": active.status.value,
                "job_started_at": moment(active.started_at or active.created_at), "done": done, "total": total,
                "batches_done": progress.get("batches_done"), "batches_total": progress.get("batches_total"),
                "batches_left": (progress["batches_total"] - (progress.get("batches_done") or 0))
                if progress.get("batches_total") else None,
                "failures": failures, "eta": timefmt.duration(eta) if eta else None,
                "estimated_finish": moment(ctx.now + timedelta(seconds=eta)) if eta else None,
                "contacts_pending": counts["contacts_pending"]}
    of_total = f"{done} of {total}" if total else f"{done}"
    if ctx.now - active.created_at > STUCK_AFTER and not done:
        return CheckResult(FAIL, "The contact sync has made no progress for a long time.", evidence)
    if failures:
        return CheckResult(WARN, f"The sync is running ({of_total} done) with {failures} refused by Sage so far.",
                           evidence)
    return CheckResult("running", f"The sync is running: {of_total} done, none refused.", evidence)


# --- scenario 4: the void ---------------------------------------------------------------------------


@check("invoice_record", {"on_branch": (FOUND, GOOD), "soft_deleted": (f"{FOUND}: soft-deleted", NEUTRAL),
                          "missing": (NOT_FOUND, BAD)})
def invoice_record(ctx: CheckContext) -> CheckResult:
    """The invoice as the portal holds it, soft-deleted or not (found unscoped, as the void does)."""
    inv = ctx.invoice
    if inv is None:
        return CheckResult("missing", "No such invoice on this branch, even among deleted ones.", {})
    evidence = {"invoice": inv.number, "status": inv.status.value, "soft_deleted": "yes" if inv.deleted_at else "no",
                "deleted_at": moment(inv.deleted_at), "voided_at": moment(inv.voided_at),
                "void_reason": inv.void_reason, "sage_id": inv.sage_id, "sync_state": inv.sync_state.value,
                "total": f"{inv.total:.2f}"}
    if inv.deleted_at is not None:
        return CheckResult("soft_deleted", f"Invoice {inv.number} is soft-deleted in the portal; the void still "
                                           "finds it (it looks it up unscoped).", evidence)
    return CheckResult("on_branch", f"Invoice {inv.number} is on the branch ({inv.status.value}).", evidence)


def _void_record(ctx: CheckContext) -> tuple[Job | None, str | None, str | None, dict]:
    """The latest void of the invoice: its job, the outcome recorded (job result or audit event), the
    message, and the result's details (the Sage id it used)."""
    inv = ctx.invoice
    jobs = [j for j in _branch_jobs(inv.branch_id, lambda k: "void" in k, limit=50)
            if (j.params or {}).get("invoice_id") == inv.id]
    job = jobs[0] if jobs else None
    details = dict(job.result or {}) if job is not None else {}
    outcome = details.get("outcome")
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
        details = {**event.details, **details}
    return job, outcome, message, details


@check("void_job", {"done": (f"{FOUND}: the void completed", GOOD),
                    "running": (f"{FOUND}: still running", WARNING),
                    "never_synced": (f"{FOUND}: nothing to void (never sent)", NEUTRAL),
                    "missing_in_sage": (f"{FOUND}: Sage had no such invoice", WARNING),
                    "not_done": (f"{FOUND}: the void did not complete", BAD),
                    "none": (NOT_FOUND, WARNING)})
def void_job(ctx: CheckContext) -> CheckResult:
    """Did the void job run for this invoice, and with what outcome?"""
    if ctx.invoice is None:
        return CheckResult(UNKNOWN, "No invoice to look for.", {})
    job, outcome, message, _ = _void_record(ctx)
    if job is None and outcome is None:
        return CheckResult("none", "No void ever ran for this invoice.", {"void_job": "none"})
    evidence = {**(_job_evidence(job, "void_job") if job is not None else {}), "void_outcome": outcome,
                "void_message": message}
    if job is not None and job.status.value in ACTIVE_STATUSES:
        return CheckResult("running", "The void job hasn't finished yet.", evidence)
    if outcome in VOID_DONE:
        return CheckResult("done", f"The void completed: {message or outcome.replace('_', ' ')}", evidence)
    if outcome in VOID_NOTHING_TO_DO:
        return CheckResult("never_synced", "The invoice had never been sent to Sage when the void ran, so there "
                                           "was nothing to void there.", evidence)
    if outcome in VOID_MISSING:
        return CheckResult("missing_in_sage", "Sage had no invoice with its id when the void ran.", evidence)
    failure = (job.error if job is not None else None) or message or "no outcome was recorded"
    evidence["void_failure"] = failure
    return CheckResult("not_done", f"The void did not complete: {failure}", evidence)


class _LiveReadImpossible(Exception):
    """A live read would need something a check may not do (refresh a token, unlock a password)."""


def _stored_access_token(ctx: CheckContext):
    conn = ctx.connection
    expires = conn.access_token_expires_at
    if conn.state != ConnectionState.CONNECTED or not conn.access_token_enc:
        raise _LiveReadImpossible("The branch has no live Sage sign-in.")
    if expires is None or expires <= ctx.now + timedelta(seconds=5):
        raise _LiveReadImpossible(
            f"The stored access token expired {ctx.ago(expires)}; refreshing it would rotate the branch's "
            "tokens, which a check never does. Open the branch's Sage page or run a sync, then re-check.")
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
    try:
        # A support person waits on this page: take the business's shared slot without waiting for one.
        limiter = rate_limit_for(conn, max_wait=float(config["SAGE_PAGE_WAIT_SECONDS"]))
        client = SageClient(api_url=config["SAGE_API_URL"], business_id=conn.sage_business_id,
                            token=_stored_access_token(ctx), limiter=limiter,
                            timeout=config["HTTP_TIMEOUT_SECONDS"], patient=False)
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


def _ids_cleared_after(ctx: CheckContext) -> AuditEvent | None:
    """The switch of Sage business that cleared the branch's Sage ids after the invoice was made, if any."""
    return db.session.scalar(
        select(AuditEvent).where(AuditEvent.branch_id == ctx.invoice.branch_id, AuditEvent.kind == "sage.ids_cleared",
                                 AuditEvent.occurred_at >= ctx.invoice.created_at)
        .order_by(AuditEvent.occurred_at.desc()).limit(1))


@check("sage_invoice_now", {"void": (f"{FOUND}: void", GOOD),
                            "void_outside": (f"{FOUND}: void, voided in Sage outside the portal", WARNING),
                            "live": (f"{FOUND}: not void", BAD),
                            "not_done": (f"{NEEDS_A_LOOK}: the void did not complete", BAD),
                            "missing": (f"{NOT_FOUND}: no invoice with its Sage id", WARNING),
                            "never_sent": (f"{NOT_FOUND}: never sent to Sage", NEUTRAL),
                            "other_business": (f"{NOT_FOUND}: its Sage id was cleared by a switch of Sage business",
                                               WARNING),
                            "not_connected": (f"{NEEDS_A_LOOK}: the branch isn't connected", NEUTRAL),
                            "no_record": (f"{NEEDS_A_LOOK}: no live read and no recorded void", NEUTRAL)})
def sage_invoice_now(ctx: CheckContext) -> CheckResult:
    """What the provider says about the invoice now: a live read-only GET for Sage, the record for Sage One AUS."""
    inv = ctx.invoice
    if inv is None:
        return CheckResult(UNKNOWN, "No invoice to ask about.", {})
    if ctx.connection is None or ctx.connection.state == ConnectionState.DISCONNECTED:
        return CheckResult("not_connected", "The branch isn't connected, so nothing can be asked about the "
                                            "invoice.", {"state": _state(ctx.connection)})
    label = ctx.connection.provider.label
    evidence = {"invoice": inv.number, "sage_id": inv.sage_id, "provider": label}
    if inv.sage_note:  # what the daily look at Sage found (portal/integrations/sage/drift.py)
        evidence["seen_in_sage"] = inv.sage_note
    _, outcome, message, details = _void_record(ctx)
    if not inv.sage_id:
        evidence["source"] = "portal record"
        cleared = _ids_cleared_after(ctx) if ctx.connection.provider == Provider.SAGE else None
        if cleared is None:
            return CheckResult("never_sent", f"The invoice was never sent to {label}, so the portal put no copy of "
                                             "it there.", evidence)
        evidence.update(ids_cleared_at=moment(cleared.occurred_at), sage_business=ctx.connection.sage_business_name,
                        previous_sage_id=details.get("sage_id"))
        if outcome in VOID_DONE and details.get("sage_id"):
            return CheckResult("void", "Its Sage id was cleared when the branch switched to another Sage business; "
                                       "the void recorded before that says it is void in the earlier business.",
                               evidence)
        return CheckResult("other_business", f"The invoice has no Sage id because the branch switched to another "
                                             f"Sage business {ctx.ago(cleared.occurred_at)}, which cleared every "
                                             "Sage id; any copy in Sage is in the earlier business.", evidence)
    live_failure = None
    if ctx.connection.provider == Provider.SAGE:
        try:
            status, facts = _sage_live_status(ctx)
        except _LiveReadImpossible as exc:
            live_failure = str(exc)
        else:
            evidence.update(source="live read from Sage", read_at=moment(utcnow()), **facts)
            if status == "void":
                if outcome not in VOID_DONE and inv.status != InvoiceStatus.VOID and not inv.sage_note:
                    return CheckResult("void_outside", f"Sage shows invoice {inv.number} as void, but the portal "
                                                       "didn't void it and hasn't seen that yet: it was voided in "
                                                       "Sage directly.", evidence)
                return CheckResult("void", f"Sage shows invoice {inv.number} as void.", evidence)
            if status == "missing":
                return CheckResult("missing", f"Sage has no invoice {inv.sage_id}: it was deleted there or belongs "
                                              "to another Sage business.", evidence)
            return CheckResult("live", f"Sage still shows invoice {inv.number} as {facts.get('sage_status')}.",
                               evidence)
    else:
        live_failure = ("A live check isn't possible without the customer: Sage One AUS signs in with the customer's "
                        "own password, which only their private key opens.")
    # Fall back on what the void recorded.
    evidence.update(source="recorded void outcome", live_check=live_failure, void_outcome=outcome,
                    void_message=message)
    if outcome in VOID_DONE:
        return CheckResult("void", f"No live read; the recorded void says {label} has it void.", evidence)
    if outcome in VOID_MISSING:
        return CheckResult("missing", f"No live read; the recorded void found no such invoice in {label}.", evidence)
    if outcome is None:
        return CheckResult("no_record", "No live read, and no void outcome is recorded.", evidence)
    return CheckResult("not_done", f"No live read; the recorded void did not complete in {label}.", evidence)
