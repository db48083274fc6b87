"""A customer connects a branch to Sage One AUS, syncs it, and sees the rows land in the sandbox."""
import re

import pytest
from playwright.sync_api import expect

from tests import factories
from tests.browser.conftest import sign_in

pytestmark = pytest.mark.browser


def test_customer_connects_sage_one_aus_syncs_and_the_rows_land_in_the_sandbox(app, sandbox, page, live_worker):
    business = factories.business("Harbour Auto", branches=("Newcastle",))
    owner = factories.customer(business, email="owner@harbour-auto.test")
    branch = business.branches[0]
    contacts = factories.contacts(branch, 3)
    factories.invoice(branch, contacts[0], amount="220.00")

    sign_in(page, owner.email, factories.PASSWORD)
    page.get_by_role("link", name="Connect Sage One AUS").click()
    page.get_by_label("Sage One username (email)").fill("newcastle@harbour-auto.test")
    page.get_by_label("Sage One password").fill("sandbox-password")
    page.get_by_role("button", name="Connect").click()

    expect(page.get_by_text("Connected to Sage One AUS as newcastle@harbour-auto.test")).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile("Newcastle · Sage One AUS"))).to_be_visible()
    customers_row = page.locator("#sync-counts tbody tr").first.locator("td")
    expect(customers_row).to_have_text(["0", "3", "0"])

    page.get_by_role("button", name="Sync now").click()
    sent = "Sent 3 customers and 1 invoice to Sage One AUS."
    expect(page.locator("#running").get_by_text(sent)).to_be_visible(timeout=20_000)
    expect(page.locator("#history").get_by_text(sent).first).to_be_visible()  # the history caught up too

    company = sandbox.state.companies[20001]
    assert sorted(c["Name"] for c in company.customers.values()) == sorted(c.name for c in contacts)
    assert len(company.invoices) == 1
    page.reload()
    expect(customers_row).to_have_text(["3", "0", "0"])
    expect(page.get_by_text("Nothing is waiting")).to_be_visible()
