"""The one scheduler: RQ's cron scheduler, running `jobs.schedule.tick` every minute.

The tick runs in the scheduler process itself rather than as a queued job: queued, it would wait
behind a long sync on a busy worker, and noticing dead jobs or starting due syncs must not wait
for the work it watches. What it starts (syncs, mail) goes to the workers through RQ as usual, and
it never waits on Sage's limits (a busy business is skipped until the next minute).

However many scheduler processes are started (one per host, say), only the one holding the
leader lock in Redis runs anything; the others stand by and take over within a minute of the
leader's death. `/healthz` reports the scheduler as up while a leader holds the lock.
"""
from __future__ import annotations

import socket
import uuid

from rq.cron import CronScheduler
from rq.exceptions import SchedulerNotFound
from rq.utils import now

from jobs.schedule import tick
from portal.extensions import db

LEADER_KEY = "portal:scheduler:leader"
LEADER_SECONDS = 90  # a leader renews it every loop (at most 60 s apart)
TICK_SECONDS = 60


class PortalCron(CronScheduler):
    """RQ's CronScheduler that only enqueues while it is the leader."""

    def __init__(self, connection, **kwargs):
        super().__init__(connection, **kwargs)
        self.leader_token = f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"

    def is_leader(self) -> bool:
        """Take or keep the leader lock; True if this process holds it now."""
        if self.connection.set(LEADER_KEY, self.leader_token, nx=True, ex=LEADER_SECONDS):
            return True
        if (self.connection.get(LEADER_KEY) or b"").decode() == self.leader_token:
            self.connection.expire(LEADER_KEY, LEADER_SECONDS)
            return True
        return False

    def enqueue_jobs(self):
        """Run each due job here, while this process leads (see the module docstring)."""
        if not self.is_leader():
            return []
        ran = []
        for job in self._cron_jobs:
            if job.should_run():
                job.set_enqueue_time(now())
                try:
                    job.func(*(job.args or ()), **(job.kwargs or {}))
                except Exception:  # the next minute tries again; one bad tick must not stop the scheduler
                    self.log.exception("scheduled %s failed", job.func.__name__)
                finally:
                    db.session.remove()
                ran.append(job)
        return ran

    def register_death(self, pipeline=None) -> None:
        """Hand over the lead at once (a stand-by takes it at its next loop), then leave RQ's registry."""
        self.step_down()
        try:
            super().register_death(pipeline)
        except SchedulerNotFound:
            pass  # never registered (a stand-by that did not start) or already pruned

    def step_down(self) -> None:
        if (self.connection.get(LEADER_KEY) or b"").decode() == self.leader_token:
            self.connection.delete(LEADER_KEY)


def build_scheduler(connection, queue_name: str, tick_seconds: int = TICK_SECONDS) -> PortalCron:
    """The scheduler with the portal's one minutely job registered (SCHEDULER_TICK_SECONDS apart)."""
    cron = PortalCron(connection=connection)
    cron.register(tick, queue_name, interval=tick_seconds, job_timeout=300, result_ttl=3600)
    return cron


def scheduler_alive(connection) -> bool:
    """Whether a scheduler leads now (its lock is renewed at least every minute)."""
    return bool(connection.exists(LEADER_KEY))
