"""GET /healthz: database, Redis and live workers, as JSON; 503 when any is down."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from redis.exceptions import RedisError
from rq import Worker
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from portal.extensions import db, get_redis
from portal.jobqueue import get_queue

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """Report each dependency as "up" or "down" (never the error text, which may hold a URL)."""
    report = {"database": "down", "redis": "down", "workers": 0}
    try:
        db.session.execute(text("SELECT 1"))
        report["database"] = "up"
    except SQLAlchemyError:
        current_app.logger.warning("healthz: database unreachable")
        db.session.rollback()
    try:
        get_redis().ping()
        report["redis"] = "up"
        report["workers"] = Worker.count(queue=get_queue())
    except RedisError:
        current_app.logger.warning("healthz: redis unreachable")
    healthy = report["database"] == "up" and report["redis"] == "up" and report["workers"] > 0
    report["status"] = "ok" if healthy else "degraded"
    return jsonify(report), 200 if healthy else 503
