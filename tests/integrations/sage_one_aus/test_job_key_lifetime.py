"""A Sage One AUS job's sealed private key does not outlive its seal: RQ keeps a job's arguments
for a day after it finishes (a week when it fails), so the arguments carry only a reference and the
seal waits in a Redis key of its own, which expires with the seal and is deleted when the job takes
it. After a job, finished, failed or killed (SIGKILL of a real worker mid-run), no value of any
type anywhere in Redis opens as a seal, even with the app key and no age limit."""
from __future__ import annotations

import base64
import re
import time
import zlib

import pytest
from cryptography.fernet import Fernet, InvalidToken

from portal import keys
from portal.extensions import db
from portal.models import Contact, Job, JobStatus, SyncState
from tests import factories
from tests.integrations.sage_one_aus.conftest import USERNAME, connect, sync
from tests.workers import kill_hard, start_worker

FERNET_TOKEN = re.compile(rb"gAAAAA[A-Za-z0-9_\-]{20,}={0,2}")


def _values(redis_client):
    """Every value in Redis, of every type, with its key."""
    for name in redis_client.scan_iter(count=1000):
        kind = redis_client.type(name)
        if kind == b"string":
            yield name, redis_client.get(name) or b""
        elif kind == b"hash":
            for field, value in redis_client.hgetall(name).items():
                yield name, field
                yield name, value
        elif kind == b"list":
            for value in redis_client.lrange(name, 0, -1):
                yield name, value
        elif kind == b"set":
            for value in redis_client.smembers(name):
                yield name, value
        elif kind == b"zset":
            for value, _ in redis_client.zrange(name, 0, -1, withscores=True):
                yield name, value
        elif kind == b"stream":
            for _, fields in redis_client.xrange(name):
                for field, value in fields.items():
                    yield name, field
                    yield name, value


def _candidates(value: bytes):
    """The value itself, and every Fernet token in it or in its zlib-decompressed form (RQ's job data)."""
    yield value
    texts = [value]
    try:
        texts.append(zlib.decompress(value))
    except zlib.error:
        pass
    for text in texts:
        yield from FERNET_TOKEN.findall(text)


def _seals_that_open(redis_client, private_key: bytes) -> list[bytes]:
    """The Redis keys holding anything that opens, with the app key and no age limit, to the private key."""
    sealer = Fernet(base64.urlsafe_b64encode(keys._app_key("job-seal")))
    found = []
    for name, value in _values(redis_client):
        for candidate in _candidates(value):
            try:
                opened = sealer.decrypt(candidate)
            except (InvalidToken, ValueError, TypeError):
                continue
            if opened == private_key and name not in found:
                found.append(name)
    return found


@pytest.fixture
def connected(world, client, auth, sandbox):
    auth.login(world.owner)
    assert connect(client, world.branch).status_code == 302
    return world


def _private_key(world) -> bytes:
    return keys.unwrap_private_key(world.owner, factories.PASSWORD)


def test_a_queued_job_holds_only_a_reference_and_its_seal_expires_with_it(connected, client, redis_client, app):
    factories.contacts(connected.branch, 1)
    sync(client, connected.branch)

    holders = _seals_that_open(redis_client, _private_key(connected))
    assert len(holders) == 1 and holders[0].startswith(b"portal:job-key:")  # not the RQ job's hash
    assert 0 < redis_client.ttl(holders[0]) <= app.config["JOB_SEAL_SECONDS"]


def test_after_a_finished_job_nothing_in_redis_opens_the_key(connected, client, sandbox, drain_jobs, redis_client):
    factories.contacts(connected.branch, 2)
    sync(client, connected.branch)
    drain_jobs()

    job = db.session.scalar(db.select(Job))
    assert job.status == JobStatus.FINISHED, job.error
    assert redis_client.exists(f"rq:job:{job.id}")  # RQ keeps the job (and its arguments) for a day
    assert _seals_that_open(redis_client, _private_key(connected)) == []


def test_after_a_failed_job_nothing_in_redis_opens_the_key(connected, client, sandbox, drain_jobs, redis_client):
    factories.contacts(connected.branch, 2)
    sandbox.state.set_sage_one_password(USERNAME, "changed-on-sage")
    sync(client, connected.branch)
    drain_jobs()

    job = db.session.scalar(db.select(Job))
    assert job.status == JobStatus.FAILED
    assert redis_client.exists(f"rq:job:{job.id}")  # kept for a week
    assert _seals_that_open(redis_client, _private_key(connected)) == []


def test_a_job_that_ends_before_taking_its_key_still_deletes_it(connected, client, drain_jobs, redis_client):
    factories.contacts(connected.branch, 1)
    sync(client, connected.branch)
    db.session.execute(db.delete(Job))  # its row is gone: the job ends at once, without running its body
    db.session.commit()
    drain_jobs()

    assert _seals_that_open(redis_client, _private_key(connected)) == []


# --- a worker killed mid-job ----------------------------------------------------------------------------


def test_after_a_worker_is_killed_mid_job_nothing_in_redis_opens_the_key(
        connected, client, sandbox, redis_client, app_settings, tmp_path):
    factories.contacts(connected.branch, 30)
    sandbox.state.set_latency(150)
    sync(client, connected.branch)
    worker = start_worker(app_settings, tmp_path / "worker.log")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            db.session.expire_all()
            if db.session.scalar(db.select(db.func.count()).select_from(Contact)
                                 .where(Contact.sync_state == SyncState.SYNCED)):
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the job did not start: " + (tmp_path / "worker.log").read_text()[-2000:])
        kill_hard(worker)  # mid-run, with a request to Sage in flight
    finally:
        if worker.poll() is None:
            kill_hard(worker)
        sandbox.state.set_latency(0)
        time.sleep(0.5)  # the request in flight still lands in the sandbox; let it, before the next test's reset

    job = db.session.scalar(db.select(Job))
    db.session.refresh(job)
    assert job.status == JobStatus.RUNNING  # killed: nobody ended it
    assert redis_client.exists(f"rq:job:{job.id}")
    assert _seals_that_open(redis_client, _private_key(connected)) == []
