"""Starting by hand begins with a customer search; suggestions match the state; times in the business's zone."""
from __future__ import annotations

from datetime import timedelta

from portal.checklists import matching, runs, scenarios
from portal.extensions import db
from portal.models import ChecklistRun, ConnectionState, JobStatus, Provider, utcnow
from tests import factories
from tests.checklists.helpers import job


def test_a_rate_limited_sage_one_aus_branch_is_offered_the_rate_limit_not_login_changed(app):
    business = factories.business(branches=("Newcastle", "Maitland"))
    limited, locked = business.branches
    # A failed login earlier this hour left a count; the sync then hit Sage One's rate limit.
    factories.connection(limited, Provider.SAGE_ONE_AUS, sage_one_username="nc@x.test", login_failures=2,
                         rate_limited_until=utcnow() + timedelta(minutes=40))
    job(limited, "sage_one_aus.sync", JobStatus.FAILED, error="Rate-limited until 7:18 pm")
    factories.connection(locked, Provider.SAGE_ONE_AUS, sage_one_username="mt@x.test",
                         locked_until=utcnow() + timedelta(hours=3))
    found = {(s.scenario.slug, s.branch.name) for s in matching.for_business(business)}
    assert found == {("rate-limited", "Newcastle"), ("sage-one-aus-login-changed", "Maitland")}


def test_the_start_form_searches_customers_with_htmx_and_without(app, client, auth):
    business = factories.business("Harbour Auto", branches=("Sydney", "Newcastle"))
    factories.business("Other Motors")
    auth.login(factories.support())
    base = "/support/checklists/start?scenario=sage-mass-resync"

    fragment = client.get(f"{base}&q=harb", headers={"HX-Request": "true"})
    text = fragment.get_data(as_text=True)
    assert fragment.status_code == 200 and "<html" not in text and "Harbour Auto" in text
    assert "Other Motors" not in text and f"business_id={business.id}" in text
    assert "HX-Request" in fragment.headers.get("Vary", "")

    page = client.get(f"{base}&q=harb").get_data(as_text=True)
    assert "<html" in page and 'id="q"' in page and 'value="harb"' in page and "Harbour Auto" in page
    assert "business number" not in page

    chosen = client.get(f"{base}&business_id={business.id}").get_data(as_text=True)
    assert "Customer: <strong>Harbour Auto</strong>" in chosen and 'name="branch_id"' in chosen


def test_the_start_form_without_a_scenario_offers_them_and_shows_each_error_by_its_field(app, client, auth):
    business = factories.business("Harbour Auto", branches=("Sydney",))
    factories.connection(business.branches[0], Provider.SAGE)
    auth.login(factories.support())
    assert 'id="q"' in client.get("/support/checklists/start").get_data(as_text=True)

    response = client.post("/support/checklists/start", data={"business_id": business.id})
    page = response.get_data(as_text=True)
    assert response.status_code == 400 and 'id="scenario-error"' in page and "Choose the checklist" in page

    response = client.post("/support/checklists/start", data={"scenario": "sage-void-still-shown",
                                                               "business_id": business.id, "invoice": " "})
    page = response.get_data(as_text=True)
    assert response.status_code == 400 and 'id="invoice-error"' in page and 'aria-invalid="true"' in page

    response = client.post("/support/checklists/start", data={"scenario": "sage-mass-resync"})
    assert response.status_code == 400 and 'id="q-error"' in response.get_data(as_text=True)
    assert db.session.scalar(db.select(db.func.count()).select_from(ChecklistRun)) == 0

    response = client.post("/support/checklists/start", data={"scenario": "sage-mass-resync",
                                                               "business_id": business.id})
    assert response.status_code == 302


def test_run_pages_and_messages_write_times_in_the_business_zone(app, client, auth):
    business = factories.business("Perth Auto", branches=("Perth",))
    business.time_zone = "Australia/Perth"
    until = (utcnow() + timedelta(days=1)).replace(hour=10, minute=18, second=0, microsecond=0)
    factories.connection(business.branches[0], Provider.SAGE, rate_limited_until=until)
    support = factories.support()
    run = runs.start(scenarios.SAGE_RATE_LIMITED, business, None, support)
    message = runs.view(run).suggested_message
    assert "until" in message and "6:18 pm Perth time (AWST)" in message and "UTC" not in message

    auth.login(support)
    page = client.get(f"/support/checklists/runs/{run.id}").get_data(as_text=True)
    assert "6:18 pm" in page and " UTC" not in page.split("<footer")[0]
    assert "Found" in page and ">Fail<" not in page
    text = client.get(f"/support/checklists/runs/{run.id}/diagnostics.txt").get_data(as_text=True)
    assert "Perth time (AWST)" in text and "rate limited until" in text


def test_suggestion_reasons_use_the_business_zone(app):
    business = factories.business("Perth Auto", branches=("Perth",))
    business.time_zone = "Australia/Perth"
    until = (utcnow() + timedelta(days=1)).replace(hour=10, minute=18, second=0, microsecond=0)
    factories.connection(business.branches[0], Provider.SAGE, ConnectionState.CONNECTED, rate_limited_until=until)
    db.session.commit()
    reasons = [s.reason for s in matching.for_business(business)]
    assert any("6:18 pm" in r for r in reasons) and not any("UTC" in r for r in reasons)
