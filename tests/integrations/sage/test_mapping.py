"""The per-branch mapping page: invoice line codes to Sage ledger accounts and tax rates, chosen from
Sage's live lists, validated, audited, and used by the next invoice sync."""
from __future__ import annotations

from decimal import Decimal

import pytest

from portal.extensions import db
from portal.models import AuditEvent, InvoiceLine, SageAccountMapping
from sage_sandbox.seed import hex_id
from tests import factories
from tests.integrations.sage.conftest import LEAD_BUSINESS, SOLO_BUSINESS, connect, sage_invoices

SALES = hex_id(SOLO_BUSINESS, "ledger", "4000")
LABOUR = hex_id(SOLO_BUSINESS, "ledger", "4010")
PARTS = hex_id(SOLO_BUSINESS, "ledger", "4020")
NOT_IN_SALES = hex_id(SOLO_BUSINESS, "ledger", "5000")  # a real account, but Sage hides it from sales
OTHER_BUSINESS_LABOUR = hex_id(LEAD_BUSINESS, "ledger", "4010")


@pytest.fixture
def workshop_in_sage(client, auth, workshop, sandbox):
    """The head office connected to Sage, with an invoice whose lines use codes sales/gst and parts/gst_free."""
    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id)
    contact = factories.contacts(workshop.head_office, 1)[0]
    invoice = factories.invoice(workshop.head_office, contact, "150.00")
    invoice.lines.append(InvoiceLine(description="Brake pads", unit_price=Decimal("50.00"),
                                     account_code="parts", tax_code="gst_free"))
    db.session.commit()
    return workshop


def _url(workshop) -> str:
    return f"/integrations/sage/branches/{workshop.head_office_id}/mapping"


def _mappings(workshop) -> dict[tuple[str, str], str]:
    db.session.expire_all()
    return {(m.kind, m.code): m.sage_id for m in db.session.scalars(
        db.select(SageAccountMapping).where(SageAccountMapping.branch_id == workshop.head_office_id))}


def _events(kind: str = "sage.mapping_changed") -> list[AuditEvent]:
    return db.session.scalars(db.select(AuditEvent).where(AuditEvent.kind == kind)).all()


def test_the_page_offers_sages_accounts_and_rates_for_each_code_with_the_defaults_preselected(
        client, workshop_in_sage):
    page = client.get(_url(workshop_in_sage))
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    for field in ("ledger_account:sales", "ledger_account:parts", "tax_rate:gst", "tax_rate:gst_free"):
        assert f'name="{field}"' in text
    assert f'<option value="{SALES}" selected>Sales (4000)</option>' in text
    assert f'<option value="{PARTS}" selected>Sales - Parts (4020)</option>' in text
    assert '<option value="GB_ZERO" selected>' in text  # gst_free defaults to a zero rate
    assert NOT_IN_SALES not in text  # only accounts Sage lists for sales


def test_saving_changes_the_mapping_and_the_next_invoice_sync_uses_it(client, workshop_in_sage, sandbox, run_jobs):
    workshop = workshop_in_sage
    response = client.post(_url(workshop), data={"ledger_account:sales": LABOUR, "tax_rate:gst": "GB_LOWER",
                                                 "ledger_account:parts": PARTS, "tax_rate:gst_free": "GB_EXEMPT"})
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/integrations/sage/branches/{workshop.head_office_id}")
    assert _mappings(workshop) == {("ledger_account", "sales"): LABOUR, ("tax_rate", "gst"): "GB_LOWER",
                                   ("ledger_account", "parts"): PARTS, ("tax_rate", "gst_free"): "GB_EXEMPT"}
    [event] = _events()
    assert event.actor_id == workshop.owner_id and event.branch_id == workshop.head_office_id
    changed = {(c["kind"], c["code"]): c["to"] for c in event.details["changes"]}
    assert changed[("ledger_account", "sales")] == LABOUR and "Sales - Labour (4010)" in event.summary

    branch_page = client.get(f"/integrations/sage/branches/{workshop.head_office_id}").get_data(as_text=True)
    assert "Sales - Labour (4010)" in branch_page and _url(workshop) in branch_page

    client.post(f"/integrations/sage/branches/{workshop.head_office_id}/sync/invoices")
    run_jobs()
    [invoice] = sage_invoices(sandbox)
    lines = {line["description"]: line for line in invoice["lines"]}
    assert lines["Service"]["ledger_account_id"] == LABOUR and lines["Service"]["tax_rate_id"] == "GB_LOWER"
    assert lines["Brake pads"]["ledger_account_id"] == PARTS and lines["Brake pads"]["tax_rate_id"] == "GB_EXEMPT"


def test_a_saved_choice_is_preselected_next_time_and_saving_it_again_changes_nothing(client, workshop_in_sage):
    url = _url(workshop_in_sage)
    client.post(url, data={"ledger_account:sales": LABOUR})
    text = client.get(url).get_data(as_text=True)
    assert f'<option value="{LABOUR}" selected>' in text
    assert f'<option value="{SALES}" selected>' not in text
    client.post(url, data={"ledger_account:sales": LABOUR})
    assert len(_events()) == 1


@pytest.mark.parametrize("forged", [OTHER_BUSINESS_LABOUR, NOT_IN_SALES, "", "x" * 300],
                         ids=["another-business", "not-listed-for-sales", "empty", "junk"])
def test_a_ledger_account_sage_did_not_list_is_refused_and_nothing_is_saved(client, workshop_in_sage, forged):
    response = client.post(_url(workshop_in_sage), data={"tax_rate:gst": "GB_LOWER", "ledger_account:sales": forged})
    assert response.status_code == 400
    assert "is not one Sage lists for this business" in response.get_data(as_text=True)
    assert "Nothing was saved" in response.get_data(as_text=True)
    assert _mappings(workshop_in_sage) == {} and _events() == []


def test_a_forged_tax_rate_or_a_code_the_branch_does_not_use_is_refused(client, workshop_in_sage):
    url = _url(workshop_in_sage)
    forged_rate = client.post(url, data={"tax_rate:gst": "GB_MADE_UP"})
    assert forged_rate.status_code == 400 and "tax rate chosen for “gst”" in forged_rate.get_data(as_text=True)
    unknown_code = client.post(url, data={"ledger_account:fuel": SALES})
    assert unknown_code.status_code == 400
    assert "“fuel” is not a ledger account code" in unknown_code.get_data(as_text=True)
    nothing = client.post(url, data={"unrelated": "1"})
    assert nothing.status_code == 400
    assert _mappings(workshop_in_sage) == {} and _events() == []


def test_when_sage_cannot_be_reached_the_page_says_so_and_shows_the_current_mapping(client, workshop_in_sage, sandbox):
    url = _url(workshop_in_sage)
    client.post(url, data={"ledger_account:sales": LABOUR})
    sandbox.state.set_fault_rates(error_rate=1.0)
    page = client.get(url)
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Sage can't be reached right now" in text.replace("&#39;", "'")
    assert "Sales - Labour (4010)" in text and "<select" not in text and "Traceback" not in text
    refused = client.post(url, data={"ledger_account:sales": SALES})
    assert refused.status_code == 503 and "Traceback" not in refused.get_data(as_text=True)
    assert _mappings(workshop_in_sage) == {("ledger_account", "sales"): LABOUR}


def test_a_branch_without_a_usable_sage_connection_is_sent_back_to_its_page(client, auth, workshop):
    auth.login(workshop.owner)
    response = client.get(_url(workshop))
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/integrations/sage/branches/{workshop.head_office_id}")


def test_the_branch_page_links_to_the_mapping_page_before_anything_is_mapped(client, workshop_in_sage):
    text = client.get(f"/integrations/sage/branches/{workshop_in_sage.head_office_id}").get_data(as_text=True)
    assert _url(workshop_in_sage) in text and "Nothing is mapped yet" in text


# --- Who may use it ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_anonymous_is_sent_to_sign_in(client, workshop, method):
    response = client.open(_url(workshop), method=method, data={"ledger_account:sales": SALES})
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_a_customer_of_another_business_gets_not_found_and_changes_nothing(client, auth, workshop_in_sage):
    auth.logout()
    auth.login(factories.customer(factories.business("Other Workshop")))
    assert client.get(_url(workshop_in_sage)).status_code == 404
    assert client.post(_url(workshop_in_sage), data={"ledger_account:sales": LABOUR}).status_code == 404
    assert _mappings(workshop_in_sage) == {} and _events() == []


def test_support_without_a_puppet_session_is_refused(client, auth, workshop_in_sage):
    auth.logout()
    auth.login(factories.support())
    assert client.get(_url(workshop_in_sage)).status_code == 403
    assert client.post(_url(workshop_in_sage), data={"ledger_account:sales": LABOUR}).status_code == 403
    assert _mappings(workshop_in_sage) == {}


def test_support_puppeting_may_change_the_mapping_and_it_is_audited_with_both_people(client, auth, workshop_in_sage):
    workshop = workshop_in_sage
    auth.logout()
    support = factories.support()
    auth.login(support)
    started = client.post(f"/support/customers/{workshop.business_id}/puppet",
                          data={"user_id": workshop.owner_id, "reason": "Ticket #91: wrong ledger account"})
    assert started.status_code in (200, 302)
    assert client.get(_url(workshop)).status_code == 200
    response = client.post(_url(workshop), data={"ledger_account:sales": LABOUR})
    assert response.status_code == 302
    assert _mappings(workshop) == {("ledger_account", "sales"): LABOUR}
    [event] = _events()
    assert event.actor_id == support.id and event.subject_user_id == workshop.owner_id
    assert event.puppet_session_id is not None and support.email in event.summary
