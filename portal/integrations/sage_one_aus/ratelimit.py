"""Sage One AUS request limits, shared by every worker through Redis.

Sage allows 100 requests a minute per company; going over blocks the caller for an hour, and
calling during the block extends it. So every company call first takes a slot from a moving window
(the `limits` library on Redis, keyed per company; a caller without a slot waits for one), and
after a 429 the company is put on hold until the block ends: no job calls Sage for it before then.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

from flask import current_app
from limits import parse
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from portal.extensions import get_redis
from portal.integrations.sage_one_aus.errors import SageOneRateLimited
from portal.models import utcnow

_HOLD_PREFIX = "portal:sage-one-aus:hold-off:"


def limiter() -> MovingWindowRateLimiter:
    """The app's moving-window limiter on Redis (shared by the web process and every worker)."""
    ext = current_app.extensions
    if "sage_one_aus_limiter" not in ext:
        ext["sage_one_aus_limiter"] = MovingWindowRateLimiter(RedisStorage(current_app.config["REDIS_URL"]))
    return ext["sage_one_aus_limiter"]


def _per_minute():
    return parse(f"{int(current_app.config['SAGE_ONE_RATE_LIMIT_PER_MINUTE'])}/minute")


def blocked_until(company_id: int) -> datetime | None:
    """When Sage's block on this company ends, if it is on hold now."""
    raw = get_redis().get(f"{_HOLD_PREFIX}{company_id}")
    if raw is None:
        return None
    until = datetime.fromtimestamp(float(raw), timezone.utc)
    return until if until > utcnow() else None


def hold_off(company_id: int, until: datetime) -> None:
    """Put a company on hold until `until` (after a 429); a later hold never shortens an earlier one."""
    current = blocked_until(company_id)
    if current is not None and current >= until:
        return
    get_redis().set(f"{_HOLD_PREFIX}{company_id}", until.timestamp(), exat=int(until.timestamp()) + 1)


def release(company_id: int) -> None:
    """Lift a hold (used when Sage has confirmed the block is over)."""
    get_redis().delete(f"{_HOLD_PREFIX}{company_id}")


def acquire(company_id: int) -> None:
    """Take one request slot for the company, waiting for one if needed; raises SageOneRateLimited
    while the company is on hold, so a blocked company is never called."""
    item = _per_minute()
    key = ("sage-one-aus", str(company_id))
    while True:
        until = blocked_until(company_id)
        if until is not None:
            raise SageOneRateLimited(
                f"Sage One AUS has blocked this company for too many requests; rate-limited until "
                f"{until:%H:%M} UTC.", until)
        if limiter().hit(item, *key):
            return
        reset_at, _ = limiter().get_window_stats(item, *key)
        time.sleep(min(max(reset_at - time.time(), 0.05), 1.0))
