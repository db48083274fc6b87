"""Password reset by email: same answer for every address, a hashed single-use expiring link sent
over real SMTP by a real worker, every session ended, Sage One AUS asks for its login again."""
import re
from datetime import timedelta

from portal.extensions import db
from portal.models import Connection, ConnectionState, PasswordResetToken, Provider, User, utcnow
from tests import factories

NEW_PASSWORD = "a-brand-new-password"
LINK = re.compile(r"http://localhost/password/reset\?token=([\w-]+)")


def _ask(client, email):
    return client.post("/password/forgot", data={"email": email})


def _link(outbox) -> str:
    (message,) = outbox.messages()
    match = LINK.search(message.get_payload(decode=True).decode())
    assert match, "no reset link in the message"
    return match.group(1)


def _reset(client, token, password=NEW_PASSWORD):
    return client.post("/password/reset", data={"token": token, "new_password": password,
                                                "confirm_password": password})


def test_the_sign_in_page_links_to_the_reset_form(client):
    page = client.get("/login").get_data(as_text=True)
    assert 'href="/password/forgot"' in page and "Forgot password?" in page


def test_the_answer_is_the_same_whether_or_not_the_address_has_an_account(client, outbox, drain_jobs):
    user = factories.customer(factories.business())
    known = _ask(client, user.email)
    unknown = _ask(client, "nobody@workshop.test")
    assert known.status_code == unknown.status_code == 200
    assert known.data == unknown.data.replace(b"nobody@workshop.test", user.email.encode())
    drain_jobs()
    (message,) = outbox.messages()
    assert message["To"] == user.email


def test_a_reset_link_sets_the_password_once_and_is_stored_only_hashed(client, auth, outbox, drain_jobs):
    user = factories.customer(factories.business())
    _ask(client, user.email)
    drain_jobs()
    token = _link(outbox)
    stored = db.session.scalar(db.select(PasswordResetToken))
    assert stored.token_hash != token and token not in stored.token_hash
    assert client.get(f"/password/reset?token={token}").status_code == 200
    response = _reset(client, token)
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert auth.login(user, NEW_PASSWORD).status_code == 302
    auth.logout()
    again = _reset(client, token, "yet-another-password")
    assert again.status_code == 302 and again.headers["Location"] == "/password/forgot"
    assert auth.login(user, "yet-another-password").status_code == 401


def test_an_expired_or_unknown_link_changes_nothing(client, auth, outbox, drain_jobs):
    user = factories.customer(factories.business())
    _ask(client, user.email)
    drain_jobs()
    token = _link(outbox)
    row = db.session.scalar(db.select(PasswordResetToken))
    row.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    for candidate in (token, "not-a-token", ""):
        assert client.get(f"/password/reset?token={candidate}").headers["Location"] == "/password/forgot"
        assert _reset(client, candidate).status_code == 302
    assert auth.login(user).status_code == 302


def test_a_reset_ends_every_session_and_sage_one_aus_asks_for_its_login_with_the_reason(
        app, client, auth, outbox, drain_jobs, redis_client):
    business = factories.business(branches=("Newcastle",))
    user = factories.customer(business)
    connection = factories.connection(business.branches[0], Provider.SAGE_ONE_AUS,
                                      sage_one_username="newcastle@harbour-auto.test", credentials_owner_id=user.id)
    elsewhere = app.test_client()
    elsewhere.post("/login", data={"email": user.email, "password": factories.PASSWORD})
    assert elsewhere.get("/").status_code == 200
    _ask(client, user.email)
    drain_jobs()
    _reset(client, _link(outbox))
    assert elsewhere.get("/").status_code == 302
    assert not list(redis_client.scan_iter("portal:session:*"))
    assert db.session.get(Connection, connection.id).state == ConnectionState.NEEDS_REAUTH
    auth.login(user, NEW_PASSWORD)
    page = client.get("/").get_data(as_text=True)
    assert "portal password was reset" in page and "Re-enter the Sage One login" in page


def test_reset_requests_are_throttled(app, client, outbox, drain_jobs):
    user = factories.customer(factories.business())
    for _ in range(3):
        assert _ask(client, user.email).status_code == 200
    throttled = _ask(client, user.email)
    assert throttled.status_code == 429 and b"Too many reset requests" in throttled.data
    assert _ask(client, "NOBODY@workshop.test").status_code == 200  # another address is not held up
    drain_jobs()
    assert len(outbox.messages()) == 3


def test_a_mail_server_that_is_down_gives_no_error(app, client, drain_jobs):
    from devtools.redis_server import free_port

    app.config["SMTP_PORT"] = free_port()  # nothing listens there
    user = factories.customer(factories.business())
    response = _ask(client, user.email)
    assert response.status_code == 200 and b"we&#39;ve sent it a link" in response.data
    drain_jobs()  # the job fails and is scheduled for a retry; the worker goes on
    assert db.session.get(User, user.id) is not None


def test_a_new_password_that_breaks_the_rules_keeps_the_link_usable(client, auth, outbox, drain_jobs):
    user = factories.customer(factories.business())
    _ask(client, user.email)
    drain_jobs()
    token = _link(outbox)
    assert _reset(client, token, "short").status_code == 400
    assert _reset(client, token).status_code == 302
    assert auth.login(user, NEW_PASSWORD).status_code == 302


def test_the_development_mail_page_shows_what_the_sink_received(app_settings, mail_sink, outbox):
    from portal import create_app, mail

    dev = create_app(dict(app_settings, ENV_NAME="development", DEV_MAILBOX=str(mail_sink.directory)))
    with dev.app_context():
        mail.send("owner@workshop.test", "Reset your Workshop Portal password", "Open http://x.test/a <b>")
    page = dev.test_client().get("/_dev/mail")
    assert page.status_code == 200
    assert b"Reset your Workshop Portal password" in page.data and b"&lt;b&gt;" in page.data
    other = create_app(dict(app_settings, DEV_MAILBOX=str(mail_sink.directory)))  # the test environment
    assert "dev_mail.outbox" not in {rule.endpoint for rule in other.url_map.iter_rules()}
