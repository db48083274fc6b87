"""GET /status: the service's health for people (the same report as /healthz, which stays JSON)."""
from __future__ import annotations

from flask import Blueprint, render_template

from portal import health

bp = Blueprint("status", __name__)

PARTS = (
    ("database", "Database", "Branches, contacts, invoices and jobs are stored here."),
    ("redis", "Sessions and queue", "Sign-in sessions, job progress and the sync queue."),
    ("workers", "Sync workers", "They run syncs and voids; with none, jobs wait in the queue."),
    ("scheduler", "Scheduled syncs", "Starts the syncs that run by themselves; pages work without it."),
)


@bp.get("/status")
def page():
    """Each part of the service, up or down, in words (always 200: monitors read /healthz)."""
    response, _status = health.healthz()
    report = response.get_json()
    parts = [(label, _is_up(report.get(key)), about, report.get(key)) for key, label, about in PARTS]
    return render_template("status.html", healthy=report.get("status") == "ok", parts=parts)


def _is_up(value) -> bool:
    return value == "up" or (isinstance(value, int) and not isinstance(value, bool) and value > 0)
