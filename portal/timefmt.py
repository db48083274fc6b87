"""Times as people read them: in the business's own time zone, in one format, and relative.

The database holds UTC. Every time a person sees (pages, checklist messages, emails) goes through
this module: `when` for a moment ("2 Dec 2026, 7:18 pm"), `ago` for how far it is from now
("4 minutes ago", "in 31 days"), `zone_label` for the zone, which a page names once. Which zone a
request uses is set per request (`use_zone`): the signed-in customer's business, the customer a
support page is about, or the portal's default (`PORTAL_TIME_ZONE`). CSV exports use `iso`.

Babel does the formatting so that there is one format and one wording for durations.
"""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.core import Locale
from babel.dates import format_datetime, format_time, format_timedelta
from flask import current_app, g, has_app_context, has_request_context

LOCALE = "en_AU"
# Parsed once: Babel parses a locale given by name at every call, half the cost of a `when`, which
# pages call for every row.
_LOCALE = Locale.parse(LOCALE)
# `when` and `day` spell the pattern themselves from the locale's own month and am/pm names: the
# same text as Babel's "d MMM y, h:mm a" (tests/test_timefmt.py compares them), at a tenth of the
# cost, which matters on pages that write a hundred times.
_MONTHS = tuple(_LOCALE.months["format"]["abbreviated"][month] for month in range(1, 13))
_AM_PM = (_LOCALE.day_periods["format"]["abbreviated"]["am"], _LOCALE.day_periods["format"]["abbreviated"]["pm"])
DEFAULT_ZONE = "Australia/Sydney"
# A duration is said in the larger unit only from twice that unit: "in 31 days", not "in 1 month";
# "90 minutes ago", not "2 hours ago".
_THRESHOLD = 2
_DAYS_FROM, _DAYS_UNTIL = timedelta(days=2), timedelta(days=60)


def zone_for(name: str | None) -> ZoneInfo:
    """The zone called `name`, or the portal's default when it is missing or unknown."""
    for candidate in (name, _default_name(), "UTC"):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def use_zone(name: str | None) -> None:
    """Show this request's times in the zone called `name` (a business's `time_zone`)."""
    if has_request_context():
        g.time_zone = zone_for(name)


def current_zone() -> ZoneInfo:
    """The zone this request shows times in."""
    if has_request_context() and g.get("time_zone") is not None:
        return g.time_zone
    return zone_for(None)


def local(moment: datetime, zone: ZoneInfo | None = None) -> datetime:
    """`moment` (UTC; a naive value is taken as UTC) in `zone`, by default the request's."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(zone or current_zone())


def when(moment: datetime | date | None, zone: ZoneInfo | None = None, *, empty: str = "—") -> str:
    """A moment as every page writes it, "2 Dec 2026, 7:18 pm"; a date alone as "2 Dec 2026"."""
    if moment is None:
        return empty
    if not isinstance(moment, datetime):
        return _day(moment)
    moment = local(moment, zone)
    return f"{_day(moment)}, {moment.hour % 12 or 12}:{moment.minute:02d} {_AM_PM[moment.hour >= 12]}"


def _day(moment: date) -> str:
    return f"{moment.day} {_MONTHS[moment.month - 1]} {moment.year}"


def day(moment: datetime | date | None, zone: ZoneInfo | None = None, *, empty: str = "—") -> str:
    """Only the day, "2 Dec 2026", of a moment in `zone` (a sign-up, an expiry a month away)."""
    if moment is None:
        return empty
    if isinstance(moment, datetime):
        moment = local(moment, zone).date()
    return _day(moment)


def clock(moment: datetime | None, zone: ZoneInfo | None = None, *, empty: str = "—") -> str:
    """Only the time of day, "7:18 pm", for moments that are plainly today (a pause, a block)."""
    if moment is None:
        return empty
    return format_time(local(moment, zone), "h:mm a", locale=_LOCALE)


def ago(moment: datetime | None, now: datetime | None = None, *, empty: str = "never") -> str:
    """How far `moment` is from now as a person says it: "4 minutes ago", "in 31 days"."""
    if moment is None:
        return empty
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - (now or datetime.now(UTC))
    if abs(delta) < timedelta(seconds=5):
        return "just now"
    return format_timedelta(delta, add_direction=True, locale=_LOCALE, **_units(delta))


def duration(seconds: float | timedelta | None, *, empty: str = "—") -> str:
    """A length of time without direction: "40 seconds", "3 minutes", "31 days"."""
    if seconds is None:
        return empty
    if not isinstance(seconds, timedelta):
        seconds = timedelta(seconds=seconds)
    return format_timedelta(seconds, locale=_LOCALE, **_units(seconds))


def _units(delta: timedelta) -> dict:
    # People count days up to two months ("in 31 days", the life of a Sage sign-in), not weeks.
    if _DAYS_FROM <= abs(delta) < _DAYS_UNTIL:
        return {"granularity": "day", "threshold": 10_000}
    if abs(delta) < timedelta(hours=1):  # "2 minutes ago" from a minute on, never "110 seconds ago"
        return {"threshold": 1}
    return {"threshold": _THRESHOLD}


def zone_label(zone: ZoneInfo | None = None) -> str:
    """The zone as a page names it once: "Sydney time (AEDT)"."""
    zone = zone or current_zone()
    if zone.key == "UTC":
        return "UTC"
    city = zone.key.rsplit("/", 1)[-1].replace("_", " ")
    short = format_datetime(datetime.now(UTC), "z", tzinfo=zone, locale=_LOCALE)
    return f"{city} time ({short})"


def with_zone(moment: datetime | None, zone: ZoneInfo | None = None) -> str:
    """A moment with its zone named, for text read away from a page (emails, checklist messages)."""
    if moment is None:
        return "—"
    zone = zone or current_zone()
    return f"{when(moment, zone)} {zone_label(zone)}"


def for_business(moment: datetime | None, business) -> str:
    """`with_zone` in `business`'s own zone: for notes and job summaries read later on its pages."""
    return with_zone(moment, zone_for(business.time_zone if business is not None else None))


def iso(moment: datetime | None, zone: ZoneInfo | None = None) -> str:
    """ISO 8601 with the zone's offset, for CSV exports: "2026-12-02T19:18:59+11:00"."""
    if moment is None:
        return ""
    return local(moment, zone).isoformat(timespec="seconds")


def _default_name() -> str:
    if has_app_context():
        return current_app.config.get("PORTAL_TIME_ZONE", DEFAULT_ZONE)
    return DEFAULT_ZONE


def init_app(app) -> None:
    """The template filters `when`, `day`, `clock`, `ago`, `duration` and the global `time_zone_label`."""
    app.config.setdefault("PORTAL_TIME_ZONE", DEFAULT_ZONE)
    for name, function in (("when", when), ("day", day), ("clock", clock), ("ago", ago), ("duration", duration),
                           ("iso", iso)):
        app.add_template_filter(function, name)
    app.add_template_global(zone_label, "time_zone_label")
