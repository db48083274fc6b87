"""The scheduler's minutely job (queued by `flask --app app scheduler`, run by a worker)."""
from __future__ import annotations

import logging

from portal import schedule

log = logging.getLogger(__name__)


def tick() -> dict:
    """Reconcile job rows, start due scheduled syncs, renew idle sign-ins (portal/schedule.py)."""
    summary = schedule.tick()
    if summary["dead_jobs"] or summary["tokens"]:
        log.info("schedule tick: %s", summary)
    return summary
