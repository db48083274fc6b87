"""The puppet banner stays at the top of the window however far a long page is scrolled."""
import pytest
from playwright.sync_api import expect

from portal import demo
from tests.browser.conftest import sign_in

pytestmark = pytest.mark.browser


def test_the_puppet_banner_stays_in_view_when_a_long_page_scrolls(app, page):
    demo.load(contacts_per_branch=5, invoices_per_branch=1)
    page.set_viewport_size({"width": 900, "height": 400})
    sign_in(page, demo.SUPPORT_EMAIL, demo.DEMO_PASSWORD)
    page.get_by_label("Business, branch, user email").fill("Harbour")
    page.locator("#search-results").get_by_role("link", name="Harbour Auto").click()
    page.get_by_label("Reason").fill("Ticket #99: banner check")
    page.get_by_role("button", name="Start puppet session").click()
    banner = page.get_by_role("region", name="Puppet session")
    expect(banner).to_be_visible()
    assert page.evaluate("document.documentElement.scrollHeight") > 800  # a page longer than the window
    page.mouse.wheel(0, 5000)
    # Polled from here: wait_for_function's polling evaluates a string in the page, which the
    # portal's Content-Security-Policy (no unsafe-eval) refuses whenever the first look is too early.
    for _ in range(100):
        if page.evaluate("window.scrollY") > 300:
            break
        page.wait_for_timeout(50)
    assert page.evaluate("window.scrollY") > 300
    box = banner.bounding_box()
    assert box is not None and abs(box["y"]) < 1
