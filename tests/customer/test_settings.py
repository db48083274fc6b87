"""The business's time zone: chosen from the offered list, audited, used at once by every page, and
refused in words for anything else (nothing changes)."""
from __future__ import annotations

from portal.extensions import db
from portal.models import AuditEvent, Business
from tests import factories
from tests.support.helpers import customer_world, start_puppet


def _business(business_id: int) -> Business:
    db.session.expire_all()
    return db.session.get(Business, business_id)


def test_a_customer_moves_the_business_to_perth_and_every_page_shows_perth_time(client, auth):
    business, customer = customer_world()
    auth.login(customer)
    page = client.get("/settings").get_data(as_text=True)
    assert '<option value="Australia/Sydney" selected>' in page and "Perth (AWST, UTC+8)" in page

    response = client.post("/settings", data={"time_zone": "Australia/Perth"}, follow_redirects=True)

    text = response.get_data(as_text=True)
    assert response.status_code == 200 and "Times are now shown in Perth time (AWST)." in text
    assert _business(business.id).time_zone == "Australia/Perth"
    event = db.session.scalar(db.select(AuditEvent).where(AuditEvent.kind == "business.time_zone_changed"))
    assert event.business_id == business.id and event.actor_id == customer.id
    assert event.details == {"from": "Australia/Sydney", "to": "Australia/Perth"}
    assert "Times are shown in Perth time (AWST)" in client.get("/").get_data(as_text=True)


def test_a_zone_the_page_does_not_offer_is_refused_in_words_and_changes_nothing(client, auth):
    business, customer = customer_world()
    auth.login(customer)
    for crafted in ("Europe/London", "", "Australia/Perth\x00", "../../etc/passwd", "A" * 5000):
        response = client.post("/settings", data={"time_zone": crafted})
        text = response.get_data(as_text=True)
        assert response.status_code == 400 and "Choose the time zone from the list." in text
        assert 'aria-invalid="true"' in text
    assert _business(business.id).time_zone == "Australia/Sydney"
    assert db.session.scalar(db.select(db.func.count()).select_from(AuditEvent)
                             .where(AuditEvent.kind == "business.time_zone_changed")) == 0


def test_saving_the_same_zone_says_nothing_changed_and_audits_nothing(client, auth):
    _, customer = customer_world()
    auth.login(customer)
    text = client.post("/settings", data={"time_zone": "Australia/Sydney"}, follow_redirects=True).get_data(
        as_text=True)
    assert "Nothing changed." in text
    assert db.session.scalar(db.select(db.func.count()).select_from(AuditEvent)
                             .where(AuditEvent.kind == "business.time_zone_changed")) == 0


def test_support_changes_it_only_in_a_puppet_session_recorded_with_both_people(client, auth):
    business, customer = customer_world()
    support = factories.support()
    auth.login(support)
    assert client.get("/settings").status_code in (403, 404)
    assert client.post("/settings", data={"time_zone": "Australia/Perth"}).status_code in (403, 404)
    assert _business(business.id).time_zone == "Australia/Sydney"

    start_puppet(client, business, customer)
    assert client.post("/settings", data={"time_zone": "Australia/Darwin"}).status_code == 302
    assert _business(business.id).time_zone == "Australia/Darwin"
    write = db.session.scalar(db.select(AuditEvent).where(AuditEvent.kind == "puppet.write",
                                                          AuditEvent.details["path"].as_string() == "/settings"))
    assert write is not None and write.actor_id == support.id and write.business_id == business.id
    # The change's own event names who made it: support for the customer, not the customer alone.
    changed = db.session.scalar(db.select(AuditEvent).where(AuditEvent.kind == "business.time_zone_changed"))
    assert changed.actor_id == support.id and changed.subject_user_id == customer.id
    assert changed.summary == (f"Time zone changed from Australia/Sydney to Australia/Darwin by support "
                               f"({support.email}) for {customer.email}")


def test_another_businesss_customer_changes_only_their_own(client, auth):
    business, _ = customer_world()
    other = factories.business("Elsewhere Motors")
    auth.login(factories.customer(other))
    client.post("/settings", data={"time_zone": "Australia/Hobart"})
    assert _business(business.id).time_zone == "Australia/Sydney"
    assert _business(other.id).time_zone == "Australia/Hobart"

