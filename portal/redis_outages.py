"""Riding out a Redis restart: clients that retry with backoff, and a record of the waits.

Redis holds the queue, job progress, leases and the Sage limiter. A production Redis that restarts
(with its append-only file, so its data comes back) is away for a few seconds; a worker in the
middle of a sync should wait for it rather than fail the run, while a web page should answer at
once that something is wrong. So every client is built here with a retry budget in seconds:
`REDIS_OUTAGE_WAIT_SECONDS` for web processes (short), `WORKER_REDIS_OUTAGE_WAIT_SECONDS` for
workers and the scheduler (long). Each failed attempt is noted, so a job can say afterwards that
it waited for Redis (`waited_since`).
"""
from __future__ import annotations

import math
import threading
import time

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

WEB_WAIT_SECONDS = 1.0
WORKER_WAIT_SECONDS = 60.0
_BACKOFF_CAP = 1.0

_lock = threading.Lock()
_failures: list[float] = []  # monotonic times of failed attempts, the last few hundred


class _NotedRetry(Retry):
    """redis-py's retry, noting each failed attempt."""

    def call_with_retry(self, do, fail, *args, **kwargs):
        def failed(error):
            _note_failure()
            fail(error)

        return super().call_with_retry(do, failed, *args, **kwargs)


def client_options(wait_seconds: float) -> dict:
    """Options for `redis.Redis.from_url` (and the `limits` storage) that wait `wait_seconds` at most."""
    # Backoffs of 0.05, 0.1, 0.2, 0.4, 0.8 s, then 1 s each: about `wait_seconds` in all.
    retries = max(1, 5 + math.ceil(max(wait_seconds - 1.55, 0) / _BACKOFF_CAP))
    return {
        "retry": _NotedRetry(ExponentialBackoff(cap=_BACKOFF_CAP, base=0.05), retries),
        # A refused or reset connection surfaces as OSError before redis-py wraps it.
        "retry_on_error": [RedisConnectionError, RedisTimeoutError, OSError],
        "socket_connect_timeout": 2,
    }


def client(url: str, wait_seconds: float) -> redis.Redis:
    """A Redis client that rides out an outage of up to `wait_seconds`."""
    return redis.Redis.from_url(url, **client_options(wait_seconds))


def waited_since(start: float) -> float:
    """Seconds this process spent failing to reach Redis since `start` (time.monotonic()); 0 if none."""
    with _lock:
        seen = [moment for moment in _failures if moment >= start]
    if not seen:
        return 0.0
    return max(seen[-1] - seen[0], 1.0)


def _note_failure() -> None:
    with _lock:
        _failures.append(time.monotonic())
        del _failures[:-500]
