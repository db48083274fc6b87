"""Sage One AUS request pacing, shared by every web process and worker through Redis.

Sage allows 100 requests a minute per company (API key + company + user); the 101st gets a 429
and blocks the caller for an hour, and calling during the block extends it. So:

* Every request to Sage One takes a slot first, from a moving window (the `limits` library on
  Redis) per company: company calls in the company's bucket; calls without a company
  (`Company/Get` at connect) in the login's own bucket *and* in the bucket of every company that
  login is known to use, since Sage may count them there too.
* The window holds fewer slots than Sage's published rate: `SAGE_ONE_RATE_MARGIN` (10% by default)
  is kept free, so requests that leave us at the very edge of our window and reach Sage a little
  late, or a clock a little apart, never make Sage's 101st.
* After a 429 the bucket is put on hold in Redis until the block ends, and no process sends
  anything for it before then.
* A job waits for its slot (with the clock's `sleep`); a page never does: it gets SageOneBusy
  at once and says Sage is busy.

The clock (time and sleep) is injectable, `app.extensions["sage_one_aus_clock"]`, so tests can
move time on instead of waiting for it; the window's timestamps are read from it too.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from flask import current_app
from limits import RateLimitItemPerSecond
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from portal import metrics, timefmt
from portal.extensions import get_redis
from portal.integrations.sage_one_aus.errors import SageOneBusy, SageOneRateLimited

WINDOW_SECONDS = 60
NAMESPACE = "sage-one-aus"
_HOLD_PREFIX = "portal:sage-one-aus:hold-off:"
_LONGEST_PAUSE = 1.0  # a waiting job re-checks holds at least this often


@dataclass
class Clock:
    """Where pacing reads the time and how it waits (the wall clock unless a test gives another)."""

    now: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    waited: float = field(default=0.0)

    def pause(self, seconds: float) -> None:
        """Wait `seconds` (and count them)."""
        self.waited += seconds
        self.sleep(seconds)


_SYSTEM_CLOCK = Clock()


def clock() -> Clock:
    """The app's pacing clock."""
    return current_app.extensions.get("sage_one_aus_clock") or _SYSTEM_CLOCK


class _ClockedRedisStorage(RedisStorage):
    """`limits`' Redis storage with the moving window's timestamps read from the pacing clock.

    The same Lua scripts as the library's own `acquire_entry` and `get_moving_window`; only the
    timestamp they are given differs, so a test clock moves the window as it moves Sage's.
    """

    def __init__(self, uri: str, now: Callable[[], float], **options):
        super().__init__(uri, **options)
        self._now = now

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        return bool(self.lua_acquire_moving_window([self.prefixed_key(key)], [self._now(), limit, expiry, amount]))

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        timestamp = self._now()
        window = self.lua_moving_window([self.prefixed_key(key)], [timestamp - expiry, limit])
        return (float(window[0]), window[1]) if window else (timestamp, 0)


def limiter() -> MovingWindowRateLimiter:
    """The app's moving-window limiter on Redis (shared by the web processes and every worker)."""
    ext = current_app.extensions
    if "sage_one_aus_limiter" not in ext:
        app = current_app._get_current_object()

        def now() -> float:
            return (app.extensions.get("sage_one_aus_clock") or _SYSTEM_CLOCK).now()

        ext["sage_one_aus_limiter"] = MovingWindowRateLimiter(
            _ClockedRedisStorage(current_app.config["REDIS_URL"], now, key_prefix="portal-limits"))
    return ext["sage_one_aus_limiter"]


def published_per_minute() -> int:
    """Sage One's published limit per company per minute (100)."""
    return int(current_app.config["SAGE_ONE_RATE_LIMIT_PER_MINUTE"])


def slots_per_window() -> int:
    """How many requests the portal sends per company per minute: Sage's limit less the margin."""
    margin = float(current_app.config.get("SAGE_ONE_RATE_MARGIN", 0.1))
    return max(1, math.floor(published_per_minute() * (1 - min(max(margin, 0.0), 0.9)) + 1e-9))


def _item():
    return RateLimitItemPerSecond(slots_per_window(), WINDOW_SECONDS)


def company_bucket(company_id: int) -> str:
    return f"company:{int(company_id)}"


def login_bucket(username: str) -> str:
    return f"login:{username.strip().lower()}"


# --- holds after a 429 ----------------------------------------------------------------------------


def _until(raw) -> datetime | None:
    if raw is None:
        return None
    until = float(raw)
    return datetime.fromtimestamp(until, UTC) if until > clock().now() else None


def held_until(bucket: str) -> datetime | None:
    """When Sage's block on this bucket ends, if it is on hold now."""
    return _until(get_redis().get(f"{_HOLD_PREFIX}{bucket}"))


def blocked_until(company_id: int | None) -> datetime | None:
    """When Sage's block on this company ends, if it is on hold now."""
    return held_until(company_bucket(company_id)) if company_id else None


def hold_off(bucket_or_company: str | int, until: datetime) -> None:
    """Put a bucket (or a company) on hold until `until`; a later hold never shortens an earlier one."""
    bucket = company_bucket(bucket_or_company) if isinstance(bucket_or_company, int) else bucket_or_company
    current = held_until(bucket)
    if current is not None and current >= until:
        return
    seconds = math.ceil(until.timestamp() - clock().now()) + 1
    if seconds > 0:
        get_redis().set(f"{_HOLD_PREFIX}{bucket}", until.timestamp(), ex=seconds)


def release(company_id: int) -> None:
    """Lift a company's hold (used when Sage has confirmed the block is over)."""
    get_redis().delete(f"{_HOLD_PREFIX}{company_bucket(company_id)}")


def _refuse_if_held(buckets: Iterable[str]) -> None:
    for bucket in buckets:
        until = held_until(bucket)
        if until is not None:
            raise SageOneRateLimited(
                f"Sage One AUS has blocked this company for too many requests (its block lasts an hour); "
                f"rate-limited until {timefmt.with_zone(until)}. The portal sends it nothing before then, since "
                "calling during the block extends it; try again after that.", until)


# --- slots ----------------------------------------------------------------------------------------


WAIT_WORTH_SAYING = 2.0  # a wait this long is told to `on_wait` (shorter ones are the run's pace)


def acquire(buckets: Iterable[str], *, wait: bool = True,
            on_wait: Callable[[float | None], None] | None = None) -> None:
    """Take one request slot in every bucket, waiting for one if `wait` (jobs) or raising
    SageOneBusy at once (pages); raises SageOneRateLimited while any bucket is on hold, so a
    blocked company is never called. A wait worth saying is told to `on_wait` (the POSIX time it
    should end), and its end with None, so a run's progress can say it waits for Sage's limit."""
    buckets = list(dict.fromkeys(buckets))
    item, pacing = _item(), clock()
    told = False
    while True:
        _refuse_if_held(buckets)
        # Test every bucket before taking from any, so a full one costs the others nothing (a race
        # with another process may still waste a slot, never overspend one).
        if all(limiter().test(item, NAMESPACE, b) for b in buckets) and \
                all(limiter().hit(item, NAMESPACE, b) for b in buckets):
            if told:
                on_wait(None)
            return
        reset_at = max(limiter().get_window_stats(item, NAMESPACE, b).reset_time for b in buckets)
        pause = max(reset_at - pacing.now(), 0.05)
        if not wait:
            raise SageOneBusy(
                "Sage One AUS is busy for this company right now: the portal is already sending it as many "
                f"requests as Sage allows in a minute. Try again in about {math.ceil(pause)} seconds.", pause)
        if on_wait is not None and (told or pause >= WAIT_WORTH_SAYING):
            on_wait(time.time() + pause)
            told = True
        pacing.pause(min(pause, _LONGEST_PAUSE))
        metrics.limiter_waited("sage_one_aus", buckets[0], min(pause, _LONGEST_PAUSE))


def charge(buckets: Iterable[str]) -> None:
    """Count a request already sent in these buckets too (a Company/Get whose companies were only
    known from its answer), without waiting: the margin absorbs it if a bucket was full."""
    item = _item()
    for bucket in dict.fromkeys(buckets):
        limiter().hit(item, NAMESPACE, bucket)


def back_off(seconds: float) -> None:
    """Wait before a retry, on the pacing clock."""
    clock().pause(seconds)

