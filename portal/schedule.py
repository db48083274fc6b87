"""Syncs that run by themselves: each Sage branch's schedule, the idle-token refresh and the dead-job check.

One scheduler process (`flask --app app scheduler`, portal/scheduler.py) runs `jobs.schedule.tick`
every minute, and it does these things:

* reconciles every queued or running job row (a dead one is noticed within a minute of its lease
  lapsing, and a Sage sync that died is queued again once: portal/jobqueue.py);
* starts each Sage branch's due sync (every 15 minutes by default; hourly, daily or off), only for
  the kinds with something to send, contacts first and invoices after them — or skips it, saying
  why on the branch (a job running, Sage limiting the business, the day's budget used, a sign-in
  needed);
* refreshes the Sage sign-in of a branch whose refresh token would otherwise lapse from disuse
  (within SAGE_REFRESH_MARGIN_DAYS of its 31 days), so an idle branch never has to sign in again;
* once a day per branch, asks Sage what was deleted or voided there (portal/integrations/sage/drift.py).

Sage One AUS cannot sync unattended (rule 8: its key exists only while the customer is signed in).
"""
from __future__ import annotations

import itertools
from collections import Counter
from datetime import datetime, timedelta

from flask import current_app

from portal import audit, metrics, timefmt
from portal.extensions import db
from portal.jobqueue import JobRefused, active_job, reconcile_all
from portal.models import Connection, ConnectionState, Contact, Invoice, InvoiceStatus, Provider, SyncState, utcnow

EVERY = {"15m": timedelta(minutes=15), "hourly": timedelta(hours=1), "daily": timedelta(days=1), "off": None}
LABELS = {"15m": "every 15 minutes", "hourly": "every hour", "daily": "once a day", "off": "off"}
DEFAULT = "15m"
SAGE_JOB_KINDS = ("sage.sync_contacts", "sage.sync_invoices", "sage.void_invoice")


class ScheduleRefused(Exception):
    """A schedule outside the allowed set; the message says which are allowed."""


def set_schedule(connection: Connection, every: str, *, by: str = "") -> bool:
    """Change how often the branch syncs by itself; audited; returns whether anything changed."""
    if connection.provider != Provider.SAGE:
        raise ScheduleRefused("Only Sage branches sync on a schedule; Sage One AUS syncs while you're signed in.")
    if every not in EVERY:
        raise ScheduleRefused("Choose how often to sync: " + ", ".join(LABELS[k] for k in EVERY) + ".")
    if connection.sync_every == every:
        return False
    before = connection.sync_every
    connection.sync_every = every
    audit.record("sage.schedule_changed",
                 f"{connection.branch.name} now syncs by itself {LABELS[every]}{by}",
                 branch=connection.branch, details={"from": before, "to": every})
    db.session.commit()
    return True


def next_sync_at(connection: Connection) -> datetime | None:
    """When the schedule next starts a sync for the branch (None when it is off)."""
    interval = EVERY.get(connection.sync_every or DEFAULT)
    if interval is None or connection.provider != Provider.SAGE:
        return None
    last = connection.last_scheduled_at or connection.last_sync_at
    if last is None:  # never synced: due now (the first tick after connecting starts it)
        return connection.connected_at or utcnow() - timedelta(seconds=1)
    return last + interval


def skip_reason(connection: Connection, now: datetime) -> str | None:
    """Why the schedule must not start a sync for this branch now, or None."""
    from portal.integrations.sage.sync import rate_limit_for

    if connection.state == ConnectionState.NEEDS_REAUTH:
        return "it needs to sign in to Sage again"
    if not connection.sage_business_id:
        return "no Sage business is chosen yet"
    if connection.is_rate_limited(now):
        return f"Sage is limiting this business until {_at(connection.rate_limited_until, connection)}"
    if any(active_job(connection.branch_id, kind) is not None for kind in SAGE_JOB_KINDS):
        return "a sync or void was already running"
    if rate_limit_for(connection).requests_left_today() == 0:
        return "this Sage business has used today's request budget"
    return None


def _at(moment: datetime, connection: Connection) -> str:
    # Notes are read later on the branch page, so they name the business's zone: "7:15 pm Sydney time (AEDT)".
    zone = timefmt.zone_for(connection.branch.business.time_zone)
    return f"{timefmt.clock(moment, zone)} {timefmt.zone_label(zone)}"


def _has_open(model, branch_id: int, *where) -> bool:
    return db.session.scalar(db.select(db.func.count()).select_from(model).where(
        model.branch_id == branch_id, model.deleted_at.is_(None),
        model.sync_state.in_((SyncState.PENDING, SyncState.FAILED)), *where)) > 0


def run_due(now: datetime | None = None) -> Counter:
    """Start (or skip, with the reason) every Sage branch's due scheduled sync; counts what happened."""
    from portal.integrations.sage import enqueue as sage_jobs

    now = now or utcnow()
    outcome: Counter = Counter()
    connections = db.session.scalars(db.select(Connection).where(
        Connection.provider == Provider.SAGE,
        Connection.state.in_((ConnectionState.CONNECTED, ConnectionState.NEEDS_REAUTH)),
        Connection.sync_every != "off").order_by(Connection.id)).all()
    for connection in _in_turn_across_businesses(connections):
        due = next_sync_at(connection)
        if due is None or due > now:
            continue
        connection.last_scheduled_at = now
        reason = skip_reason(connection, now)
        if reason is not None:
            connection.schedule_note = f"Skipped at {_at(now, connection)}: {reason}."
            outcome[f"skipped: {reason.split(' until ')[0]}"] += 1
            metrics.schedule_skipped(reason)
            db.session.commit()
            continue
        kinds = [what for what, model, where in (
            ("contacts", Contact, ()), ("invoices", Invoice, (Invoice.status == InvoiceStatus.ISSUED,)))
            if _has_open(model, connection.branch_id, *where)]
        started, after = [], None
        try:
            for what in kinds:
                job = sage_jobs.start_sync(connection.branch, what, requested_by=None, after=after,
                                           note=" (scheduled)")
                started.append(what)
                after = job
        except JobRefused as refused:
            connection.schedule_note = f"At {_at(now, connection)} not everything could start: {refused}"
            outcome["refused"] += 1
        else:
            connection.schedule_note = (f"Started at {_at(now, connection)}: {' and '.join(started)}." if started
                                        else f"Checked at {_at(now, connection)}: nothing new to send.")
            outcome["started" if started else "nothing to send"] += 1
        db.session.commit()
    return outcome


def _in_turn_across_businesses(connections: list[Connection]) -> list[Connection]:
    """The branches one Sage business at a time in turn (A1, B1, A2, B2, …), so the runs queued first
    use every business's limit at once instead of the whole worker pool waiting on one business's."""
    by_business: dict[str | None, list[Connection]] = {}
    for connection in connections:
        by_business.setdefault(connection.sage_business_id, []).append(connection)
    turns = itertools.zip_longest(*by_business.values())
    return [connection for turn in turns for connection in turn if connection is not None]


def refresh_idle_tokens(now: datetime | None = None) -> Counter:
    """Refresh each Sage sign-in whose refresh token would lapse within the margin (idle branches)."""
    from portal.integrations.sage import tokens
    from portal.integrations.sage.client import SageError, SageTokenRejected
    from portal.integrations.sage.sync import rate_limit_for

    now = now or utcnow()
    margin = timedelta(days=float(current_app.config["SAGE_REFRESH_MARGIN_DAYS"]))
    outcome: Counter = Counter()
    due = db.session.scalars(db.select(Connection).where(
        Connection.provider == Provider.SAGE, Connection.state == ConnectionState.CONNECTED,
        Connection.refresh_token_expires_at.is_not(None),
        Connection.refresh_token_expires_at < now + margin)).all()
    wait = float(current_app.config["SAGE_PAGE_WAIT_SECONDS"])  # never wait long: the next tick tries again
    for connection in due:
        try:
            tokens.refresh_now(connection.id, before_refresh=rate_limit_for(connection, max_wait=wait))
        except SageTokenRejected:
            outcome["needs sign-in"] += 1  # tokens.py marked it, with the reason
        except SageError as error:
            connection = db.session.get(Connection, connection.id)
            connection.schedule_note = f"Its Sage sign-in could not be renewed at {_at(now, connection)} ({error}); " \
                                       "the portal tries again in a minute."
            db.session.commit()
            outcome["failed"] += 1
        else:
            outcome["refreshed"] += 1
    return outcome


def tick() -> dict:
    """What the scheduler's minutely job does (see the module docstring); returns what happened."""
    from portal.integrations.sage import drift

    dead = reconcile_all()
    started = run_due()
    refreshed = refresh_idle_tokens()
    looked = drift.look_where_due()
    return {"dead_jobs": dead, "schedule": dict(started), "tokens": dict(refreshed), "drift_looks": looked}
