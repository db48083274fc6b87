"""The RQ worker, built once with the app's config (never at job-module import)."""
from __future__ import annotations

from flask import Flask
from rq import SimpleWorker, Worker

from portal import json_logs
from portal.extensions import db, get_redis
from portal.jobqueue import get_queue


class _AppContextMixin:
    """Runs each job inside the Flask app context, with a database session of its own."""

    flask_app: Flask
    forks_per_job = False

    def perform_job(self, job, queue):
        with self.flask_app.app_context(), json_logs.job_context(job):
            if self.forks_per_job:
                # A forked work horse must not reuse the parent's pooled connections.
                db.engine.dispose(close=False)
            try:
                return super().perform_job(job, queue)
            finally:
                db.session.remove()

    def handle_exception(self, job, *exc_info):
        # An expected failure (its message says what happened and what to do) is one line, not a traceback.
        if expected_failure(exc_info[1]):
            self.log.warning("job %s (%s) failed: %s", job.id, job.func_name, exc_info[1])
            return
        super().handle_exception(job, *exc_info)


def expected_failure(error: BaseException | None) -> bool:
    """A failure the job already told the person about: a JobFailure (Sage's rate limit, a refused
    sign-in …), a run that lost its lease, or mail a retry will send."""
    from jobs.runtime import JobFailure
    from portal.leases import LeaseLost
    from portal.mail import MailError

    return isinstance(error, JobFailure | LeaseLost | MailError)


class AppWorker(_AppContextMixin, Worker):
    """Forking worker for production and `make run`."""

    forks_per_job = True


class AppSimpleWorker(_AppContextMixin, SimpleWorker):
    """In-process worker for tests (still a real RQ worker on a real Redis)."""


def build_worker(app: Flask, simple: bool = False, name: str | None = None):
    """A worker listening on the portal queue with the app's Redis connection."""
    with app.app_context():
        queue = get_queue()
        connection = get_redis()
    cls = AppSimpleWorker if simple else AppWorker
    worker = cls([queue], connection=connection, name=name)
    worker.flask_app = app
    return worker
