"""The Sage One AUS page's actions: Sync now is off, with the reason, while a sync of the branch runs,
and the actions are a region the page reads again when a job ends."""
from __future__ import annotations

import uuid
from datetime import timedelta

from portal.extensions import db
from portal.models import Job, JobStatus, Provider, utcnow
from tests import factories


def _connect(world):
    factories.connection(world.branch, Provider.SAGE_ONE_AUS, sage_one_username="newcastle@harbour-auto.test",
                         sage_one_company_id=7, credentials_owner_id=world.owner.id)


def _page(client, world) -> str:
    response = client.get(f"/integrations/sage-one-aus/branches/{world.branch.id}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def _sync_now(body: str) -> str:
    actions = body.split('id="sage-one-aus-actions"', 1)[1].split("</div>", 1)[0]
    return actions.split('<button type="submit" class="btn btn-primary"', 1)[1].split(">Sync now<", 1)[0]


def test_sync_now_is_off_with_the_reason_while_a_sync_of_the_branch_runs(world, auth, client):
    _connect(world)
    auth.login(world.owner)
    assert "disabled" not in _sync_now(_page(client, world))

    db.session.add(Job(id=uuid.uuid4().hex, kind="sage_one_aus.sync", branch_id=world.branch.id,
                       requested_by_id=world.owner.id, status=JobStatus.RUNNING, description="Sync with Sage One AUS",
                       progress_total=10, lease_expires_at=utcnow() + timedelta(hours=1)))
    db.session.commit()
    body = _page(client, world)
    assert 'disabled aria-describedby="sync-now-why"' in _sync_now(body)
    assert "Sync now is off: a sync is running; its progress is shown below." in body


def test_the_actions_are_read_again_when_a_job_ends_without_passing_that_on_to_the_sync_form(world, auth, client):
    _connect(world)
    auth.login(world.owner)
    body = _page(client, world)
    region = body.split('<div class="card-actions"', 1)[1].split(">", 1)[0]
    assert 'id="sage-one-aus-actions"' in region and 'hx-trigger="job-started from:body, job-ended from:body"' in region
    assert 'hx-select="#sage-one-aus-actions"' in region and 'hx-disinherit="*"' in region
