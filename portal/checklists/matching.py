"""Which scenarios match a customer's current state (the console suggests them)."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, case, select, text, union_all
from sqlalchemy.orm import aliased

from portal import timefmt
from portal.checklists import scenarios
from portal.checklists.checks import STUCK_AFTER, sync_failures
from portal.checklists.engine import Scenario
from portal.extensions import db
from portal.integrations.sage import sync as sage_sync
from portal.integrations.sage_one_aus import sync as sage_one_sync
from portal.models import (
    ACTIVE_STATUSES,
    Branch,
    Business,
    ChecklistRun,
    ConnectionState,
    JobStatus,
    Provider,
    RunStatus,
    SyncOutcome,
    utcnow,
)
from portal.models.jobs import ACTIVE_WHERE, Job, branch_params
from portal.voids import find_invoices_unscoped

RECENT_VOIDS = timedelta(days=30)


@dataclass
class Suggestion:
    """A scenario that fits one branch now, and why."""

    scenario: Scenario
    branch: Branch
    reason: str
    invoice_number: str | None = None


VOIDS_READ = 50  # at most this many of a branch's latest voids of the last RECENT_VOIDS
VOID_KINDS = (sage_sync.KIND_VOID, sage_one_sync.VOID_KIND)


@dataclass
class RecentJob:
    """What the suggestions read of a job: a void's invoice and outcome, a sync's count of records it
    could not send, as `params` and `result` hold them on the job."""

    id: str
    branch_id: int
    kind: str
    status: JobStatus
    description: str | None
    progress_done: int | None
    created_at: datetime
    params: dict
    result: dict


@functools.lru_cache(maxsize=16)
def _recent_jobs_statement(branch_count: int):
    """Per branch, the jobs the suggestions judge, each read from an index: its latest sync (the
    newest end of its (branch, created) index), its queued or running jobs (the partial index of
    active jobs) and its voids of the last RECENT_VOIDS (the (branch, kind, created) index). Reading
    the business's latest 200 jobs instead saw a branch's voids for less than a day once its syncs
    ran every 15 minutes. Built once per number of branches; parameters `branch_{n}` and `since`."""
    syncing = Job.kind.contains("sync")
    parts = []
    for n in range(branch_count):
        branch = Job.branch_id == bindparam(f"branch_{n}")
        parts += [
            select(Job).where(branch, syncing).order_by(Job.created_at.desc()).limit(1),
            select(Job).where(branch, text(ACTIVE_WHERE)),  # syncs and voids: the index's predicate alone
            select(Job).where(branch, Job.kind.in_(VOID_KINDS), Job.created_at >= bindparam("since"))
            .order_by(Job.created_at.desc()).limit(VOIDS_READ),
        ]
    # Each part a subquery of its own: SQLite takes ORDER BY and LIMIT in a compound's part only so.
    job = aliased(Job, union_all(*(part.subquery().select() for part in parts)).subquery("recent_jobs"))
    void, sync = job.kind.contains("void"), job.kind.contains("sync")
    # The three values the suggestions read, taken out of the JSON by the database: not every
    # job's whole params and result decoded for them.
    return (
        select(job.id, job.branch_id, job.kind, job.status, job.description, job.progress_done, job.created_at,
               case((void, job.params["invoice_id"].as_string())).label("invoice_id"),
               case((void, job.result["outcome"].as_string())).label("outcome"),
               case((sync, job.result["failures"].as_string())).label("failures"))
    )  # unordered: asked to merge the parts by time, SQLite read each part through the time index


def _invoice_id(value) -> int | None:
    """A void's invoice id as the JSON holds it (SQLite answers a number, PostgreSQL its text)."""
    if isinstance(value, int):
        return value
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _recent_jobs(branch_ids: list[int], now: datetime) -> dict[int, list[RecentJob]]:
    """Per branch, newest first: its latest sync, its queued or running jobs and its voids of the
    last RECENT_VOIDS (`_recent_jobs_statement`), with only the columns and JSON values the
    suggestions read."""
    by_branch: dict[int, list[RecentJob]] = {}
    seen = set()  # the latest sync may be running: read by two parts
    rows = db.session.execute(_recent_jobs_statement(len(branch_ids)),
                              {**branch_params(branch_ids), "since": now - RECENT_VOIDS}).all()
    for row in sorted(rows, key=lambda r: r.created_at, reverse=True):
        if row.id in seen:
            continue
        seen.add(row.id)
        job = RecentJob(row.id, row.branch_id, row.kind, row.status, row.description, row.progress_done,
                        row.created_at, params={"invoice_id": _invoice_id(row.invoice_id)},
                        result={"outcome": row.outcome, "failures": row.failures})
        by_branch.setdefault(job.branch_id, []).append(job)
    return by_branch


def _failed_void_invoices(jobs: list) -> list[int]:
    """The invoices whose latest void in the last RECENT_VOIDS failed or found Sage refusing or
    missing it, newest first (a void tried again counts by its latest try)."""
    found, seen = [], set()
    since = utcnow() - RECENT_VOIDS
    for job in jobs:
        invoice_id = (job.params or {}).get("invoice_id")
        if "void" not in job.kind or invoice_id in seen or job.created_at < since:
            continue
        seen.add(invoice_id)
        outcome = (job.result or {}).get("outcome")
        if (job.status == JobStatus.FAILED or outcome in ("missing_in_sage", "sage_refused")) \
                and isinstance(invoice_id, int):
            found.append(invoice_id)
    return found


def for_business(business: Business) -> list[Suggestion]:
    """The scenarios that match each branch's connection, jobs and voids right now (a few queries)."""
    now = utcnow()
    zone = timefmt.zone_for(business.time_zone)
    branches = list(business.branches)
    jobs = _recent_jobs([b.id for b in branches], now) if branches else {}
    failed_voids = {branch.id: _failed_void_invoices(jobs.get(branch.id, [])) for branch in branches}
    # Every branch's invoices in one statement (the void's unscoped lookup, soft-deleted ones included).
    invoices = find_invoices_unscoped([(branch_id, invoice_id) for branch_id, invoice_ids in failed_voids.items()
                                       for invoice_id in invoice_ids])
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
        elif not rate_limited and syncs and syncs[0].status == JobStatus.FINISHED and sync_failures(syncs[0]):
            failures = sync_failures(syncs[0])
            add(scenarios.SYNC_FAILED_OR_STUCK, f"The last sync finished with {failures} "
                                                f"record{'' if failures == 1 else 's'} it could not send.")
        for invoice_id in failed_voids[branch.id]:
            invoice = invoices.get((branch.id, invoice_id))
            if invoice is not None:
                found.append(Suggestion(scenarios.SAGE_VOID_STILL_SHOWN, branch,
                                        f"The void of invoice {invoice.number} didn't complete in Sage.",
                                        invoice.number))
    return found


def open_runs(business_id: int) -> list[ChecklistRun]:
    """The business's unfinished runs (in progress or paused), newest first."""
    return db.session.scalars(
        select(ChecklistRun).where(ChecklistRun.business_id == business_id,
                                   ChecklistRun.status != RunStatus.FINISHED)
        .order_by(ChecklistRun.started_at.desc()).limit(20)
    ).all()
