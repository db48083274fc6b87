"""What every job entry point shares: the job row's life cycle and progress reporting."""
from __future__ import annotations

import functools
import logging
from datetime import datetime

from rq import get_current_job

from portal.extensions import db, get_redis
from portal.leases import Lease, LeaseLost, first_expiry
from portal.models import Job, JobStatus, utcnow

log = logging.getLogger(__name__)


class JobFailure(Exception):
    """A job ended in a failure the person who asked should read (the message says what to do)."""


class JobPaused(Exception):
    """The job cannot go on before `resume_at` (a Sage daily budget): it continues by itself then."""

    def __init__(self, message: str, resume_at: datetime):
        super().__init__(message)
        self.resume_at = resume_at


class Progress:
    """Reports progress to `job.meta`, which the htmx progress partial reads while the job runs.

    The row gets the last figures when the job ends, so progress costs no database writes.
    """

    def __init__(self, job_id: str, lease: Lease | None = None):
        self.job_id = job_id
        self._rq_job = get_current_job()
        self._lease = lease
        self.done = 0
        self.total: int | None = None

    def check(self) -> None:
        """Before each write: raise LeaseLost if the portal failed this run while it stalled."""
        if self._lease is not None:
            self._lease.check()

    @property
    def row(self) -> Job:
        return db.session.get(Job, self.job_id)

    def update(self, done: int, total: int | None = None, **extra) -> None:
        """Record `done` of `total` plus any counters (failures, batches, eta_seconds …)."""
        self.done, self.total = done, total
        if self._rq_job is not None:
            self._rq_job.meta.update({"done": done, "total": total, **extra})
            self._rq_job.save_meta()


def portal_job(func):
    """Wrap a job body: mark its row running, then finished or failed (always, in `finally`).

    The body receives a Progress and the remaining arguments, and returns a JSON-able summary.
    A JobFailure's message is shown as is; anything else is logged and shown in general words.
    A JobPaused leaves the row queued, with its progress and the reason, and schedules the same
    entry point with the same arguments at `resume_at` (the worker's RQ scheduler starts it).
    While the body runs, its lease is renewed (portal/leases.py); a run that lost its lease (its
    row was failed while it stalled) leaves the row as the portal left it.
    """

    @functools.wraps(func)
    def run(job_id: str, *args, **kwargs):
        row = db.session.get(Job, job_id)
        if row is None:
            log.warning("job %s has no row; skipped", job_id)
            return None
        row.status = JobStatus.RUNNING
        row.started_at = row.started_at or utcnow()
        row.resume_at = None
        row.lease_expires_at = first_expiry()
        db.session.commit()
        rq_job = get_current_job()
        lease = Lease(job_id, get_redis(), db.engine, token=rq_job.id if rq_job is not None else job_id)
        lease.start()
        outcome, summary, error = JobStatus.FAILED, None, None
        progress = Progress(job_id, lease)
        paused: JobPaused | None = None
        try:
            summary = func(progress, *args, **kwargs)
            outcome = JobStatus.FINISHED
            return summary
        except JobPaused as exc:
            paused, outcome = exc, JobStatus.QUEUED
            summary = {"summary": str(exc), "paused_until": exc.resume_at.isoformat()}
            return summary
        except JobFailure as exc:
            error = str(exc)
            raise
        except LeaseLost:
            log.warning("job %s (%s) lost its lease and stopped", job_id, row.kind)
            raise
        except Exception:
            log.exception("job %s (%s) failed", job_id, row.kind)
            error = "The job failed unexpectedly. It is safe to run it again; support can see the details."
            raise
        finally:
            lease.stop()
            db.session.rollback()
            if lease.lost:
                return None  # the portal already failed this row (and may have started another run)
            retrying = outcome is JobStatus.FAILED and rq_job is not None and (rq_job.retries_left or 0) > 0
            row = db.session.get(Job, job_id, populate_existing=True)
            if row.status != JobStatus.RUNNING:
                return None  # failed by the portal after a lapse it noticed before this run did
            row.status = JobStatus.QUEUED if retrying else outcome
            row.result = summary
            row.error = error
            row.progress_done, row.progress_total = progress.done, progress.total
            row.lease_expires_at = None
            if paused is not None:
                from portal.jobqueue import schedule_continuation

                schedule_continuation(row, paused.resume_at, f"{func.__module__}.{func.__name__}", args)
            elif not retrying:
                row.ended_at = utcnow()
            db.session.commit()
            if row.status == JobStatus.FAILED:
                _tell_if_failing(row)

    return run


def _tell_if_failing(row: Job) -> None:
    """The same sync failed three times in a row: tell the customers (portal/notify.py)."""
    if "sync" not in row.kind:
        return
    from portal import notify

    last = db.session.scalars(db.select(Job.status).where(Job.branch_id == row.branch_id, Job.kind == row.kind)
                              .order_by(Job.created_at.desc()).limit(3)).all()
    if len(last) == 3 and all(status == JobStatus.FAILED for status in last):
        try:
            notify.sync_failing(row.branch, row.description, row.error)
        except Exception:  # telling must never change how the job ended
            db.session.rollback()
            log.exception("could not write the message about job %s", row.id)
