"""GET /healthz: database, Redis, live workers and the scheduler, as JSON; 503 when any but the scheduler is down."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from redis.exceptions import RedisError
from rq import Worker
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from portal.extensions import db, get_redis
from portal.jobqueue import get_queue
from portal.scheduler import scheduler_alive

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """Report each dependency as "up" or "down" (never the error text, which may hold a URL)."""
    report = {"database": "down", "redis": "down", "workers": 0, "scheduler": "down"}
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
        report["scheduler"] = "up" if scheduler_alive(get_redis()) else "down"
    except RedisError:
        current_app.logger.warning("healthz: redis unreachable")
    # Pages work without the scheduler; only syncs that run by themselves wait for it, so it is
    # reported but does not make the portal unhealthy.
    healthy = report["database"] == "up" and report["redis"] == "up" and report["workers"] > 0
    report["status"] = "ok" if healthy else "degraded"
    return jsonify(report), 200 if healthy else 503
