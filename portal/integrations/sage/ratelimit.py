"""One rate limit per Sage business, shared by every worker through Redis (a moving window).

Sage counts requests per business in a rolling minute. Every process that talks to Sage takes a
slot here first, so two workers syncing branches of the same Sage business stay under the limit
together. The window is one second longer than Sage's minute: a request that left us at the very
end of our window may arrive at Sage a few milliseconds later, inside its next one.
"""
from __future__ import annotations

import time
from typing import Callable

from limits import RateLimitItemPerSecond
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

WINDOW_SECONDS = 61
NAMESPACE = "sage-v31"

_limiters: dict[str, MovingWindowRateLimiter] = {}


def _limiter(redis_url: str) -> MovingWindowRateLimiter:
    # One storage (and connection pool) per Redis URL per process.
    if redis_url not in _limiters:
        _limiters[redis_url] = MovingWindowRateLimiter(RedisStorage(redis_url, key_prefix="portal-limits"))
    return _limiters[redis_url]


class BusinessRateLimit:
    """`acquire()` blocks until the Sage business may make one more request."""

    def __init__(self, redis_url: str, business_id: str | None, per_minute: int,
                 sleep: Callable[[float], None] = time.sleep):
        self.business_id = business_id or "unknown"
        self.item = RateLimitItemPerSecond(per_minute, WINDOW_SECONDS) if per_minute else None
        self.limiter = _limiter(redis_url) if per_minute else None
        self._sleep = sleep
        self.waited_seconds = 0.0

    def acquire(self) -> None:
        """Take a request slot for this business, waiting for the window to move if it is full."""
        if self.item is None:
            return
        while not self.limiter.hit(self.item, NAMESPACE, self.business_id):
            stats = self.limiter.get_window_stats(self.item, NAMESPACE, self.business_id)
            pause = min(max(stats.reset_time - time.time(), 0.05), 5.0)
            self.waited_seconds += pause
            self._sleep(pause)

    __call__ = acquire
