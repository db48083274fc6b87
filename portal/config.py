"""Configuration: one class per environment, every setting overridable by a PORTAL_* variable.

`load_config()` reads the environment when it is called (not at import), so the same process can
build differently configured apps. Development and test run on embedded defaults (SQLite, a local
Redis, the Sage sandbox); production has no defaults for secrets and refuses to start without them.
"""
from __future__ import annotations

import base64
import os
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class ConfigError(RuntimeError):
    """Raised when the configuration cannot run safely (missing or malformed secrets)."""


class Config:
    """Settings shared by every environment. Each is overridden by PORTAL_<NAME> if set."""

    ENV_NAME = "base"
    SECRET_KEY: str | None = None
    # Encrypts Sage tokens at rest and seals job keys; deliberately separate from SECRET_KEY.
    ENCRYPTION_KEY: str | None = None
    DATABASE_URL = f"sqlite:///{ROOT / 'instance' / 'portal.db'}"
    REDIS_URL = "redis://127.0.0.1:6379/0"
    RQ_QUEUE = "portal"
    PUBLIC_URL = "http://127.0.0.1:5000"

    # Sage Business Cloud Accounting v3.1 (OAuth2). Production defaults are Sage's own hosts.
    SAGE_AUTH_URL = "https://www.sageone.com/oauth2/auth/central"
    SAGE_TOKEN_URL = "https://oauth.accounting.sage.com/token"
    SAGE_REVOKE_URL = "https://oauth.accounting.sage.com/revoke"
    SAGE_API_URL = "https://api.accounting.sage.com/v3.1"
    SAGE_CLIENT_ID: str | None = None
    SAGE_CLIENT_SECRET: str | None = None
    SAGE_RATE_LIMIT_PER_MINUTE = 100
    # Share of Sage's published rate the portal leaves unused, so it never trips Sage's own count.
    SAGE_RATE_MARGIN = 0.1
    # Requests per Sage business per day (reference A6: Sage may cap a business at about 2,500); 0: none.
    SAGE_DAILY_REQUEST_BUDGET = 2500
    # When Sage stops answering, a run waits this long before each new try (seconds, comma-separated),
    # then gives up: about half an hour in all.
    SAGE_OUTAGE_PAUSE_SECONDS = "60,120,300,600,900"
    # An idle Sage branch's sign-in is renewed by the schedule this many days before it would lapse.
    SAGE_REFRESH_MARGIN_DAYS = 7.0
    # Sage's counting windows: its rate limit's minute and its daily budget's day (tests shorten them).
    SAGE_RATE_WINDOW_SECONDS = 60
    SAGE_BUDGET_WINDOW_SECONDS = 86400
    # The longest a web page waits for a Sage request slot before answering "Sage is busy".
    SAGE_PAGE_WAIT_SECONDS = 1.5

    # Sage One Accounting AUS, API 2.0.0 (HTTP Basic with the customer's login + the app's key).
    SAGE_ONE_API_URL = "https://accounting.sageone.com.au/api/2.0.0"
    SAGE_ONE_API_KEY: str | None = None
    SAGE_ONE_RATE_LIMIT_PER_MINUTE = 100
    # Share of Sage One's published rate the portal keeps free (clock edges, other callers): 0.1 = 90 of 100.
    SAGE_ONE_RATE_MARGIN = 0.1

    HTTP_TIMEOUT_SECONDS = 15.0
    # How long a page a person waits on gives Sage One AUS to answer before saying it is slow.
    SAGE_ONE_PAGE_TIMEOUT_SECONDS = 1.2
    SESSION_HOURS = 8
    PUPPET_SESSION_MINUTES = 60
    SESSION_COOKIE_SECURE = False

    # Failed sign-ins allowed per window, per account and per address (`limits` notation).
    LOGIN_FAILURES_PER_ACCOUNT = "5 per 15 minutes"
    LOGIN_FAILURES_PER_ADDRESS = "30 per 15 minutes"
    # Password-reset requests allowed per window (every request counts, known address or not).
    PASSWORD_RESETS_PER_ACCOUNT = "3 per hour"
    PASSWORD_RESETS_PER_ADDRESS = "20 per hour"
    PASSWORD_RESET_MINUTES = 30

    # Outgoing mail (password resets). Development points at `make run`'s local sink.
    SMTP_HOST: str | None = None
    SMTP_PORT = 587
    SMTP_USERNAME: str | None = None
    SMTP_PASSWORD: str | None = None
    SMTP_STARTTLS = True
    SMTP_TIMEOUT_SECONDS = 10.0
    MAIL_FROM = "Workshop Portal <no-reply@portal.example>"
    # Development only: the folder (Maildir) where `make run`'s mail sink keeps what it received.
    DEV_MAILBOX: str | None = None
    # Strict-Transport-Security max-age, sent in production only.
    HSTS_SECONDS = 31536000
    # How many proxies in front of gunicorn append X-Forwarded-For/-Proto/-Host (the TLS proxy: 1).
    # Only that many right-most entries are believed; 0 believes none (nothing in front is trusted).
    PROXY_HOPS = 0

    # Login password hashing (werkzeug notation; scrypt with n=2**15 by default).
    PASSWORD_HASH_METHOD = "scrypt"
    # scrypt cost for wrapping the per-user private key (2**15: 32 MiB and ~100 ms per login).
    KEY_SCRYPT_N = 2**15
    # How long a private key sealed into a job stays openable by the worker.
    JOB_SEAL_SECONDS = 300
    # A running job renews its lease four times per this; a row whose lease lapsed is dead.
    JOB_LEASE_SECONDS = 45
    # How often the scheduler runs its tick (dead jobs, due syncs, idle sign-ins); tests shorten it.
    SCHEDULER_TICK_SECONDS = 60
    # How long the support console's health counts may be reused (the page shows their age); 0: never.
    SUPPORT_OVERVIEW_CACHE_SECONDS = 15
    # Log lines: "text" (development) or "json", one object per line (production): portal/json_logs.py.
    LOG_FORMAT = "text"
    # Who may read /metrics (addresses or networks, comma-separated); everyone else gets a 404.
    METRICS_ALLOW = "127.0.0.1,::1"
    DEMO_DATA_ALLOWED = False
    TESTING = False

    def __init__(self) -> None:
        for name in dir(self):
            if name.isupper() and f"PORTAL_{name}" in os.environ:
                raw = os.environ[f"PORTAL_{name}"]
                try:
                    setattr(self, name, _cast(getattr(self, name), raw))
                except ValueError as exc:
                    kind = "an integer" if isinstance(getattr(self, name), int) else "a number"
                    raise ConfigError(f"PORTAL_{name} must be {kind}, not {raw!r}") from exc

    def as_flask_config(self) -> dict:
        """Everything Flask and its extensions need, derived from the settings above."""
        values = {name: getattr(self, name) for name in dir(self) if name.isupper()}
        values.update(
            SQLALCHEMY_DATABASE_URI=self.DATABASE_URL,
            SQLALCHEMY_ENGINE_OPTIONS=engine_options(self.DATABASE_URL),
            PERMANENT_SESSION_LIFETIME=timedelta(hours=self.SESSION_HOURS),
            # A login lasts SESSION_HOURS from sign-in: its Redis record expires then whatever
            # the cookie says, so re-signing and re-sending the cookie on every request buys nothing.
            SESSION_REFRESH_EACH_REQUEST=False,
            SESSION_COOKIE_NAME="portal_session",
            SESSION_COOKIE_HTTPONLY=True,
            SESSION_COOKIE_SAMESITE="Lax",
            REMEMBER_COOKIE_SECURE=self.SESSION_COOKIE_SECURE,
            WTF_CSRF_TIME_LIMIT=None,  # the token lives exactly as long as the login session
        )
        return values

    def validate(self) -> None:
        """Raise ConfigError when a secret is missing or malformed, or a setting is out of range."""
        if self.PROXY_HOPS < 0:
            raise ConfigError("PORTAL_PROXY_HOPS must be 0 (no proxy trusted) or the number of "
                              "proxies in front of the portal")
        if not self.SECRET_KEY:
            raise ConfigError("PORTAL_SECRET_KEY must be set")
        if self.ENV_NAME == "production":
            # The development keys are public (they ship in this file); a short key is guessable.
            if self.SECRET_KEY in _SHIPPED_SECRETS or self.ENCRYPTION_KEY in _SHIPPED_SECRETS:
                raise ConfigError("PORTAL_SECRET_KEY and PORTAL_ENCRYPTION_KEY must not be the "
                                  "development keys: generate new random ones")
            if len(self.SECRET_KEY.encode()) < 32:
                raise ConfigError("PORTAL_SECRET_KEY must be at least 32 bytes of random text")
        if not self.ENCRYPTION_KEY:
            raise ConfigError("PORTAL_ENCRYPTION_KEY must be set (32 bytes, urlsafe base64)")
        try:
            if len(base64.urlsafe_b64decode(self.ENCRYPTION_KEY)) != 32:
                raise ValueError
        except ValueError as exc:
            raise ConfigError("PORTAL_ENCRYPTION_KEY must be 32 bytes in urlsafe base64") from exc
        if self.ENCRYPTION_KEY == self.SECRET_KEY:
            raise ConfigError("PORTAL_ENCRYPTION_KEY must differ from PORTAL_SECRET_KEY")


def engine_options(database_url: str) -> dict:
    """SQLAlchemy engine options: a network database's pooled connections are pinged before use
    (the server may have dropped them); a SQLite file has no connection to lose."""
    return {} if database_url.startswith("sqlite") else {"pool_pre_ping": True}


def _cast(current, raw: str):
    if isinstance(current, bool):
        return raw.lower() in {"1", "true", "yes", "on"}
    if isinstance(current, int):
        return int(raw)
    if isinstance(current, float):
        return float(raw)
    return raw


class DevelopmentConfig(Config):
    """Local development: embedded defaults, demo data, the Sage sandbox on SANDBOX_PORT."""

    ENV_NAME = "development"
    SECRET_KEY = "dev-secret-key-not-for-production"
    ENCRYPTION_KEY = base64.urlsafe_b64encode(b"development-only-encryption-key!").decode()
    SAGE_CLIENT_ID = "portal-dev-client"
    SAGE_CLIENT_SECRET = "portal-dev-secret"
    SAGE_ONE_API_KEY = "portal-dev-apikey"
    DEMO_DATA_ALLOWED = True
    SMTP_HOST = "127.0.0.1"
    SMTP_PORT = 8025
    SMTP_STARTTLS = False
    MAIL_FROM = "Workshop Portal <no-reply@portal.test>"

    def __init__(self) -> None:
        sandbox = f"http://127.0.0.1:{os.environ.get('SANDBOX_PORT', '5001')}"
        self.SAGE_AUTH_URL = f"{sandbox}/oauth2/auth/central"
        self.SAGE_TOKEN_URL = f"{sandbox}/token"
        self.SAGE_REVOKE_URL = f"{sandbox}/revoke"
        self.SAGE_API_URL = f"{sandbox}/v3.1"
        self.SAGE_ONE_API_URL = f"{sandbox}/api/2.0.0"
        super().__init__()


class TestConfig(DevelopmentConfig):
    """Tests: cheap key derivation; fixtures point URLs at a private Redis and sandbox."""

    ENV_NAME = "test"
    TESTING = True
    KEY_SCRYPT_N = 2**12
    PASSWORD_HASH_METHOD = "scrypt:4096:8:1"
    SUPPORT_OVERVIEW_CACHE_SECONDS = 0  # tests see every change at once; the cache has its own test


class ProductionConfig(Config):
    """Production: secrets required, secure cookies, Sage's real hosts."""

    ENV_NAME = "production"
    SESSION_COOKIE_SECURE = True
    LOG_FORMAT = "json"


_SHIPPED_SECRETS = frozenset({DevelopmentConfig.SECRET_KEY, DevelopmentConfig.ENCRYPTION_KEY})

CONFIGS = {c.ENV_NAME: c for c in (DevelopmentConfig, TestConfig, ProductionConfig)}


def load_config(name: str | None = None) -> Config:
    """Return the validated config for `name` (default: PORTAL_ENV, else development)."""
    name = name or os.environ.get("PORTAL_ENV", "development")
    if name not in CONFIGS:
        raise ConfigError(f"PORTAL_ENV must be one of {', '.join(CONFIGS)}")
    config = CONFIGS[name]()
    config.validate()
    return config
