"""The dashboard stays true while a job runs and when it ends: a sync started from a branch's card runs
to the end in a real worker, and the card updates its last-sync line and counts without a reload
(the progress partial's `job-ended` event makes the card re-fetch itself)."""
import pytest
from playwright.sync_api import expect

from portal.extensions import db
from portal.models import Job
from tests import factories
from tests.browser.conftest import sign_in
from tests.integrations.sage.conftest import connect

pytestmark = pytest.mark.browser


def test_a_sync_from_the_card_runs_to_the_end_and_the_card_updates_without_a_reload(
        app, client, auth, sandbox, page, live_worker):
    business = factories.business("Harbour Auto", branches=("Sydney",))
    owner = factories.customer(business, email="owner@harbour-auto.test")
    branch = business.branches[0]
    factories.contacts(branch, 3)
    auth.login(owner)
    connect(client, sandbox, branch.id)

    sign_in(page, owner.email, factories.PASSWORD)
    card = page.locator(f"#branch-card-{branch.id}")
    expect(card.locator(".state")).to_have_text("Connected")
    expect(card.locator(".last-sync").first).to_contain_text("Contacts: never yet")
    expect(card.locator(".card-counts")).to_contain_text("3 pending · 0 failed")
    navigations = []
    page.on("framenavigated", lambda frame: frame == page.main_frame and navigations.append(frame.url))

    sync = card.get_by_role("button", name="Sync contacts")
    with page.expect_response(lambda r: "/card/sync/" in r.url) as started:
        sync.dblclick()  # disabled while its request runs: a double click queues one job
    assert started.value.status == 202
    expect(card.get_by_role("button", name="Sync contacts")).to_be_disabled()
    expect(card.get_by_text("Sync contacts is off: it is running now")).to_be_visible()

    contacts_line = card.locator(".last-sync").first
    expect(contacts_line).to_contain_text("Finished", timeout=30_000)
    expect(contacts_line).to_contain_text("Sent 3 contacts to Sage: 3 created")
    expect(card.locator(".card-counts")).to_have_text("Nothing is waiting or failed.")
    expect(card.get_by_role("button", name="Sync contacts")).to_be_enabled()
    assert navigations == [], navigations  # all of it without a reload
    assert db.session.scalar(db.select(db.func.count()).select_from(Job)) == 1


def test_the_sage_page_regions_catch_up_when_a_sync_ends_without_a_reload(
        app, client, auth, sandbox, page, live_worker):
    business = factories.business("Harbour Auto", branches=("Sydney",))
    owner = factories.customer(business, email="owner@harbour-auto.test")
    branch = business.branches[0]
    factories.contacts(branch, 3)
    auth.login(owner)
    connect(client, sandbox, branch.id)

    sign_in(page, owner.email, factories.PASSWORD)
    page.goto(f"/integrations/sage/branches/{branch.id}")
    expect(page.locator("#last-sync")).to_contain_text("0 synced · 3 pending · 0 failed")
    expect(page.locator("#history")).to_contain_text("No jobs yet.")
    expect(page.locator("#sage-records tbody tr")).to_have_count(3)
    page.evaluate("window.notReloaded = true")
    address = page.url

    with page.expect_response(lambda r: "/sync/contacts" in r.url) as started:
        page.get_by_role("button", name="Sync contacts").click()
    assert started.value.status == 202
    # At once (job-started), not only when it ends: the history lists the run.
    expect(page.locator("#history")).to_contain_text("Sync contacts to Sage", timeout=5_000)

    expect(page.locator("#last-sync")).to_contain_text("3 synced · 0 pending · 0 failed", timeout=30_000)
    expect(page.locator("#last-sync")).to_contain_text("Sent 3 contacts to Sage: 3 created")
    expect(page.locator("#history")).to_contain_text("Sync contacts to Sage")
    expect(page.locator("#sage-records")).to_contain_text("Nothing")  # the list left empty by the sync
    expect(page.locator("#last-sync")).to_have_count(1)  # swapped in place, never nested
    assert page.evaluate("window.notReloaded === true") and page.url == address  # no reload, no new address
