"""Browser fixtures: the real app on a loopback port, a real worker process, and Playwright
driving Debian's Chromium (/usr/bin/chromium; no browser download).

Every browser journey ends with a secrets scan (`secrets_scan`, autouse): no password, Sage One AUS
password, OAuth token, private key or TOTP secret anywhere it could leak (see `tests/browser/secrets_scan.py`).
"""
from __future__ import annotations

import os
import shutil
import threading

import pytest
from werkzeug.serving import make_server

from devtools.redis_server import free_port
from tests.browser.secrets_scan import SecretsScan
from tests.workers import start_worker, stop_worker

CHROMIUM = os.environ.get("PORTAL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture
def live_port() -> int:
    return free_port()


@pytest.fixture
def app_settings(app_settings, live_port, request) -> dict:
    """Browser tests serve on a real port, which is also the public URL Sage redirects to."""
    settings = dict(app_settings, PUBLIC_URL=f"http://127.0.0.1:{live_port}")
    if "sandbox" in request.fixturenames:
        sandbox = request.getfixturevalue("sandbox")
        sandbox.state.add_redirect_uri(f"{settings['PUBLIC_URL']}/integrations/sage/callback")
    return settings


@pytest.fixture
def live_server(app, live_port):
    """The portal served by a threaded werkzeug server; yields its base URL."""
    server = make_server("127.0.0.1", live_port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{live_port}"
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture
def live_worker(app, app_settings, tmp_path):
    """A real `flask --app app worker` process with the test app's settings."""
    process = start_worker(app_settings, tmp_path / "worker.log")
    yield process
    stop_worker(process)


@pytest.fixture(scope="session")
def browser():
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        # `make test` and CI never skip them: a run that left them out would look like a pass.
        if os.environ.get("CI") or os.environ.get("PORTAL_TEST_REQUIRE_BROWSER"):
            pytest.fail(f"Chromium is required for browser tests under make test and CI ({CHROMIUM} not found; "
                        "Debian: apt-get install chromium)")
        pytest.skip(f"Chromium not installed at {CHROMIUM} (Debian: apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(autouse=True)
def secrets_scan(request, app, tmp_path):
    """After each browser test: 0 secrets in the database, Redis, every process's log and every
    response the browser received. Set up before the test's other fixtures, so it scans after the
    worker has stopped (its log complete) and before the database and Redis are emptied."""
    sandbox = request.getfixturevalue("sandbox") if "sandbox" in request.fixturenames else None
    scan = SecretsScan(app, sandbox=sandbox, worker_log=tmp_path / "worker.log")
    with scan.capturing_logs():
        yield scan
    scan.assert_no_secrets()


@pytest.fixture
def page(browser, live_server, secrets_scan):
    """A fresh browser page (own cookies) pointed at the live server."""
    context = browser.new_context(base_url=live_server)
    secrets_scan.watch(context)
    context.set_default_timeout(10_000)
    page = context.new_page()
    refused = []  # the Content-Security-Policy must never have to block anything the portal sends
    page.on("console", lambda message: "Content Security Policy" in message.text and refused.append(message.text))
    yield page
    context.close()
    assert refused == [], refused


def sign_in(page, email: str, password: str) -> None:
    """Sign in through the login form, returning once the signed-in page has fully loaded.

    Waiting for the load (not just the URL) matters: htmx is a deferred script, and a field typed
    into before it has run sends no request.
    """
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    if "/login/second-step" in page.url:  # support: the code an authenticator app would show
        from portal.models import find_user_by_email
        from tests import factories

        page.get_by_label("Code").fill(factories.current_totp(find_user_by_email(email)))
        with page.expect_navigation():
            page.get_by_role("button", name="Continue").click()
