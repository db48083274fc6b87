"""Puppet sessions: who may start one, what it records, how it ends, and the read-only guard."""
from __future__ import annotations

import pytest
from flask import Blueprint, redirect

from portal import puppet
from portal.access import branch_for, customer_required
from portal.extensions import db
from portal.models import AuditEvent, PuppetSession, User
from tests import factories
from tests.support.helpers import customer_world, expire, live_session, start_puppet

# Stand-ins for integration routes: the Sage One AUS one carries the guard exactly as that
# integration's blueprint registers it; the Sage one is an ordinary customer write.
_sage_one = Blueprint("test_sage_one_aus", __name__, url_prefix="/_test/sage-one-aus")
_sage_one.before_request(puppet.refuse_sage_one_aus_writes)
_sage = Blueprint("test_sage", __name__, url_prefix="/_test/sage")


@_sage_one.post("/branches/<int:branch_id>/<action>")
@customer_required
def _sage_one_write(branch_id, action):
    from flask_login import current_user

    branch_for(current_user, branch_id)
    return redirect("/")


@_sage_one.get("/branches/<int:branch_id>")
@customer_required
def _sage_one_read(branch_id):
    return "read ok"


@_sage.post("/branches/<int:branch_id>/sync")
@customer_required
def _sage_sync(branch_id):
    from flask_login import current_user

    branch_for(current_user, branch_id)
    return redirect("/")


@_sage.get("/key")
@customer_required
def _key_held():
    from portal import sessions

    return "present" if sessions.private_key() is not None else "none"


@pytest.fixture(autouse=True)
def integration_routes(app):
    app.register_blueprint(_sage_one)
    app.register_blueprint(_sage)


@pytest.fixture
def world(app):
    business, customer = customer_world()
    return {"business": business, "customer": customer, "support": factories.support()}


@pytest.fixture
def puppeting(world, client, auth):
    auth.login(world["support"])
    response = start_puppet(client, world["business"], world["customer"])
    assert response.status_code == 302
    return world


def test_support_starts_a_session_and_sees_the_customer_dashboard(puppeting, client):
    page = client.get("/")
    body = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Harbour Auto" in body and "Puppet session" in body
    session = live_session()
    assert session.support_user_id == puppeting["support"].id
    assert session.customer_user_id == puppeting["customer"].id
    assert session.reason == "Ticket #1234: sync stuck"
    assert session.address == "127.0.0.1"


def test_start_is_audited_with_both_people_and_the_reason(puppeting):
    event = db.session.scalar(db.select(AuditEvent).where(AuditEvent.kind == "puppet.started"))
    assert event.actor_id == puppeting["support"].id
    assert event.subject_user_id == puppeting["customer"].id
    assert event.details["reason"] == "Ticket #1234: sync stuck"


@pytest.mark.parametrize("reason", ["", "   "])
def test_a_reason_is_required(world, client, auth, reason):
    auth.login(world["support"])
    response = start_puppet(client, world["business"], world["customer"], reason=reason)
    assert response.status_code == 400
    assert "Give a reason" in response.get_data(as_text=True)
    assert db.session.scalar(db.select(db.func.count(PuppetSession.id))) == 0


def test_support_cannot_puppet_support(world, client, auth):
    colleague = factories.support()
    auth.login(world["support"])
    response = start_puppet(client, world["business"], colleague)
    assert response.status_code == 404
    assert db.session.scalar(db.select(db.func.count(PuppetSession.id))) == 0
    with pytest.raises(puppet.PuppetError, match="never support staff"):
        puppet.start(world["support"], colleague, "why not", None)


def test_a_customer_cannot_start_a_session(world, client, auth):
    other = factories.customer(world["business"])
    auth.login(world["customer"])
    assert start_puppet(client, world["business"], other).status_code == 403
    with pytest.raises(puppet.PuppetError, match="Only support staff"):
        puppet.start(world["customer"], other, "curious", None)


def test_cannot_puppet_a_user_of_another_business_through_this_business(world, client, auth):
    stranger = factories.customer(factories.business("Elsewhere Motors"))
    auth.login(world["support"])
    assert start_puppet(client, world["business"], stranger).status_code == 404


def test_the_customers_last_login_time_does_not_change(world, client, auth):
    before = db.session.get(User, world["customer"].id).last_login_at
    auth.login(world["support"])
    start_puppet(client, world["business"], world["customer"])
    client.get("/")
    assert db.session.get(User, world["customer"].id).last_login_at == before


@pytest.mark.parametrize(
    "path,status",
    [
        ("/", 200),                       # the customer's dashboard
        ("/account/password", 200),       # the password page (redirects to the dashboard, banner kept)
        ("/no/such/page", 404),           # an error page
        ("/support/", 403),               # the console, refused while puppeting
    ],
)
def test_the_banner_is_on_every_page_type(puppeting, client, path, status):
    response = client.get(path, follow_redirects=True)
    body = response.get_data(as_text=True)
    assert response.status_code == status
    assert 'aria-label="Puppet session"' in body
    assert puppeting["customer"].email in body and puppeting["support"].email in body
    assert "Sage One AUS read-only" in body and "End session" in body


def test_htmx_fragments_do_not_repeat_the_banner(puppeting, client):
    response = client.get("/no/such/page", headers={"HX-Request": "true"})
    assert 'aria-label="Puppet session"' not in response.get_data(as_text=True)


def test_ending_the_session_returns_to_the_customer_page_and_records_how(puppeting, client):
    response = client.post("/support/puppet/end")
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/support/customers/{puppeting['business'].id}")
    session = db.session.scalar(db.select(PuppetSession))
    assert session.ended_at is not None and session.end_reason == "ended by support"
    assert client.get("/support/").status_code == 200
    assert db.session.scalar(db.select(AuditEvent).where(AuditEvent.kind == "puppet.ended")).details == {
        "how": "ended by support"
    }


def test_the_session_expires_after_its_time_limit(puppeting, client):
    expire(live_session())
    response = client.get("/support/")
    body = response.get_data(as_text=True)
    assert response.status_code == 200  # back to the support person's own console
    assert 'aria-label="Puppet session"' not in body and "ended (expired)" in body
    session = db.session.scalar(db.select(PuppetSession))
    assert session.ended_at is not None and session.end_reason == "expired"
    assert client.get("/").status_code == 403  # the customer's dashboard is no longer theirs to see


def test_the_time_limit_is_configurable(world, client, auth, app):
    app.config["PUPPET_SESSION_MINUTES"] = 5
    auth.login(world["support"])
    start_puppet(client, world["business"], world["customer"])
    session = live_session()
    assert round((session.expires_at - session.started_at).total_seconds()) == 300


def test_logging_out_ends_the_session(puppeting, client, auth):
    auth.logout()
    session = db.session.scalar(db.select(PuppetSession))
    assert session.ended_at is not None and session.end_reason == "support logged out"


def test_a_puppet_session_has_no_private_key(world, client, auth):
    auth.login(world["customer"])
    assert client.get("/_test/sage/key").data == b"present"
    auth.logout()
    auth.login(world["support"])
    start_puppet(client, world["business"], world["customer"])
    assert client.get("/_test/sage/key").data == b"none"


@pytest.mark.parametrize("action", ["authenticate", "sync", "void", "disconnect"])
def test_a_crafted_sage_one_aus_write_is_refused_while_puppeting(puppeting, integration_routes, client, action):
    branch = puppeting["business"].branches[0]
    response = client.post(f"/_test/sage-one-aus/branches/{branch.id}/{action}")  # valid CSRF token
    assert response.status_code == 403
    assert "only the customer can unlock" in response.get_data(as_text=True)
    refused = db.session.scalar(db.select(AuditEvent).where(AuditEvent.kind == "puppet.write_refused"))
    assert refused.actor_id == puppeting["support"].id
    assert refused.subject_user_id == puppeting["customer"].id
    assert db.session.scalar(db.select(AuditEvent).where(AuditEvent.kind == "puppet.write")) is None


def test_sage_one_aus_pages_stay_readable_while_puppeting(puppeting, integration_routes, client):
    branch = puppeting["business"].branches[0]
    assert client.get(f"/_test/sage-one-aus/branches/{branch.id}").status_code == 200


def test_the_customer_can_still_write_to_sage_one_aus_themselves(world, integration_routes, client, auth):
    auth.login(world["customer"])
    branch = world["business"].branches[0]
    assert client.post(f"/_test/sage-one-aus/branches/{branch.id}/sync").status_code == 302


def test_a_sage_write_is_allowed_and_audited_with_both_people(puppeting, integration_routes, client):
    branch = puppeting["business"].branches[0]
    response = client.post(f"/_test/sage/branches/{branch.id}/sync", data={"password": "never-logged"})
    assert response.status_code == 302
    event = db.session.scalar(db.select(AuditEvent).where(AuditEvent.kind == "puppet.write"))
    assert event.actor_id == puppeting["support"].id
    assert event.subject_user_id == puppeting["customer"].id
    assert event.puppet_session_id == live_session().id
    assert event.business_id == puppeting["business"].id
    assert event.address == "127.0.0.1" and event.occurred_at is not None
    assert event.details["path"] == f"/_test/sage/branches/{branch.id}/sync"
    assert event.details["branch_id"] == branch.id
    assert event.details["fields"] == ["password"] and "never-logged" not in str(event.details)


def test_a_refused_or_failed_write_is_not_recorded_as_a_change(puppeting, integration_routes, client):
    client.post("/_test/sage/branches/999999/sync")  # 404: nothing changed
    assert db.session.scalar(db.select(AuditEvent).where(AuditEvent.kind == "puppet.write")) is None


def test_a_refused_write_naming_a_business_that_does_not_exist_is_audited_under_the_puppeted_one(puppeting, client):
    # The audit row may only name a real business (PostgreSQL enforces the foreign key).
    assert client.post("/support/customers/999999/puppet", data={"reason": "x"}).status_code == 403
    refused = db.session.scalar(db.select(AuditEvent).where(AuditEvent.kind == "puppet.write_refused"))
    assert refused.business_id == puppeting["business"].id and refused.details["status"] == 403


def test_writes_outside_a_puppet_session_are_not_recorded_as_puppet_writes(world, integration_routes, client, auth):
    auth.login(world["customer"])
    client.post(f"/_test/sage/branches/{world['business'].branches[0].id}/sync")
    assert db.session.scalar(db.select(AuditEvent).where(AuditEvent.kind == "puppet.write")) is None


def test_puppet_read_only_helper_gives_the_reason_only_for_sage_one_aus_in_a_session(puppeting, client, app):
    from portal.models import Provider

    with app.test_request_context():
        assert puppet.puppet_read_only(Provider.SAGE_ONE_AUS) is None  # no session in this context
    template = app.jinja_env.from_string("{{ puppet_read_only(p) or 'allowed' }}")
    assert template.render(p=Provider.SAGE) == "allowed"
    assert "puppet_read_only" in app.jinja_env.globals


def test_the_customer_sees_who_accessed_their_account_and_what_they_did(puppeting, integration_routes, client, auth):
    branch = puppeting["business"].branches[0]
    client.post(f"/_test/sage/branches/{branch.id}/sync")
    auth.logout()
    auth.login(puppeting["customer"])
    body = client.get("/").get_data(as_text=True)
    assert "When support accessed your account" in body
    assert puppeting["support"].email in body and "Ticket #1234: sync stuck" in body
    assert "support logged out" in body
    assert "What support did while signed in as you" in body and f"/_test/sage/branches/{branch.id}/sync" in body
