"""The support portal for the Sage accounting integrations."""
from __future__ import annotations

from pathlib import Path

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from portal.config import Config, engine_options, load_config

ROOT = Path(__file__).resolve().parent.parent


def create_app(config: Config | dict | None = None) -> Flask:
    """Build the portal: config → extensions → blueprints → error pages → CLI.

    `config` may be a Config instance, or a dict of overrides applied on top of the environment's
    config (tests pass one). Production refuses to start without its secrets (ConfigError).
    """
    app = Flask(
        __name__,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
        instance_path=str(ROOT / "instance"),
    )
    if isinstance(config, Config):
        settings = config
    else:
        settings = load_config((config or {}).get("ENV_NAME"))
    app.config.from_mapping(settings.as_flask_config())
    if isinstance(config, dict):
        app.config.update(config)
        if "DATABASE_URL" in config:
            app.config["SQLALCHEMY_DATABASE_URI"] = config["DATABASE_URL"]
            if "SQLALCHEMY_ENGINE_OPTIONS" not in config:
                app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(config["DATABASE_URL"])
    hops = app.config["PROXY_HOPS"]
    if hops:
        # Throttles, audit and /metrics judge the address the trusted proxies saw, and only what they
        # appended counts: an entry a client wrote further left is never believed.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=0, x_prefix=0)

    Path(app.instance_path).mkdir(exist_ok=True)
    from portal import log_safety  # first, so no log line of the app ever holds a password
    log_safety.install()

    from portal import extensions, models, nul_text  # noqa: F401 - models register with the metadata

    nul_text.install()  # PostgreSQL takes no NUL in text
    extensions.db.init_app(app)
    extensions.migrate.init_app(
        app, extensions.db, directory=str(ROOT / "migrations"), render_as_batch=True
    )
    extensions.csrf.init_app(app)
    extensions.htmx.init_app(app)
    extensions.init_redis(app)

    from portal import json_logs, metrics

    json_logs.install(app)  # first of the request hooks: every later line names the request
    metrics.init_app(app)

    from portal import auth, web

    auth.init_app(app)
    web.register(app)

    from portal import cli

    cli.register(app)
    return app
