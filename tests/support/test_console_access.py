"""Access matrix of every console route: anonymous, customer, support, support lead, puppet session."""
from __future__ import annotations

import pytest

from tests import factories
from tests.support.helpers import start_puppet

ANON, CUSTOMER, SUPPORT, LEAD, PUPPET = "anonymous", "customer", "support", "support-lead", "puppet-session"
WHO = [ANON, CUSTOMER, SUPPORT, LEAD, PUPPET]


@pytest.fixture
def world(app):
    business = factories.business("Harbour Auto", branches=("Sydney",))
    customer = factories.customer(business)
    return {
        "business": business,
        "business_id": business.id,
        "customer": customer,
        "customer_id": customer.id,
        "support": factories.support(),
        "lead": factories.support(lead=True),
    }


def _sign_in(who, world, client, auth):
    if who == CUSTOMER:
        auth.login(world["customer"])
    elif who == SUPPORT:
        auth.login(world["support"])
    elif who in (LEAD, PUPPET):
        auth.login(world["lead"])
        if who == PUPPET:
            assert start_puppet(client, world["business"], world["customer"]).status_code == 302


MATRIX = [
    # method, path, form, {who: status}. A puppet session sees only the customer's pages.
    ("GET", "/support/", None, {ANON: 302, CUSTOMER: 403, SUPPORT: 200, LEAD: 200, PUPPET: 403}),
    ("GET", "/support/?q=harb&page=2&health=stale&stale_hours=x", None,
     {ANON: 302, CUSTOMER: 403, SUPPORT: 200, LEAD: 200, PUPPET: 403}),
    ("GET", "/support/customers/{business_id}", None, {ANON: 302, CUSTOMER: 403, SUPPORT: 200, LEAD: 200, PUPPET: 403}),
    ("GET", "/support/customers/999999", None, {ANON: 302, CUSTOMER: 403, SUPPORT: 404, LEAD: 404, PUPPET: 403}),
    ("POST", "/support/customers/{business_id}/puppet", {"user_id": "{customer_id}", "reason": "Ticket 1"},
     {ANON: 302, CUSTOMER: 403, SUPPORT: 302, LEAD: 302, PUPPET: 403}),
    ("POST", "/support/customers/999999/puppet", {"user_id": "{customer_id}", "reason": "Ticket 1"},
     {ANON: 302, CUSTOMER: 403, SUPPORT: 404, LEAD: 404, PUPPET: 403}),
    ("POST", "/support/puppet/end", None, {ANON: 302, CUSTOMER: 403, SUPPORT: 302, LEAD: 302, PUPPET: 302}),
    ("GET", "/support/puppet/sessions", None, {ANON: 302, CUSTOMER: 403, SUPPORT: 200, LEAD: 200, PUPPET: 403}),
    ("GET", "/support/audit", None, {ANON: 302, CUSTOMER: 403, SUPPORT: 403, LEAD: 200, PUPPET: 403}),
    ("GET", "/support/audit.csv", None, {ANON: 302, CUSTOMER: 403, SUPPORT: 403, LEAD: 200, PUPPET: 403}),
]


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize("method,path,form,expected", MATRIX, ids=[f"{m} {p}" for m, p, _, _ in MATRIX])
def test_console_access_matrix(world, client, auth, who, method, path, form, expected):
    _sign_in(who, world, client, auth)
    data = {k: v.format(**world) for k, v in form.items()} if form else None
    response = client.open(path.format(**world), method=method, data=data, buffered=True)
    assert response.status_code == expected[who]
    if who == ANON:
        assert "/login" in response.headers["Location"]


def test_the_console_tells_a_puppeting_support_person_how_to_get_back(world, client, auth):
    _sign_in(PUPPET, world, client, auth)
    body = client.get("/support/").get_data(as_text=True)
    assert "End the puppet session" in body


def test_an_expired_login_inside_the_live_search_redirects_the_whole_page(world, client):
    response = client.get("/support/?q=harb", headers={"HX-Request": "true"})
    assert response.status_code == 401 and "/login" in response.headers["HX-Redirect"]


def test_console_pages_without_csrf_token_refuse_writes(world, client, auth):
    auth.login(world["support"])
    response = client.post(f"/support/customers/{world['business_id']}/puppet",
                           data={"user_id": world["customer_id"], "reason": "x"}, csrf=False)
    assert response.status_code == 400
