"""Which scenarios match a customer's current state (the console suggests them)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from portal import timefmt
from portal.checklists import scenarios
from portal.checklists.checks import STUCK_AFTER
from portal.checklists.engine import Scenario
from portal.extensions import db
from portal.models import (
    ACTIVE_STATUSES,
    Branch,
    Business,
    ChecklistRun,
    ConnectionState,
    Job,
    JobStatus,
    Provider,
    RunStatus,
    SyncOutcome,
    utcnow,
)
from portal.voids import find_invoice_unscoped

RECENT_VOIDS = timedelta(days=30)


@dataclass
class Suggestion:
    """A scenario that fits one branch now, and why."""

    scenario: Scenario
    branch: Branch
    reason: str
    invoice_number: str | None = None


def _latest_jobs(branch_ids: list[int]) -> dict[int, list[Job]]:
    jobs = db.session.scalars(
        select(Job).where(Job.branch_id.in_(branch_ids)).order_by(Job.created_at.desc()).limit(200)
    ).all()
    by_branch: dict[int, list[Job]] = {}
    for job in jobs:
        by_branch.setdefault(job.branch_id, []).append(job)
    return by_branch


def _failed_voids(branch: Branch, jobs: list[Job]) -> list[Suggestion]:
    suggestions, seen = [], set()
    since = utcnow() - RECENT_VOIDS
    for job in jobs:
        invoice_id = (job.params or {}).get("invoice_id")
        if "void" not in job.kind or invoice_id in seen or job.created_at < since:
            continue
        seen.add(invoice_id)
        outcome = (job.result or {}).get("outcome")
        if job.status == JobStatus.FAILED or outcome in ("missing_in_sage", "sage_refused"):
            invoice = find_invoice_unscoped(branch.id, invoice_id)
            if invoice is not None:
                suggestions.append(Suggestion(scenarios.SAGE_VOID_STILL_SHOWN, branch,
                                              f"The void of invoice {invoice.number} didn't complete in Sage.",
                                              invoice.number))
    return suggestions


def for_business(business: Business) -> list[Suggestion]:
    """The scenarios that match each branch's connection, jobs and voids right now (a few queries)."""
    now = utcnow()
    zone = timefmt.zone_for(business.time_zone)
    branches = list(business.branches)
    jobs = _latest_jobs([b.id for b in branches]) if branches else {}
    found: list[Suggestion] = []
    for branch in branches:
        conn = branch.connection
        branch_jobs = jobs.get(branch.id, [])

        def add(scenario: Scenario, reason: str, branch=branch) -> None:
            found.append(Suggestion(scenario, branch, reason))

        rate_limited = conn is not None and conn.is_rate_limited(now)
        if conn is not None and conn.provider == Provider.SAGE_ONE_AUS:
            # Only a refused or locked login says the login changed: a count of failed logins alone
            # (a typo at sign-in) does not, and a rate limit is "slow down", never a login problem.
            locked = conn.locked_until is not None and conn.locked_until > now
            if conn.state == ConnectionState.CREDENTIALS_REJECTED:
                add(scenarios.SAGE_ONE_AUS_LOGIN_CHANGED,
                    f"Sage One AUS rejects the stored login ({conn.sage_one_username}).")
            elif locked:
                add(scenarios.SAGE_ONE_AUS_LOGIN_CHANGED,
                    f"Sage One has locked the login {conn.sage_one_username} until "
                    f"{timefmt.when(conn.locked_until, zone)}.")
            elif conn.state != ConnectionState.CONNECTED:
                add(scenarios.SAGE_ONE_AUS_PUPPET_AUTH,
                    "Sage One AUS needs the customer to authenticate themselves.")
        if conn is not None and conn.provider == Provider.SAGE:
            if conn.mass_resync_started_at is not None:
                add(scenarios.SAGE_MASS_RESYNC,
                    f"A mass re-sync of {conn.mass_resync_total or 'all'} contacts started "
                    f"{timefmt.ago(conn.mass_resync_started_at, now)}.")
            if conn.state == ConnectionState.NEEDS_REAUTH:
                add(scenarios.SAGE_TOKEN_DIED, "Sage no longer accepts the branch's sign-in.")
        if rate_limited:
            add(scenarios.SAGE_RATE_LIMITED, f"{conn.provider.label} is rate-limiting the branch until "
                                             f"{timefmt.when(conn.rate_limited_until, zone)}.")
        syncs = [j for j in branch_jobs if "sync" in j.kind]
        stuck = [j for j in syncs if j.status.value in ACTIVE_STATUSES and now - j.created_at > STUCK_AFTER
                 and not j.progress_done]
        if stuck:
            add(scenarios.SYNC_FAILED_OR_STUCK, f"{stuck[0].description or stuck[0].kind} looks stuck.")
        # While rate-limited, a failed sync is the limit's doing, which its own checklist covers.
        elif not rate_limited and ((syncs and syncs[0].status == JobStatus.FAILED) or (
                conn is not None and conn.last_sync_outcome == SyncOutcome.FAILED and not syncs)):
            add(scenarios.SYNC_FAILED_OR_STUCK, "The last sync failed.")
        found.extend(_failed_voids(branch, branch_jobs))
    return found


def open_runs(business_id: int) -> list[ChecklistRun]:
    """The business's unfinished runs (in progress or paused), newest first."""
    return db.session.scalars(
        select(ChecklistRun).where(ChecklistRun.business_id == business_id,
                                   ChecklistRun.status != RunStatus.FINISHED)
        .order_by(ChecklistRun.started_at.desc()).limit(20)
    ).all()
