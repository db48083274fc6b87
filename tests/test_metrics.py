"""/metrics: only for the configured addresses, and its figures move with real requests, real jobs
run by real workers, real Sage requests and 429s; several processes add up in multiprocess mode."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from devtools.redis_server import free_port
from portal import jobqueue
from portal.extensions import db
from portal.integrations.sage import tokens
from portal.models import Connection, Job, JobStatus
from tests import factories
from tests.integrations.sage.conftest import SOLO_BUSINESS, connect, run_jobs, workshop  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parents[1]
COUNT = "tests.jobs_for_tests.count_contacts"
NAMES = ("portal_http_request_duration_seconds", "portal_jobs_total", "portal_job_duration_seconds",
         "portal_queue_jobs", "portal_sage_requests_total", "portal_sage_rate_limited_total",
         "portal_sage_limiter_waits_total", "portal_sage_token_refreshes_total", "portal_schedule_skipped_total",
         "portal_mails_total")


def value(text: str, name: str, **labels) -> float:
    """The sum of the samples called `name` whose labels include `labels` (0 when there are none)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def scrape(client) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_metrics_answers_an_allowed_address_with_every_metric_name(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    body = response.get_data(as_text=True)
    for name in NAMES:
        assert f"# TYPE {name}" in body, name


@pytest.mark.parametrize("address", ["10.1.2.3", "192.168.0.7", "2001:db8::1"])
def test_metrics_is_a_404_for_any_other_address(client, address):
    response = client.get("/metrics", environ_base={"REMOTE_ADDR": address})
    assert response.status_code == 404
    assert "portal_" not in response.get_data(as_text=True)


def test_metrics_allows_the_configured_networks_only(app, client):
    app.config["METRICS_ALLOW"] = "10.0.0.0/8, 2001:db8::/32"
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.9.8.7"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "2001:db8::5"}).status_code == 200
    assert client.get("/metrics").status_code == 404  # 127.0.0.1 is no longer listed


def test_request_latency_is_counted_by_route_not_by_path(client):
    before = value(scrape(client), "portal_http_request_duration_seconds_count", endpoint="auth.login",
                   method="GET", status="200")
    client.get("/login")
    client.get("/login?next=/somewhere")
    client.get("/no/such/page/12345")
    text = scrape(client)
    assert value(text, "portal_http_request_duration_seconds_count", endpoint="auth.login",
                 method="GET", status="200") == before + 2
    assert value(text, "portal_http_request_duration_seconds_count", endpoint="unmatched", status="404") >= 1
    assert "/no/such/page" not in text and "somewhere" not in text


def test_a_job_run_by_a_real_worker_is_counted_by_kind_and_outcome(client, drain_jobs):
    business = factories.business()
    user, branch = factories.customer(business), business.branches[0]
    factories.contacts(branch, 3)
    before = scrape(client)
    jobqueue.enqueue("test.count", COUNT, branch=branch, requested_by=user, description="Count", args=(branch.id,))
    queued = scrape(client)
    assert value(queued, "portal_queue_jobs", queue="portal-test", state="queued") == 1
    failing = jobqueue.enqueue("test.count_failing", COUNT, branch=branch, requested_by=user, description="Count",
                               args=(branch.id, True))
    drain_jobs()
    text = scrape(client)
    assert db.session.get(Job, failing.id).status == JobStatus.FAILED
    for outcome in ("finished", "failed"):
        kind = "test.count" if outcome == "finished" else "test.count_failing"
        assert value(text, "portal_jobs_total", kind=kind, outcome=outcome) == \
            value(before, "portal_jobs_total", kind=kind, outcome=outcome) + 1
    assert value(text, "portal_job_duration_seconds_count", kind="test.count") == \
        value(before, "portal_job_duration_seconds_count", kind="test.count") + 1
    assert value(text, "portal_queue_jobs", queue="portal-test", state="queued") == 0


def test_sage_requests_429s_limiter_waits_and_token_refreshes_are_counted_by_business(
        client, auth, workshop, sandbox, run_jobs):  # noqa: F811 - fixtures
    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id)
    factories.contacts(workshop.head_office, 3)
    before = scrape(client)
    connection = db.session.scalar(db.select(Connection).where(Connection.branch_id == workshop.head_office_id))
    tokens.refresh_now(connection.id)
    # Sage's window for the business is full of requests made 58 s ago: a 429 with Retry-After ~2 s.
    with sandbox.state.lock:
        sandbox.state.set_sage_rate_limit(5)
        sandbox.state.sage_windows[SOLO_BUSINESS] = deque([sandbox.state.now() - 58] * 5)
    assert client.post(f"/integrations/sage/branches/{workshop.head_office_id}/sync/contacts").status_code == 302
    run_jobs()
    text = scrape(client)
    labels = {"api": "sage", "business": SOLO_BUSINESS}
    assert value(text, "portal_sage_requests_total", status="2xx", **labels) > \
        value(before, "portal_sage_requests_total", status="2xx", **labels)
    assert value(text, "portal_sage_rate_limited_total", **labels) >= \
        value(before, "portal_sage_rate_limited_total", **labels) + 1
    assert value(text, "portal_sage_requests_total", status="4xx", **labels) >= 1
    assert value(text, "portal_sage_limiter_waits_total", **labels) > \
        value(before, "portal_sage_limiter_waits_total", **labels)
    assert value(text, "portal_sage_token_refreshes_total", outcome="ok") == \
        value(before, "portal_sage_token_refreshes_total", outcome="ok") + 1
    assert "access_token" not in text and sandbox.url not in text


def _env(app_settings: dict, metrics_dir: Path, **extra) -> dict:
    env = dict(os.environ, PORTAL_ENV="test", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), **extra)
    for key, setting in app_settings.items():
        if key != "ENV_NAME" and isinstance(setting, str | int | float) and not isinstance(setting, bool):
            env[f"PORTAL_{key}"] = str(setting)
    return env


def _wait_for(url: str, process: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, "gunicorn stopped"
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise AssertionError(f"{url} never answered")


@pytest.mark.timeout(90)
def test_multiprocess_mode_adds_up_gunicorns_processes_and_a_worker_process(app, app_settings, tmp_path):
    """Two gunicorn processes answer requests and a forking RQ worker runs a job, all writing into
    one PROMETHEUS_MULTIPROC_DIR; a scrape of gunicorn counts them all."""
    business = factories.business()
    user, branch = factories.customer(business), business.branches[0]
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = _env(app_settings, metrics_dir, WEB_CONCURRENCY="2")
    port = free_port()
    web = subprocess.Popen([str(Path(sys.executable).parent / "gunicorn"), "--bind", f"127.0.0.1:{port}", "app:app"],
                           cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=(tmp_path / "web.log").open("w"))
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for(f"{base}/healthz", web)
        with requests.Session() as http:
            for _ in range(12):  # new connections, so both processes answer some
                requests.get(f"{base}/login", timeout=10)
            row = jobqueue.enqueue("test.count", COUNT, branch=branch, requested_by=user, description="Count",
                                   args=(branch.id,))
            worker = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "worker", "--burst"], cwd=ROOT,
                                    env=env, capture_output=True, text=True, timeout=60)
            assert worker.returncode == 0, worker.stderr
            db.session.expire_all()
            assert db.session.get(Job, row.id).status == JobStatus.FINISHED
            text = http.get(f"{base}/metrics", timeout=10).text
        writers = {p.name.rsplit("_", 1)[-1] for p in metrics_dir.glob("*.db")}
        assert len(writers) >= 2, writers  # a web process (or two) and the worker's work horse
        assert value(text, "portal_http_request_duration_seconds_count", endpoint="auth.login") == 12
        assert value(text, "portal_jobs_total", kind="test.count", outcome="finished") == 1
        assert value(text, "portal_queue_jobs", state="queued") == 0
    finally:
        web.terminate()
        web.wait(timeout=20)
