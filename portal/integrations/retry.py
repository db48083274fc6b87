"""How long to wait between attempts at a Sage request, in one place for both APIs.

Callers pass their own `sleep` (injected in tests), so the policy is tested without waiting.
"""
from __future__ import annotations

BACKOFF_SECONDS = (0.2, 0.6, 1.5, 3.0)


def backoff_seconds(attempt: int) -> float:
    """The pause after the `attempt`-th failed try (0-based), growing to a ceiling."""
    return BACKOFF_SECONDS[min(max(attempt, 0), len(BACKOFF_SECONDS) - 1)]
