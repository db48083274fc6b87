"""The support journey in a real browser: search → customer → puppet → banner → end."""
import re

import pytest
from playwright.sync_api import expect

from portal import demo
from tests import factories
from tests.browser.conftest import sign_in

pytestmark = pytest.mark.browser


def test_support_finds_a_customer_puppets_them_and_ends_the_session(app, page):
    demo.load(contacts_per_branch=5, invoices_per_branch=1)
    factories.business("Elsewhere Motors", branches=("Perth",))
    sign_in(page, demo.SUPPORT_EMAIL, demo.DEMO_PASSWORD)
    expect(page.get_by_role("heading", name="Support console")).to_be_visible()

    # Live search: typing narrows the results without a page load.
    page.get_by_label("Business, branch, user email").fill("parramat")
    results = page.locator("#search-results")
    expect(results.get_by_role("link", name="Harbour Auto")).to_be_visible()
    expect(results.get_by_text("Elsewhere Motors")).to_have_count(0)
    expect(page).to_have_url(re.compile(r"q=parramat"))

    results.get_by_role("link", name="Harbour Auto").click()
    expect(page.get_by_role("heading", name="Harbour Auto", level=1)).to_be_visible()
    expect(page.get_by_role("heading", name="Timeline")).to_be_visible()

    # The reason is required: the browser will not submit without it.
    page.get_by_role("button", name="Start puppet session").click()
    expect(page.get_by_role("heading", name="Harbour Auto", level=1)).to_be_visible()
    page.get_by_label("Reason").fill("Ticket #4821: sync stuck")
    page.get_by_role("button", name="Start puppet session").click()

    banner = page.get_by_role("region", name="Puppet session")
    expect(banner).to_contain_text(demo.SUPPORT_EMAIL)
    expect(banner).to_contain_text(demo.CUSTOMER_EMAIL)
    expect(banner).to_contain_text("Sage One AUS read-only")
    expect(page.get_by_role("heading", name="Sydney")).to_be_visible()

    banner.get_by_role("button", name="End session").click()
    expect(page.get_by_role("region", name="Puppet session")).to_have_count(0)
    expect(page.get_by_text(f"Puppet session as {demo.CUSTOMER_EMAIL} ended.")).to_be_visible()
    expect(page.get_by_text("Ticket #4821: sync stuck").first).to_be_visible()  # now in the timeline
