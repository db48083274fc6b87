"""After a full connect-and-sync, neither the Sage One password nor the customer's private key is
anywhere it could leak: the database file, any Redis key, the logs (web and worker) or a page."""
from __future__ import annotations

import base64
import logging
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from portal import keys
from portal.extensions import db
from portal.models import Job, JobStatus
from tests import factories
from tests.integrations.sage_one_aus.conftest import MULTI_USERNAME, company, connect, sync

SECRET = "Zq9!unusual-sage-one-secret"


def _needles(private_key: bytes) -> dict[str, bytes]:
    return {
        "password": SECRET.encode(),
        "private key": private_key,
        "private key (base64)": base64.b64encode(private_key),
        "private key (urlsafe base64)": base64.urlsafe_b64encode(private_key),
        "private key (urlsafe base64, unpadded)": base64.urlsafe_b64encode(private_key).rstrip(b"="),
        "private key (hex)": private_key.hex().encode(),
    }


def _redis_dump(redis_client) -> bytes:
    parts = []
    for name in redis_client.scan_iter(count=1000):
        kind = redis_client.type(name)
        parts.append(name)
        if kind == b"string":
            parts.append(redis_client.get(name) or b"")
        elif kind == b"hash":
            for k, v in redis_client.hgetall(name).items():
                parts += [k, v]
        elif kind == b"list":
            parts += redis_client.lrange(name, 0, -1)
        elif kind == b"set":
            parts += list(redis_client.smembers(name))
        elif kind == b"zset":
            parts += [member for member, _ in redis_client.zrange(name, 0, -1, withscores=True)]
        elif kind == b"stream":
            for _, fields in redis_client.xrange(name):
                for k, v in fields.items():
                    parts += [k, v]
    return b"\n".join(p if isinstance(p, bytes) else str(p).encode() for p in parts)


@pytest.fixture
def every_logger_enabled():
    """Alembic's fileConfig (run by the migration fixture) disables existing loggers; turn them back on."""
    disabled = [lg for lg in logging.root.manager.loggerDict.values()
                if isinstance(lg, logging.Logger) and lg.disabled]
    for logger in disabled:
        logger.disabled = False
    yield
    for logger in disabled:
        logger.disabled = True


def test_no_password_or_private_key_in_the_database_redis_logs_or_pages(
        app, world, client, auth, sandbox, drain_jobs, redis_client, caplog, every_logger_enabled):
    caplog.set_level(logging.DEBUG)
    sandbox.state.set_sage_one_password(MULTI_USERNAME, SECRET)
    factories.contacts(world.branch, 3)
    pages = []

    pages.append(auth.login(world.owner))
    pages.append(client.get(f"/integrations/sage-one-aus/branches/{world.branch.id}/connect"))
    pages.append(connect(client, world.branch, username=MULTI_USERNAME, password=SECRET))  # company choice
    pending_redis = _redis_dump(redis_client)  # the password waits encrypted while a company is picked
    pages.append(client.post(f"/integrations/sage-one-aus/branches/{world.branch.id}/connect/company",
                             data={"company_id": "20002"}))
    pages.append(sync(client, world.branch))
    queued_redis = _redis_dump(redis_client)  # the sealed key waits in the RQ job
    drain_jobs()
    pages.append(client.get(f"/integrations/sage-one-aus/branches/{world.branch.id}"))
    pages.append(client.get("/"))

    job = db.session.scalar(db.select(Job))
    assert job.status == JobStatus.FINISHED, job.error
    assert len(company(sandbox, 20002).customers) == 3

    private_key = keys.unwrap_private_key(world.owner, factories.PASSWORD)
    places = {
        "redis while picking a company": pending_redis,
        "redis while the job was queued": queued_redis,
        "redis afterwards": _redis_dump(redis_client),
        "logs": "\n".join(r.getMessage() + str(r.args) + (r.exc_text or "") for r in caplog.records).encode(),
        "pages": b"\n".join(p.get_data() for p in pages),
        "job rows": repr([(j.params, j.result, j.error, j.description)
                          for j in db.session.scalars(db.select(Job))]).encode(),
    }
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    if url.drivername.startswith("sqlite"):
        db.session.remove()
        db.engine.dispose()
        files = [Path(url.database), Path(f"{url.database}-wal"), Path(f"{url.database}-journal")]
        places["database file"] = b"".join(f.read_bytes() for f in files if f.exists())
        assert places["database file"], "the database file was not found"
    assert any(r.name.startswith("urllib3") for r in caplog.records), "the HTTP client's debug log was not captured"
    assert any(r.name.startswith("rq.worker") for r in caplog.records), "the worker's log was not captured"

    for place, haystack in places.items():
        for what, needle in _needles(private_key).items():
            assert needle not in haystack, f"{what} found in {place}"
