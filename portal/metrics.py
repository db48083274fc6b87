"""Prometheus metrics: what the portal counts, and `/metrics`, which only configured addresses reach.

Every process of a host (gunicorn's workers, RQ workers and their work horses, the scheduler)
writes its figures into files under PROMETHEUS_MULTIPROC_DIR when that is set (prometheus-client's
multiprocess mode, set before the process imports prometheus_client: the Procfile's prepare step
and gunicorn.conf.py see to it), and a scrape of any web process adds them all up. Without it
(one process, the tests) the figures live in the process. Queue depth is read from RQ at scrape.

Label values are bounded: an endpoint name (never a raw path), a job kind, an outcome word, an
API name and a Sage business or Sage One AUS company id; never a URL, a username or a secret.
Code that counts something calls one function here, so the instrumented modules change by a line.
"""
from __future__ import annotations

import ipaddress
import os
import time
from contextlib import contextmanager

from flask import Blueprint, Flask, Response, abort, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

bp = Blueprint("metrics", __name__)

REQUEST_SECONDS = Histogram(
    "portal_http_request_duration_seconds", "Time to answer a request, by route (endpoint name).",
    ["endpoint", "method", "status"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
JOBS = Counter("portal_jobs_total", "Jobs that ended a run, by kind and outcome.", ["kind", "outcome"])
JOB_SECONDS = Histogram(
    "portal_job_duration_seconds", "How long a job's run took, by kind.", ["kind"],
    buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 1800, 3600))
SAGE_REQUESTS = Counter(
    "portal_sage_requests_total", "Requests sent to Sage, by API, business and answer (HTTP status class).",
    ["api", "business", "status"])
SAGE_RATE_LIMITED = Counter(
    "portal_sage_rate_limited_total", "429 answers from Sage, by API and business.", ["api", "business"])
LIMITER_WAITS = Counter(
    "portal_sage_limiter_waits_total", "Times a request waited for a slot of the shared limiter.", ["api", "business"])
LIMITER_WAIT_SECONDS = Counter(
    "portal_sage_limiter_wait_seconds_total", "Seconds spent waiting for the shared limiter.", ["api", "business"])
TOKEN_REFRESHES = Counter(
    "portal_sage_token_refreshes_total", "Sage token refreshes, by outcome (ok, rejected, failed).", ["outcome"])
SCHEDULE_SKIPPED = Counter(
    "portal_schedule_skipped_total", "Scheduled syncs skipped, by reason.", ["reason"])
MAILS = Counter("portal_mails_total", "Mail handed to the SMTP server, by outcome (sent, failed).", ["outcome"])

# A scheduled sync's skip reason (portal/schedule.py's words) as a fixed label.
_SKIP_REASONS = (("sign in", "needs_sign_in"), ("no sage business", "no_business"),
                 ("limiting", "rate_limited"), ("already running", "job_running"), ("budget", "budget_used"))


# --- counting (called where things happen) ---------------------------------------------------------


def job_ended(kind: str, outcome: str, seconds: float) -> None:
    """A job's run ended: finished, failed, queued again (a pause: it resumes later) or lost (its lease lapsed)."""
    JOBS.labels(kind, "paused" if outcome == "queued" else outcome).inc()
    JOB_SECONDS.labels(kind).observe(seconds)


def sage_request(api: str, business, status: int | None) -> None:
    """One request went to Sage (`status` None: no answer); a 429 is counted as rate-limited too."""
    business = _business(business)
    SAGE_REQUESTS.labels(api, business, f"{status // 100}xx" if status else "none").inc()
    if status == 429:
        SAGE_RATE_LIMITED.labels(api, business).inc()


def limiter_waited(api: str, business, seconds: float) -> None:
    """A request waited `seconds` for a slot of the shared limiter (a Sage One AUS bucket or a business)."""
    if seconds > 0:
        business = _business(business)
        LIMITER_WAITS.labels(api, business).inc()
        LIMITER_WAIT_SECONDS.labels(api, business).inc(seconds)


@contextmanager
def token_refresh():
    """Count the Sage token refresh inside the block: ok, rejected (sign in again) or failed."""
    try:
        yield
    except Exception as exc:
        TOKEN_REFRESHES.labels("rejected" if type(exc).__name__ == "SageTokenRejected" else "failed").inc()
        raise
    TOKEN_REFRESHES.labels("ok").inc()


def schedule_skipped(reason: str) -> None:
    """The schedule skipped a due sync for `reason` (its words, reduced to a fixed label)."""
    words = reason.lower()
    SCHEDULE_SKIPPED.labels(next((label for key, label in _SKIP_REASONS if key in words), "other")).inc()


def mail_sent(ok: bool = True) -> None:
    """A message was handed to the SMTP server (or it refused it)."""
    MAILS.labels("sent" if ok else "failed").inc()


def _business(value) -> str:
    """A bounded business label: a Sage business id or a Sage One AUS company id; a login bucket
    (which names a username) is never a label."""
    text = str(value or "unknown")
    if text.startswith("company:"):
        return text.removeprefix("company:")
    if text.startswith("login:"):
        return "login"
    return text[:64]


# --- serving ---------------------------------------------------------------------------------------


class QueueDepth:
    """Read at scrape: how many jobs RQ holds in each state of the portal's queue."""

    def collect(self):
        from redis.exceptions import RedisError

        from portal.jobqueue import get_queue

        family = GaugeMetricFamily("portal_queue_jobs", "Jobs RQ holds for the portal's queue, by state.",
                                   labels=["queue", "state"])
        queue = get_queue()  # collected inside the scrape's request
        try:
            for state, count in (("queued", queue.count), ("started", queue.started_job_registry.count),
                                 ("scheduled", queue.scheduled_job_registry.count),
                                 ("deferred", queue.deferred_job_registry.count),
                                 ("failed", queue.failed_job_registry.count)):
                family.add_metric([queue.name, state], count)
        except RedisError:
            return  # Redis is down: /healthz says so; the other figures still answer
        yield family


def _multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir"))


def allowed(address: str | None) -> bool:
    """Whether `address` is one of METRICS_ALLOW (addresses or networks, comma-separated)."""
    try:
        ip = ipaddress.ip_address((address or "").split("%")[0])
    except ValueError:
        return False
    for item in str(current_app.config.get("METRICS_ALLOW") or "").split(","):
        item = item.strip()
        if not item:
            continue
        try:
            if ip in ipaddress.ip_network(item, strict=False):
                return True
        except ValueError:
            continue
    return False


@bp.get("/metrics")
def scrape():
    """The Prometheus text format, for an allowed address only (everyone else: 404, as if there were none)."""
    if not allowed(request.remote_addr):
        abort(404)
    registry = CollectorRegistry()
    if _multiprocess():
        MultiProcessCollector(registry)  # every process's files in the directory, added up
    else:
        registry.register(REGISTRY)  # this process's own figures
    registry.register(QueueDepth())
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def _started() -> None:
    g.metrics_started = time.perf_counter()


def _observe(response):
    started = g.pop("metrics_started", None)
    if started is not None:
        endpoint = request.url_rule.endpoint if request.url_rule is not None else "unmatched"
        REQUEST_SECONDS.labels(endpoint, request.method, str(response.status_code)).observe(
            time.perf_counter() - started)
    return response


def init_app(app: Flask) -> None:
    """Register /metrics (no sign-in, no CSRF: it is a GET) and time every request by its route."""
    app.register_blueprint(bp)
    app.before_request(_started)
    app.after_request(_observe)


def mark_process_dead(pid: int) -> None:
    """gunicorn's child_exit: drop a dead web process's live gauges (its counters stay counted)."""
    if _multiprocess():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
