"""Drift seen: once a day (and on demand from the branch page) each Sage branch asks Sage what was
deleted or changed there; contacts deleted in Sage are sent again, invoices voided in Sage
outside the portal are recorded on the invoice and shown."""
from __future__ import annotations

from datetime import timedelta

from portal.extensions import db
from portal.integrations.sage import drift
from portal.integrations.sage.client import SageClient
from portal.models import Contact, Invoice, InvoiceStatus, SyncState, utcnow
from tests import factories
from tests.integrations.sage.conftest import SAGE_USER, SOLO_BUSINESS, connect, sage_contacts


def _sage(sandbox) -> SageClient:
    tokens = sandbox.state.issue_tokens(SAGE_USER)
    return SageClient(api_url=f"{sandbox.url}/v3.1", business_id=SOLO_BUSINESS,
                      token=lambda force=False: tokens["access_token"])


def test_deletions_and_voids_made_in_sage_are_seen_recorded_and_shown(client, auth, workshop, sandbox, run_jobs):
    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id)
    contacts = factories.contacts(workshop.head_office, 3)
    lonely = factories.contacts(workshop.head_office, 1)[0]
    invoice = factories.invoice(workshop.head_office, contacts[0], tax_code="vat_standard")
    client.post(f"/integrations/sage/branches/{workshop.head_office_id}/sync/contacts")
    client.post(f"/integrations/sage/branches/{workshop.head_office_id}/sync/invoices")
    run_jobs()
    assert drift.look_where_due() == 1  # the first look: nothing changed outside the portal yet
    assert drift.look_where_due() == 0  # not due again for a day

    # In Sage, someone deletes a contact and voids an invoice.
    sage = _sage(sandbox)
    lonely = db.session.get(Contact, lonely.id)
    sage.request("DELETE", f"/contacts/{lonely.sage_id}", retry=False)
    sage.void_invoice(db.session.get(Invoice, invoice.id).sage_id, "Entered twice")

    page = client.post(f"/integrations/sage/branches/{workshop.head_office_id}/drift", follow_redirects=True)
    text = page.get_data(as_text=True)
    assert "1 invoice voided there outside the portal, 1 contact deleted there" in text
    lonely, invoice = db.session.get(Contact, lonely.id), db.session.get(Invoice, invoice.id)
    assert lonely.sage_id is None and lonely.sync_state == SyncState.PENDING
    assert "Voided in Sage outside the portal" in invoice.sage_note and "Entered twice" in invoice.sage_note
    assert invoice.status == InvoiceStatus.ISSUED  # recorded, not decided for the customer
    branch_page = client.get(f"/integrations/sage/branches/{workshop.head_office_id}").get_data(as_text=True)
    assert "Changed in Sage" in branch_page and invoice.sage_note in branch_page

    # The next sync sends the deleted contact again, once.
    client.post(f"/integrations/sage/branches/{workshop.head_office_id}/sync/contacts")
    run_jobs()
    references = [c["reference"] for c in sage_contacts(sandbox)]
    assert references.count(lonely.reference) == 1


def test_the_daily_look_costs_two_requests_when_nothing_changed(client, auth, workshop, sandbox, run_jobs):
    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id)
    connection = workshop.connection()
    connection.drift_checked_at = utcnow() - timedelta(days=2)
    db.session.commit()
    with sandbox.state.lock:
        before = sandbox.state.businesses[SOLO_BUSINESS].requests
    assert drift.look_where_due() == 1
    with sandbox.state.lock:
        assert sandbox.state.businesses[SOLO_BUSINESS].requests - before == 2
