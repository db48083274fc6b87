"""What every job entry point shares: the job row's life cycle and progress reporting."""
from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime

from rq import get_current_job

from portal import metrics, redis_outages
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


# An estimate is shown only once the measured rate has settled: after this many records and seconds.
ESTIMATE_AFTER_RECORDS = 10
ESTIMATE_AFTER_SECONDS = 10.0
TICK_SECONDS = 0.25  # `tick` writes job.meta at most this often (a poll each second sees each record)


class Progress:
    """Reports progress to `job.meta`, which the htmx progress partial reads while the job runs.

    The row gets the last figures when the job ends, so progress costs no database writes.
    `eta_seconds` comes from the rate measured over the whole run (time spent waiting for Sage's
    limit included), never from the last batch alone, and never promises more than the limit
    allows (`paced_by`); `waiting_until` says when a wait for Sage's limit ends.
    """

    def __init__(self, job_id: str, lease: Lease | None = None, clock: Callable[[], float] = time.monotonic):
        self.job_id = job_id
        self._clock = clock  # injectable, so tests of the estimate never sleep
        self._rq_job = get_current_job()
        self._lease = lease
        self.done = 0
        self.total: int | None = None
        self._started: float | None = None  # when the run first knew its total
        self._written = 0.0
        self._pace: tuple[int, float, Callable[[], int]] | None = None

    def paced_by(self, per_window: int, window_seconds: float, requests_sent: Callable[[], int]) -> None:
        """The run sends at most `per_window` requests each `window_seconds` (Sage's limit);
        `requests_sent()` counts them, so the estimate knows how many a record takes."""
        self._pace = (per_window, window_seconds, requests_sent)
        self._requests_at_start = requests_sent()

    def estimate(self, done: int, total: int | None) -> int | None:
        """Seconds left at the rate measured so far, or None until that rate is worth saying."""
        if not total or self._started is None or done < ESTIMATE_AFTER_RECORDS or done >= total:
            return None
        elapsed = self._clock() - self._started
        if elapsed < ESTIMATE_AFTER_SECONDS:
            return None
        left = total - done
        seconds = left * elapsed / done
        if self._pace is not None:
            # A fast start (the limit's window still has room) must not promise that pace for the rest:
            # beyond one window's worth of requests, the limit sets the speed.
            per_window, window, requests_sent = self._pace
            per_record = max(requests_sent() - self._requests_at_start, 0) / done
            seconds = max(seconds, (left * per_record - per_window) / per_window * window)
        return math.ceil(seconds)

    def waiting(self, until: float | None) -> None:
        """Say the run waits for Sage's limit until POSIX time `until` (None: it goes on again)."""
        if self._rq_job is not None:
            self._rq_job.meta["waiting_until"] = datetime.fromtimestamp(until, UTC).isoformat() if until else None
            self._rq_job.save_meta()

    def tick(self, done: int, total: int | None = None, **extra) -> None:
        """`update` for each record: written to job.meta at most every TICK_SECONDS, and at the end."""
        self.done, self.total = done, total
        if done == total or self._clock() - self._written >= TICK_SECONDS:
            self.update(done, total, **extra)

    def check(self) -> None:
        """Before each write: raise LeaseLost if the portal failed this run while it stalled."""
        if self._lease is not None:
            self._lease.check()

    @property
    def row(self) -> Job:
        return db.session.get(Job, self.job_id)

    def update(self, done: int, total: int | None = None, **extra) -> None:
        """Record `done` of `total` plus any counters (failures, batches …) and the estimate."""
        self.done, self.total = done, total
        if self._started is None and total is not None:
            self._started = self._clock()
        if self._rq_job is not None:
            self._written = self._clock()
            self._rq_job.meta.update({"done": done, "total": total, **extra, "eta_seconds": self.estimate(done, total)})
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
        kind = row.kind
        row.status = JobStatus.RUNNING
        row.started_at = row.started_at or utcnow()
        row.resume_at = None
        row.lease_expires_at = first_expiry()
        db.session.commit()
        rq_job = get_current_job()
        started = time.monotonic()
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
            metrics.job_ended(kind, "lost" if lease.lost else outcome.value, time.monotonic() - started)
            db.session.rollback()
            if lease.lost:
                return None  # the portal already failed this row (and may have started another run)
            retrying = outcome is JobStatus.FAILED and rq_job is not None and (rq_job.retries_left or 0) > 0
            row = db.session.get(Job, job_id, populate_existing=True)
            if row.status != JobStatus.RUNNING:
                return None  # failed by the portal after a lapse it noticed before this run did
            row.status = JobStatus.QUEUED if retrying else outcome
            row.result = _with_redis_wait(summary, redis_outages.waited_since(started))
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


def _with_redis_wait(summary, waited: float):
    """The summary, saying so when the run had to wait for Redis (it restarted mid-run)."""
    if not waited or not isinstance(summary, dict):
        return summary
    note = (f"Redis was unreachable for about {round(waited)} s during the run (it restarted); "
            "the run waited for it and carried on.")
    return {**summary, "summary": f"{summary.get('summary', '').rstrip()} {note}".strip(),
            "redis_wait_seconds": round(waited, 1)}


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
