"""Error answers reach the eye: htmx swaps 4xx/5xx fragments where the request targets (or into the
page's alert region when it targets nothing), and an action button is disabled while it runs."""
import pytest
from playwright.sync_api import expect

from portal.extensions import db
from portal.models import Job, Provider
from tests import factories
from tests.browser.conftest import sign_in
from tests.browser.helpers import start_puppet

pytestmark = pytest.mark.browser


@pytest.fixture
def sage_branch(app):
    business = factories.business("Harbour Auto", branches=("Sydney",))
    owner = factories.customer(business, email="owner@harbour-auto.test")
    branch = business.branches[0]
    factories.connection(branch, Provider.SAGE, sage_business_id="b-1", sage_business_name="Harbour Auto Pty Ltd")
    return owner, branch


def test_a_second_sync_while_one_runs_shows_the_409_with_the_running_jobs_progress(page, live_server, sage_branch):
    owner, branch = sage_branch
    sign_in(page, owner.email, factories.PASSWORD)
    other_tab = page.context.new_page()  # opened before the sync starts: its button is still on
    other_tab.goto(f"{live_server}/integrations/sage/branches/{branch.id}")
    page.goto(f"/integrations/sage/branches/{branch.id}")
    sync = page.get_by_role("button", name="Sync contacts")
    with page.expect_response(lambda r: "/sync/contacts" in r.url) as first:
        sync.dblclick()  # disabled while its request runs: a double click queues one job
    assert first.value.status == 202
    running = page.locator("#running")
    expect(running.locator(".job")).to_have_count(1)
    expect(running).to_contain_text("Sync contacts to Sage")
    expect(page.get_by_role("button", name="Sync contacts")).to_be_disabled()  # job-started: off at once
    expect(page.get_by_text("Sync contacts is off")).to_be_visible()

    with other_tab.expect_response(lambda r: "/sync/contacts" in r.url) as second:
        other_tab.get_by_role("button", name="Sync contacts").click()
    assert second.value.status == 409
    elsewhere = other_tab.locator("#running")
    expect(elsewhere.get_by_role("alert")).to_contain_text("Already running. That is already running for this branch")
    expect(elsewhere.locator(".job")).to_have_count(1)  # the running job's progress, shown once
    expect(elsewhere.locator(".job")).to_contain_text("Waiting for a worker")
    assert db.session.scalar(db.select(db.func.count()).select_from(Job)) == 1


def test_a_sage_job_on_a_branch_now_on_sage_one_aus_shows_the_refusal(page, live_server, sage_branch):
    owner, branch = sage_branch
    sign_in(page, owner.email, factories.PASSWORD)
    page.goto(f"/integrations/sage/branches/{branch.id}")
    # Meanwhile (another tab) the branch moved to Sage One AUS.
    connection = branch.connection
    connection.provider = Provider.SAGE_ONE_AUS
    connection.sage_one_username = "newcastle@harbour-auto.test"
    db.session.commit()
    with page.expect_response(lambda r: "/sync/invoices" in r.url) as answer:
        page.get_by_role("button", name="Sync invoices").click()
    assert answer.value.status == 409
    expect(page.locator("#running").get_by_role("alert")).to_contain_text(
        "Not started. This branch is connected to Sage One AUS, not Sage, so nothing was started.")
    assert db.session.scalar(db.select(db.func.count()).select_from(Job)) == 0


def test_a_sage_one_aus_write_in_a_puppet_session_shows_the_403_in_the_page_alerts(page, live_server, app):
    business = factories.business("Harbour Auto", branches=("Newcastle",))
    factories.customer(business, email="owner@harbour-auto.test")
    branch = business.branches[0]
    factories.connection(branch, Provider.SAGE_ONE_AUS, sage_one_username="newcastle@harbour-auto.test",
                         sage_one_company_name="Harbour Auto Newcastle")
    support = factories.support(email="support@portal.test")
    sign_in(page, support.email, factories.PASSWORD)
    start_puppet(page, business.name, "Ticket #7: sync check")
    page.goto(f"/integrations/sage-one-aus/branches/{branch.id}")
    expect(page.get_by_role("button", name="Sync now")).to_be_disabled()
    # The request a hand-made page (or an old tab) would send: htmx, no target of its own.
    with page.expect_response(lambda r: r.url.endswith("/sync")) as answer:
        page.evaluate("url => htmx.ajax('POST', url, {source: document.body})",
                      f"/integrations/sage-one-aus/branches/{branch.id}/sync")
    assert answer.value.status == 403
    alert = page.locator("#page-alerts").get_by_role("alert")
    expect(alert).to_contain_text("Refused: read-only while puppeting.")
    expect(page.get_by_role("heading", name="Newcastle · Sage One AUS")).to_be_visible()  # the page is still there
    assert db.session.scalar(db.select(db.func.count()).select_from(Job)) == 0
