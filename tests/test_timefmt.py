"""Times read as people say them, in the business's zone, named once per page."""
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from portal import timefmt
from tests import factories

SYDNEY = ZoneInfo("Australia/Sydney")
PERTH = ZoneInfo("Australia/Perth")
# 2 Dec 2026 08:15 UTC is 7:15 pm in Sydney (AEDT, +11) and 4:15 pm in Perth (AWST, +8).
MOMENT = datetime(2026, 12, 2, 8, 15, tzinfo=UTC)


def test_one_format_in_the_zone_asked():
    assert timefmt.when(MOMENT, SYDNEY) == "2 Dec 2026, 7:15 pm"
    assert timefmt.when(MOMENT, PERTH) == "2 Dec 2026, 4:15 pm"
    assert timefmt.when(MOMENT.replace(tzinfo=None), SYDNEY) == "2 Dec 2026, 7:15 pm"  # naive is UTC
    assert timefmt.when(date(2026, 12, 2)) == "2 Dec 2026"
    assert timefmt.when(None) == "—"
    assert timefmt.clock(MOMENT, PERTH) == "4:15 pm"


def test_when_and_day_write_what_babels_pattern_writes_at_every_hour_of_every_month():
    from babel.dates import format_date, format_datetime

    for month in range(1, 13):
        for hour in range(24):
            moment = datetime(2026, month, 1 + (hour % 28), hour, (7 * hour) % 60, tzinfo=UTC)
            for zone in (SYDNEY, PERTH, ZoneInfo("UTC")):
                local = moment.astimezone(zone)
                assert timefmt.when(moment, zone) == format_datetime(local, "d MMM y, h:mm a", locale="en_AU")
                assert timefmt.day(moment, zone) == format_date(local.date(), "d MMM y", locale="en_AU")
    assert timefmt.when(datetime(2026, 9, 2, 0, 5, tzinfo=UTC), ZoneInfo("UTC")) == "2 Sept 2026, 12:05 am"
    assert timefmt.when(datetime(2026, 9, 2, 12, 0, tzinfo=UTC), ZoneInfo("UTC")) == "2 Sept 2026, 12:00 pm"


def test_durations_read_like_a_person_talks():
    now = MOMENT
    assert timefmt.ago(now + timedelta(days=31), now) == "in 31 days"
    assert timefmt.ago(now - timedelta(hours=743.9), now) == "31 days ago"
    assert timefmt.ago(now - timedelta(minutes=4), now) == "4 minutes ago"
    assert timefmt.ago(now - timedelta(seconds=110), now) == "2 minutes ago"  # never "110 seconds ago"
    assert timefmt.ago(now - timedelta(seconds=40), now) == "40 seconds ago"
    assert timefmt.duration(59 * 60) == "59 minutes"
    assert timefmt.ago(now + timedelta(seconds=40), now) == "in 40 seconds"
    assert timefmt.ago(now - timedelta(seconds=2), now) == "just now"
    assert timefmt.ago(None) == "never"
    assert timefmt.duration(90 * 60) == "90 minutes"


def test_csv_keeps_iso_with_the_offset():
    assert timefmt.iso(MOMENT, SYDNEY) == "2026-12-02T19:15:00+11:00"
    assert timefmt.iso(None) == ""


def test_zone_label_names_city_and_abbreviation():
    assert timefmt.zone_label(SYDNEY) == "Sydney time (AEDT)" or timefmt.zone_label(SYDNEY) == "Sydney time (AEST)"
    assert timefmt.zone_label(ZoneInfo("UTC")) == "UTC"
    assert timefmt.zone_for("Not/AZone").key == "Australia/Sydney"


def test_a_customer_page_names_their_business_zone(app, client, auth):
    business = factories.business("Perth Motors")
    business.time_zone = "Australia/Perth"
    user = factories.customer(business, email="perth@example.test")
    auth.login(user)
    body = client.get("/", follow_redirects=True).get_data(as_text=True)
    assert "Times are shown in Perth time (AWST)" in body
