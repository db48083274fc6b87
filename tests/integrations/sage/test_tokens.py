"""Token refresh: before expiry, once across workers (a Redis lock), and invalid_grant."""
from __future__ import annotations

import threading
from datetime import timedelta

from portal.extensions import db
from portal.integrations.sage import tokens
from portal.integrations.sage.client import SageTokenRejected
from portal.models import ConnectionState, utcnow
from tests import factories
from tests.integrations.sage.conftest import connect


def _expire_soon(workshop, seconds: int = 30):
    conn = workshop.connection()
    conn.access_token_expires_at = utcnow() + timedelta(seconds=seconds)
    db.session.commit()
    return conn


def test_access_token_is_refreshed_when_it_has_under_a_minute_left(client, auth, workshop, sandbox, run_jobs):
    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id)
    conn = _expire_soon(workshop)
    first_issue = conn.token_issued_at
    old_access = tokens._access_of(conn)
    factories.contacts(workshop.head_office, 1)

    client.post(f"/integrations/sage/branches/{workshop.head_office_id}/sync/contacts")
    run_jobs()

    conn = workshop.connection()
    assert conn.token_issued_at > first_issue
    assert conn.access_token_expires_at > utcnow() + timedelta(seconds=250)
    assert tokens._access_of(conn) != old_access
    assert sandbox.state.access_tokens[old_access].expires_at > sandbox.state.now()  # it was still alive
    assert len(sandbox.state.refresh_tokens) == 2  # the original and exactly one rotation
    page = client.get(f"/integrations/sage/branches/{workshop.head_office_id}").get_data(as_text=True)
    assert "Not refreshed since sign-in" not in page


def test_a_fresh_access_token_is_used_without_refreshing(client, auth, workshop, sandbox, app):
    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id)
    conn = workshop.connection()
    assert tokens.access_token(conn.id) == tokens._access_of(conn)
    assert len(sandbox.state.refresh_tokens) == 1


def test_two_workers_refreshing_at_once_use_one_refresh_token(client, auth, workshop, sandbox, app):
    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id)
    connection_id = _expire_soon(workshop).id  # read here: the threads must not touch the test's session
    sandbox.state.set_latency(300)  # keep the first refresh in flight while the second worker asks
    results, errors = [], []
    barrier = threading.Barrier(2)

    def worker():
        with app.app_context():
            try:
                barrier.wait()
                results.append(tokens.access_token(connection_id))
            except Exception as exc:  # collected and asserted below
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    sandbox.state.set_latency(0)

    assert errors == []
    assert len(results) == 2 and results[0] == results[1]
    refresh_tokens = list(sandbox.state.refresh_tokens.values())
    assert len(refresh_tokens) == 2
    assert sum(1 for t in refresh_tokens if t.revoked) == 1
    assert workshop.connection().state == ConnectionState.CONNECTED


def test_invalid_grant_moves_the_branch_to_needs_reauthentication_with_a_reconnect_button(
        client, auth, workshop, sandbox, run_jobs):
    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id)
    conn = _expire_soon(workshop)
    sandbox.state.revoke_refresh_token(tokens.refresh_token_of(conn))
    factories.contacts(workshop.head_office, 2)

    client.post(f"/integrations/sage/branches/{workshop.head_office_id}/sync/contacts")
    run_jobs()

    conn = workshop.connection()
    assert conn.state == ConnectionState.NEEDS_REAUTH
    assert "Reconnect to Sage" in conn.state_reason
    assert conn.access_token_enc is None and conn.refresh_token_enc is None
    assert conn.sage_business_id and conn.ids_sage_business_id  # the data and its Sage ids are kept
    page = client.get(f"/integrations/sage/branches/{workshop.head_office_id}").get_data(as_text=True)
    assert "Needs re-authentication" in page and "Reconnect Sage" in page
    card = client.get("/").get_data(as_text=True)
    assert "Reconnect Sage" in card

    connect(client, sandbox, workshop.head_office_id)  # reconnect to the same business
    assert workshop.connection().state == ConnectionState.CONNECTED


def test_refresh_with_a_dead_refresh_token_raises_and_never_shows_the_token(client, auth, workshop, sandbox, app):
    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id)
    conn = _expire_soon(workshop, seconds=-5)
    refresh = tokens.refresh_token_of(conn)
    sandbox.state.revoke_refresh_token(refresh)
    try:
        tokens.access_token(conn.id)
    except SageTokenRejected as error:
        assert refresh not in str(error)
    else:
        raise AssertionError("expected SageTokenRejected")
