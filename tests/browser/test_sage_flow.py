"""A customer connects a branch to Sage on the sandbox's consent page, syncs, and voids an invoice."""
import re

import pytest
from playwright.sync_api import expect

from tests import factories
from tests.browser.conftest import sign_in
from tests.integrations.sage.conftest import SOLO_BUSINESS

pytestmark = pytest.mark.browser


def test_customer_connects_sage_syncs_and_voids_an_invoice(app, sandbox, page, live_worker):
    business = factories.business("Harbour Auto", branches=("Sydney",))
    owner = factories.customer(business, email="owner@harbour-auto.test")
    branch = business.branches[0]
    contacts = factories.contacts(branch, 3)
    invoice = factories.invoice(branch, contacts[0], amount="220.00")

    sign_in(page, owner.email, factories.PASSWORD)
    page.get_by_role("button", name="Connect Sage").click()
    # The sandbox's own consent page, as Sage shows it.
    page.get_by_label("Email").fill("solo@harbour-auto.test")
    page.get_by_label("Password").fill("sandbox-password")
    page.get_by_role("button", name="Allow").click()

    expect(page.get_by_text("Connected to Sage (Solo Tyres & Exhausts).")).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile("Sydney · Sage"))).to_be_visible()
    expect(page.get_by_text("Token issued")).to_be_visible()
    expect(page.get_by_text(re.compile(r"in 3[01] days \(.*\) unless it is used"))).to_be_visible()

    page.get_by_role("button", name="Sync contacts").click()
    expect(page.locator("#running").get_by_text("Sent 3 contacts to Sage: 3 created")).to_be_visible(timeout=20_000)
    expect(page.locator("#history").get_by_text("Sent 3 contacts to Sage: 3 created").first).to_be_visible()
    # GST is 10% and this Sage business has no 10% rate: the portal chooses none, and says so.
    page.get_by_role("link", name="Change ledger accounts and tax rates").click()
    gst = page.get_by_label("Tax rate “gst”")
    expect(page.get_by_text("Sage lists no 10% tax rate for this business")).to_be_visible()
    gst.select_option("GB_STANDARD")
    page.get_by_role("button", name="Save mapping").click()
    expect(page.get_by_text("to the Sage mapping")).to_be_visible()

    page.get_by_role("button", name="Sync invoices").click()
    expect(page.locator("#running").get_by_text("Sent 1 invoice to Sage: 1 created")).to_be_visible(timeout=20_000)
    assert len(sandbox.state.businesses[SOLO_BUSINESS].contacts) == 3

    voidable = page.locator("#sage-voidable")
    expect(voidable.get_by_role("link", name="Void…")).to_have_count(1)  # the list caught up without a reload
    voidable.get_by_role("link", name="Void…").click()
    expect(page.get_by_role("heading", name=f"Void invoice {invoice.number} in Sage?")).to_be_visible()
    page.get_by_label("Reason").fill("Raised against the wrong customer")
    page.get_by_role("button", name=f"Void invoice {invoice.number}").click()
    expect(page.get_by_text(f"Invoice {invoice.number} is now void in Sage.").first).to_be_visible(timeout=20_000)
    expect(page.locator("#sage-voidable")).to_contain_text("No invoice in Sage to void")  # it left the list
    in_sage = list(sandbox.state.businesses[SOLO_BUSINESS].invoices.values())
    assert in_sage[0]["status_id"] == "VOID"
    assert in_sage[0]["void_reason"] == "Raised against the wrong customer"
