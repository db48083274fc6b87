"""The domain errors of the Sage One AUS integration; every message is safe to show."""
from __future__ import annotations

from datetime import datetime


class SageOneError(Exception):
    """Base of every Sage One AUS failure; the message is safe to show."""


class SageOneAuthFailed(SageOneError):
    """Sage refused the username or password (401); `attempts_left` before the 24-hour lock."""

    def __init__(self, message: str, attempts_left: int | None = None):
        super().__init__(message)
        self.attempts_left = attempts_left


class SageOneLocked(SageOneError):
    """Sage has locked the username after too many failed logins (429), until `until`."""

    def __init__(self, message: str, until: datetime | None = None):
        super().__init__(message)
        self.until = until


class SageOneRateLimited(SageOneError):
    """Sage blocked this company for sending too many requests; nothing may be sent before `until`."""

    def __init__(self, message: str, until: datetime):
        super().__init__(message)
        self.until = until


class SageOneApiKeyRefused(SageOneError):
    """Sage refused the portal's own API key (a 401 IIS page with `X-APIKey: Invalid`, or 403): a
    problem with the portal's configuration, not with the customer's login."""


class SageOneBusy(SageOneError):
    """No request slot is free right now and the caller (a page) cannot wait; try after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = retry_after


class SageOneUnusableAnswer(SageOneError):
    """Sage answered in a shape the portal cannot use (HTML instead of JSON, an unknown shape, a
    number that does not parse). `whole_run`: the answer was not Sage's API at all, so a run stops."""

    def __init__(self, message: str, whole_run: bool = False):
        super().__init__(message)
        self.whole_run = whole_run


class SageOneValidationError(SageOneError):
    """Sage refused the data (400 and similar); the message is Sage's own words."""


class SageOneNotFound(SageOneError):
    """The entity does not exist in this company (404)."""


class SageOneUnavailable(SageOneError):
    """Sage could not be reached or failed (timeouts, 5xx, maintenance)."""
