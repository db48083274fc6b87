"""Sage One AUS syncs at sign-in: chosen by the customer, run with the key their sign-in opened,
never while they are away and never by support."""
from __future__ import annotations

from portal.extensions import db
from portal.models import Connection, Job
from tests import factories
from tests.integrations.sage_one_aus.conftest import company, connect, start_puppet


def _jobs():
    return db.session.scalars(db.select(Job).where(Job.kind == "sage_one_aus.sync")).all()


def test_what_is_waiting_is_sent_when_the_owner_signs_in_if_they_chose_it(
        client, auth, world, sandbox, drain_jobs):
    auth.login(world.owner)
    assert connect(client, world.branch).status_code in (302, 303)
    url = f"/integrations/sage-one-aus/branches/{world.branch.id}/sync-on-sign-in"
    page = client.get(f"/integrations/sage-one-aus/branches/{world.branch.id}").get_data(as_text=True)
    assert "can't sync while you're away" in page
    assert client.post(url, data={"on": "yes"}).status_code == 302
    assert db.session.scalar(db.select(Connection)).sync_on_sign_in is True
    auth.logout()

    waiting = factories.contacts(world.branch, 3)
    assert _jobs() == []  # nothing runs while they are away
    auth.login(world.owner)
    [job] = _jobs()
    assert job.requested_by_id == world.owner.id
    drain_jobs()
    names = {c["Name"] for c in company(sandbox).customers.values()}
    assert {c.name for c in waiting} <= names

    # Signing in with nothing waiting queues nothing more; with the choice off, nothing either.
    auth.logout()
    auth.login(world.owner)
    assert len(_jobs()) == 1
    client.post(url, data={"on": "no"})
    auth.logout()
    factories.contacts(world.branch, 1)
    auth.login(world.owner)
    assert len(_jobs()) == 1


def test_support_cannot_switch_it_on_in_a_puppet_session(client, auth, world, sandbox):
    auth.login(world.owner)
    connect(client, world.branch)
    auth.logout()
    auth.login(factories.support())
    start_puppet(client, world.business, world.owner)
    response = client.post(f"/integrations/sage-one-aus/branches/{world.branch.id}/sync-on-sign-in",
                           data={"on": "yes"})
    assert response.status_code == 403
    db.session.expire_all()
    assert db.session.scalar(db.select(Connection)).sync_on_sign_in is False
