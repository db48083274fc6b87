import pytest
from playwright.sync_api import expect

from portal import demo
from tests.browser.conftest import sign_in

pytestmark = pytest.mark.browser


def test_customer_signs_in_and_sees_a_card_per_branch(app, page):
    demo.load(contacts_per_branch=5, invoices_per_branch=3)
    sign_in(page, demo.CUSTOMER_EMAIL, demo.DEMO_PASSWORD)
    expect(page.get_by_role("heading", name="Harbour Auto")).to_be_visible()
    cards = page.locator("li.card")
    expect(cards).to_have_count(3)
    for name in ("Sydney", "Parramatta", "Newcastle"):
        expect(page.get_by_role("heading", name=name)).to_be_visible()
    expect(page.get_by_text("it needs its own sign-in")).to_be_visible()


def test_wrong_password_shows_a_clear_message_in_the_browser(app, page):
    demo.load(contacts_per_branch=5, invoices_per_branch=1)
    sign_in(page, demo.CUSTOMER_EMAIL, "not-the-password")
    expect(page.get_by_text("don't match an account")).to_be_visible()
    expect(page).to_have_url("/login")
