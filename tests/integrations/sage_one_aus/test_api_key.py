"""A wrong API key is the portal's configuration problem: live Sage answers it with an IIS HTML 401
and `X-APIKey: Invalid`. Support and the logs are told (never the key), the customer is not told
their password is wrong, no failed login is counted and the stored login is left as it was."""
from __future__ import annotations

import logging

import pytest

from portal.extensions import db
from portal.integrations.sage_one_aus import credentials
from portal.models import AuditEvent, Connection, ConnectionState, Job, JobStatus
from tests import factories
from tests.integrations.sage_one_aus.conftest import USERNAME, company, connect, sync

REFUSED = "Sage One AUS refused the portal&#39;s API key; this is a problem on our side, support has been told"
SANDBOX_KEY = "{6f1c2b9e-aaaa-bbbb-cccc-000000000001}"


def _connection(branch) -> Connection | None:
    return db.session.scalar(db.select(Connection).where(Connection.branch_id == branch.id))


def _api_key_events() -> list[AuditEvent]:
    return db.session.scalars(db.select(AuditEvent).where(AuditEvent.kind == "sage_one_aus.api_key_refused")).all()


@pytest.fixture
def other_key(sandbox):
    """The sandbox now expects another API key than the portal sends."""
    sandbox.state.sage_one_api_key = SANDBOX_KEY
    return sandbox


def test_connect_with_a_wrong_api_key_blames_the_portal_not_the_password(
        world, client, auth, other_key, caplog, every_logger_enabled):
    caplog.set_level(logging.DEBUG)
    auth.login(world.owner)

    response = connect(client, world.branch)

    body = response.get_data(as_text=True)
    assert response.status_code == 503
    assert REFUSED in body
    assert "did not accept this username and password" not in body and "failed attempt" not in body
    assert credentials.attempts_left(USERNAME) == credentials.LOGIN_FAILURES_BEFORE_LOCK
    assert other_key.state.snapshot()["sage_one_users"][USERNAME]["recent_failures"] == 0
    assert _connection(world.branch) is None
    assert len(_api_key_events()) == 1 and _api_key_events()[0].branch_id == world.branch.id
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and "API key" in r.getMessage()]
    assert errors, "support's log line is missing"
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert "portal-dev-apikey" not in everything and SANDBOX_KEY not in everything


def test_reauthenticating_with_a_wrong_api_key_leaves_the_stored_login_as_it_was(world, client, auth, sandbox):
    auth.login(world.owner)
    connect(client, world.branch)
    before = _connection(world.branch)
    stored = (before.sage_one_password_enc, before.state, before.credentials_owner_id, before.connected_at)
    sandbox.state.sage_one_api_key = SANDBOX_KEY

    response = connect(client, world.branch)

    assert response.status_code == 503
    after = _connection(world.branch)
    assert (after.sage_one_password_enc, after.state, after.credentials_owner_id, after.connected_at) == stored
    assert after.login_failures == 0


def test_a_sync_with_a_wrong_api_key_stops_without_touching_the_login_and_the_branch_says_why(
        world, client, auth, sandbox, drain_jobs):
    auth.login(world.owner)
    connect(client, world.branch)
    factories.contacts(world.branch, 2)
    stored = _connection(world.branch).sage_one_password_enc
    sandbox.state.sage_one_api_key = SANDBOX_KEY

    sync(client, world.branch)
    drain_jobs()

    job = db.session.scalar(db.select(Job))
    assert job.status == JobStatus.FAILED
    assert "refused the portal's API key" in job.error and "support has been told" in job.error
    assert "Credentials rejected" not in job.error
    connection = _connection(world.branch)
    assert connection.state == ConnectionState.CONNECTED and connection.state_reason is None
    assert connection.sage_one_password_enc == stored
    assert credentials.attempts_left(USERNAME) == credentials.LOGIN_FAILURES_BEFORE_LOCK
    assert not company(sandbox).customers
    assert _api_key_events()
    page = client.get(f"/integrations/sage-one-aus/branches/{world.branch.id}").get_data(as_text=True)
    assert 'id="api-key-refused"' in page and REFUSED in page
    assert "re-enter your Sage One password" not in page

    # Once the key is right again the next run goes through and the message is gone.
    sandbox.state.sage_one_api_key = "portal-dev-apikey"
    sync(client, world.branch)
    drain_jobs()
    assert db.session.scalars(db.select(Job).order_by(Job.created_at.desc())).first().status == JobStatus.FINISHED
    page = client.get(f"/integrations/sage-one-aus/branches/{world.branch.id}").get_data(as_text=True)
    assert 'id="api-key-refused"' not in page  # (the failed job keeps its own message in the history)


def test_the_sandbox_answers_a_wrong_key_as_live_sage_does(world, other_key):
    """The answer the portal tells apart: IIS's HTML 401 with X-APIKey: Invalid (not the API's JSON)."""
    import requests

    response = requests.get(f"{other_key.url}/api/2.0.0/Company/Get", params={"apikey": "portal-dev-apikey"},
                            auth=(USERNAME, "sandbox-password"), headers={"Content-Type": "application/json"},
                            timeout=5)
    assert response.status_code == 401
    assert response.headers["X-APIKey"] == "Invalid"
    assert response.headers["Content-Type"].startswith("text/html")
