"""Request ids, and one JSON object per log line in production.

Every web request has an id: the incoming X-Request-ID header when it is well-formed (a proxy's),
else a new one; the response names it in X-Request-ID. A job queued during the request carries it
in its RQ meta (`job_meta()`, used by portal/jobqueue.py), and the worker puts it back in place
while the job runs (`job_context()`), so one id follows a click from the access log into the job's
lines.

With LOG_FORMAT = "json" (production's default) each line is an object with `time`, `level`,
`logger`, `message`, `request_id`, `job_id` in a job, `user_id` when someone is signed in, and
`exception` for a traceback. Passwords and keys are removed from every record before any handler
sees it (portal/log_safety.py); the formatter redacts the finished text once more, so a secret
registered after a record was made still never reaches the line. In development lines stay plain
text, with the request id in brackets.
"""
from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime

from flask import Flask, g, has_request_context, request

from portal import log_safety

HEADER = "X-Request-ID"
_WELL_FORMED = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("portal_request_id", default=None)
_job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("portal_job_id", default=None)


def current_request_id() -> str | None:
    """The id of the web request being answered, or of the request that queued the running job."""
    if has_request_context() and "request_id" in g:
        return g.request_id
    return _request_id.get()


def job_meta() -> dict:
    """What a job queued now carries in its RQ meta (the request id, when there is one)."""
    request_id = current_request_id()
    return {"request_id": request_id} if request_id else {}


@contextmanager
def job_context(job):
    """While a job runs: its id, and the id of the request that queued it, on every log line."""
    request_token = _request_id.set((job.meta or {}).get("request_id"))
    job_token = _job_id.set(job.id)
    try:
        yield
    finally:
        _job_id.reset(job_token)
        _request_id.reset(request_token)


def _begin_request() -> None:
    incoming = request.headers.get(HEADER, "")
    g.request_id = incoming if _WELL_FORMED.match(incoming) else uuid.uuid4().hex


def _name_request(response):
    if "request_id" in g:
        response.headers[HEADER] = g.request_id
    return response


def _user_id() -> int | None:
    # Only a user flask-login has already loaded: logging must never query the database.
    if not has_request_context():
        return None
    user = g.get("_login_user")
    return getattr(user, "id", None) if getattr(user, "is_authenticated", False) else None


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": log_safety.redact(record.getMessage()),
        }
        request_id, job_id, user_id = current_request_id(), _job_id.get(), _user_id()
        if request_id:
            entry["request_id"] = request_id
        if job_id:
            entry["job_id"] = job_id
        if user_id is not None:
            entry["user_id"] = user_id
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = log_safety.redact(record.exc_text)
        if record.stack_info:
            entry["stack"] = log_safety.redact(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def install(app: Flask) -> None:
    """Give every request an id; in JSON mode, write every log line of the process as JSON.

    The root logger gets one handler on stderr (unless a test or a host already configured one),
    so RQ's and gunicorn's own loggers, which propagate or find it, write the same way.
    """
    app.before_request(_begin_request)
    app.after_request(_name_request)
    log_format = str(app.config.get("LOG_FORMAT") or "text").lower()
    if log_format != "json":
        return
    app.logger.handlers.clear()  # Flask's default handler would write the line a second time
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "portal_json", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.portal_json = True
        root.addHandler(handler)
    handler.setFormatter(JsonFormatter())
    if root.level == logging.WARNING or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
