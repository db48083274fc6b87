"""What the Operations page shows: RQ's queues and workers, the failed jobs, the schedule and the
Sage limiters' use per business.

Every function here only reads (Redis and the database; never Sage) and each reads a bounded
number of rows, so the page's sections can poll every few seconds whatever the portal's size.
"""
from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flask import current_app
from limits import RateLimitItemPerSecond
from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.exceptions import NoSuchJobError
from rq.job import Job as RQJob
from sqlalchemy import and_, func, or_
from sqlalchemy.orm import joinedload

from portal import schedule, timefmt
from portal.extensions import db, get_redis
from portal.integrations.sage import ratelimit
from portal.integrations.sage_one_aus import ratelimit as sage_one_ratelimit
from portal.jobqueue import get_queue
from portal.models import Branch, Connection, ConnectionState, Job, JobStatus, Provider, utcnow
from portal.operations import retry
from portal.scheduler import scheduler_alive

FAILED_DAYS = 7  # failed jobs older than this are history (the customer page keeps them)
FAILED_SHOWN = 20
NEXT_RUNS_SHOWN = 10
SKIPS_SHOWN = 10
BUSINESSES_LOOKED_AT = 100  # Sage businesses whose limiter is read per refresh


# --- Queues -----------------------------------------------------------------------------------------


@dataclass
class QueueRow:
    name: str
    is_portal: bool
    waiting: int
    running: int
    scheduled: int
    deferred: int
    failed: int
    oldest_waiting_since: datetime | None


def queues() -> list[QueueRow]:
    """Every RQ queue on the portal's Redis (the portal's own first, even when empty) and its depth."""
    redis = get_redis()
    own = current_app.config["RQ_QUEUE"]
    found = {queue.name: queue for queue in Queue.all(connection=redis)}
    found.setdefault(own, get_queue())
    return [_queue_row(found[name], name == own) for name in sorted(found, key=lambda n: (n != own, n))]


def _queue_row(queue: Queue, is_portal: bool) -> QueueRow:
    oldest = None
    first = queue.get_job_ids(0, 1)
    if first:
        try:
            oldest = _aware(RQJob.fetch(first[0], connection=queue.connection).enqueued_at)
        except NoSuchJobError:
            oldest = None
    return QueueRow(queue.name, is_portal, queue.count, queue.started_job_registry.count,
                    queue.scheduled_job_registry.count, queue.deferred_job_registry.count,
                    queue.failed_job_registry.count, oldest)


# --- Workers ----------------------------------------------------------------------------------------


# RQ gives every heartbeat a key that lives 60 s longer than the wait before the next one (an idle
# worker's blocking wait, or a busy one's check on its work horse); a heartbeat this much later than
# that is overdue.
RQ_HEARTBEAT_SLACK = 60
HEARTBEAT_GRACE = 10


@dataclass
class WorkerRow:
    name: str
    hostname: str | None
    pid: int | None
    state: str
    queues: list[str]
    born_at: datetime | None
    last_heartbeat: datetime | None
    busy_since: datetime | None
    job: Job | None  # the portal's row for the job it runs now
    job_description: str | None
    finished_count: int
    failed_count: int
    stale_reason: str | None  # why it looks dead (None: alive)

    @property
    def is_stale(self) -> bool:
        return self.stale_reason is not None


def workers() -> list[WorkerRow]:
    """The RQ workers registered on the portal's Redis and what each runs now. RQ keeps a worker
    listed until its last heartbeat's key expires, so a worker that died without saying so stays
    listed a while: it shows as stale once its next heartbeat is overdue (or, on this host, once its
    process is gone)."""
    redis = get_redis()
    listed = sorted(Worker.all(connection=redis), key=lambda w: w.name)
    current = {w.name: w.get_current_job() for w in listed}
    ids = {job.id for job in current.values() if job is not None}
    rows = db.session.scalars(db.select(Job).options(joinedload(Job.branch).joinedload(Branch.business)).where(
        or_(Job.id.in_(ids), Job.rq_job_id.in_(ids)))).all() if ids else []
    by_rq_id = {row.rq_id: row for row in rows} | {row.id: row for row in rows}
    now = datetime.now(UTC)
    result = []
    for worker in listed:
        job = current[worker.name]
        last = _aware(worker.last_heartbeat)
        result.append(WorkerRow(
            name=worker.name, hostname=worker.hostname, pid=worker.pid, state=str(worker.get_state()),
            queues=worker.queue_names(), born_at=_aware(worker.birth_date), last_heartbeat=last,
            busy_since=_aware(job.started_at) if job is not None else None,
            job=by_rq_id.get(job.id) if job is not None else None,
            job_description=job.description if job is not None else None,
            finished_count=worker.successful_job_count, failed_count=worker.failed_job_count,
            stale_reason=_stale_reason(worker.hostname, worker.pid, last, redis.ttl(worker.key), now)))
    return result


def _stale_reason(hostname: str | None, pid: int | None, last: datetime | None, ttl: int, now: datetime) -> str | None:
    """Why a registered worker looks dead, or None. `ttl`: what is left of its key's life (seconds)."""
    if hostname and pid and hostname == socket.gethostname() and not _process_exists(pid):
        return f"Its process ({pid} on {hostname}) is gone: it stopped without signing off."
    if last is None:
        return "It has never sent a heartbeat."
    elapsed = (now - last).total_seconds()
    if ttl > 0:  # the key's life at the last heartbeat was ttl + elapsed; the next beat was due 60 s before its end
        due = max(ttl + elapsed - RQ_HEARTBEAT_SLACK, 1)
        if elapsed > due + HEARTBEAT_GRACE:
            return (f"No heartbeat for {timefmt.duration(elapsed)}; the next was due after "
                    f"{timefmt.duration(due)}.")
    return None


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- Failed jobs ------------------------------------------------------------------------------------


@dataclass
class FailedRow:
    job: Job
    later: Job | None  # a run of the same kind on the branch started after this one
    offer: str  # retry.offer_for(job)


def failed_jobs() -> tuple[list[FailedRow], int]:
    """The newest failed jobs of the last FAILED_DAYS days, and how many failed in that time."""
    since = utcnow() - timedelta(days=FAILED_DAYS)
    recent = (Job.status == JobStatus.FAILED, Job.ended_at >= since)
    total = db.session.scalar(db.select(func.count()).select_from(Job).where(*recent)) or 0
    jobs = db.session.scalars(
        db.select(Job).options(joinedload(Job.branch).joinedload(Branch.business), joinedload(Job.requested_by),
                               joinedload(Job.puppeteer))
        .where(*recent).order_by(Job.ended_at.desc()).limit(FAILED_SHOWN)).all()
    latest = _latest_runs({(job.branch_id, job.kind) for job in jobs})
    rows = []
    for job in jobs:
        newest = latest.get((job.branch_id, job.kind))
        later = newest if newest is not None and newest.id != job.id and newest.created_at > job.created_at else None
        rows.append(FailedRow(job, later, retry.offer_for(job)))
    return rows, total


def _latest_runs(pairs: set[tuple[int, str]]) -> dict[tuple[int, str], Job]:
    """The newest job of each (branch, kind), in one query."""
    if not pairs:
        return {}
    branch_ids, kinds = {b for b, _ in pairs}, {k for _, k in pairs}
    newest = (db.select(Job.branch_id, Job.kind, func.max(Job.created_at).label("at"))
              .where(Job.branch_id.in_(branch_ids), Job.kind.in_(kinds))
              .group_by(Job.branch_id, Job.kind).subquery())
    rows = db.session.scalars(db.select(Job).options(joinedload(Job.requested_by)).join(newest, and_(
        Job.branch_id == newest.c.branch_id, Job.kind == newest.c.kind, Job.created_at == newest.c.at))).all()
    return {(row.branch_id, row.kind): row for row in rows}


# --- The schedule -----------------------------------------------------------------------------------


@dataclass
class ScheduledRow:
    connection: Connection
    every: str
    next_at: datetime | None
    reason: str | None = None  # for a skip: why

    @property
    def is_due(self) -> bool:
        """Its next run is now or past: the scheduler's next minute starts (or skips) it."""
        return self.next_at is not None and self.next_at <= utcnow()


def scheduled_runs() -> dict:
    """Whether a scheduler leads, the next scheduled syncs and the latest skips with their reasons."""
    scheduled = db.select(Connection).options(joinedload(Connection.branch).joinedload(Branch.business)).where(
        Connection.provider == Provider.SAGE,
        Connection.state.in_((ConnectionState.CONNECTED, ConnectionState.NEEDS_REAUTH)))
    upcoming = []
    # Within one interval the soonest next runs are the longest since their last run, so the few
    # rows read per interval hold the soonest overall (a never-run branch is due now).
    for every in (e for e, interval in schedule.EVERY.items() if interval is not None):
        chosen = Connection.sync_every == every
        if every == schedule.DEFAULT:
            chosen = or_(chosen, Connection.sync_every.is_(None))
        last = func.coalesce(Connection.last_scheduled_at, Connection.last_sync_at)
        for connection in db.session.scalars(scheduled.where(chosen).order_by(last.asc().nulls_first(), Connection.id)
                                             .limit(NEXT_RUNS_SHOWN)).unique():
            upcoming.append(ScheduledRow(connection, every, schedule.next_sync_at(connection)))
    upcoming.sort(key=lambda row: (row.next_at is None, row.next_at or utcnow(), row.connection.id))
    skipped = db.session.scalars(scheduled.where(
        Connection.sync_every != "off",
        or_(Connection.schedule_note.like("Skipped%"), Connection.schedule_note.like("At % not everything%")))
        .order_by(Connection.last_scheduled_at.desc()).limit(SKIPS_SHOWN)).unique().all()
    off = db.session.scalar(db.select(func.count()).select_from(Connection).where(
        Connection.provider == Provider.SAGE, Connection.state != ConnectionState.DISCONNECTED,
        Connection.sync_every == "off")) or 0
    try:
        leading = scheduler_alive(get_redis())
    except RedisError:
        leading = None
    return {"leading": leading, "upcoming": upcoming[:NEXT_RUNS_SHOWN], "off": off,
            "skipped": [ScheduledRow(c, c.sync_every or schedule.DEFAULT, schedule.next_sync_at(c),
                                     skip_reason_of(c.schedule_note)) for c in skipped]}


# "Skipped at 7:18 pm Sydney time (AEDT): a sync or void was already running." (older notes: "at 07:18 UTC:");
# "At 7:18 pm Sydney time (AEDT) not everything could start: …".
_SKIP_NOTE = re.compile(r"^(?:Skipped at .+?: |At .+? (?=not everything))(?P<reason>.+?)\.?$", re.DOTALL)


def skip_reason_of(note: str | None) -> str | None:
    """The reason in a schedule note without its clock time: the page says when from the row's own
    time, in the reader's zone."""
    if not note:
        return None
    match = _SKIP_NOTE.match(note)
    reason = match.group("reason") if match else note
    return reason[:1].upper() + reason[1:]


# --- Sage's limiters --------------------------------------------------------------------------------


@dataclass
class LimiterRow:
    api: str  # "Sage" (v3.1, per business) or "Sage One AUS" (2.0.0, per company)
    business_id: str
    name: str
    branches: int
    used_now: int
    per_window: int | None
    window_seconds: int | None
    used_today: int | None
    daily_budget: int | None
    renews_at: datetime | None
    held_until: datetime | None

    @property
    def busy(self) -> bool:
        return bool(self.used_now or self.used_today or self.held_until)


@dataclass
class Limiters:
    busy: list[LimiterRow]  # sending anything now or on hold, those on hold first, then the busiest
    idle: int  # looked at and sending nothing
    looked_at: int
    total: int  # businesses and companies in use in all (only the first LOOKED_AT of each API are read)


def limiters() -> Limiters:
    """Each Sage business's and Sage One AUS company's use of its shared limiter now."""
    rows, total = _sage_rows()
    one_rows, one_total = _sage_one_rows()
    rows += one_rows
    busy = sorted((row for row in rows if row.busy),
                  key=lambda row: (row.held_until is None, -row.used_now, -(row.used_today or 0), row.name))
    return Limiters(busy, len(rows) - len(busy), len(rows), total + one_total)


def _sage_rows() -> tuple[list[LimiterRow], int]:
    from portal.integrations.sage.sync import rate_limit_for

    in_use = (Connection.provider == Provider.SAGE, Connection.state != ConnectionState.DISCONNECTED,
              Connection.sage_business_id.is_not(None))
    total = db.session.scalar(db.select(func.count(func.distinct(Connection.sage_business_id))).where(*in_use)) or 0
    businesses = db.session.execute(
        db.select(Connection.sage_business_id, func.max(Connection.sage_business_name), func.count())
        .where(*in_use).group_by(Connection.sage_business_id)
        .order_by(func.max(Connection.rate_limited_until).desc().nulls_last(), Connection.sage_business_id)
        .limit(BUSINESSES_LOOKED_AT)).all()
    rows = []
    for business_id, name, branches in businesses:
        limit = rate_limit_for(Connection(sage_business_id=business_id))  # only its business id is read
        rows.append(_sage_row(limit, business_id, name or business_id, branches))
    return rows, total


def _sage_row(limit: ratelimit.BusinessRateLimit, business_id: str, name: str, branches: int) -> LimiterRow:
    used_now, per_window, window = 0, None, None
    if limit.minute is not None:
        per_window, window = limit.minute.amount, limit.minute.get_expiry()
        stats = limit.moving.get_window_stats(limit.minute, ratelimit.NAMESPACE, limit.business_id)
        used_now = max(per_window - stats.remaining, 0)
    used_today = budget = renews_at = None
    if limit.day is not None:
        budget = limit.day.amount
        used_today = budget - (limit.requests_left_today() or 0)
        renews_at = limit.day_renews_at() if used_today else None
    held = limit.held_until()
    return LimiterRow("Sage", business_id, name, branches, used_now, per_window, window, used_today, budget,
                      renews_at, datetime.fromtimestamp(held, UTC) if held is not None else None)


def _sage_one_rows() -> tuple[list[LimiterRow], int]:
    in_use = (Connection.provider == Provider.SAGE_ONE_AUS, Connection.state != ConnectionState.DISCONNECTED,
              Connection.sage_one_company_id.is_not(None))
    total = db.session.scalar(
        db.select(func.count(func.distinct(Connection.sage_one_company_id))).where(*in_use)) or 0
    companies = db.session.execute(
        db.select(Connection.sage_one_company_id, func.max(Connection.sage_one_company_name), func.count())
        .where(*in_use).group_by(Connection.sage_one_company_id)
        .order_by(func.max(Connection.rate_limited_until).desc().nulls_last(), Connection.sage_one_company_id)
        .limit(BUSINESSES_LOOKED_AT)).all()
    if not companies:
        return [], total
    # The same item (slots, window) the limiter takes slots with, so its Redis key is the same.
    item = RateLimitItemPerSecond(sage_one_ratelimit.slots_per_window(), sage_one_ratelimit.WINDOW_SECONDS)
    limiter = sage_one_ratelimit.limiter()
    rows = []
    for company_id, name, branches in companies:
        stats = limiter.get_window_stats(item, sage_one_ratelimit.NAMESPACE,
                                         sage_one_ratelimit.company_bucket(company_id))
        rows.append(LimiterRow("Sage One AUS", str(company_id), name or f"Company {company_id}", branches,
                               max(item.amount - stats.remaining, 0), item.amount, sage_one_ratelimit.WINDOW_SECONDS,
                               None, None, None, sage_one_ratelimit.blocked_until(company_id)))
    return rows, total


def _aware(moment: datetime | None) -> datetime | None:
    """RQ's times are UTC, naive or not."""
    if moment is None:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
