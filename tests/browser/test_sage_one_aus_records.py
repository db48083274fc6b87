"""A customer narrows the Sage One AUS "Waiting or failed" table and pages through it without a reload."""
import re

import pytest
from playwright.sync_api import expect

from portal.extensions import db
from portal.models import SyncState
from tests import factories
from tests.browser.conftest import sign_in

pytestmark = pytest.mark.browser


def test_customer_filters_searches_and_pages_the_waiting_or_failed_table(app, page, live_server):
    business = factories.business("Harbour Auto", branches=("Newcastle",))
    owner = factories.customer(business, email="owner@harbour-auto.test")
    branch = business.branches[0]
    factories.contacts(branch, 40)
    failed = factories.contacts(branch, 3, sync_state=SyncState.FAILED, sync_error="Email address refused")
    failed[0].name = "Zebra Panels"
    db.session.commit()

    sign_in(page, owner.email, factories.PASSWORD)
    page.goto(f"{live_server}/integrations/sage-one-aus/branches/{branch.id}")
    status = page.locator("#sage-one-records .results-status")
    expect(status).to_have_text("Page 1 of 2 · 43 customers")
    page.evaluate("window.__same_document = true")  # gone if anything below reloads the page

    page.locator("#sage-one-records").get_by_role("link", name="Next →").click()
    expect(status).to_have_text("Page 2 of 2 · 43 customers")
    expect(page.locator("#sync-rows tbody tr")).to_have_count(18)
    expect(page).to_have_url(re.compile(r"page=2"))

    page.get_by_label("State").select_option("failed")
    expect(status).to_have_text("Page 1 of 1 · 3 customers")
    expect(page).to_have_url(re.compile(r"state=failed"))

    page.get_by_label("Search").press_sequentially("zebra")
    expect(status).to_have_text("Page 1 of 1 · 1 customer matching “zebra”")
    expect(page.locator("#sync-rows tbody tr")).to_have_text([re.compile(r"Zebra Panels[\s\S]*Email address refused")])
    expect(page.get_by_label("Search")).to_be_focused()
    expect(page).to_have_url(re.compile(r"q=zebra"))

    page.get_by_label("Show").select_option("invoices")
    expect(page.locator("#sage-one-records .empty-state")).to_contain_text("No failed invoice matches “zebra”")
    assert page.evaluate("window.__same_document") is True

    page.reload()  # the pushed URL is a bookmark of the same view
    expect(page.get_by_label("Show")).to_have_value("invoices")
    expect(page.locator("#sage-one-records .empty-state")).to_contain_text("No failed invoice matches “zebra”")

    page.go_back()  # the history cache is off for this table, so Back asks the server for that view again
    expect(page).to_have_url(re.compile(r"kind=customers&state=failed&q=zebra$"))
    expect(status).to_have_text("Page 1 of 1 · 1 customer matching “zebra”")
    expect(page.get_by_label("Show")).to_have_value("customers")
