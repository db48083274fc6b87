"""The one way work reaches the RQ worker.

`enqueue` writes the job row keyed by the RQ job id (recording who asked and, in a puppet
session, the puppeteer), refuses a second queued/running job of the same kind for the same branch
(checked here and by a partial unique index), and applies the timeouts, retries and TTLs below.
"""
from __future__ import annotations

import uuid
from datetime import datetime

from flask import current_app
from redis.exceptions import RedisError
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job as RQJob
from rq.job import JobStatus as RQStatus
from sqlalchemy.exc import IntegrityError

from portal.extensions import db, get_redis
from portal.models import ACTIVE_STATUSES, Job, JobStatus, utcnow

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
    """The queued or running job of `kind` for the branch, after reconciling it with RQ."""
    row = db.session.scalar(
        db.select(Job).where(
            Job.branch_id == branch_id, Job.kind == kind, Job.status.in_(ACTIVE_STATUSES)
        )
    )
    if row is not None and not reconcile(row):
        return None
    return row


def reconcile(row: Job) -> bool:
    """Fail a row whose RQ job is gone or dead (e.g. a killed worker); True if still active."""
    if not row.status.is_active:
        return False
    try:
        rq_job = RQJob.fetch(row.rq_id, connection=get_redis())
        status = rq_job.get_status(refresh=True)
    except NoSuchJobError:
        status = None
    if status in (None, RQStatus.FAILED, RQStatus.STOPPED, RQStatus.CANCELED):
        row.status = JobStatus.FAILED
        row.ended_at = utcnow()
        row.error = row.error or "The job stopped before finishing (the worker was interrupted). Run it again to resume."
        db.session.commit()
        return False
    return True


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
) -> Job:
    """Queue `func(job_id, *args)` for a branch; raises JobAlreadyRunning or JobRefused."""
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
