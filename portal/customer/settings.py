"""The business's own settings: today the time zone its pages, job summaries and emails use.

Offered zones are those of Australia and New Zealand (the product's customers), each named as people
know it ("Perth (AWST, UTC+8)"); the form accepts nothing else. A change is audited (in a puppet
session the puppet-write hook records both people too).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from babel.dates import format_datetime

from portal import audit, timefmt
from portal.extensions import db
from portal.models import Business, User

ZONES = (
    ("Australia/Sydney", "Sydney, Canberra"),
    ("Australia/Melbourne", "Melbourne"),
    ("Australia/Brisbane", "Brisbane"),
    ("Australia/Adelaide", "Adelaide"),
    ("Australia/Broken_Hill", "Broken Hill"),
    ("Australia/Darwin", "Darwin"),
    ("Australia/Perth", "Perth"),
    ("Australia/Eucla", "Eucla"),
    ("Australia/Hobart", "Hobart"),
    ("Australia/Lord_Howe", "Lord Howe Island"),
    ("Pacific/Auckland", "Auckland, Wellington"),
    ("Pacific/Chatham", "Chatham Islands"),
    ("Pacific/Norfolk", "Norfolk Island"),
)


class SettingRefused(ValueError):
    """The form asked for something the page does not offer; the message says what to choose."""


@dataclass(frozen=True)
class ZoneChoice:
    name: str
    label: str  # "Perth (AWST, UTC+8)"
    now: str  # the time there now, "4:15 pm"


def choices(now: datetime | None = None) -> list[ZoneChoice]:
    """The zones the page offers, each with its abbreviation, offset and time right now."""
    now = now or datetime.now(UTC)
    found = []
    for name, place in ZONES:
        zone = ZoneInfo(name)
        short = format_datetime(now, "z", tzinfo=zone, locale=timefmt.LOCALE)
        found.append(ZoneChoice(name, f"{place} ({short}, {_offset(now.astimezone(zone))})",
                                timefmt.clock(now, zone)))
    return found


def _offset(moment: datetime) -> str:
    """ "UTC+11", "UTC+10:30", as people write an offset."""
    minutes = int(moment.utcoffset().total_seconds() // 60)
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{'-' if minutes < 0 else '+'}{hours}" + (f":{rest:02d}" if rest else "")


def change_time_zone(business: Business, name: str, by: User, puppeteer: User | None = None) -> bool:
    """Set the business's zone to `name` (one of ZONES); False when it already was. Raises SettingRefused.

    `puppeteer`: the support person making the change in a puppet session as `by`; the audit says so.
    """
    name = (name or "").strip()
    if name not in dict(ZONES):
        raise SettingRefused("Choose the time zone from the list.")
    if business.time_zone == name:
        return False
    before = business.time_zone
    business.time_zone = name
    who = f"support ({puppeteer.email}) for {by.email}" if puppeteer is not None else by.email
    audit.record("business.time_zone_changed", f"Time zone changed from {before} to {name} by {who}",
                 business_id=business.id, details={"from": before, "to": name})
    db.session.commit()
    return True
