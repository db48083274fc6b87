"""Who may use the Sage One AUS pages, and why a puppet session can only look (rule 5 and 8)."""
from __future__ import annotations

import html
import re

import pytest

from portal.extensions import db
from portal.models import AuditEvent, Connection, ConnectionState, Job
from tests import factories
from tests.integrations.sage_one_aus.conftest import (
    connect,
    disconnect,
    sandbox_requests,
    start_puppet,
    sync,
    void,
)

BASE = "/integrations/sage-one-aus/branches/{branch}"
ROUTES = [
    ("GET", BASE),
    ("GET", BASE + "/connect"),
    ("POST", BASE + "/connect"),
    ("POST", BASE + "/connect/company"),
    ("POST", BASE + "/sync"),
    ("GET", BASE + "/invoices/{invoice}/void"),
    ("POST", BASE + "/invoices/{invoice}/void"),
    ("GET", BASE + "/disconnect"),
    ("POST", BASE + "/disconnect"),
]


@pytest.fixture
def connected(world, client, auth, sandbox):
    """Newcastle connected by its owner, with one synced-looking invoice; then signed out."""
    auth.login(world.owner)
    assert connect(client, world.branch).status_code == 302
    contact = factories.contacts(world.branch, 1)[0]
    invoice = factories.invoice(world.branch, contact)
    invoice.mark_synced("999999")
    db.session.commit()
    auth.logout()
    world.invoice = invoice
    return world


def _connection(branch) -> Connection:
    return db.session.scalar(db.select(Connection).where(Connection.branch_id == branch.id))


def _call(client, method: str, path: str, world):
    url = path.format(branch=world.branch.id, invoice=world.invoice.id)
    data = {"username": "newcastle@harbour-auto.test", "password": "x", "company_id": "20001", "reason": "r"}
    return client.open(url, method=method, data=data if method == "POST" else None)


# --- access matrix ----------------------------------------------------------------------------------


@pytest.mark.parametrize("method,path", ROUTES)
def test_anonymous_visitors_are_sent_to_sign_in(connected, client, method, path):
    response = _call(client, method, path, connected)
    assert response.status_code == 302 and "/login" in response.headers["Location"]


@pytest.mark.parametrize("method,path", ROUTES)
def test_a_customer_of_another_business_gets_404(connected, client, auth, method, path):
    stranger = factories.customer(factories.business("Elsewhere Motors"))
    auth.login(stranger)
    assert _call(client, method, path, connected).status_code == 404


@pytest.mark.parametrize("method,path", ROUTES)
def test_support_outside_a_puppet_session_is_refused(connected, client, auth, method, path):
    auth.login(factories.support())
    assert _call(client, method, path, connected).status_code == 403


@pytest.mark.parametrize("method,path", [r for r in ROUTES if r[0] == "GET"])
def test_a_customer_of_the_branch_sees_every_page(connected, client, auth, method, path):
    auth.login(connected.colleague)
    assert _call(client, method, path, connected).status_code == 200


@pytest.mark.parametrize("method,path", ROUTES)
def test_a_puppet_session_may_look_but_every_write_is_refused(connected, client, auth, sandbox, method, path):
    auth.login(factories.support())
    start_puppet(client, connected.business, connected.owner)
    before = sandbox_requests(sandbox)
    response = _call(client, method, path, connected)
    assert response.status_code == (200 if method == "GET" else 403)
    assert sandbox_requests(sandbox) == before


def test_a_customer_of_the_branch_gets_404_for_an_invoice_of_another_branch(connected, client, auth):
    other = factories.invoice(connected.other_branch, factories.contacts(connected.other_branch, 1)[0])
    auth.login(connected.owner)
    response = client.get(f"/integrations/sage-one-aus/branches/{connected.branch.id}/invoices/{other.id}/void")
    assert response.status_code == 404


# --- puppet: refused by page and by crafted request ----------------------------------------------------


@pytest.fixture
def puppeting(connected, client, auth):
    support = factories.support()
    auth.login(support)
    start_puppet(client, connected.business, connected.owner)
    connected.support = support
    return connected


def test_the_connect_page_explains_why_support_cannot_authenticate(puppeting, client):
    body = html.unescape(
        client.get(f"/integrations/sage-one-aus/branches/{puppeting.branch.id}/connect").get_data(as_text=True))
    assert "can't be authenticated in a puppet session" in body
    assert "customer" in body and "themselves" in body
    assert 'name="password"' not in body
    if "checklists.start" in client.application.view_functions:
        assert "/support/checklists/start?scenario=sage-one-aus-puppet-auth" in body


def test_the_branch_page_is_visibly_read_only(puppeting, client):
    body = client.get(f"/integrations/sage-one-aus/branches/{puppeting.branch.id}").get_data(as_text=True)
    assert "Read-only while puppeting" in body
    assert body.count('disabled aria-disabled="true"') >= 4  # re-authenticate, sync, disconnect, void
    forms = re.findall(r'<form[^>]*action="/integrations/sage-one-aus/branches[^>]*>', body)
    assert forms, "expected the records filter form (reading is allowed)"
    assert all('method="get"' in form for form in forms), forms  # no live write form at all


def test_the_dashboard_card_shows_the_action_disabled(puppeting, client):
    body = client.get("/").get_data(as_text=True)
    assert "Open Sage One AUS" in body  # reading is fine
    body_other = body.split(puppeting.other_branch.name, 1)[1]
    assert "disabled" in body_other.split("</li>", 1)[0]


def test_a_crafted_connect_with_a_valid_csrf_token_is_refused_with_the_explanation(puppeting, client, sandbox):
    before = sandbox_requests(sandbox)
    response = connect(client, puppeting.branch)
    body = html.unescape(response.get_data(as_text=True))
    assert response.status_code == 403
    assert "read-only while puppeting" in body.lower()
    assert "only the customer can" in body
    assert sandbox_requests(sandbox) == before
    assert _connection(puppeting.branch).credentials_owner_id == puppeting.owner.id
    refused = db.session.scalar(db.select(AuditEvent).where(AuditEvent.kind == "puppet.write_refused"))
    assert refused.actor_id == puppeting.support.id


@pytest.mark.parametrize("action", ["sync", "void", "disconnect"])
def test_a_crafted_write_is_refused_and_changes_nothing(puppeting, client, sandbox, action):
    before = sandbox_requests(sandbox)
    response = {"sync": lambda: sync(client, puppeting.branch),
                "void": lambda: void(client, puppeting.branch, puppeting.invoice),
                "disconnect": lambda: disconnect(client, puppeting.branch)}[action]()
    assert response.status_code == 403
    assert "Sage One AUS" in response.get_data(as_text=True)
    assert db.session.scalar(db.select(db.func.count(Job.id))) == 0
    assert _connection(puppeting.branch).state == ConnectionState.CONNECTED
    assert sandbox_requests(sandbox) == before


def test_an_htmx_crafted_write_gets_a_fragment(puppeting, client):
    response = client.post(f"/integrations/sage-one-aus/branches/{puppeting.branch.id}/sync",
                           headers={"HX-Request": "true"})
    body = response.get_data(as_text=True)
    assert response.status_code == 403
    assert "<html" not in body and "read-only while puppeting" in body.lower()


def test_a_write_without_a_csrf_token_is_refused(connected, client, auth):
    auth.login(connected.owner)
    response = client.post(f"/integrations/sage-one-aus/branches/{connected.branch.id}/sync", csrf=False)
    assert response.status_code == 400
    assert db.session.scalar(db.select(db.func.count(Job.id))) == 0
