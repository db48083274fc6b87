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
    """Attach one Redis connection pool to the app (used by sessions, throttles and RQ)."""
    app.extensions["redis"] = redis.Redis.from_url(app.config["REDIS_URL"])


def get_redis() -> redis.Redis:
    """The app's Redis client."""
    return current_app.extensions["redis"]
