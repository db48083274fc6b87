import base64

import pytest

from portal import create_app
from portal.config import ConfigError, engine_options, load_config

GOOD_KEY = base64.urlsafe_b64encode(b"k" * 32).decode()
GOOD_SECRET = "a-long-random-secret-of-at-least-32-bytes"


def test_production_refuses_to_start_without_secret_key(monkeypatch):
    monkeypatch.delenv("PORTAL_SECRET_KEY", raising=False)
    monkeypatch.setenv("PORTAL_ENCRYPTION_KEY", GOOD_KEY)
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app({"ENV_NAME": "production"})


def test_production_refuses_to_start_without_encryption_key(monkeypatch):
    monkeypatch.setenv("PORTAL_SECRET_KEY", GOOD_SECRET)
    monkeypatch.delenv("PORTAL_ENCRYPTION_KEY", raising=False)
    with pytest.raises(ConfigError, match="ENCRYPTION_KEY"):
        load_config("production")


def test_production_refuses_a_malformed_encryption_key(monkeypatch):
    monkeypatch.setenv("PORTAL_SECRET_KEY", GOOD_SECRET)
    monkeypatch.setenv("PORTAL_ENCRYPTION_KEY", "too-short")
    with pytest.raises(ConfigError, match="32 bytes"):
        load_config("production")


def test_production_starts_with_its_secrets_and_secure_cookies(monkeypatch):
    monkeypatch.setenv("PORTAL_SECRET_KEY", GOOD_SECRET)
    monkeypatch.setenv("PORTAL_ENCRYPTION_KEY", GOOD_KEY)
    app = create_app({"ENV_NAME": "production"})
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.config["SAGE_TOKEN_URL"] == "https://oauth.accounting.sage.com/token"
    assert app.config["DEMO_DATA_ALLOWED"] is False


def test_environment_variables_override_settings(monkeypatch):
    monkeypatch.setenv("PORTAL_PUPPET_SESSION_MINUTES", "15")
    monkeypatch.setenv("SANDBOX_PORT", "5999")
    config = load_config("development")
    assert config.PUPPET_SESSION_MINUTES == 15
    assert config.SAGE_API_URL == "http://127.0.0.1:5999/v3.1"


def test_unknown_environment_is_refused():
    with pytest.raises(ConfigError, match="PORTAL_ENV"):
        load_config("staging")


def test_demo_data_command_refuses_production(monkeypatch):
    monkeypatch.setenv("PORTAL_SECRET_KEY", GOOD_SECRET)
    monkeypatch.setenv("PORTAL_ENCRYPTION_KEY", GOOD_KEY)
    app = create_app({"ENV_NAME": "production", "DATABASE_URL": "sqlite://"})
    result = app.test_cli_runner().invoke(args=["demo-data"])
    assert result.exit_code != 0
    assert "only for development" in result.output


def test_pooled_connections_are_pinged_only_for_a_network_database():
    assert engine_options("sqlite:////tmp/portal.db") == {}
    assert engine_options("postgresql+psycopg://portal@db/portal") == {"pool_pre_ping": True}
    app = create_app({"ENV_NAME": "test", "DATABASE_URL": "postgresql+psycopg://portal@db/portal"})
    assert app.config["SQLALCHEMY_ENGINE_OPTIONS"] == {"pool_pre_ping": True}


def test_production_refuses_a_secret_key_shorter_than_32_bytes(monkeypatch):
    monkeypatch.setenv("PORTAL_SECRET_KEY", "s" * 31)
    monkeypatch.setenv("PORTAL_ENCRYPTION_KEY", GOOD_KEY)
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        load_config("production")
    monkeypatch.setenv("PORTAL_SECRET_KEY", "s" * 32)
    assert load_config("production").SECRET_KEY == "s" * 32


@pytest.mark.parametrize("which", ["SECRET_KEY", "ENCRYPTION_KEY"])
def test_production_refuses_the_development_keys_that_ship_in_the_source(monkeypatch, which):
    from portal.config import DevelopmentConfig

    monkeypatch.setenv("PORTAL_SECRET_KEY", GOOD_SECRET)
    monkeypatch.setenv("PORTAL_ENCRYPTION_KEY", GOOD_KEY)
    monkeypatch.setenv(f"PORTAL_{which}", getattr(DevelopmentConfig, which))
    with pytest.raises(ConfigError, match="development keys"):
        load_config("production")
