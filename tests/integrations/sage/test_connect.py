"""Connecting a branch to Sage: per-branch tokens (rule 2), the OAuth state, token age (rule 1),
choosing the business, disconnecting."""
from __future__ import annotations

import re
from datetime import timedelta

from portal import keys
from portal.extensions import db
from portal.models import AuditEvent, Business, ConnectionState, Contact, utcnow
from tests import factories
from tests.integrations.sage.conftest import (
    FLEET_BUSINESS,
    LEAD_BUSINESS,
    MULTI_SAGE_USER,
    SAGE_USER,
    SOLO_BUSINESS,
    connect,
    sign_in_at_sage,
    start_connect,
)


def test_connect_redirects_to_sage_with_the_fixed_callback_and_full_access(client, auth, workshop, sandbox):
    auth.login(workshop.owner)
    query = start_connect(client, workshop.head_office_id)
    assert query["client_id"] == "portal-dev-client"
    assert query["response_type"] == "code"
    assert query["scope"] == "full_access"
    assert query["redirect_uri"] == "http://localhost/integrations/sage/callback"
    assert len(query["state"]) >= 32


def test_connect_stores_tokens_on_that_branch_only_and_the_sharing_sibling_stays_disconnected(
        client, auth, workshop, sandbox):
    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id)

    head = workshop.connection()
    assert head.state == ConnectionState.CONNECTED
    assert head.sage_business_id == SOLO_BUSINESS and head.sage_business_name == "Solo Tyres & Exhausts"
    assert head.ids_sage_business_id == SOLO_BUSINESS
    assert workshop.connection(workshop.sibling_id) is None  # no token handed to the sharing sibling

    dashboard = client.get("/").get_data(as_text=True)
    assert "it needs its own sign-in" in dashboard
    sibling_page = client.get(f"/integrations/sage/branches/{workshop.sibling_id}").get_data(as_text=True)
    assert "Not connected" in sibling_page and "needs its own sign-in" in sibling_page


def test_tokens_are_encrypted_at_rest_and_bound_to_their_connection(client, auth, workshop, sandbox):
    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id)
    conn = workshop.connection()
    live = [t for t, r in sandbox.state.access_tokens.items()]
    assert live and all(t.encode() not in conn.access_token_enc for t in live)
    access = keys.decrypt_at_rest(conn.access_token_enc, f"connection/{conn.id}/access")
    assert access in sandbox.state.access_tokens


def test_token_issue_time_age_and_reauthentication_deadline_are_shown(client, auth, workshop, sandbox):
    auth.login(workshop.owner)
    before = utcnow()
    connect(client, sandbox, workshop.head_office_id)
    conn = workshop.connection()
    assert before <= conn.token_issued_at <= utcnow()
    assert abs((conn.access_token_expires_at - conn.token_issued_at) - timedelta(seconds=300)) < timedelta(seconds=1)
    assert abs((conn.refresh_token_expires_at - conn.token_issued_at) - timedelta(days=31)) < timedelta(seconds=1)

    conn.token_issued_at = utcnow() - timedelta(minutes=4)
    conn.refresh_token_expires_at = utcnow() + timedelta(days=27, hours=3)
    db.session.commit()
    page = client.get(f"/integrations/sage/branches/{workshop.head_office_id}").get_data(as_text=True)
    assert "Token issued" in page and "4 minutes ago" in page
    assert "in 27 days" in page and "unless it is used" in page
    card = client.get("/").get_data(as_text=True)
    assert "4 minutes ago" in card and "in 27 days" in card  # the card says durations as people do


def test_callback_refuses_a_state_it_never_issued(client, auth, workshop, sandbox):
    auth.login(workshop.owner)
    query = start_connect(client, workshop.head_office_id)
    callback = sign_in_at_sage(sandbox, query)
    response = client.get("/integrations/sage/callback", query_string={"code": callback["code"], "state": "forged"})
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert "did not come from the portal" in body or "expired" in body
    assert workshop.connection() is None


def test_callback_refuses_a_reused_state(client, auth, workshop, sandbox):
    auth.login(workshop.owner)
    query = start_connect(client, workshop.head_office_id)
    first = sign_in_at_sage(sandbox, query)
    assert client.get("/integrations/sage/callback", query_string=first).status_code == 302
    again = sign_in_at_sage(sandbox, query)  # a second code, same state
    response = client.get("/integrations/sage/callback", query_string=again)
    assert response.status_code == 400
    assert "already used" in response.get_data(as_text=True)


def test_callback_refuses_a_state_from_another_login_session(app, client, auth, workshop, sandbox):
    auth.login(workshop.owner)
    query = start_connect(client, workshop.head_office_id)
    callback = sign_in_at_sage(sandbox, query)

    other = app.test_client()
    colleague = factories.customer(db.session.get(Business, workshop.business_id))
    other.post("/login", data={"email": colleague.email, "password": factories.PASSWORD})
    response = other.get("/integrations/sage/callback", query_string=callback)
    assert response.status_code == 400
    assert "different login session" in response.get_data(as_text=True)
    assert workshop.connection() is None


def test_callback_with_access_denied_says_nothing_was_connected(client, auth, workshop, sandbox):
    auth.login(workshop.owner)
    query = start_connect(client, workshop.head_office_id)
    response = client.get("/integrations/sage/callback", query_string={"error": "access_denied",
                                                                       "state": query["state"]})
    assert response.status_code == 400
    assert "nothing was connected" in response.get_data(as_text=True)


def test_several_businesses_let_the_customer_choose_and_it_is_sent_as_x_business(
        client, auth, workshop, sandbox):
    sandbox.state.config["SANDBOX_REQUIRE_X_BUSINESS"] = True
    auth.login(workshop.owner)
    query = start_connect(client, workshop.head_office_id)
    callback = sign_in_at_sage(sandbox, query, MULTI_SAGE_USER)
    response = client.get("/integrations/sage/callback", query_string=callback)
    assert response.headers["Location"].endswith(f"/integrations/sage/branches/{workshop.head_office_id}/business")
    picker = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Harbour Auto Pty Ltd" in picker and "Harbour Auto Fleet Services" in picker

    client.post(f"/integrations/sage/branches/{workshop.head_office_id}/business", data={"business_id": FLEET_BUSINESS})
    assert workshop.connection().sage_business_id == FLEET_BUSINESS
    factories.contacts(workshop.head_office, 2)
    client.post(f"/integrations/sage/branches/{workshop.head_office_id}/sync/contacts")
    from tests.integrations.sage.conftest import sage_contacts

    _drain(client)
    assert len(sage_contacts(sandbox, FLEET_BUSINESS)) == 2
    assert sage_contacts(sandbox, LEAD_BUSINESS) == []


def _drain(client):
    from portal.worker import build_worker

    build_worker(client.application, simple=True).work(burst=True)


def test_choosing_another_business_warns_then_clears_sage_ids(client, auth, workshop, sandbox, run_jobs):
    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id, MULTI_SAGE_USER, LEAD_BUSINESS)
    factories.contacts(workshop.head_office, 3)
    client.post(f"/integrations/sage/branches/{workshop.head_office_id}/sync/contacts")
    run_jobs()
    assert db.session.scalar(db.select(db.func.count()).where(Contact.sage_id.is_not(None))) == 3

    url = f"/integrations/sage/branches/{workshop.head_office_id}/business"
    warned = client.post(url, data={"business_id": FLEET_BUSINESS})
    assert warned.status_code == 409
    assert "their Sage ids are cleared" in warned.get_data(as_text=True)
    assert workshop.connection().sage_business_id == LEAD_BUSINESS

    client.post(url, data={"business_id": FLEET_BUSINESS, "confirm": "yes"})
    conn = workshop.connection()
    assert conn.sage_business_id == conn.ids_sage_business_id == FLEET_BUSINESS
    rows = db.session.scalars(db.select(Contact)).all()
    assert all(c.sage_id is None and c.sync_state.value == "pending" for c in rows)
    assert db.session.scalar(db.select(AuditEvent).where(AuditEvent.kind == "sage.ids_cleared")).details["count"] == 3


def test_disconnect_revokes_the_refresh_token_and_keeps_data_and_sage_ids(client, auth, workshop, sandbox, run_jobs):
    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id)
    factories.contacts(workshop.head_office, 2)
    client.post(f"/integrations/sage/branches/{workshop.head_office_id}/sync/contacts")
    run_jobs()
    refresh = keys.decrypt_at_rest(workshop.connection().refresh_token_enc,
                                   f"connection/{workshop.connection().id}/refresh")

    confirm = client.get(f"/integrations/sage/branches/{workshop.head_office_id}/disconnect").get_data(as_text=True)
    assert "different Sage business clears" in confirm
    response = client.post(f"/integrations/sage/branches/{workshop.head_office_id}/disconnect")
    assert response.status_code == 302

    conn = workshop.connection()
    assert conn.state == ConnectionState.DISCONNECTED
    assert conn.access_token_enc is None and conn.refresh_token_enc is None
    assert conn.ids_sage_business_id == SOLO_BUSINESS
    assert sandbox.state.refresh_tokens[refresh].revoked
    assert all(c.sage_id for c in db.session.scalars(db.select(Contact)))
    page = client.get(f"/integrations/sage/branches/{workshop.head_office_id}").get_data(as_text=True)
    assert re.search(r"Reconnect Sage", page)


def test_the_card_and_pages_name_the_sage_user_the_branch_signed_in_as(client, auth, workshop, sandbox):
    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id)
    user = sandbox.state.sage_users[SAGE_USER]
    named = f"{user.first_name} {user.last_name} <{user.email}>"
    assert workshop.connection().sage_user == named
    card = client.get("/").get_data(as_text=True)
    assert "Sage user" in card and f"{user.first_name} {user.last_name} &lt;{user.email}&gt;" in card
    page = client.get(f"/integrations/sage/branches/{workshop.head_office_id}").get_data(as_text=True)
    assert "Sage user" in page and user.email in page
