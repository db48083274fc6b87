"""A NUL character in what a person sends answers as any other text, on SQLite and on PostgreSQL
(which refuses NUL in text: the portal sends U+FFFD in its place, portal/nul_text.py)."""
from __future__ import annotations

from portal.extensions import db
from portal.models import PuppetSession
from tests import factories
from tests.support.helpers import customer_world


def test_a_sign_in_with_a_nul_is_an_ordinary_wrong_sign_in(client):
    factories.customer(factories.business(), email="owner@workshop.test")
    response = client.post("/login", data={"email": "owner\x00@workshop.test", "password": factories.PASSWORD})
    assert response.status_code == 401  # as for any wrong email: nothing signs in


def test_a_search_with_a_nul_finds_nothing_and_answers(client, auth):
    customer_world("Harbour Auto")
    auth.login(factories.support())
    response = client.get("/support/", query_string={"q": "harb\x00our"}, headers={"HX-Request": "true"})
    assert response.status_code == 200 and "Harbour Auto" not in response.get_data(as_text=True)


def test_a_puppet_reason_with_a_nul_is_kept_with_a_visible_mark(client, auth):
    business, customer = customer_world()
    auth.login(factories.support())
    response = client.post(f"/support/customers/{business.id}/puppet",
                           data={"user_id": customer.id, "reason": "Ticket \x00 1"})
    assert response.status_code == 302
    reason = db.session.scalar(db.select(PuppetSession.reason))
    assert reason in ("Ticket \x00 1", "Ticket \ufffd 1")  # SQLite keeps it; PostgreSQL cannot
