"""The console's search box shows the search its results are for after Back, typed or navigated."""
import re

import pytest
from playwright.sync_api import expect

from portal import demo
from tests.browser.conftest import sign_in

pytestmark = pytest.mark.browser


def test_back_shows_the_search_text_with_its_results(app, page):
    demo.load(contacts_per_branch=2, invoices_per_branch=1)
    sign_in(page, demo.SUPPORT_EMAIL, demo.DEMO_PASSWORD)
    box = page.get_by_label("Business, branch, user email")
    box.fill("harb")
    expect(page).to_have_url(re.compile(r"q=harb$"))
    box.fill("zzz-nobody")
    expect(page).to_have_url(re.compile(r"q=zzz-nobody$"))
    expect(page.locator("#search-results")).to_contain_text("No customers match")

    page.go_back()  # within the page: the pushed search comes back with its text
    expect(page).to_have_url(re.compile(r"q=harb$"))
    expect(box).to_have_value("harb")
    expect(page.locator("#search-results").get_by_role("link", name="Harbour Auto")).to_be_visible()

    page.locator("#search-results").get_by_role("link", name="Harbour Auto").click()
    expect(page.get_by_role("heading", name="Harbour Auto", exact=True)).to_be_visible()
    page.go_back()  # from another page
    expect(box).to_have_value("harb")
    expect(page.locator("#search-results").get_by_role("link", name="Harbour Auto")).to_be_visible()
