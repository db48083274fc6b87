"""Browser journeys shared by several tests (fixtures stay in conftest.py)."""
from __future__ import annotations

from playwright.sync_api import expect


def start_puppet(page, business_name: str, reason: str) -> None:
    """From the console (signed in as support): find the business and puppet its first user."""
    page.goto("/support/")
    page.get_by_label("Business, branch, user email").fill(business_name)
    page.locator("#search-results").get_by_role("link", name=business_name).click()
    page.get_by_label("Reason").fill(reason)
    page.get_by_role("button", name="Start puppet session").click()
    expect(page.get_by_role("region", name="Puppet session")).to_be_visible()
