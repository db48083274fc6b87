"""Connecting Sage One AUS: the per-user encrypted password, username continuity, several
companies, taking a login over, and wrong credentials with Sage's lock-out."""
from __future__ import annotations

import pytest

from portal import accounts, keys
from portal.extensions import db
from portal.models import AuditEvent, Connection, ConnectionState, Provider
from tests import factories
from tests.integrations.sage_one_aus.conftest import (
    MULTI_USERNAME,
    NEWCASTLE_COMPANY,
    SAGE_PASSWORD,
    USERNAME,
    connect,
    disconnect,
    sandbox_requests,
)


def _connection(branch) -> Connection | None:
    return db.session.scalar(db.select(Connection).where(Connection.branch_id == branch.id))


# --- the per-user key (rule 7) ------------------------------------------------------------------


def test_a_stored_password_opens_only_with_its_owners_key(world):
    owner_key = keys.unwrap_private_key(world.owner, factories.PASSWORD)
    colleague_key = keys.unwrap_private_key(world.colleague, factories.PASSWORD)
    blob = keys.encrypt_sage_one_password(world.owner, owner_key, USERNAME, "s3cret")

    assert keys.decrypt_sage_one_password(world.owner, owner_key, USERNAME, blob) == "s3cret"
    with pytest.raises(keys.CiphertextRejected):
        keys.decrypt_sage_one_password(world.owner, colleague_key, USERNAME, blob)


def test_a_stored_password_moved_to_another_user_or_username_does_not_open(world):
    owner_key = keys.unwrap_private_key(world.owner, factories.PASSWORD)
    blob = keys.encrypt_sage_one_password(world.owner, owner_key, USERNAME, "s3cret")

    with pytest.raises(keys.CiphertextRejected):
        keys.decrypt_sage_one_password(world.colleague, owner_key, USERNAME, blob)
    with pytest.raises(keys.CiphertextRejected):
        keys.decrypt_sage_one_password(world.owner, owner_key, MULTI_USERNAME, blob)


def test_a_wrong_login_password_cannot_unwrap_the_private_key(world):
    with pytest.raises(keys.WrongPassword):
        keys.unwrap_private_key(world.owner, "not-the-password")


def test_connecting_stores_the_password_encrypted_for_the_customer_and_records_who(world, client, auth, sandbox):
    auth.login(world.owner)
    response = connect(client, world.branch)

    assert response.status_code == 302
    connection = _connection(world.branch)
    assert connection.provider == Provider.SAGE_ONE_AUS
    assert connection.state == ConnectionState.CONNECTED
    assert connection.sage_one_username == USERNAME
    assert connection.sage_one_company_id == NEWCASTLE_COMPANY
    assert connection.sage_one_company_name == "Harbour Auto Newcastle"
    assert connection.credentials_owner_id == world.owner.id
    assert connection.connected_by_id == world.owner.id
    assert connection.credentials_key_generation == world.owner.key_generation
    assert connection.connected_at is not None
    assert SAGE_PASSWORD.encode() not in connection.sage_one_password_enc
    key = keys.unwrap_private_key(world.owner, factories.PASSWORD)
    assert keys.decrypt_sage_one_password(world.owner, key, USERNAME, connection.sage_one_password_enc) == SAGE_PASSWORD
    event = db.session.scalar(db.select(AuditEvent).where(AuditEvent.kind == "sage_one_aus.connected"))
    assert event.actor_id == world.owner.id and event.branch_id == world.branch.id
    assert SAGE_PASSWORD not in str(event.details) + event.summary


def test_a_login_with_several_companies_asks_which_one(world, client, auth, sandbox):
    auth.login(world.owner)
    response = connect(client, world.branch, username=MULTI_USERNAME)

    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Harbour Auto Maitland" in body and "Harbour Auto Cessnock" in body
    assert SAGE_PASSWORD not in body
    assert _connection(world.branch) is None

    response = client.post(f"/integrations/sage-one-aus/branches/{world.branch.id}/connect/company",
                           data={"company_id": "20003"})
    assert response.status_code == 302
    connection = _connection(world.branch)
    assert (connection.sage_one_company_id, connection.sage_one_company_name) == (20003, "Harbour Auto Cessnock")


def test_picking_a_company_the_login_cannot_use_is_refused(world, client, auth, sandbox):
    auth.login(world.owner)
    connect(client, world.branch, username=MULTI_USERNAME)
    response = client.post(f"/integrations/sage-one-aus/branches/{world.branch.id}/connect/company",
                           data={"company_id": str(NEWCASTLE_COMPANY)})
    assert response.status_code == 400
    assert "Pick one of the companies listed" in response.get_data(as_text=True)
    assert _connection(world.branch) is None


# --- username continuity (rule 6) ---------------------------------------------------------------


def test_a_different_username_is_refused_with_the_exact_message(world, client, auth, sandbox):
    auth.login(world.owner)
    connect(client, world.branch)
    before = sandbox_requests(sandbox)

    response = connect(client, world.branch, username=MULTI_USERNAME)

    assert response.status_code == 409
    assert (f"This branch is connected as {USERNAME}; disconnect Sage One AUS first to use another login."
            in response.get_data(as_text=True))
    assert sandbox_requests(sandbox) == before  # refused before asking Sage
    assert _connection(world.branch).sage_one_username == USERNAME


def test_the_same_username_in_another_case_is_accepted(world, client, auth, sandbox):
    auth.login(world.owner)
    connect(client, world.branch)
    response = connect(client, world.branch, username=USERNAME.upper())
    assert response.status_code == 302
    assert db.session.scalar(db.select(AuditEvent).where(AuditEvent.kind == "sage_one_aus.reauthenticated"))


def test_after_a_disconnect_any_username_is_accepted(world, client, auth, sandbox):
    auth.login(world.owner)
    connect(client, world.branch)
    assert disconnect(client, world.branch).status_code == 302
    connection = _connection(world.branch)
    assert connection.state == ConnectionState.DISCONNECTED
    assert connection.sage_one_password_enc is None

    response = connect(client, world.branch, username=MULTI_USERNAME)
    assert response.status_code == 200  # on to the company choice: accepted
    client.post(f"/integrations/sage-one-aus/branches/{world.branch.id}/connect/company", data={"company_id": "20002"})
    assert _connection(world.branch).sage_one_username == MULTI_USERNAME


def test_another_user_sees_who_connected_and_takes_it_over_with_the_same_username(world, client, auth, sandbox):
    auth.login(world.owner)
    connect(client, world.branch)
    auth.logout()
    auth.login(world.colleague)

    page = client.get(f"/integrations/sage-one-aus/branches/{world.branch.id}").get_data(as_text=True)
    assert "owner@harbour-auto.test" in page
    assert connect(client, world.branch).status_code == 302

    connection = _connection(world.branch)
    assert connection.credentials_owner_id == world.colleague.id
    event = db.session.scalar(db.select(AuditEvent).where(AuditEvent.kind == "sage_one_aus.taken_over"))
    assert event.details["previous_owner_id"] == world.owner.id


def test_a_branch_connected_to_sage_cannot_connect_sage_one_aus(world, client, auth, sandbox):
    factories.connection(world.branch, provider=Provider.SAGE)
    auth.login(world.owner)
    response = connect(client, world.branch)
    assert response.status_code == 400
    assert "connected to Sage" in response.get_data(as_text=True)


# --- wrong credentials and the lock-out ---------------------------------------------------------


def test_a_wrong_password_shows_sages_answer_and_the_attempts_left(world, client, auth, sandbox):
    auth.login(world.owner)
    before = sandbox_requests(sandbox)

    response = connect(client, world.branch, password="wrong-password")

    body = response.get_data(as_text=True)
    assert response.status_code == 401
    assert "did not accept this username and password" in body
    assert "Authorization has been denied" in body  # Sage's own words
    assert "19 more failed attempts" in body
    assert sandbox_requests(sandbox) == before + 1  # one attempt, never retried
    assert _connection(world.branch) is None


def test_failures_are_counted_until_sage_locks_the_username_and_the_lock_is_shown(world, client, auth, sandbox):
    auth.login(world.owner)
    for attempt in range(1, 21):
        before = sandbox_requests(sandbox)
        response = connect(client, world.branch, password=f"wrong-{attempt}")
        assert response.status_code == 401
        assert sandbox_requests(sandbox) == before + 1
    assert "one more and it locks the username" in response.get_data(as_text=True)

    response = connect(client, world.branch, password="wrong-21")
    assert response.status_code == 423
    assert "locked this username" in response.get_data(as_text=True)
    assert sandbox.state.snapshot()["sage_one_users"][USERNAME]["locked"]

    # While locked the portal does not call Sage at all, even with the right password.
    before = sandbox_requests(sandbox)
    response = connect(client, world.branch)
    assert response.status_code == 423
    assert sandbox_requests(sandbox) == before


def test_connect_needs_a_username_and_password(world, client, auth, sandbox):
    auth.login(world.owner)
    before = sandbox_requests(sandbox)
    response = connect(client, world.branch, username="", password="")
    assert response.status_code == 400
    assert sandbox_requests(sandbox) == before


def test_a_reset_password_marks_the_connection_for_reauthentication_with_the_reason(world, client, auth, sandbox):
    auth.login(world.owner)
    connect(client, world.branch)
    accounts.reset_password(world.owner, "a-brand-new-password")

    connection = _connection(world.branch)
    assert connection.state == ConnectionState.NEEDS_REAUTH
    assert "password was reset" in connection.state_reason
    auth.login(world.owner, "a-brand-new-password")
    page = client.get(f"/integrations/sage-one-aus/branches/{world.branch.id}").get_data(as_text=True)
    assert "password was reset" in page

    assert connect(client, world.branch).status_code == 302  # re-entering the login fixes it
    connection = _connection(world.branch)
    assert connection.state == ConnectionState.CONNECTED
    assert connection.credentials_key_generation == world.owner.key_generation == 2
