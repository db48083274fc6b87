"""Checklist pages: access matrix, start from a link, suggestions, and actions through the same guards."""
from __future__ import annotations

from datetime import timedelta

import pytest

from portal.checklists import runs, scenarios
from portal.extensions import db
from portal.models import (
    AuditEvent,
    ChecklistRun,
    ConnectionState,
    Job,
    JobStatus,
    Provider,
    RunStatus,
    utcnow,
)
from tests import factories
from tests.checklists.helpers import job, start_puppet


@pytest.fixture
def world(app):
    business = factories.business(branches=("Sydney", "Newcastle"))
    factories.connection(business.branches[0], Provider.SAGE, mass_resync_started_at=utcnow(), mass_resync_total=4,
                         sage_business_id="b" * 32, sage_business_name="Harbour Auto Pty Ltd")
    factories.connection(business.branches[1], Provider.SAGE_ONE_AUS, ConnectionState.NEEDS_REAUTH,
                         sage_one_username="nc@harbour.test")
    factories.contacts(business.branches[0], 4)
    other = factories.business()
    return {
        "business": business,
        "customer": factories.customer(business),
        "other_customer": factories.customer(other),
        "support": factories.support(),
    }


def _routes(run_id: int, business_id: int):
    base = "/support/checklists"
    return [
        ("GET", f"{base}/", {}),
        ("GET", f"{base}/start?scenario=sage-mass-resync&business_id={business_id}", {}),
        ("POST", f"{base}/start", {"scenario": "sage-mass-resync", "business_id": business_id}),
        ("GET", f"{base}/runs/{run_id}", {}),
        ("GET", f"{base}/runs/{run_id}/diagnostics.txt", {}),
        ("POST", f"{base}/runs/{run_id}/notes", {"step": "flagged", "note": "hello"}),
        ("POST", f"{base}/runs/{run_id}/recheck", {}),
        ("POST", f"{base}/runs/{run_id}/answer", {"step": "failures_reviewed", "value": "yes"}),
        ("POST", f"{base}/runs/{run_id}/action", {"step": "rerun"}),
        ("POST", f"{base}/runs/{run_id}/pause", {}),
        ("POST", f"{base}/runs/{run_id}/resume", {}),
        ("POST", f"{base}/runs/{run_id}/finish", {"outcome": "escalated"}),
        ("GET", f"{base}/stats", {}),
    ]


@pytest.mark.parametrize("who", ["anonymous", "customer", "other_customer"])
def test_only_support_reaches_any_checklist_route(world, client, auth, who):
    business = world["business"]
    run = runs.start(scenarios.SAGE_MASS_RESYNC, business, business.branches[0], world["support"])
    if who != "anonymous":
        auth.login(world[who])
    for method, url, data in _routes(run.id, business.id):
        response = client.open(url, method=method, data=data)
        if who == "anonymous":
            assert response.status_code == 302 and "/login" in response.headers["Location"], (method, url)
        else:
            assert response.status_code == 403, (method, url, response.status_code)
    db.session.expire_all()
    assert db.session.scalar(db.select(db.func.count()).select_from(ChecklistRun)) == 1
    assert db.session.get(ChecklistRun, run.id).status == RunStatus.IN_PROGRESS


@pytest.mark.parametrize("puppeting", [False, True])
def test_support_uses_every_checklist_route_also_while_puppeting(world, client, auth, puppeting):
    business = world["business"]
    run = runs.start(scenarios.SAGE_MASS_RESYNC, business, business.branches[0], world["support"])
    auth.login(world["support"])
    if puppeting:
        start_puppet(client, business, world["customer"])
    for method, url, data in _routes(run.id, business.id):
        response = client.open(url, method=method, data=data)
        # 400 is a refusal of the step for this run's state (e.g. a question off the path), 403 an action
        # refused by its guard; neither is an access refusal.
        assert response.status_code in (200, 302, 400, 403), (method, url, response.status_code)
        if "action" not in url:
            assert response.status_code != 403, (method, url)


def test_the_sage_one_aus_page_link_opens_a_start_form_that_starts_the_run(world, client, auth):
    business = world["business"]
    auth.login(world["support"])
    start_puppet(client, business, world["customer"])
    form = client.get("/support/checklists/start?scenario=sage-one-aus-puppet-auth"
                      f"&branch_id={business.branches[1].id}")
    assert form.status_code == 200
    page = form.get_data(as_text=True)
    assert business.name in page and 'name="branch_id"' in page
    response = client.post("/support/checklists/start", data={
        "scenario": "sage-one-aus-puppet-auth", "business_id": business.id, "branch_id": business.branches[1].id})
    assert response.status_code == 302
    run = db.session.scalars(db.select(ChecklistRun)).one()
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "You are puppeting the customer" in page
    view = runs.view(run)
    assert view.walk.state("puppet").value == "warn"


def test_an_unknown_scenario_is_not_found(world, client, auth):
    auth.login(world["support"])
    assert client.get("/support/checklists/start?scenario=nope").status_code == 404


def test_the_customer_page_suggests_the_matching_checklists(world, client, auth):
    business = world["business"]
    auth.login(world["support"])
    page = client.get(f"/support/customers/{business.id}").get_data(as_text=True)
    assert "Troubleshooting checklists" in page
    assert scenarios.SAGE_MASS_RESYNC.title in page
    assert "authenticate Sage One AUS while puppeted" in page
    assert scenarios.SAGE_RATE_LIMITED.title not in page


def test_suggestions_follow_the_state(app):
    from portal.checklists import matching

    business = factories.business(branches=("A", "B", "C"))
    a, b, c = business.branches
    factories.connection(a, Provider.SAGE, ConnectionState.NEEDS_REAUTH,
                         rate_limited_until=utcnow() + timedelta(hours=1))
    factories.connection(b, Provider.SAGE_ONE_AUS, ConnectionState.CREDENTIALS_REJECTED, sage_one_username="x@y.test")
    factories.connection(c, Provider.SAGE)
    contact = factories.contacts(c, 1)[0]
    invoice = factories.invoice(c, contact, sage_id="s1")
    job(c, "sage.void_invoice", JobStatus.FINISHED, params={"invoice_id": invoice.id},
        result={"outcome": "missing_in_sage", "summary": "missing"})
    job(c, "sage.sync_contacts", JobStatus.FAILED, error="Sage said no")
    found = {(s.scenario.slug, s.branch.name) for s in matching.for_business(business)}
    assert found == {("sage-refresh-token-died", "A"), ("rate-limited", "A"), ("sage-one-aus-login-changed", "B"),
                     ("sage-void-still-shown", "C"), ("sync-failed-or-stuck", "C")}


def _failed_sync_run(world, branch, support):
    job(branch, "sync", JobStatus.FAILED, error="Stopped")
    run = runs.start(scenarios.SYNC_FAILED_OR_STUCK, world["business"], branch, support)
    runs.answer(run, "cause_known", "no", support)
    assert runs.view(run).walk.current.step.id == "rerun"
    return run


def test_a_sage_one_aus_action_from_a_checklist_in_a_puppet_session_is_refused(world, client, auth):
    business, support = world["business"], world["support"]
    branch = business.branches[1]
    run = _failed_sync_run(world, branch, support)
    jobs_before = db.session.scalar(db.select(db.func.count()).select_from(Job))
    auth.login(support)
    start_puppet(client, business, world["customer"])

    response = client.post(f"/support/checklists/runs/{run.id}/action", data={"step": "rerun"})

    assert response.status_code == 403
    assert "change a Sage One AUS connection while puppeting" in response.get_data(as_text=True)
    assert db.session.scalar(db.select(db.func.count()).select_from(Job)) == jobs_before
    kinds = set(db.session.scalars(db.select(AuditEvent.kind).where(AuditEvent.business_id == business.id)))
    assert {"puppet.write_refused", "checklist.action_refused"} <= kinds
    assert runs.view(run).walk.state("rerun").value == "refused"


def test_a_sage_one_aus_action_outside_a_puppet_session_is_refused_for_want_of_the_customers_key(world, client, auth):
    business, support = world["business"], world["support"]
    run = _failed_sync_run(world, business.branches[1], support)
    auth.login(support)
    response = client.post(f"/support/checklists/runs/{run.id}/action", data={"step": "rerun"})
    assert response.status_code == 403
    assert "key that only the customer" in response.get_data(as_text=True)
    assert db.session.scalar(db.select(db.func.count()).select_from(Job).where(Job.kind.like("sage_one_aus%"))) == 0


def test_a_sage_action_outside_a_puppet_session_asks_for_one(world, client, auth):
    business, support = world["business"], world["support"]
    run = _failed_sync_run(world, business.branches[0], support)
    auth.login(support)
    response = client.post(f"/support/checklists/runs/{run.id}/action", data={"step": "rerun"})
    assert response.status_code == 403
    assert "Open a puppet session" in response.get_data(as_text=True)
    assert db.session.scalar(db.select(db.func.count()).select_from(Job).where(Job.kind.like("sage.%"))) == 0


def test_a_sage_action_in_a_puppet_session_enqueues_the_integrations_job_audited_with_both_people(
        world, client, auth):
    business, support, customer = world["business"], world["support"], world["customer"]
    run = _failed_sync_run(world, business.branches[0], support)
    auth.login(support)
    start_puppet(client, business, customer)

    response = client.post(f"/support/checklists/runs/{run.id}/action", data={"step": "rerun"})

    assert response.status_code == 302
    queued = db.session.scalars(db.select(Job).where(Job.kind == "sage.sync_contacts")).one()
    assert queued.requested_by_id == customer.id and queued.puppeteer_id == support.id
    assert queued.params["checklist_run_id"] == run.id
    events = {e.kind: e for e in db.session.scalars(db.select(AuditEvent).where(AuditEvent.business_id == business.id))}
    requested = events["sage.sync_contacts_requested"]
    assert requested.actor_id == support.id and requested.subject_user_id == customer.id
    assert events["checklist.action"].details["job_id"] == queued.id
    assert "puppet.write" in events
    # A second click while it is queued doesn't start a second job.
    client.post(f"/support/checklists/runs/{run.id}/action", data={"step": "rerun"})
    assert db.session.scalar(db.select(db.func.count()).select_from(Job).where(Job.kind == "sage.sync_contacts")) == 1


def test_finishing_from_the_page_shows_the_message_and_diagnostics(world, client, auth):
    business, support = world["business"], world["support"]
    auth.login(support)
    response = client.post("/support/checklists/start", data={
        "scenario": "sage-one-aus-login-changed", "business_id": business.id, "branch_id": business.branches[1].id})
    run_url = response.headers["Location"]
    run = db.session.scalars(db.select(ChecklistRun)).one()
    client.post(f"/support/checklists/runs/{run.id}/answer", data={"step": "which_change", "value": "new_username"})
    page = client.get(run_url).get_data(as_text=True)
    assert "nc@harbour.test" in page and "Customer action needed" in page
    response = client.post(f"/support/checklists/runs/{run.id}/finish",
                           data={"outcome": "customer_action", "message": "Hi, please reconnect with the new login."})
    assert response.status_code == 302
    page = client.get(run_url).get_data(as_text=True)
    assert "Hi, please reconnect with the new login." in page
    assert '<textarea id="diagnostics"' in page and "readonly" in page
    text = client.get(f"/support/checklists/runs/{run.id}/diagnostics.txt")
    assert text.mimetype == "text/plain" and f"Checklist #{run.id}" in text.get_data(as_text=True)


def test_bad_input_changes_nothing_and_says_why(world, client, auth):
    business, support = world["business"], world["support"]
    run = runs.start(scenarios.SAGE_ONE_AUS_LOGIN_CHANGED, business, business.branches[1], support)
    auth.login(support)
    response = client.post(f"/support/checklists/runs/{run.id}/answer", data={"step": "which_change", "value": "??"})
    assert response.status_code == 400 and "Choose one of the answers" in response.get_data(as_text=True)
    response = client.post(f"/support/checklists/runs/{run.id}/finish", data={"outcome": "resolved"})
    assert response.status_code == 400 and "required steps" in response.get_data(as_text=True)
    assert db.session.get(ChecklistRun, run.id).status == RunStatus.IN_PROGRESS


def test_the_stats_page_has_an_empty_state_and_counts(world, client, auth):
    auth.login(world["support"])
    assert "nothing to count" in client.get("/support/checklists/stats").get_data(as_text=True)
    business = world["business"]
    run = runs.start(scenarios.SAGE_MASS_RESYNC, business, business.branches[0], world["support"])
    runs.finish(run, world["support"], "resolved", "")
    page = client.get("/support/checklists/stats").get_data(as_text=True)
    assert scenarios.SAGE_MASS_RESYNC.title in page and "100%" in page
