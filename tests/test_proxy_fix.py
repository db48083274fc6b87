"""PORTAL_PROXY_HOPS: behind the TLS proxy the portal judges the browser's address and scheme from
what the proxy appended, and only that; without it, forwarded headers are never believed."""
from __future__ import annotations

import pytest
from flask import jsonify, request, url_for

from portal import create_app
from portal.config import ConfigError, load_config
from portal.models import AuditEvent
from tests import factories

PROXY = {"REMOTE_ADDR": "10.0.0.2"}  # the TLS proxy, as gunicorn sees it
CLIENT, OTHER = "203.0.113.7", "198.51.100.1"

behind_one_proxy = pytest.mark.parametrize("proxy_hops", [1])


@pytest.fixture
def proxy_hops():
    return 0


@pytest.fixture
def app_settings(app_settings, proxy_hops):
    return dict(app_settings, PROXY_HOPS=proxy_hops)


def forwarded_for(chain: str) -> dict:
    return {"X-Forwarded-For": chain}


def change_password(client, auth, user, **request):
    """Sign in and change the password (an audited event); returns the event's recorded address."""
    assert auth.login(user).status_code == 302
    response = client.post("/account/password", data={
        "current_password": factories.PASSWORD, "new_password": "a-new-long-password",
        "confirm_password": "a-new-long-password"}, **request)
    assert response.status_code == 302
    return AuditEvent.query.filter_by(kind="account.password_changed").one().address


def test_without_hops_a_forwarded_address_cannot_open_metrics(app, client):
    app.config["METRICS_ALLOW"] = CLIENT
    response = client.get("/metrics", headers=forwarded_for(CLIENT), environ_base=PROXY)
    assert response.status_code == 404
    app.config["METRICS_ALLOW"] = "127.0.0.1"
    assert client.get("/metrics", headers=forwarded_for(OTHER)).status_code == 200  # judged by 127.0.0.1


def test_without_hops_the_audit_records_the_connecting_address(client, auth):
    user = factories.customer(factories.business())
    address = change_password(client, auth, user, headers=forwarded_for(CLIENT), environ_base=PROXY)
    assert address == "10.0.0.2"


@behind_one_proxy
def test_behind_the_proxy_metrics_judges_the_client_it_forwarded(app, client):
    app.config["METRICS_ALLOW"] = CLIENT
    assert client.get("/metrics", headers=forwarded_for(CLIENT), environ_base=PROXY).status_code == 200
    assert client.get("/metrics", headers=forwarded_for(OTHER), environ_base=PROXY).status_code == 404
    # The proxy's own address is not the client's: scraping through it is refused.
    app.config["METRICS_ALLOW"] = "10.0.0.2"
    assert client.get("/metrics", headers=forwarded_for(OTHER), environ_base=PROXY).status_code == 404


@behind_one_proxy
def test_behind_the_proxy_a_client_written_entry_to_the_left_is_not_believed(app, client):
    app.config["METRICS_ALLOW"] = CLIENT
    forged = forwarded_for(f"{CLIENT}, {OTHER}")  # the client wrote CLIENT; the proxy appended OTHER
    assert client.get("/metrics", headers=forged, environ_base=PROXY).status_code == 404


@behind_one_proxy
def test_behind_the_proxy_the_audit_records_the_browsers_address(client, auth):
    user = factories.customer(factories.business())
    address = change_password(client, auth, user, headers=forwarded_for(f"{OTHER}, {CLIENT}"), environ_base=PROXY)
    assert address == CLIENT


@behind_one_proxy
def test_behind_the_proxy_sign_in_throttles_count_per_browser(app, client, auth):
    app.config["LOGIN_FAILURES_PER_ADDRESS"] = "2 per 15 minutes"

    def sign_in(n: int, browser: str):
        return client.post("/login", data={"email": f"guess{n}@workshop.test", "password": "wrong-password!"},
                           headers=forwarded_for(browser), environ_base=PROXY)

    assert [sign_in(n, CLIENT).status_code for n in range(3)] == [401, 401, 429]
    assert sign_in(3, OTHER).status_code == 401  # the same proxy, another browser: not throttled


@pytest.fixture
def probe(app):
    """A page that says how the request looked to the portal."""
    app.add_url_rule("/_probe", "probe", lambda: jsonify(
        scheme=request.scheme, secure=request.is_secure, host=request.host, address=request.remote_addr,
        login=url_for("auth.login", _external=True)))
    return "/_probe"


@behind_one_proxy
def test_behind_the_proxy_forwarded_scheme_and_host_make_external_urls_https(client, probe):
    seen = client.get(probe, environ_base=PROXY, headers={
        "X-Forwarded-For": CLIENT, "X-Forwarded-Proto": "https", "X-Forwarded-Host": "portal.example"}).json
    assert seen == {"scheme": "https", "secure": True, "host": "portal.example", "address": CLIENT,
                    "login": "https://portal.example/login"}


def test_without_hops_forwarded_scheme_and_host_are_ignored(client, probe):
    seen = client.get(probe, environ_base=PROXY, headers={
        "X-Forwarded-For": CLIENT, "X-Forwarded-Proto": "https", "X-Forwarded-Host": "portal.example"}).json
    assert seen == {"scheme": "http", "secure": False, "host": "localhost", "address": "10.0.0.2",
                    "login": "http://localhost/login"}


def test_proxy_hops_is_read_from_the_environment(monkeypatch):
    assert load_config("development").PROXY_HOPS == 0
    monkeypatch.setenv("PORTAL_PROXY_HOPS", "2")
    assert load_config("development").PROXY_HOPS == 2


@pytest.mark.parametrize("raw", ["two", "1.5", "", "-1"])
def test_a_malformed_proxy_hops_stops_start_up(monkeypatch, raw):
    monkeypatch.setenv("PORTAL_PROXY_HOPS", raw)
    with pytest.raises(ConfigError, match="PORTAL_PROXY_HOPS"):
        load_config("development")
    with pytest.raises(ConfigError, match="PORTAL_PROXY_HOPS"):
        create_app({"ENV_NAME": "test"})
