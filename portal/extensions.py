"""Flask extensions, created unbound and initialised in the factory."""
from __future__ import annotations

import redis
from flask import Flask, current_app
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from htmx_flask import Htmx
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """Declarative base for every portal model."""


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
htmx = Htmx()


def init_redis(app: Flask) -> None:
    """Attach one Redis connection pool to the app (used by sessions, throttles and RQ), which waits
    up to REDIS_OUTAGE_WAIT_SECONDS for a Redis that is restarting (portal/redis_outages.py)."""
    from portal import redis_outages

    wait = float(app.config.get("REDIS_OUTAGE_WAIT_SECONDS", redis_outages.WEB_WAIT_SECONDS))
    app.extensions["redis"] = redis_outages.client(app.config["REDIS_URL"], wait)


def patient_with_redis(app: Flask) -> None:
    """For workers and the scheduler: wait up to WORKER_REDIS_OUTAGE_WAIT_SECONDS for Redis to come
    back instead of failing a run in the middle (a web page would rather answer at once)."""
    from portal import redis_outages

    app.config["REDIS_OUTAGE_WAIT_SECONDS"] = float(
        app.config.get("WORKER_REDIS_OUTAGE_WAIT_SECONDS", redis_outages.WORKER_WAIT_SECONDS))
    init_redis(app)


def get_redis() -> redis.Redis:
    """The app's Redis client."""
    return current_app.extensions["redis"]
