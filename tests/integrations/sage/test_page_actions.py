"""The Sage page's actions: a sync button is off, with the reason, while its sync runs, and the actions
are a region the page reads again when a job ends (so the button comes back by itself)."""
from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest

from portal.extensions import db
from portal.models import Job, JobStatus, Provider, utcnow
from tests import factories


@pytest.fixture
def shop(app):
    business = factories.business("Harbour Auto", branches=("Sydney",))
    owner = factories.customer(business, email="owner@harbour-auto.test")
    branch = business.branches[0]
    factories.connection(branch, Provider.SAGE, sage_business_id="b-1", sage_business_name="Harbour Auto Pty Ltd",
                         connected_by_id=owner.id, token_issued_at=utcnow())
    return branch, owner


def _page(client, branch) -> str:
    response = client.get(f"/integrations/sage/branches/{branch.id}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def _button(body: str, label: str) -> str:
    match = re.search(r'<button type="submit" class="btn"([^>]*)>' + label + "</button>", body)
    assert match, label
    return match.group(1)


def test_a_sync_button_is_off_with_the_reason_while_its_sync_runs(shop, auth, client):
    branch, owner = shop
    auth.login(owner)
    body = _page(client, branch)
    assert "disabled" not in _button(body, "Sync contacts") and "disabled" not in _button(body, "Sync invoices")

    db.session.add(Job(id=uuid.uuid4().hex, kind="sage.sync_contacts", branch_id=branch.id, requested_by_id=owner.id,
                       status=JobStatus.RUNNING, description="Sync contacts to Sage", progress_total=10,
                       lease_expires_at=utcnow() + timedelta(hours=1)))
    db.session.commit()
    body = _page(client, branch)
    assert "disabled" in _button(body, "Sync contacts") and "disabled" not in _button(body, "Sync invoices")
    assert "Sync contacts is off: it is running now; the progress is shown below." in body


def test_the_actions_are_read_again_when_a_job_ends_without_passing_that_on_to_the_sync_forms(shop, auth, client):
    branch, owner = shop
    auth.login(owner)
    body = _page(client, branch)
    region = body.split('id="sage-actions"', 1)[1].split(">", 1)[0]
    assert 'hx-trigger="job-started from:body, job-ended from:body"' in region and 'hx-select="#sage-actions"' in region
    assert 'hx-disinherit="*"' in region
