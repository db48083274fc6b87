"""Connection health for the support console: the filters, their counts, and per-branch flags.

Each filter is defined once, as an SQL predicate (for counts, search, and the flags beside each
search result: `flag_columns`) and as a Python check on a loaded Connection (for the customer
page), so the overview, the filtered search and the at-a-glance badges always agree. Every
predicate leads with an indexed column so a count is an index range scan, not a scan of every
connection; the console reuses the counts for a few seconds (`recent_overview`) and says how old
they are.
"""
from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from markupsafe import Markup
from sqlalchemy import and_, bindparam, func, or_, select

from portal.extensions import db, get_redis
from portal.models import Connection, ConnectionState, Provider, SyncOutcome, utcnow

DEFAULT_STALE_HOURS = 24
MAX_STALE_HOURS = 24 * 90
REFRESH_WARNING_DAYS = 7


@dataclass(frozen=True)
class HealthContext:
    """The moment and the staleness threshold every filter is evaluated against."""

    now: datetime
    stale_hours: int = DEFAULT_STALE_HOURS

    @property
    def stale_before(self) -> datetime:
        return self.now - timedelta(hours=self.stale_hours)

    @property
    def refresh_warning_until(self) -> datetime:
        return self.now + timedelta(days=REFRESH_WARNING_DAYS)


@dataclass(frozen=True)
class Badge:
    """One label beside a branch in the console: its health at a glance.

    A template prints it as it is (`{{ badge }}`): the markup is made here, once per badge.
    """

    css: str  # completes the `state-…` class, which sets the colour
    label: str

    @functools.cached_property
    def _markup(self) -> Markup:
        return Markup('<span class="state state-{}">{}</span>').format(self.css, self.label)

    def __html__(self) -> Markup:
        return self._markup


NOT_CONNECTED = Badge("none", "Not connected")
HEALTHY = Badge("connected", "Healthy")


@dataclass(frozen=True)
class HealthFilter:
    """One health condition: how to find it in SQL and how to spot it on a loaded connection."""

    key: str
    label: str
    severity: str  # "bad" or "warning": how loudly the console shows it
    sql: Callable[[HealthContext], object]
    applies: Callable[[Connection, HealthContext], bool]

    @functools.cached_property
    def badge(self) -> Badge:
        return Badge("bad" if self.severity == "bad" else "warning", self.label)

    def describe(self, ctx: HealthContext) -> str:
        """The label with its parameters filled in."""
        if self.key == "stale":
            return f"No successful sync for {ctx.stale_hours} hours"
        return self.label


_ACTIVE = Connection.state != ConnectionState.DISCONNECTED


def _is_active(c: Connection) -> bool:
    return c.state != ConnectionState.DISCONNECTED


def _before(value: datetime | None, moment: datetime) -> bool:
    return value is not None and value < moment


FILTERS: tuple[HealthFilter, ...] = (
    HealthFilter(
        "needs_reauth", "Needs re-authentication", "bad",
        lambda ctx: Connection.state == ConnectionState.NEEDS_REAUTH,
        lambda c, ctx: c.state == ConnectionState.NEEDS_REAUTH,
    ),
    HealthFilter(
        "credentials_rejected", "Credentials rejected", "bad",
        lambda ctx: Connection.state == ConnectionState.CREDENTIALS_REJECTED,
        lambda c, ctx: c.state == ConnectionState.CREDENTIALS_REJECTED,
    ),
    HealthFilter(
        "rate_limited", "Rate-limited now", "warning",
        lambda ctx: and_(Connection.rate_limited_until > ctx.now, _ACTIVE),
        lambda c, ctx: _is_active(c) and c.rate_limited_until is not None and c.rate_limited_until > ctx.now,
    ),
    HealthFilter(
        "sync_failed", "Last sync failed", "bad",
        lambda ctx: and_(Connection.last_sync_outcome == SyncOutcome.FAILED, _ACTIVE),
        lambda c, ctx: _is_active(c) and c.last_sync_outcome == SyncOutcome.FAILED,
    ),
    HealthFilter(
        "mass_resync", "Mass re-sync in progress", "warning",
        # "Started before now" rather than IS NOT NULL: a range the index answers (SQLite scans
        # the table for IS NOT NULL).
        lambda ctx: and_(Connection.mass_resync_started_at <= ctx.now, _ACTIVE),
        lambda c, ctx: _is_active(c) and c.mass_resync_started_at is not None,
    ),
    HealthFilter(
        # Stale: the last success is older than the threshold, or there never was one and the
        # branch connected before the threshold (a branch connected an hour ago is not stale).
        "stale", "No successful sync lately", "warning",
        lambda ctx: and_(
            or_(
                Connection.last_successful_sync_at < ctx.stale_before,
                and_(Connection.connected_at < ctx.stale_before, Connection.last_successful_sync_at.is_(None)),
            ),
            _ACTIVE,
        ),
        lambda c, ctx: _is_active(c) and (
            _before(c.last_successful_sync_at, ctx.stale_before)
            or (c.last_successful_sync_at is None and _before(c.connected_at, ctx.stale_before))
        ),
    ),
    HealthFilter(
        "refresh_expiring", f"Refresh token expires within {REFRESH_WARNING_DAYS} days", "warning",
        lambda ctx: and_(
            Connection.refresh_token_expires_at > ctx.now,
            Connection.refresh_token_expires_at <= ctx.refresh_warning_until,
            Connection.provider == Provider.SAGE,
            Connection.state == ConnectionState.CONNECTED,
        ),
        lambda c, ctx: (
            c.provider == Provider.SAGE
            and c.state == ConnectionState.CONNECTED
            and c.refresh_token_expires_at is not None
            and ctx.now < c.refresh_token_expires_at <= ctx.refresh_warning_until
        ),
    ),
)
BY_KEY = {f.key: f for f in FILTERS}


@dataclass
class HealthCount:
    filter: HealthFilter
    label: str
    branches: int


def context(stale_hours: int | None = None, now: datetime | None = None) -> HealthContext:
    """A HealthContext for now, with the staleness threshold clamped to a sensible range."""
    hours = DEFAULT_STALE_HOURS if stale_hours is None else max(1, min(int(stale_hours), MAX_STALE_HOURS))
    return HealthContext(now=now or utcnow(), stale_hours=hours)


def get_filter(key: str | None) -> HealthFilter | None:
    """The filter with this key, or None for no/unknown key."""
    return BY_KEY.get(key or "")


def overview(ctx: HealthContext) -> list[HealthCount]:
    """How many branches match each health filter, in one statement.

    One scalar subquery per filter, so each count is still the index range scan its predicate leads
    with (a single pass with COUNT(*) FILTER over every connection measured slower on SQLite).
    """
    counts = db.session.execute(
        select(*(select(func.count(Connection.id)).where(f.sql(ctx)).scalar_subquery() for f in FILTERS))
    ).one()
    return [HealthCount(f, f.describe(ctx), n) for f, n in zip(FILTERS, counts, strict=True)]


@dataclass
class OverviewSnapshot:
    """The overview counts and the moment they were taken (they may be a few seconds old)."""

    counts: list[HealthCount]
    as_of: datetime


def recent_overview(stale_hours: int) -> OverviewSnapshot:
    """The overview counts for this staleness threshold, reused for SUPPORT_OVERVIEW_CACHE_SECONDS.

    Support reads the console far more often than the counts change in a way that matters, so
    the counts are shared between requests for a few seconds and the page shows their age.
    """
    seconds = current_app.config["SUPPORT_OVERVIEW_CACHE_SECONDS"]
    key = f"support:health-overview:{stale_hours}"
    if seconds:
        cached = get_redis().get(key)
        if cached is not None:
            data = json.loads(cached)
            ctx = context(stale_hours, now=datetime.fromisoformat(data["as_of"]))
            return OverviewSnapshot(
                [HealthCount(BY_KEY[k], BY_KEY[k].describe(ctx), n) for k, n in data["counts"]], ctx.now
            )
    ctx = context(stale_hours)
    counts = overview(ctx)
    if seconds:
        data = {"as_of": ctx.now.isoformat(), "counts": [[c.filter.key, c.branches] for c in counts]}
        get_redis().set(key, json.dumps(data), ex=seconds)
    return OverviewSnapshot(counts, ctx.now)


class _MomentParameters:
    """Stands in for a HealthContext in `HealthFilter.sql`: the moment as bound parameters, so a
    statement that carries the filters is built once and run for any moment (`moment_parameters`)."""

    now = bindparam("health_now")
    stale_before = bindparam("health_stale_before")
    refresh_warning_until = bindparam("health_refresh_warning_until")


_FLAG_COLUMN_NAMES = tuple((f, f"flag_{f.key}") for f in FILTERS)


def sql_for_any_moment(health_filter: HealthFilter):
    """The filter's predicate with the moment as bound parameters: a statement built with it once
    runs for any moment, given `moment_parameters(ctx)`."""
    return health_filter.sql(_MomentParameters)


def flag_columns() -> list:
    """One boolean column per filter, labelled `flag_<key>`, evaluated by the database.

    For a list of branches: their flags come with the row instead of loading every timestamp the
    checks read. Run the statement with `moment_parameters(ctx)`; read a row with `flags_of(row)`.
    """
    return [sql_for_any_moment(f).label(column) for f, column in _FLAG_COLUMN_NAMES]


def moment_parameters(ctx: HealthContext) -> dict:
    """The parameters `flag_columns()` need for this moment and staleness threshold."""
    return {"health_now": ctx.now, "health_stale_before": ctx.stale_before,
            "health_refresh_warning_until": ctx.refresh_warning_until}


def flags_of(row) -> list[HealthFilter]:
    """The health filters a row matches: its last columns are `flag_columns()` (NULL counts as no)."""
    return [f for f, on in zip(FILTERS, row[-len(FILTERS):], strict=True) if on]


def flags(connection: Connection | None, ctx: HealthContext) -> list[HealthFilter]:
    """The health filters a loaded connection matches (empty means healthy or not connected)."""
    if connection is None:
        return []
    return [f for f in FILTERS if f.applies(connection, ctx)]


def badges(state: ConnectionState | None, flags: Sequence[HealthFilter]) -> tuple[Badge, ...]:
    """What the console shows beside a branch: each matching filter, else the connection's state
    ("Healthy" when connected); `state` is None for a branch with no connection."""
    if state is None:
        return (NOT_CONNECTED,)
    if flags:
        return tuple(f.badge for f in flags)
    if state == ConnectionState.CONNECTED:
        return (HEALTHY,)
    return (Badge(state.value, state.label),)
