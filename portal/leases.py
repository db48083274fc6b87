"""Job leases: a running job proves, every few seconds, that it is still running.

A job row is failed (and a new run of its kind allowed) only when its lease has lapsed, so the
portal never declares dead a job that is alive: not when the worker's parent process died while
its work horse runs on, nor when Redis restarted and forgot RQ's job hashes. And it notices a
dead one within a minute or two, however it died.

The lease lives in two places, renewed together by a thread in the job's own process:
* a Redis key `portal:job-lease:<job id>` with a short TTL: the quick look;
* `jobs.lease_expires_at` on the row: it survives a Redis restart, and its UPDATE only succeeds
  while the row is still running, so a job whose row was failed meanwhile learns that it lost
  its lease — and stops before it writes anything again (`Lease.check`, before every record).
A lease has lapsed when both have: the key is gone and the row's time has passed.
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from portal.models import Job, JobStatus, utcnow

log = logging.getLogger(__name__)

KEY_PREFIX = "portal:job-lease:"


def lease_seconds() -> int:
    """How long a lease lasts unrenewed (JOB_LEASE_SECONDS; tests shorten it)."""
    return int(current_app.config.get("JOB_LEASE_SECONDS") or 45)


def renew_seconds() -> float:
    """How often a running job renews its lease: four times per lease."""
    return max(lease_seconds() / 4, 0.5)


class LeaseLost(Exception):
    """This job's row was failed while it was away (it stalled past its lease); it must stop now."""


def lease_key(job_id: str) -> str:
    return KEY_PREFIX + job_id


def first_expiry(now: datetime | None = None) -> datetime:
    """The lease a job row gets when it starts running."""
    return (now or utcnow()) + timedelta(seconds=lease_seconds())


def is_alive(redis: Redis, job_id: str, expires_at: datetime | None, now: datetime | None = None) -> bool:
    """Whether a running row's lease holds: its Redis key exists, or its row's time is ahead."""
    if expires_at is not None and expires_at > (now or utcnow()):
        return True
    try:
        return bool(redis.exists(lease_key(job_id)))
    except RedisError:
        return True  # can't tell: never fail a job on a guess


def release(redis: Redis, job_id: str) -> None:
    """Drop a lease (its job ended, or its row was failed)."""
    try:
        redis.delete(lease_key(job_id))
    except RedisError:
        pass


class Lease:
    """The lease of one running job, renewed by a daemon thread while the job runs."""

    def __init__(self, job_id: str, redis: Redis, engine: sa.Engine, token: str):
        self.job_id = job_id
        self.redis = redis
        self.engine = engine
        self.token = token
        self.seconds = lease_seconds()
        self.every = renew_seconds()
        self.lost = False
        self._confirmed = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Take the Redis key and start renewing (the row's expiry was set when it started running)."""
        try:
            self.redis.set(lease_key(self.job_id), self.token, ex=self.seconds)
        except RedisError:
            log.warning("job %s: could not set its lease in Redis; the row's lease still holds", self.job_id)
        self._thread = threading.Thread(target=self._keep_renewing, name=f"lease-{self.job_id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing and drop the key (the caller ends the row, unless it was lost)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.every + 1)
        release(self.redis, self.job_id)

    def check(self) -> None:
        """Raise LeaseLost if the row was failed meanwhile; before every write the job makes.

        Cheap while renewals keep succeeding; after a stall longer than the lease (the process
        was frozen) it renews on the spot to find out.
        """
        if not self.lost and time.monotonic() - self._confirmed > self.seconds - self.every:
            self.renew()
        if self.lost:
            raise LeaseLost("This run stalled for longer than its lease and was stopped by the portal; "
                            "it wrote nothing more.")

    def renew(self) -> bool:
        """Extend the row's and the key's lease; False (and `lost`) once the row is no longer running."""
        expires = utcnow() + timedelta(seconds=self.seconds)
        try:
            with self.engine.begin() as conn:
                updated = conn.execute(
                    sa.update(Job).where(Job.id == self.job_id, Job.status == JobStatus.RUNNING)
                    .values(lease_expires_at=expires)).rowcount
        except SQLAlchemyError:
            log.warning("job %s: could not renew its lease on the row (the database is busy)", self.job_id)
            return not self.lost
        if not updated:
            self.lost = True
            return False
        try:
            self.redis.set(lease_key(self.job_id), self.token, ex=self.seconds)
        except RedisError:
            pass  # the row's lease holds until Redis is back
        self._confirmed = time.monotonic()
        return True

    def _keep_renewing(self) -> None:
        while not self._stop.wait(self.every):
            if not self.renew():
                return
