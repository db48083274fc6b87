"""Pacing Sage One AUS: every request (company look-ups at connect, lookups, retries) takes a slot
from the shared limiter, which keeps a margin under Sage's rate, so a first sync never trips Sage's
hour-long block; a 429 is never followed by another request before its block ends; a page never
waits. The sandbox enforces a small limit and the pacing clock moves time on instead of waiting."""
from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from portal.extensions import db
from portal.integrations.sage_one_aus import credentials, ratelimit
from portal.integrations.sage_one_aus import sync as sage_one_sync
from portal.models import Connection, Job, JobStatus, SyncState
from tests import factories
from tests.integrations.sage_one_aus.conftest import (
    NEWCASTLE_COMPANY,
    USERNAME,
    company,
    connect,
    limit_stats,
    sandbox_requests,
    sync,
)

LIMIT = 20  # Sage One's limit in these tests (the sandbox's and the portal's), per minute


@pytest.fixture
def app_settings(app_settings):
    return {**app_settings, "SAGE_ONE_RATE_LIMIT_PER_MINUTE": LIMIT}


@pytest.fixture
def limited(sandbox):
    sandbox.state.set_sage_one_rate_limit(LIMIT, block_seconds=3600)
    return sandbox


def _connection(branch) -> Connection:
    return db.session.scalar(db.select(Connection).where(Connection.branch_id == branch.id))


def _slots_used(bucket: str) -> int:
    item = ratelimit._item()
    return item.amount - ratelimit.limiter().get_window_stats(item, ratelimit.NAMESPACE, bucket).remaining


def test_the_limiter_keeps_the_configured_margin_under_sages_rate(app):
    assert ratelimit.published_per_minute() == LIMIT
    assert ratelimit.slots_per_window() == 18  # 10% kept free by default
    app.config["SAGE_ONE_RATE_MARGIN"] = 0.25
    assert ratelimit.slots_per_window() == 15


def test_a_first_sync_of_dozens_of_records_never_meets_a_429(world, client, auth, limited, sandbox_clock,
                                                             drain_jobs):
    auth.login(world.owner)
    assert connect(client, world.branch).status_code == 302
    contacts = factories.contacts(world.branch, 40)
    for n in range(10):
        factories.invoice(world.branch, contacts[n], amount=f"{11 * (n + 1)}.00")
    started, requests_before = sandbox_clock.now(), sandbox_requests(limited)

    sync(client, world.branch)
    drain_jobs()

    job = db.session.scalar(db.select(Job))
    assert job.status == JobStatus.FINISHED, job.error
    assert (len(company(limited).customers), len(company(limited).invoices)) == (40, 10)
    counters = limit_stats(limited)
    assert counters["sage_one_blocks"] == 0 and counters["sage_one_rate_limit_429"] == 0
    minutes = (sandbox_clock.now() - started) / 60
    sent = sandbox_requests(limited) - requests_before  # 50 records and the two lookups
    assert sent == 52
    assert minutes >= 2  # 18 a minute: the limiter waited (on the clock) rather than meet Sage's limit
    assert sent / minutes / LIMIT >= 0.85


def test_the_company_look_up_at_connect_counts_against_the_company(world, client, auth, limited, sandbox_clock):
    auth.login(world.owner)
    connect(client, world.branch)
    assert _slots_used(ratelimit.company_bucket(NEWCASTLE_COMPANY)) == 1
    assert _slots_used(ratelimit.login_bucket(USERNAME)) == 1

    connect(client, world.branch)  # re-authenticating: the company is known before asking
    assert _slots_used(ratelimit.company_bucket(NEWCASTLE_COMPANY)) == 2


def test_retries_take_a_slot_each_and_back_off_on_the_clock(world, client, auth, limited, sandbox_clock, drain_jobs):
    auth.login(world.owner)
    connect(client, world.branch)
    factories.contacts(world.branch, 1, sync_state=SyncState.FAILED, sync_error="earlier failure")
    limited.state.set_fault_rates(error_rate=1.0)
    started = time.monotonic()

    sync(client, world.branch)
    drain_jobs()

    job = db.session.scalar(db.select(Job))
    assert job.status == JobStatus.FAILED and "it answered 500" in job.error
    assert limited.state.snapshot()["requests"]["faults_5xx"] == 3  # the look-up, tried three times
    assert _slots_used(ratelimit.company_bucket(NEWCASTLE_COMPANY)) == 1 + 3
    assert sandbox_clock.waited == pytest.approx(2.5)  # 0.5 s and 2 s of back-off, on the clock
    assert time.monotonic() - started < 2


def test_a_page_never_waits_for_a_slot_and_says_sage_is_busy(world, client, auth, limited, sandbox_clock):
    auth.login(world.owner)
    connect(client, world.branch)
    before = _connection(world.branch).sage_one_password_enc
    bucket = ratelimit.company_bucket(NEWCASTLE_COMPANY)
    while _slots_used(bucket) < ratelimit.slots_per_window():  # a sync is using every slot of the minute
        ratelimit.acquire([bucket])
    requests_before = sandbox_requests(limited)

    started = time.monotonic()
    response = connect(client, world.branch)
    elapsed = time.monotonic() - started

    body = response.get_data(as_text=True)
    assert response.status_code == 503 and elapsed < 2
    assert "Sage One AUS is busy for this company right now" in body
    assert int(response.headers["Retry-After"]) >= 1
    assert sandbox_requests(limited) == requests_before
    assert sandbox_clock.waited == 0
    assert _connection(world.branch).sage_one_password_enc == before


def test_a_429_at_connect_holds_the_login_off_until_its_block_ends(world, client, auth, sandbox, sandbox_clock):
    auth.login(world.owner)
    sandbox.state.set_sage_one_rate_limit(1, block_seconds=3600)
    assert connect(client, world.branch).status_code == 302
    response = connect(client, world.branch)  # Sage's second request in a minute: blocked for an hour

    body = response.get_data(as_text=True)
    assert response.status_code == 503
    assert "blocked this company for 1 hour" in body and "rate-limited until" in body
    assert "failed logins" not in body
    assert credentials.attempts_left(USERNAME) == credentials.LOGIN_FAILURES_BEFORE_LOCK
    assert credentials.locked_until(USERNAME) is None

    requests_before = sandbox_requests(sandbox)
    response = connect(client, world.branch)
    assert response.status_code == 503 and "rate-limited until" in response.get_data(as_text=True)
    assert sandbox_requests(sandbox) == requests_before  # nothing sent during the block

    sandbox_clock.sleep(3601)
    assert connect(client, world.branch).status_code == 302


@pytest.fixture
def no_exceeded_reason_header(sandbox):
    """Live Sage's X-RequestLimit-ExceededReason header is optional; answer without it."""
    sandbox.state.config["SANDBOX_SAGE_ONE_EXCEEDED_REASON_HEADER"] = False
    yield sandbox
    sandbox.state.config["SANDBOX_SAGE_ONE_EXCEEDED_REASON_HEADER"] = True


def test_a_rate_limit_429_without_its_header_is_never_taken_for_the_username_lock_out(
        world, client, auth, no_exceeded_reason_header, sandbox_clock, drain_jobs):
    sandbox = no_exceeded_reason_header
    auth.login(world.owner)
    connect(client, world.branch)
    factories.contacts(world.branch, 5)
    sandbox.state.set_sage_one_rate_limit(3, block_seconds=3600)

    sync(client, world.branch)
    drain_jobs()

    job = db.session.scalar(db.select(Job))
    assert job.status == JobStatus.FAILED
    assert job.error.startswith("Rate-limited until ")
    assert credentials.locked_until(USERNAME) is None
    assert _connection(world.branch).locked_until is None
    assert ratelimit.blocked_until(NEWCASTLE_COMPANY) is not None
    assert limit_stats(sandbox)["sage_one_rate_limit_429"] == 1  # and nothing more was sent after it


def test_the_username_lock_out_says_what_it_is_how_long_and_what_to_do(world, client, auth, sandbox, sandbox_clock):
    auth.login(world.owner)
    for attempt in range(credentials.LOGIN_FAILURES_BEFORE_LOCK):
        assert connect(client, world.branch, password=f"wrong-{attempt}").status_code == 401
        sandbox_clock.sleep(4)  # a person retyping, within Sage's hour
    response = connect(client, world.branch, password="wrong-again")

    body = response.get_data(as_text=True)
    assert response.status_code == 423
    assert "locked this username for 24 hours after too many failed logins" in body
    assert "reset the password on Sage One" in body
    assert ratelimit.blocked_until(NEWCASTLE_COMPANY) is None
    assert ratelimit.held_until(ratelimit.login_bucket(USERNAME)) is None


@pytest.mark.parametrize("wording, unverified, kind", [
    ("Your IP address has exceeded the allowed number of transactions per minute and has been blocked for 1 hour",
     True, "rate_limit"),
    ("Your IP address has exceeded the allowed number of transactions per minute and has been blocked for 1 hour",
     False, "rate_limit"),
    ("Your Username has exceeded the allowed number of login attempts and has been blocked for 24 hours",
     False, "lock_out"),
    ("Too many failed logins: this username has been locked for 24 hours.", False, "lock_out"),
    ("", True, "lock_out"),  # no words: a 429 to a login still being checked is the lock-out …
    ("", False, "rate_limit"),  # … and to a login already working, the request limit
])
def test_the_two_429s_are_told_apart_by_their_whole_wording_and_context(wording, unverified, kind):
    from portal.integrations.sage_one_aus.client import classify_429

    assert classify_429(wording, login_unverified=unverified) == kind


def test_sync_jobs_are_refused_while_the_company_is_held(world, client, auth, limited, sandbox_clock, drain_jobs):
    auth.login(world.owner)
    connect(client, world.branch)
    factories.contacts(world.branch, 2)
    ratelimit.hold_off(NEWCASTLE_COMPANY, datetime.fromtimestamp(sandbox_clock.now() + 600, UTC))
    requests_before = sandbox_requests(limited)
    sync(client, world.branch)
    drain_jobs()
    assert not db.session.scalars(db.select(Job).where(Job.kind == sage_one_sync.SYNC_KIND)).all()
    assert sandbox_requests(limited) == requests_before


def test_a_wait_for_a_slot_is_told_to_the_run_and_so_is_its_end(app, sandbox_clock):
    """What the progress bar reads as "waiting for Sage's rate limit, resumes in …" (jobs/runtime's
    Progress.waiting): the moment the wait should end, then None once the request goes."""
    bucket = f"company:{NEWCASTLE_COMPANY}"
    for _ in range(ratelimit.slots_per_window()):
        ratelimit.acquire([bucket])
    told = []
    before = time.time()

    ratelimit.acquire([bucket], on_wait=told.append)

    assert len(told) >= 2 and told[-1] is None
    assert told[0] >= before + ratelimit.WAIT_WORTH_SAYING  # the first says when, at least 2 s ahead
    assert all(until is not None and until >= before for until in told[:-1])  # then what is left
    assert sandbox_clock.now() - before >= 30  # it did wait (on the clock) for the window to move


def test_a_short_pause_is_the_runs_pace_and_is_not_told(app, sandbox_clock):
    told = []
    ratelimit.acquire([f"company:{NEWCASTLE_COMPANY}"], on_wait=told.append)  # a free slot: no wait
    assert told == []
