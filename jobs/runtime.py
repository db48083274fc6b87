"""What every job entry point shares: the job row's life cycle and progress reporting."""
from __future__ import annotations

import functools
import logging

from rq import get_current_job

from portal.extensions import db
from portal.models import Job, JobStatus, utcnow

log = logging.getLogger(__name__)


class JobFailure(Exception):
    """A job ended in a failure the person who asked should read (the message says what to do)."""


class Progress:
    """Reports progress to `job.meta`, which the htmx progress partial reads while the job runs.

    The row gets the last figures when the job ends, so progress costs no database writes.
    """

    def __init__(self, job_id: str):
        self.job_id = job_id
        self._rq_job = get_current_job()
        self.done = 0
        self.total: int | None = None

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
    """

    @functools.wraps(func)
    def run(job_id: str, *args, **kwargs):
        row = db.session.get(Job, job_id)
        if row is None:
            log.warning("job %s has no row; skipped", job_id)
            return None
        row.status = JobStatus.RUNNING
        row.started_at = row.started_at or utcnow()
        db.session.commit()
        outcome, summary, error = JobStatus.FAILED, None, None
        progress = Progress(job_id)
        try:
            summary = func(progress, *args, **kwargs)
            outcome = JobStatus.FINISHED
            return summary
        except JobFailure as exc:
            error = str(exc)
            raise
        except Exception:
            log.exception("job %s (%s) failed", job_id, row.kind)
            error = "The job failed unexpectedly. It is safe to run it again; support can see the details."
            raise
        finally:
            db.session.rollback()
            rq_job = get_current_job()
            retrying = outcome is JobStatus.FAILED and rq_job is not None and (rq_job.retries_left or 0) > 0
            row = db.session.get(Job, job_id)
            row.status = JobStatus.QUEUED if retrying else outcome
            row.result = summary
            row.error = error
            row.progress_done, row.progress_total = progress.done, progress.total
            if not retrying:
                row.ended_at = utcnow()
            db.session.commit()

    return run
