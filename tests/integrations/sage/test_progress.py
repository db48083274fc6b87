"""A real sync's progress, read the way the page reads it while a real worker runs it against the
sandbox under a low rate limit: it moves per record (not per batch), says when it waits for Sage's
limit ("waiting for Sage's rate limit, resumes in …") with no estimate then, and announces its end.
The estimate itself: the rate measured over the whole run, and never faster than the limit allows."""
from __future__ import annotations

import json
import time

import pytest
from rq.job import Job as RQJob

from jobs.runtime import Progress
from portal.extensions import db
from portal.models import Job, JobStatus
from tests import factories
from tests.integrations.sage.conftest import connect
from tests.workers import start_worker, stop_worker

CONTACTS = 8  # one batch (the default 50): any count between 0 and 8 is a per-record step


@pytest.fixture
def app_settings(app_settings):
    # Six requests per seven-second window: the run waits for the limit once or twice, for seconds each.
    return {**app_settings, "SAGE_RATE_LIMIT_PER_MINUTE": 6, "SAGE_RATE_MARGIN": 0, "SAGE_RATE_WINDOW_SECONDS": 6}


@pytest.fixture
def worker(app, app_settings, tmp_path):
    process = start_worker(app_settings, tmp_path / "worker.log")
    yield process
    stop_worker(process)


def test_progress_moves_per_record_and_says_when_it_waits_for_sages_limit(
        client, auth, workshop, sandbox, redis_client, worker):
    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id)
    factories.contacts(workshop.head_office, CONTACTS)
    assert client.post(f"/integrations/sage/branches/{workshop.head_office_id}/sync/contacts").status_code == 302
    job_id = db.session.scalar(db.select(Job.id))

    seen_done, waiting_partials = set(), []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        db.session.expire_all()
        row = db.session.get(Job, job_id)
        if not row.status.is_active:
            break
        meta = RQJob.fetch(job_id, connection=redis_client).get_meta(refresh=True)
        if meta.get("done") is not None:
            seen_done.add(meta["done"])
        if meta.get("waiting_until") and len(waiting_partials) < 3:
            waiting_partials.append(client.get(f"/jobs/{job_id}", headers={"HX-Request": "true"})
                                    .get_data(as_text=True))
        time.sleep(0.05)
    else:
        pytest.fail("the sync did not end in time")

    assert row.status == JobStatus.FINISHED, row.error
    assert row.result["created"] == CONTACTS
    assert {n for n in seen_done if 0 < n < CONTACTS}, seen_done  # it moved within the one batch
    waiting = [html for html in waiting_partials if "waiting for Sage's rate limit, resumes in" in html]
    assert waiting, waiting_partials
    assert all("min left" not in html and "Waiting for Sage" in html for html in waiting)

    ended = client.get(f"/jobs/{job_id}", headers={"HX-Request": "true"})
    assert json.loads(ended.headers["HX-Trigger"]) == {
        "job-ended": {"job_id": job_id, "branch_id": workshop.head_office_id, "kind": "sage.sync_contacts"}}
    assert "waiting for Sage" not in ended.get_data(as_text=True)


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_estimate_is_the_measured_rate_over_the_run_and_waits_until_it_is_stable(app):
    clock = _Clock()
    progress = Progress("no-job", clock=clock)
    progress.update(0, 100)
    clock.now += 5
    assert progress.estimate(20, 100) is None  # five seconds in: too early to say
    clock.now += 15
    assert progress.estimate(5, 100) is None  # too few records to say
    # 20 records in 20 s, waits included: 80 more take 80 s, whatever the last batch's pace was.
    assert progress.estimate(20, 100) == 80
    assert progress.estimate(100, 100) is None


def test_the_estimate_never_promises_more_than_sages_limit_allows(app):
    clock, sent = _Clock(), [0]
    progress = Progress("no-job", clock=clock)
    progress.paced_by(90, 61.0, lambda: sent[0])
    progress.update(0, 1000)
    # The limit's window had room: 90 records in 10 s, one request each. The next 910 can't keep that pace.
    clock.now += 10
    sent[0] = 90
    estimate = progress.estimate(90, 1000)
    assert estimate == pytest.approx((910 - 90) / 90 * 61, abs=1)
    assert estimate > 910 / 9  # what the first ten seconds alone would have promised
