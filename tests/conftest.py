"""Shared fixtures: a migrated database, a private real Redis, the app, clients, a real worker.

Services: Redis is PORTAL_TEST_REDIS_URL if set, else a private redis-server started for the run
(so parallel runs never share data). The database is PORTAL_TEST_DATABASE_URL (PostgreSQL: a fresh
database is created for the run and dropped after) or a SQLite file in a temporary directory.
Between tests every table is emptied and Redis flushed.
"""
from __future__ import annotations

import os
import re
import uuid

import pytest
import redis as redis_lib
import sqlalchemy as sa
from flask.globals import _cv_app
from flask.testing import FlaskClient

from devtools.redis_server import start_private_redis
from portal import create_app
from portal.extensions import db
from tests import factories

CSRF_PATTERN = re.compile(r'"X-CSRFToken": "([^"]+)"')


def pytest_collection_modifyitems(config, items):
    """With PORTAL_TEST_DATABASE_TESTS_ONLY set (`make test-postgres`), only the tests that open the
    portal's database run: the others (the sandbox's own, config parsing, `make run`'s processes)
    ran in the SQLite half and cannot behave otherwise on PostgreSQL."""
    if not os.environ.get("PORTAL_TEST_DATABASE_TESTS_ONLY"):
        return
    kept, left = [], []
    for item in items:
        (kept if "database_url" in getattr(item, "fixturenames", ()) else left).append(item)
    if left:
        config.hook.pytest_deselected(items=left)
        items[:] = kept


@pytest.fixture(scope="session")
def redis_url():
    url = os.environ.get("PORTAL_TEST_REDIS_URL")
    if url:
        yield url
        return
    server = start_private_redis()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory):
    url = os.environ.get("PORTAL_TEST_DATABASE_URL")
    if not url:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'portal-test.db'}"
        return
    name = f"portal_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        # A throw-away database: a commit need not wait for the disk (the suite commits a lot).
        conn.execute(sa.text(f'ALTER DATABASE "{name}" SET synchronous_commit TO off'))
    yield sa.engine.make_url(url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def _migrated(database_url, redis_url):
    from flask_migrate import upgrade

    app = create_app(_test_settings(database_url, redis_url))
    with app.app_context():
        upgrade()
        db.engine.dispose()
    return True


@pytest.fixture(scope="session")
def mail_sink(tmp_path_factory):
    """A real SMTP server (aiosmtpd) on a loopback port for the whole run; tests read its Maildir."""
    from devtools.mail_sink import MailSink

    sink = MailSink(tmp_path_factory.mktemp("mail")).start()
    yield sink
    sink.stop()


@pytest.fixture
def outbox(mail_sink):
    """The mail sink, emptied for this test: `outbox.messages()` is what the portal sent."""
    mail_sink.clear()
    return mail_sink


def _test_settings(database_url: str, redis_url: str, **overrides) -> dict:
    return {
        "ENV_NAME": "test",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "RQ_QUEUE": "portal-test",
        "SERVER_NAME": None,
        "PUBLIC_URL": TEST_PUBLIC_URL,
        **overrides,
    }


TEST_PUBLIC_URL = "http://localhost"


@pytest.fixture(scope="session")
def sandbox_server():
    """The Sage sandbox on an ephemeral loopback port, for the whole run."""
    from sage_sandbox.testing import start_sandbox

    server = start_sandbox({"SANDBOX_REDIRECT_URIS": [f"{TEST_PUBLIC_URL}/integrations/sage/callback"]})
    yield server
    server.stop()


@pytest.fixture
def sandbox(sandbox_server):
    """The running sandbox, reset to its seed before each test that uses it."""
    sandbox_server.state.reset()
    return sandbox_server


def sandbox_settings(url: str) -> dict:
    """Portal settings that point both Sage APIs at a sandbox."""
    return {
        "SAGE_AUTH_URL": f"{url}/oauth2/auth/central",
        "SAGE_TOKEN_URL": f"{url}/token",
        "SAGE_REVOKE_URL": f"{url}/revoke",
        "SAGE_API_URL": f"{url}/v3.1",
        "SAGE_ONE_API_URL": f"{url}/api/2.0.0",
        "SAGE_CLIENT_ID": "portal-dev-client",
        "SAGE_CLIENT_SECRET": "portal-dev-secret",
        "SAGE_ONE_API_KEY": "portal-dev-apikey",
        "HTTP_TIMEOUT_SECONDS": 5.0,
        # The sandbox on a busy 2-core test machine can take longer than Sage's own answer time.
        "SAGE_ONE_PAGE_TIMEOUT_SECONDS": 5.0,
    }


@pytest.fixture
def app_settings(request, database_url, redis_url, mail_sink) -> dict:
    """Config overrides for the test app. Tests that use `sandbox` get its URLs too."""
    settings = _test_settings(database_url, redis_url, SMTP_HOST=mail_sink.host, SMTP_PORT=mail_sink.port)
    if "sandbox" in request.fixturenames:
        settings.update(sandbox_settings(request.getfixturevalue("sandbox").url))
    return settings


@pytest.fixture
def app(_migrated, app_settings):
    app = create_app(app_settings)
    with app.app_context():
        yield app
        db.session.remove()
        _empty_database()
        db.engine.dispose()
    redis_lib.Redis.from_url(app_settings["REDIS_URL"]).flushdb()


def _empty_database() -> None:
    with db.engine.begin() as conn:
        for table in reversed(db.metadata.sorted_tables):
            conn.execute(table.delete())


class PortalClient(FlaskClient):
    """A test client that sends the page's CSRF token on unsafe requests, as htmx and forms do.

    Each request runs in an app context of its own, as in production: the test's own context
    (pushed by the `app` fixture for factories and assertions) must not leak `g` or the database
    session into requests.
    """

    def open(self, *args, csrf: bool = True, **kwargs):
        method = (kwargs.get("method") or "GET").upper()
        if csrf and method not in ("GET", "HEAD", "OPTIONS"):
            headers = dict(kwargs.pop("headers", None) or {})
            headers.setdefault("X-CSRFToken", self.csrf_token())
            kwargs["headers"] = headers
        return self._isolated(*args, **kwargs)

    def _isolated(self, *args, **kwargs):
        token = _cv_app.set(None)
        try:
            return super().open(*args, **kwargs)
        finally:
            _cv_app.reset(token)
            db.session.expire_all()

    def csrf_token(self) -> str:
        """The CSRF token a page rendered for this client's session right now."""
        response = self._isolated("/login", method="GET", follow_redirects=True)
        match = CSRF_PATTERN.search(response.get_data(as_text=True))
        assert match, "no CSRF token on the page"
        return match.group(1)


@pytest.fixture
def client(app):
    app.test_client_class = PortalClient
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


class AuthActions:
    """Sign people in and out through the real login form."""

    def __init__(self, client: PortalClient):
        self._client = client

    def login(self, user_or_email, password: str = factories.PASSWORD, second_step: bool = True):
        """Sign in; for an enrolled support user also give the second step's code (as an app would),
        unless `second_step=False`. Returns the last response."""
        email = getattr(user_or_email, "email", user_or_email)
        response = self._client.post("/login", data={"email": email, "password": password})
        if second_step and response.status_code == 302 and "/login/second-step" in response.headers["Location"]:
            from portal import two_factor
            from portal.models import find_user_by_email

            user = find_user_by_email(email)
            if two_factor.is_enrolled(user):
                response = self._client.post(response.headers["Location"],
                                             data={"code": factories.current_totp(user)})
        return response

    def logout(self):
        return self._client.post("/logout")


@pytest.fixture
def auth(client):
    return AuthActions(client)


@pytest.fixture
def redis_client(app):
    from portal.extensions import get_redis

    return get_redis()


@pytest.fixture
def drain_jobs(app):
    """Run every queued job with a real RQ worker (in-process, burst mode)."""
    from portal.worker import build_worker

    def drain() -> bool:
        return build_worker(app, simple=True).work(burst=True)

    return drain
