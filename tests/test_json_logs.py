"""JSON log lines: one object per line, the request id carried from a web request into the job it
queued (run by a real worker process), never a secret; expected job failures are one line."""
from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from portal import jobqueue, json_logs, log_safety
from portal.extensions import db
from portal.models import Job, JobStatus
from tests import factories
from tests.integrations.sage.conftest import connect, workshop  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parents[1]
COUNT = "tests.jobs_for_tests.count_contacts"


def _worker_env(app_settings: dict, **extra) -> dict:
    env = dict(os.environ, PORTAL_ENV="test", **extra)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    for key, setting in app_settings.items():
        if key != "ENV_NAME" and isinstance(setting, str | int | float) and not isinstance(setting, bool):
            env[f"PORTAL_{key}"] = str(setting)
    return env


def _run_worker(app_settings: dict, **extra) -> list[str]:
    """Drain the queue with a real forking worker process; every line it wrote."""
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "worker", "--burst"], cwd=ROOT,
                          env=_worker_env(app_settings, **extra), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]


@pytest.mark.timeout(90)
def test_a_web_requests_id_reaches_the_json_lines_of_the_job_it_queued(
        app, app_settings, client, auth, workshop, sandbox):  # noqa: F811 - fixture
    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id)
    factories.contacts(workshop.head_office, 2)
    request_id = "proxy-req-0123456789"
    response = client.post(f"/integrations/sage/branches/{workshop.head_office_id}/sync/contacts",
                           headers={"X-Request-ID": request_id})
    assert response.status_code == 302 and response.headers["X-Request-ID"] == request_id
    job = db.session.scalars(db.select(Job).order_by(Job.created_at.desc())).first()

    lines = _run_worker(app_settings, PORTAL_LOG_FORMAT="json")
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= entry.keys() for entry in entries)
    of_the_job = [e for e in entries if e.get("job_id") == job.id]
    assert of_the_job and all(e.get("request_id") == request_id for e in of_the_job), entries
    db.session.expire_all()
    assert db.session.get(Job, job.id).status == JobStatus.FINISHED


def test_a_malformed_request_id_is_replaced_by_a_new_one(client):
    given = client.get("/login", headers={"X-Request-ID": "bad id <script>"}).headers["X-Request-ID"]
    assert given != "bad id <script>" and len(given) == 32
    assert client.get("/login").headers["X-Request-ID"] != given


def test_an_expected_job_failure_is_one_line_without_a_traceback(app, app_settings):
    business = factories.business()
    user, branch = factories.customer(business), business.branches[0]
    row = jobqueue.enqueue("test.count", COUNT, branch=branch, requested_by=user, description="Count",
                           args=(branch.id, True))
    lines = _run_worker(app_settings)
    text = "\n".join(lines)
    assert "Traceback" not in text
    failed = [line for line in lines if row.id in line and "failed" in line]
    assert len(failed) == 1 and "Sage said no: the test asked for a failure." in failed[0], text
    db.session.expire_all()
    assert db.session.get(Job, row.id).status == JobStatus.FAILED


def test_json_lines_never_carry_a_protected_secret(app):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_logs.JsonFormatter())
    logger = logging.getLogger("portal.test_json_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        secret = "Tr0ub4dor-json-secret"
        log_safety.protect(secret)
        logger.info("signing in with %s", secret)
        try:
            raise ValueError(f"refused {secret}")
        except ValueError:
            logger.exception("failed for %s", secret[:9])
        late = "late-registered-secret-99"
        record = logger.makeRecord(logger.name, logging.WARNING, __file__, 1, "made before %s", (late,), None)
        log_safety.protect(late)  # registered after the record was made: the formatter still removes it
        logger.handle(record)
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    entries = [json.loads(line) for line in lines]
    assert len(entries) == 3
    assert "Tr0ub4" not in stream.getvalue() and "late-registered" not in stream.getvalue()
    assert entries[0]["message"] == "signing in with [redacted]"
    assert "ValueError" in entries[1]["exception"] and entries[1]["level"] == "ERROR"


def test_json_lines_name_the_request_and_the_signed_in_user(app, client, auth):
    business = factories.business()
    user = factories.customer(business)
    auth.login(user)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_logs.JsonFormatter())
    logging.getLogger("werkzeug").addHandler(handler)
    logger = logging.getLogger("portal.web")
    logger.addHandler(handler)
    try:
        with app.test_request_context("/", headers={"X-Request-ID": "request-id-4242"}):
            app.preprocess_request()
            from flask_login import login_user

            login_user(user)
            logger.warning("something worth a line")
    finally:
        logger.removeHandler(handler)
        logging.getLogger("werkzeug").removeHandler(handler)
    entry = json.loads(stream.getvalue().splitlines()[-1])
    assert entry["request_id"] == "request-id-4242" and entry["user_id"] == user.id
    assert entry["logger"] == "portal.web" and entry["level"] == "WARNING"
