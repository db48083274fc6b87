"""Throttle failed sign-ins per account and per address, in Redis, with the `limits` library.

Only failures count. The message never says whether the account exists.
"""
from __future__ import annotations

import math
import time

from flask import current_app
from limits import parse
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter


def _limiter() -> MovingWindowRateLimiter:
    ext = current_app.extensions
    if "login_throttle" not in ext:
        ext["login_throttle"] = MovingWindowRateLimiter(RedisStorage(current_app.config["REDIS_URL"]))
    return ext["login_throttle"]


def _rules(email: str, address: str):
    config = current_app.config
    return [
        (parse(config["LOGIN_FAILURES_PER_ACCOUNT"]), ("login-account", email.strip().lower())),
        (parse(config["LOGIN_FAILURES_PER_ADDRESS"]), ("login-address", address or "unknown")),
    ]


def seconds_until_allowed(email: str, address: str) -> int:
    """0 when a sign-in may be tried now, else how long to wait."""
    limiter = _limiter()
    wait = 0
    for item, key in _rules(email, address):
        if not limiter.test(item, *key):
            reset_at, _ = limiter.get_window_stats(item, *key)
            wait = max(wait, math.ceil(reset_at - time.time()), 1)
    return wait


def record_failure(email: str, address: str) -> None:
    """Count one failed sign-in against the account and the address."""
    limiter = _limiter()
    for item, key in _rules(email, address):
        limiter.hit(item, *key)


def clear_account(email: str) -> None:
    """Forget an account's failures after a successful sign-in."""
    item, key = _rules(email, "")[0]
    _limiter().clear(item, *key)


def _reset_rules(email: str, address: str):
    config = current_app.config
    return [
        (parse(config["PASSWORD_RESETS_PER_ACCOUNT"]), ("reset-account", email.strip().lower())),
        (parse(config["PASSWORD_RESETS_PER_ADDRESS"]), ("reset-address", address or "unknown")),
    ]


def take_reset_request(email: str, address: str) -> int:
    """Count one password-reset request; 0 when it may go ahead, else seconds to wait.

    Every request counts, whether or not the address has an account, so the answer says nothing
    about which addresses exist.
    """
    limiter = _limiter()
    wait = 0
    for item, key in _reset_rules(email, address):
        if not limiter.test(item, *key):
            reset_at, _ = limiter.get_window_stats(item, *key)
            wait = max(wait, math.ceil(reset_at - time.time()), 1)
    if not wait:
        for item, key in _reset_rules(email, address):
            limiter.hit(item, *key)
    return wait
