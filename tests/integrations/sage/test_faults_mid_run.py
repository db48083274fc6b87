"""Faults in the middle of a run, each leaving every record in Sage exactly once and saying what
happened: the access token expiring, the refresh token revoked, the database locked for a while."""
from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter

import pytest
from sqlalchemy.engine import make_url

from portal.extensions import db
from portal.models import ConnectionState, Contact, Job, JobStatus, SyncState
from tests import factories
from tests.integrations.sage.conftest import connect, sage_contacts


@pytest.fixture
def app_settings(app_settings):
    return {**app_settings, "SAGE_RATE_LIMIT_PER_MINUTE": 0, "SAGE_SYNC_BATCH_SIZE": 10}


@pytest.fixture
def ready(client, auth, workshop, sandbox):
    sandbox.state.set_sage_rate_limit(None)
    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id)
    return workshop


def _sync(client, workshop) -> Job:
    client.post(f"/integrations/sage/branches/{workshop.head_office_id}/sync/contacts")
    return db.session.scalars(db.select(Job).order_by(Job.created_at.desc())).first()


def _in_sage_once(sandbox, rows):
    references = Counter(c["reference"] for c in sage_contacts(sandbox))
    assert max(references.values(), default=1) == 1
    return set(references)


def _advance_during_run(sandbox, seconds: float, after: float = 0.3):
    """Move the sandbox clock (token lifetimes) forward while the run is under way."""
    timer = threading.Timer(after, sandbox.state.advance_clock, args=(seconds,))
    timer.start()
    return timer


def test_an_access_token_expiring_mid_run_is_refreshed_and_the_run_finishes(ready, client, sandbox, run_jobs):
    rows = factories.contacts(ready.head_office, 40)
    sandbox.state.set_latency(20)
    timer = _advance_during_run(sandbox, 301)  # every access token Sage issued before now is dead
    job = _sync(client, ready)
    run_jobs()
    timer.join()
    job = db.session.get(Job, job.id)
    assert job.status == JobStatus.FINISHED, job.error
    assert _in_sage_once(sandbox, rows) == {c.reference for c in rows}
    assert ready.connection().state == ConnectionState.CONNECTED


def test_a_refresh_token_revoked_mid_run_moves_the_branch_to_sign_in_and_the_rest_stays_pending(
        ready, client, sandbox, run_jobs):
    rows = factories.contacts(ready.head_office, 40)
    sandbox.state.set_latency(20)

    def revoke_and_expire():
        with sandbox.state.lock:
            for token in sandbox.state.refresh_tokens.values():
                token.revoked = True  # the customer removed the app in Sage
        sandbox.state.advance_clock(301)

    timer = threading.Timer(0.3, revoke_and_expire)
    timer.start()
    job = _sync(client, ready)
    run_jobs()
    timer.join()
    job = db.session.get(Job, job.id)
    assert job.status == JobStatus.FAILED and "reconnect to sage" in job.error.lower()
    assert ready.connection().state == ConnectionState.NEEDS_REAUTH
    sent = _in_sage_once(sandbox, rows)
    pending = {c.reference for c in db.session.scalars(db.select(Contact).where(
        Contact.sync_state != SyncState.SYNCED))}
    assert sent and pending and sent.isdisjoint(pending) and sent | pending == {c.reference for c in rows}


def test_a_database_locked_for_a_few_seconds_delays_the_run_and_loses_nothing(
        ready, client, sandbox, run_jobs, database_url):
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's whole-database lock; PostgreSQL locks rows")
    rows = factories.contacts(ready.head_office, 30)
    sandbox.state.set_latency(20)
    path = make_url(database_url).database

    def lock_for_a_while():
        conn = sqlite3.connect(path, timeout=10)
        conn.execute("BEGIN EXCLUSIVE")
        time.sleep(2.5)  # under the driver's 5 s wait
        conn.rollback()
        conn.close()

    locker = threading.Timer(0.3, lock_for_a_while)
    locker.start()
    job = _sync(client, ready)
    run_jobs()
    locker.join()
    job = db.session.get(Job, job.id)
    assert job.status == JobStatus.FINISHED, job.error
    assert _in_sage_once(sandbox, rows) == {c.reference for c in rows}
