"""The one way work reaches the RQ worker.

`enqueue` writes the job row keyed by the RQ job id (recording who asked and, in a puppet
session, the puppeteer), refuses a second queued/running job of the same kind for the same branch
(checked here and by a partial unique index), and applies the timeouts, retries and TTLs below.
"""
from __future__ import annotations

import functools
import uuid
from datetime import datetime

from flask import current_app
from redis.exceptions import RedisError
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Dependency
from rq.job import Job as RQJob
from rq.job import JobStatus as RQStatus
from sqlalchemy import bindparam
from sqlalchemy.exc import IntegrityError

from portal import json_logs, leases
from portal.extensions import db, get_redis
from portal.models import ACTIVE_STATUSES, Job, JobStatus, utcnow
from portal.models.jobs import ACTIVE_WHERE

# Timeouts and TTLs for every job, in one place (seconds).
JOB_TIMEOUT = 60 * 60  # a mass re-sync of a large branch may take this long
QUEUED_TTL = 6 * 60 * 60  # a job nobody picked up within this is dropped, and its row failed
RESULT_TTL = 24 * 60 * 60
FAILURE_TTL = 7 * 24 * 60 * 60
RETRY_INTERVALS = [10, 60]


class JobRefused(Exception):
    """A job could not be enqueued; the message is for the person who asked."""


class JobAlreadyRunning(JobRefused):
    """A job of this kind is already queued or running for the branch."""

    def __init__(self, existing: Job | None):
        self.existing = existing
        super().__init__("That is already running for this branch; follow its progress below.")


def get_queue() -> Queue:
    """The portal's RQ queue on the app's Redis."""
    return Queue(current_app.config["RQ_QUEUE"], connection=get_redis())


def active_job(branch_id: int, kind: str) -> Job | None:
    """The queued or running job of `kind` for the branch, after reconciling it with RQ (read from
    the partial index of active jobs, whose predicate the query spells as it does)."""
    row = db.session.scalar(
        db.select(Job).where(Job.branch_id == branch_id, Job.kind == kind, db.text(ACTIVE_WHERE))
    )
    if row is not None and not reconcile(row):
        return None
    return row


@functools.lru_cache(maxsize=32)
def _active_jobs_statement(kinds: tuple[str, ...]):
    """Built once per set of kinds (pages run it at every view)."""
    return db.select(Job).where(Job.branch_id == bindparam("branch_id"), Job.kind.in_(kinds), db.text(ACTIVE_WHERE))


def active_jobs(branch_id: int, kinds: tuple[str, ...]) -> list[Job]:
    """`active_job` of each of `kinds` that has one, in the order of `kinds`, in one statement."""
    rows = db.session.scalars(_active_jobs_statement(kinds), {"branch_id": branch_id}).all()
    return [row for row in sorted(rows, key=lambda row: kinds.index(row.kind)) if reconcile(row)]


# Kinds that are safe to run again by themselves after their worker died: a sync looks before it
# creates and resumes with what is still pending. A void is never re-run unasked.
REQUEUE_BY_THEMSELVES = ("sage.sync_contacts", "sage.sync_invoices")


def reconcile(row: Job) -> bool:
    """True while the row's job is alive; a dead one is failed, saying what happened.

    A running row is alive while its lease holds (portal/leases.py), whatever RQ says: a work
    horse whose parent died still runs, and after a Redis restart RQ knows nothing of it. A queued
    row is alive while RQ still has its job queued, scheduled or started. A Sage sync that died is
    queued again, once, by itself.
    """
    if not row.status.is_active:
        return False
    if row.status == JobStatus.RUNNING:
        if leases.is_alive(get_redis(), row.id, row.lease_expires_at):
            return True
        _declare_dead(row, "stopped")
        return False
    try:
        status = RQJob.fetch(row.rq_id, connection=get_redis()).get_status(refresh=True)
    except NoSuchJobError:
        status = None
    except RedisError:
        return True  # can't tell now: never fail a job on a guess
    if status in (None, RQStatus.FAILED, RQStatus.STOPPED, RQStatus.CANCELED, RQStatus.FINISHED):
        _declare_dead(row, "lost")
        return False
    return True


def reconcile_all() -> int:
    """Reconcile every queued or running row (the scheduler does this every minute); how many died."""
    rows = db.session.scalars(db.select(Job).where(Job.status.in_(ACTIVE_STATUSES))).all()
    return sum(1 for row in rows if not reconcile(row))


def _declare_dead(row: Job, how: str) -> None:
    where = f" at {row.progress_done} of {row.progress_total}" if row.progress_total else ""
    requeue = row.kind in REQUEUE_BY_THEMSELVES and not (row.params or {}).get("requeued_from")
    if how == "lost":
        what = "The job was lost before it could finish (the job queue restarted or dropped it)"
    else:
        what = f"The worker running this stopped{where} (its process or machine died)"
    if "void" in row.kind:
        row.error = (f"{what}. The void may or may not have reached Sage: check Sage before retrying "
                     "(the void page shows what Sage says now).")
    elif requeue:
        row.error = f"{what}. It was queued again by itself and resumes with what is still pending."
    elif row.kind in REQUEUE_BY_THEMSELVES:
        row.error = f"{what}, for the second time; it was not queued again. Run it again to resume."
    else:
        row.error = f"{what}. Nothing was lost: run it again to resume."
    row.status = JobStatus.FAILED
    row.ended_at = utcnow()
    row.lease_expires_at = None
    db.session.commit()
    leases.release(get_redis(), row.id)
    if requeue:
        _requeue(row)


def _requeue(row: Job) -> None:
    from portal.integrations.sage import enqueue as sage_jobs

    branch = row.branch
    what = (row.params or {}).get("what") or ("invoices" if "invoice" in row.kind else "contacts")
    try:
        again = sage_jobs.start_sync(branch, what, requested_by=row.requested_by, puppeteer=row.puppeteer,
                                     params={"requeued_from": row.id}, note=" again by itself after its worker stopped")
    except JobRefused as refused:
        row.error += f" (It could not be queued again: {refused})"
        db.session.commit()
        return
    try:
        _carry_dependents(row.rq_id, again.rq_id)
    except RedisError:
        pass  # RQ's own clean-up of the dead job releases them later (within about ten minutes)


def _carry_dependents(dead_id: str, again_id: str) -> None:
    """Jobs RQ holds back until the dead run ended (the schedule's invoices after its contacts) wait
    for the run queued again in its place instead. RQ itself would release them only when it
    notices the dead run, about ten minutes later, and then beside the run queued again."""
    redis = get_redis()
    try:
        dead = RQJob.fetch(dead_id, connection=redis)
    except NoSuchJobError:
        return  # RQ forgot the dead run (a Redis restart): its dependents are reconciled on their own
    for dependent in RQJob.fetch_many(dead.dependent_ids, connection=redis):
        if dependent is None or dependent.get_status() != RQStatus.DEFERRED:
            continue
        with redis.pipeline() as pipe:
            pipe.srem(dead.dependents_key, dependent.id)
            pipe.srem(dependent.dependencies_key, dead.id)
            dependent._dependency_ids = [again_id]
            dependent.save(pipeline=pipe)
            dependent.register_dependency(pipeline=pipe)
            pipe.execute()
    again = RQJob.fetch(again_id, connection=redis)
    if again.get_status() in (RQStatus.FINISHED, RQStatus.FAILED):  # it ended before they were moved
        get_queue().enqueue_dependents(again)


def enqueue(
    kind: str,
    func: str,
    *,
    branch,
    requested_by,
    puppeteer=None,
    description: str,
    args: tuple = (),
    params: dict | None = None,
    retries: int = 0,
    after: Job | None = None,
) -> Job:
    """Queue `func(job_id, *args)` for a branch; raises JobAlreadyRunning or JobRefused.

    `after`: start only once that job has ended (RQ holds this one deferred until then), at the front
    of the queue: a branch's invoices go on from its contacts at once, on the worker that just ended
    them, instead of waiting behind every other branch's queued work while workers sit on a busy
    Sage business's limit.
    """
    if active_job(branch.id, kind) is not None:
        raise JobAlreadyRunning(active_job(branch.id, kind))
    row = Job(
        id=uuid.uuid4().hex,
        kind=kind,
        branch_id=branch.id,
        requested_by_id=requested_by.id if requested_by else None,
        puppeteer_id=puppeteer.id if puppeteer else None,
        description=description,
        params=params or {},
        status=JobStatus.QUEUED,
    )
    db.session.add(row)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise JobAlreadyRunning(active_job(branch.id, kind)) from None
    try:
        get_queue().enqueue(
            func,
            row.id,
            *args,
            job_id=row.id,
            job_timeout=JOB_TIMEOUT,
            ttl=QUEUED_TTL,
            result_ttl=RESULT_TTL,
            failure_ttl=FAILURE_TTL,
            retry=Retry(max=retries, interval=RETRY_INTERVALS[:retries]) if retries else None,
            description=description,
            depends_on=Dependency(jobs=[after.rq_id], allow_failure=True, enqueue_at_front=True)
            if after is not None else None,
            meta=json_logs.job_meta(),  # the request id, for the job's log lines
        )
    except RedisError:
        row.status = JobStatus.FAILED
        row.ended_at = utcnow()
        row.error = "The job queue is unavailable right now; nothing was started. Try again shortly."
        db.session.commit()
        raise JobRefused(row.error) from None
    return row


def schedule_continuation(row: Job, resume_at: datetime, func: str, args: tuple) -> None:
    """Continue a paused job at `resume_at`: the same entry point and arguments as a new RQ job
    (the worker's scheduler starts it), carried by the same row, which stays queued until then.
    The caller commits."""
    continuation = f"{row.id}-{uuid.uuid4().hex[:8]}"
    try:
        get_queue().enqueue_at(resume_at, func, row.id, *args, job_id=continuation, job_timeout=JOB_TIMEOUT,
                               result_ttl=RESULT_TTL, failure_ttl=FAILURE_TTL, description=row.description)
    except RedisError:
        row.status = JobStatus.FAILED
        row.ended_at = utcnow()
        row.error = "The job paused and could not be scheduled to resume (the job queue is unavailable). Run it again."
        return
    row.rq_job_id = continuation
    row.resume_at = resume_at


def live_progress(row: Job) -> dict:
    """Progress of a job: the worker's latest `job.meta` while active, else the row's final figures."""
    progress = {"done": row.progress_done, "total": row.progress_total}
    if row.status.is_active:
        try:
            meta = RQJob.fetch(row.rq_id, connection=get_redis()).get_meta(refresh=True)
        except (NoSuchJobError, RedisError):
            meta = {}
        progress.update({k: v for k, v in meta.items() if v is not None})
    return progress
