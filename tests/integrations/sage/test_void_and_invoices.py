"""Invoice sync (mapped lines, contact first) and the single void (rule 4) with each outcome."""
from __future__ import annotations

import pytest

from portal.extensions import db
from portal.models import AuditEvent, Invoice, InvoiceStatus, Job, SageAccountMapping, SyncState
from tests import factories
from tests.integrations.sage.conftest import connect, sage_contacts, sage_invoices


@pytest.fixture
def synced(client, auth, workshop, sandbox, run_jobs):
    """A connected head office with one contact and two invoices already in Sage."""
    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id)
    contact = factories.contacts(workshop.head_office, 1)[0]
    invoices = [factories.invoice(workshop.head_office, contact, "120.00", tax_code="vat_standard") for _ in range(2)]
    client.post(f"/integrations/sage/branches/{workshop.head_office_id}/sync/invoices")
    run_jobs()
    return [db.session.get(Invoice, i.id) for i in invoices]


def _void(client, workshop, invoice_id, reason="Raised in error", run_jobs=None):
    response = client.post(f"/integrations/sage/branches/{workshop.head_office_id}/invoices/{invoice_id}/void",
                           data={"reason": reason})
    assert response.status_code == 302, response.get_data(as_text=True)
    run_jobs()
    job = db.session.scalars(db.select(Job).where(Job.kind == "sage.void_invoice")
                             .order_by(Job.created_at.desc())).first()
    assert job.status.value == "finished", job.error
    return job


def test_invoice_sync_sends_the_contact_first_and_maps_lines_to_ledger_accounts_and_tax_rates(
        synced, workshop, sandbox):
    assert all(i.sync_state == SyncState.SYNCED and i.sage_id for i in synced)
    assert len(sage_contacts(sandbox)) == 1
    in_sage = {i["reference"]: i for i in sage_invoices(sandbox)}
    assert set(in_sage) == {i.number for i in synced}
    line = in_sage[synced[0].number]["lines"][0]
    assert line["tax_rate_id"] == "GB_STANDARD"
    mappings = {m.kind: m for m in db.session.scalars(db.select(SageAccountMapping))}
    assert mappings["ledger_account"].code == "sales"
    assert mappings["ledger_account"].sage_id == line["ledger_account_id"]
    assert "Sales" in mappings["ledger_account"].sage_name
    assert mappings["tax_rate"].code == "vat_standard" and mappings["tax_rate"].sage_id == "GB_STANDARD"
    # Both were chosen by the portal, and each says why.
    assert "same rate" in mappings["tax_rate"].default_reason and "20%" in mappings["tax_rate"].default_reason
    assert mappings["ledger_account"].default_reason


def test_an_invoice_whose_tax_code_has_no_rate_of_its_percentage_in_sage_waits_with_the_reason(
        client, auth, workshop, sandbox, run_jobs):
    """GST is 10%; the Sage business lists 20, 5 and 0%: the invoice is not sent with the wrong tax."""
    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id)
    contact = factories.contacts(workshop.head_office, 1)[0]
    gst = factories.invoice(workshop.head_office, contact, "110.00", tax_code="gst")
    vat = factories.invoice(workshop.head_office, contact, "120.00", tax_code="vat_standard")
    client.post(f"/integrations/sage/branches/{workshop.head_office_id}/sync/invoices")
    run_jobs()
    gst, vat = db.session.get(Invoice, gst.id), db.session.get(Invoice, vat.id)
    assert vat.sync_state == SyncState.SYNCED
    assert gst.sync_state == SyncState.FAILED and gst.sage_id is None
    assert "no 10% tax rate" in gst.sync_error and "“gst”" in gst.sync_error
    assert {i["reference"] for i in sage_invoices(sandbox)} == {vat.number}
    assert db.session.scalar(db.select(SageAccountMapping).where(SageAccountMapping.code == "gst")) is None

    # The mapping page marks the code as needing a choice; once chosen, the invoice goes.
    page = client.get(f"/integrations/sage/branches/{workshop.head_office_id}/mapping").get_data(as_text=True)
    assert "needs a choice" in page and "no 10% tax rate" in page
    client.post(f"/integrations/sage/branches/{workshop.head_office_id}/mapping",
                data={"tax_rate:gst": "GB_LOWER"})
    client.post(f"/integrations/sage/branches/{workshop.head_office_id}/sync/invoices")
    run_jobs()
    assert db.session.get(Invoice, gst.id).sync_state == SyncState.SYNCED
    [line] = next(i for i in sage_invoices(sandbox) if i["reference"] == gst.number)["lines"]
    assert line["tax_rate_id"] == "GB_LOWER"


def test_invoice_sync_again_sends_nothing_twice(synced, client, workshop, sandbox, run_jobs):
    for invoice in synced:
        invoice.sync_state = SyncState.PENDING  # e.g. edited locally; Sage already has them
    db.session.commit()
    client.post(f"/integrations/sage/branches/{workshop.head_office_id}/sync/invoices")
    run_jobs()
    assert len(sage_invoices(sandbox)) == 2


def test_void_confirmation_shows_what_will_be_voided(synced, client, workshop):
    page = client.get(f"/integrations/sage/branches/{workshop.head_office_id}/invoices/{synced[0].id}/void")
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert synced[0].number in text and synced[0].sage_id in text and "Reason" in text


def test_void_without_a_reason_is_refused_and_nothing_is_queued(synced, client, workshop):
    response = client.post(f"/integrations/sage/branches/{workshop.head_office_id}/invoices/{synced[0].id}/void",
                           data={"reason": "  "})
    assert response.status_code == 400 and "Give a reason" in response.get_data(as_text=True)
    assert db.session.scalar(db.select(Job).where(Job.kind == "sage.void_invoice")) is None


def test_void_reaches_sage_and_marks_the_invoice_void(synced, client, workshop, sandbox, run_jobs):
    job = _void(client, workshop, synced[0].id, run_jobs=run_jobs)
    assert job.result["outcome"] == "voided"
    in_sage = {i["id"]: i for i in sage_invoices(sandbox)}
    assert in_sage[synced[0].sage_id]["status_id"] == "VOID"
    assert in_sage[synced[0].sage_id]["void_reason"] == "Raised in error"
    invoice = db.session.get(Invoice, synced[0].id)
    assert invoice.status == InvoiceStatus.VOID and invoice.voided_at and invoice.void_reason == "Raised in error"
    page = client.get(f"/integrations/sage/branches/{workshop.head_office_id}").get_data(as_text=True)
    assert "is now void in Sage" in page


def test_void_of_a_soft_deleted_invoice_still_reaches_sage(synced, client, workshop, sandbox, run_jobs):
    synced[1].soft_delete()
    db.session.commit()
    page = client.get(f"/integrations/sage/branches/{workshop.head_office_id}").get_data(as_text=True)
    assert synced[1].number in page and "Deleted here" in page

    job = _void(client, workshop, synced[1].id, run_jobs=run_jobs)
    assert job.result["outcome"] == "voided" and job.result["was_deleted"] is True
    assert {i["id"]: i for i in sage_invoices(sandbox)}[synced[1].sage_id]["status_id"] == "VOID"


def test_void_of_an_invoice_already_void_in_sage_sends_nothing_again(synced, client, workshop, sandbox, run_jobs):
    _void(client, workshop, synced[0].id, run_jobs=run_jobs)
    deletes_before = sandbox.state.counters["v3.1"]
    job = _void(client, workshop, synced[0].id, "Second try", run_jobs=run_jobs)
    assert job.result["outcome"] == "already_void"
    assert "nothing was sent again" in job.result["summary"]
    assert sandbox.state.counters["v3.1"] - deletes_before == 1  # one GET, no DELETE
    assert {i["id"]: i for i in sage_invoices(sandbox)}[synced[0].sage_id]["void_reason"] == "Raised in error"


def test_void_of_an_invoice_never_synced_says_there_is_nothing_to_void(client, auth, workshop, sandbox, run_jobs):
    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id)
    contact = factories.contacts(workshop.head_office, 1)[0]
    invoice = factories.invoice(workshop.head_office, contact)
    job = _void(client, workshop, invoice.id, run_jobs=run_jobs)
    assert job.result["outcome"] == "never_synced"
    assert "never sent to Sage, so there is nothing to void" in job.result["summary"]
    assert db.session.get(Invoice, invoice.id).status == InvoiceStatus.ISSUED


def test_void_of_an_invoice_missing_in_sage_asks_for_manual_clean_up(synced, client, workshop, sandbox, run_jobs):
    synced[0].sage_id = "0" * 32
    db.session.commit()
    job = _void(client, workshop, synced[0].id, run_jobs=run_jobs)
    assert job.result["outcome"] == "missing_in_sage"
    assert "manual clean-up" in job.result["summary"]
    assert db.session.get(Invoice, synced[0].id).status == InvoiceStatus.ISSUED


def test_void_refused_by_sage_shows_sages_message(synced, client, workshop, sandbox, run_jobs):
    # Sage refuses a void from a read-only sign-in (403 MultiUserAccessDenied).
    with sandbox.state.lock:
        for token in sandbox.state.access_tokens.values():
            token.scope = "readonly"
    job = _void(client, workshop, synced[0].id, run_jobs=run_jobs)
    assert job.result["outcome"] == "sage_refused"
    assert "not allowed to access that resource" in job.result["summary"]
    assert db.session.get(Invoice, synced[0].id).status == InvoiceStatus.ISSUED


def test_void_is_audited_with_the_outcome(synced, client, workshop, sandbox, run_jobs):
    _void(client, workshop, synced[0].id, run_jobs=run_jobs)
    kinds = [e.kind for e in db.session.scalars(db.select(AuditEvent).order_by(AuditEvent.id))]
    assert "sage.void_invoice_requested" in kinds and "sage.void_result" in kinds
    result = db.session.scalar(db.select(AuditEvent).where(AuditEvent.kind == "sage.void_result"))
    assert result.details["outcome"] == "voided" and result.actor_id == workshop.owner_id


def test_the_void_page_checks_what_sage_shows_now(synced, client, workshop, run_jobs, sandbox):
    url = f"/integrations/sage/branches/{workshop.head_office_id}/invoices/{synced[0].id}/void"
    page = client.get(url).get_data(as_text=True)
    assert "Check in Sage" in page
    assert "not void in Sage yet" in client.get(url, query_string={"check": 1}).get_data(as_text=True)
    _void(client, workshop, synced[0].id, run_jobs=run_jobs)
    checked = client.get(url, query_string={"check": 1}).get_data(as_text=True)
    assert "Void (reason: Raised in error)" in checked
