"""The Operations page in a real browser: a lead retries a failed job and sees it queued; the
sections refresh by themselves; nothing scrolls sideways at a phone's width or a desktop's."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests import factories
from tests.browser.conftest import sign_in
from tests.operations.helpers import failed_job

pytestmark = pytest.mark.browser

ERROR = ("The worker running this stopped at 40 of 120 (its process or machine died), for the second time; "
         "it was not queued again. Run it again to resume.")


def _fits(page, width: int, name: str) -> None:
    page.set_viewport_size({"width": width, "height": 900})
    page.wait_for_timeout(50)
    scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert scroll <= inner, f"{name}: {scroll} px wide at {width}"
    if os.environ.get("PORTAL_SCREENSHOTS"):
        page.screenshot(path=str(Path(os.environ["PORTAL_SCREENSHOTS"]) / f"operations-{name}-{width}.png"),
                        full_page=True)


@pytest.mark.parametrize("width", [390, 1280])
def test_a_lead_retries_a_failed_job_and_sees_it_queued(app, page, width):
    business = factories.business("Harbour Auto", branches=("Sydney with a rather long branch name",))
    branch = business.branches[0]
    owner = factories.customer(business, email="workshop.manager.with.a.long.address@harbour-auto.test")
    factories.connection(branch, sage_business_id="biz-1", sage_business_name="Harbour Auto Pty Ltd")
    failed_job(branch, "sage.sync_contacts", ERROR, requested_by=owner, what="contacts")
    lead = factories.support(email="lead@portal.test", lead=True)

    page.set_viewport_size({"width": width, "height": 900})
    sign_in(page, lead.email, factories.PASSWORD)
    page.goto("/support/")
    page.get_by_role("link", name="Operations").click()
    expect(page.get_by_role("heading", name="Operations", level=1)).to_be_visible()
    failed = page.locator("#ops-failed")
    expect(failed).to_contain_text(ERROR)
    expect(failed.locator(".ops-since")).to_have_text("nothing")
    _fits(page, width, "failed")

    failed.get_by_role("link", name=re.compile("Retry")).click()
    expect(page.get_by_role("heading", name="Run “Sync contacts to Sage” again?")).to_be_visible()
    _fits(page, width, "confirm")
    page.get_by_role("button", name="Retry").click()

    expect(page).to_have_url(re.compile(r"/support/operations/"))
    expect(page.get_by_text("Queued again: “Sync contacts to Sage”")).to_be_visible()
    since = page.locator("#ops-failed .ops-since")
    expect(since).to_contain_text("Retried by lead@portal.test")
    expect(since).to_contain_text("queued")
    expect(page.locator("#ops-queues tbody tr").first.locator("td").first).to_have_text("1")
    _fits(page, width, "queued")

    # The sections refresh by themselves: a new failure appears without reloading the page.
    failed_job(branch, "sage.sync_invoices", "Sage kept answering 500 for invoices.", requested_by=owner)
    expect(page.locator("#ops-failed")).to_contain_text("Sage kept answering 500 for invoices.", timeout=15_000)
    _fits(page, width, "refreshed")
