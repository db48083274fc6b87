"""Pacing for Sage v3.1: one request budget per Sage business, shared by every process through Redis.

Sage counts requests per business in a rolling minute and may cap a business per day (reference
A6). Every request to Sage for a business — API calls, retries and token refreshes — takes a slot
here first, so any number of workers stay under Sage's limits together:

* a moving window one second longer than Sage's minute, holding `per_minute × (1 − margin)`
  requests: a request that leaves at the very end of our window may reach Sage a little later, and
  the margin keeps us clear of whatever Sage counts that we don't (its clock, failed requests);
* a daily budget (a fixed window of one day); when it is used up, `BudgetExhausted` says when it
  renews, so a run can pause and resume by itself instead of failing;
* a hold after a 429: nobody sends this business another request before Sage's `Retry-After` is over.

A worker waits for its slot (`max_wait=None`). A web page must not: it passes a small `max_wait`,
and `SageBusy` tells it to answer with what it has.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime

import redis
from flask import current_app, has_app_context
from limits import RateLimitItemPerSecond
from limits.storage import RedisStorage
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

from portal import metrics, redis_outages
from portal.integrations.sage.client import BudgetExhausted, SageBusy

WINDOW_SECONDS = 61  # Sage's minute, plus a second for a request's time on the way
NAMESPACE = "sage-v31"
HOLD_PREFIX = "portal:sage:hold:"
LONGEST_PAUSE = 5.0  # re-check at least this often while waiting
WAIT_WORTH_SAYING = 2.0  # a wait this long is told to `on_wait` (shorter ones are the run's pace)
# How long a process trusts its last look at the hold. Another process's 429 is seen within this;
# this process's own 429 at once. It spares a Redis round trip on most requests of a fast run.
HOLD_RECHECK_SECONDS = 0.2

_backends: dict[str, tuple[MovingWindowRateLimiter, FixedWindowRateLimiter, redis.Redis]] = {}


def _backend(redis_url: str):
    # One storage (and connection pool) per Redis URL per process, riding out a Redis restart as
    # long as this process's other Redis clients do (portal/redis_outages.py).
    wait = float(current_app.config.get("REDIS_OUTAGE_WAIT_SECONDS", redis_outages.WEB_WAIT_SECONDS)
                 if has_app_context() else redis_outages.WEB_WAIT_SECONDS)
    key = f"{redis_url}#{wait}"
    if key not in _backends:
        storage = RedisStorage(redis_url, key_prefix="portal-limits", **redis_outages.client_options(wait))
        _backends[key] = (MovingWindowRateLimiter(storage), FixedWindowRateLimiter(storage),
                          redis_outages.client(redis_url, wait))
    return _backends[key]


def paced_rate(per_minute: int, margin: float) -> int:
    """Requests we allow ourselves per window: Sage's rate less the margin, at least one."""
    return max(1, math.floor(per_minute * (1 - max(0.0, min(margin, 0.9)))))


class BusinessRateLimit:
    """`acquire()` returns once the Sage business may make one more request.

    Raises BudgetExhausted when the day's budget is used, and SageBusy when `max_wait` seconds
    would not be enough (web pages). `sleep` and `clock` are injectable so tests never sleep.
    """

    def __init__(self, redis_url: str, business_id: str | None, per_minute: int, *, margin: float = 0.0,
                 daily_budget: int = 0, budget_window_seconds: int = 86400, window_seconds: int = WINDOW_SECONDS,
                 max_wait: float | None = None, on_wait: Callable[[float | None], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time):
        self.business_id = business_id or "unknown"
        # `window_seconds`: Sage's minute plus one; tests shorten it (SAGE_RATE_WINDOW_SECONDS).
        self.minute = RateLimitItemPerSecond(paced_rate(per_minute, margin), window_seconds) if per_minute else None
        # The budget's window is a day; tests shorten it (SAGE_BUDGET_WINDOW_SECONDS) to see it renew.
        self.day = RateLimitItemPerSecond(daily_budget, budget_window_seconds) if daily_budget else None
        self.moving, self.fixed, self.redis = _backend(redis_url)
        self.max_wait = max_wait
        # Told when a wait worth saying starts (the POSIX time it ends) and when it is over (None),
        # so a job's progress can say "waiting for Sage's rate limit" instead of an estimate.
        self.on_wait = on_wait
        self._sleep = sleep
        self._clock = clock
        self.waited_seconds = 0.0
        self._hold_seen: tuple[float, float | None] | None = None  # (looked at, held until)

    # --- the hold after a 429 ----------------------------------------------------------------------

    def held_until(self, fresh: bool = True) -> float | None:
        """POSIX time until which Sage asked us to send nothing for this business, if that is ahead.

        `fresh=False` may answer from this process's look of the last HOLD_RECHECK_SECONDS.
        """
        now = self._clock()
        if fresh or self._hold_seen is None or now - self._hold_seen[0] > HOLD_RECHECK_SECONDS:
            raw = self.redis.get(HOLD_PREFIX + self.business_id)
            self._hold_seen = (now, float(raw) if raw is not None else None)
        until = self._hold_seen[1]
        return until if until is not None and until > now else None

    def hold_off(self, seconds: float) -> None:
        """Send nothing to this business for `seconds` (Sage's Retry-After); never shortens a hold."""
        until = self._clock() + max(seconds, 0.0)
        current = self.held_until()
        if current is not None and current >= until:
            return
        self.redis.set(HOLD_PREFIX + self.business_id, until, px=max(1, int((until - self._clock()) * 1000)) + 1000)
        self._hold_seen = (self._clock(), until)

    # --- slots ---------------------------------------------------------------------------------------

    def day_renews_at(self) -> datetime:
        """When the daily budget starts again."""
        stats = self.fixed.get_window_stats(self.day, NAMESPACE, "day", self.business_id)
        return datetime.fromtimestamp(stats.reset_time, UTC)

    def requests_left_today(self) -> int | None:
        """How many requests the daily budget still allows (None without a budget)."""
        if self.day is None:
            return None
        return self.fixed.get_window_stats(self.day, NAMESPACE, "day", self.business_id).remaining

    def acquire(self) -> None:
        """Take a request slot for this business, waiting (or raising, see the class) as needed."""
        waited, told = 0.0, False
        while True:
            pause = self._pause_needed(fresh=waited > 0)
            if pause <= 0:
                break
            if self.max_wait is not None and waited + pause > self.max_wait:
                raise SageBusy(pause)
            if self.on_wait is not None and (told or pause >= WAIT_WORTH_SAYING):
                self.on_wait(self._clock() + pause)
                told = True
            pause = min(pause, LONGEST_PAUSE)
            self._sleep(pause)
            metrics.limiter_waited("sage", self.business_id, pause)
            waited += pause
            self.waited_seconds += pause
        if told:
            self.on_wait(None)
        if self.day is not None and not self.fixed.hit(self.day, NAMESPACE, "day", self.business_id):
            raise BudgetExhausted(self.day_renews_at())

    def _pause_needed(self, fresh: bool) -> float:
        """0 when a slot was taken; otherwise how long to wait before trying again."""
        held = self.held_until(fresh=fresh)
        if held is not None:
            return held - self._clock()
        if self.minute is None or self.moving.hit(self.minute, NAMESPACE, self.business_id):
            return 0.0
        stats = self.moving.get_window_stats(self.minute, NAMESPACE, self.business_id)
        return max(stats.reset_time - self._clock(), 0.05)

    __call__ = acquire
