from portal.extensions import db
from portal.models import User
from tests import factories


def _cookie(client):
    cookie = client.get_cookie("portal_session")
    return cookie.value if cookie else None


def test_customer_signs_in_and_lands_on_the_dashboard(client, auth, app):
    business = factories.business("Harbour Auto", branches=("Sydney",))
    user = factories.customer(business)
    response = auth.login(user)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    page = client.get("/")
    assert b"Harbour Auto" in page.data and b"Sydney" in page.data
    assert db.session.get(User, user.id).last_login_at is not None


def test_wrong_password_gets_one_message_for_known_and_unknown_accounts(client, auth):
    user = factories.customer(factories.business())
    known = auth.login(user, "wrong-password!")
    unknown = auth.login("nobody@workshop.test", "wrong-password!")
    assert known.status_code == unknown.status_code == 401
    message = b"don&#39;t match an account"
    assert message in known.data and message in unknown.data


def test_session_id_rotates_at_login(client, auth):
    user = factories.customer(factories.business())
    client.get("/login")
    before = _cookie(client)
    auth.login(user)
    assert _cookie(client) != before


def test_session_cookie_is_httponly_and_samesite(client, auth):
    user = factories.customer(factories.business())
    response = auth.login(user)
    header = response.headers["Set-Cookie"]
    assert "HttpOnly" in header and "SameSite=Lax" in header


def test_signed_in_pages_do_not_resend_the_cookie_or_extend_the_login(client, auth, redis_client):
    user = factories.customer(factories.business())
    auth.login(user)
    client.get("/")  # the first page stores the form token in the session cookie
    (key,) = redis_client.scan_iter("portal:session:*")
    ttl = redis_client.ttl(key)
    response = client.get("/")
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers  # nothing changed, nothing re-sent
    assert redis_client.ttl(key) <= ttl  # the login lasts SESSION_HOURS from sign-in


def test_logout_ends_the_session_on_the_server(client, auth, redis_client):
    user = factories.customer(factories.business())
    auth.login(user)
    assert list(redis_client.scan_iter("portal:session:*"))
    auth.logout()
    assert not list(redis_client.scan_iter("portal:session:*"))
    assert client.get("/").status_code == 302


def test_a_copied_cookie_stops_working_after_logout(client, auth, app):
    user = factories.customer(factories.business())
    auth.login(user)
    stolen = _cookie(client)
    auth.logout()
    other = app.test_client()
    other.set_cookie("portal_session", stolen)
    assert other.get("/").status_code == 302


def test_failed_logins_are_throttled_per_account(client, auth, app):
    user = factories.customer(factories.business())
    for _ in range(5):
        assert auth.login(user, "wrong-password!").status_code == 401
    throttled = auth.login(user)  # even the right password waits
    assert throttled.status_code == 429
    assert b"Too many sign-in attempts" in throttled.data


def test_failed_logins_are_throttled_per_address(client, auth, app):
    app.config["LOGIN_FAILURES_PER_ADDRESS"] = "3 per 15 minutes"
    for n in range(3):
        auth.login(f"guess{n}@workshop.test", "wrong-password!")
    response = auth.login("another@workshop.test", "wrong-password!")
    assert response.status_code == 429


def test_login_next_parameter_cannot_leave_the_site(client):
    user = factories.customer(factories.business())
    response = client.post("/login?next=//evil.example/", data={"email": user.email, "password": factories.PASSWORD})
    assert response.headers["Location"] == "/"


def test_login_without_csrf_token_is_refused(client):
    user = factories.customer(factories.business())
    response = client.post("/login", data={"email": user.email, "password": factories.PASSWORD}, csrf=False)
    assert response.status_code == 400
    assert b"This form has expired" in response.data


def test_change_password_keeps_the_private_key(client, auth, app):
    user = factories.customer(factories.business())
    auth.login(user)
    response = client.post("/account/password", data={
        "current_password": factories.PASSWORD, "new_password": "a-new-long-password",
        "confirm_password": "a-new-long-password"})
    assert response.status_code == 302
    auth.logout()
    assert auth.login(user, factories.PASSWORD).status_code == 401
    assert auth.login(user, "a-new-long-password").status_code == 302


def test_change_password_with_wrong_current_password_changes_nothing(client, auth):
    user = factories.customer(factories.business())
    auth.login(user)
    response = client.post("/account/password", data={
        "current_password": "not-my-password", "new_password": "a-new-long-password",
        "confirm_password": "a-new-long-password"})
    assert response.status_code == 400
    auth.logout()
    assert auth.login(user).status_code == 302


def test_expired_login_in_an_htmx_request_redirects_the_whole_page(client):
    response = client.get("/", headers={"HX-Request": "true"})
    assert response.status_code == 401
    assert response.headers["HX-Redirect"].startswith("/login")


def test_change_password_ends_every_other_session_and_rotates_this_one(client, auth, app, redis_client):
    user = factories.customer(factories.business())
    elsewhere = app.test_client()
    elsewhere.post("/login", data={"email": user.email, "password": factories.PASSWORD})
    assert elsewhere.get("/").status_code == 200
    auth.login(user)
    before = _cookie(client)
    response = client.post("/account/password", data={
        "current_password": factories.PASSWORD, "new_password": "a-new-long-password",
        "confirm_password": "a-new-long-password"})
    assert response.status_code == 302
    assert elsewhere.get("/").status_code == 302  # the other login is gone
    assert _cookie(client) != before  # this one has a new session id …
    assert client.get("/").status_code == 200  # … and still works
    assert len(list(redis_client.scan_iter("portal:session:*"))) == 1
    stale = app.test_client()
    stale.set_cookie("portal_session", before)
    assert stale.get("/").status_code == 302  # the old id no longer opens the session


def test_guesses_at_the_current_password_are_throttled_like_sign_in(client, auth):
    user = factories.customer(factories.business())
    auth.login(user)
    data = {"current_password": "a-wrong-guess", "new_password": "a-new-long-password",
            "confirm_password": "a-new-long-password"}
    for _ in range(5):
        assert client.post("/account/password", data=data).status_code == 400
    throttled = client.post("/account/password", data=dict(data, current_password=factories.PASSWORD))
    assert throttled.status_code == 429
    assert b"Too many password attempts" in throttled.data
    auth.logout()
    assert auth.login(user).status_code == 429  # the same per-account throttle as sign-in
