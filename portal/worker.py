"""The RQ worker, built once with the app's config (never at job-module import)."""
from __future__ import annotations

from flask import Flask
from rq import SimpleWorker, Worker

from portal.extensions import db, get_redis
from portal.jobqueue import get_queue


class _AppContextMixin:
    """Runs each job inside the Flask app context, with a database session of its own."""

    flask_app: Flask
    forks_per_job = False

    def perform_job(self, job, queue):
        with self.flask_app.app_context():
            if self.forks_per_job:
                # A forked work horse must not reuse the parent's pooled connections.
                db.engine.dispose(close=False)
            try:
                return super().perform_job(job, queue)
            finally:
                db.session.remove()


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
