"""Scenario 4 walked against the real sandbox: a void that succeeded, one Sage refused to reach, and an
invoice whose Sage ids a switch of Sage business cleared. Each ends where it should, with a true message."""
from __future__ import annotations

import pytest

from portal.checklists import actions, runs, scenarios
from portal.extensions import db
from portal.integrations.sage.connect import choose_business
from portal.models import AuditEvent, Business, ConnectionState, Invoice
from tests import factories
from tests.integrations.sage.conftest import SOLO_BUSINESS, connect
from tests.integrations.sage.test_drift import _sage
from tests.integrations.sage.test_live_sage import _requests_to

BROKEN = ("(unknown)", "(voided)", "None", "{", "[[")


def _synced_invoice(client, auth, workshop, sandbox, run_jobs):
    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id)
    contact = factories.contacts(workshop.head_office, 1)[0]
    invoice = factories.invoice(workshop.head_office, contact, "120.00", tax_code="vat_standard")
    client.post(f"/integrations/sage/branches/{workshop.head_office_id}/sync/invoices")
    run_jobs()
    return db.session.get(Invoice, invoice.id)


def _void(client, workshop, invoice, run_jobs):
    response = client.post(f"/integrations/sage/branches/{workshop.head_office_id}/invoices/{invoice.id}/void",
                           data={"reason": "Raised in error"})
    assert response.status_code == 302, response.get_data(as_text=True)
    run_jobs()


def _run(workshop, invoice):
    business = db.session.get(Business, workshop.business_id)
    run = runs.start(scenarios.SAGE_VOID_STILL_SHOWN, business, business.branches[0], factories.support(),
                     invoice_ref=invoice.number)
    return run, runs.view(run)


def _path(view):
    return [(s.step.id, s.value) for s in view.walk.path]


def test_a_void_that_succeeded_ends_done_with_a_true_message(client, auth, workshop, sandbox, run_jobs):
    invoice = _synced_invoice(client, auth, workshop, sandbox, run_jobs)
    _void(client, workshop, invoice, run_jobs)
    _, view = _run(workshop, invoice)
    assert _path(view) == [("invoice", "on_branch"), ("void_job", "done"), ("sage_now", "void"), ("done", None)]
    assert view.suggested_outcome == "resolved"
    assert view.suggested_message == (
        f"Hello,\n\nInvoice {invoice.number} is void in Sage. If you still see it, refresh the page in Sage: a void "
        "invoice stays listed, marked as void, rather than disappearing.")


def test_a_soft_deleted_invoice_voided_reads_found_soft_deleted_not_pass(client, auth, workshop, sandbox, run_jobs):
    invoice = _synced_invoice(client, auth, workshop, sandbox, run_jobs)
    invoice.soft_delete()
    db.session.commit()
    _void(client, workshop, invoice, run_jobs)
    run, view = _run(workshop, invoice)
    assert view.walk.state("invoice").value == "soft_deleted" and view.walk.outcome_step.id == "done"
    auth.login(factories.support())
    page = client.get(f"/support/checklists/runs/{run.id}").get_data(as_text=True)
    assert "Found: soft-deleted" in page and "Found: void" in page and "Found: the void completed" in page
    assert ">Pass<" not in page and ">Fail<" not in page and "?</h3>" not in page


def test_a_void_still_live_in_sage_reruns_and_a_failed_rerun_asks_for_a_clean_up_without_garble(
        client, auth, workshop, sandbox, run_jobs):
    invoice = _synced_invoice(client, auth, workshop, sandbox, run_jobs)
    support = factories.support()
    run, view = _run(workshop, invoice)  # never voided: Sage shows it live
    assert _path(view)[:3] == [("invoice", "on_branch"), ("void_job", "none"), ("sage_now", "live")]
    assert view.walk.current.step.id == "rerun_void"
    runs.answer(run, "rerun_void", "skipped", support)
    message = runs.view(run).suggested_message
    assert message == (f"Hello,\n\nInvoice {invoice.number} is still not void in Sage, and the portal can't finish "
                       f"it from here. Please void it by hand in Sage: find invoice {invoice.number} (its Sage id is "
                       f"{invoice.sage_id}) and void it there.")


def test_ids_cleared_by_a_switch_of_sage_business_are_not_called_never_sent(
        client, auth, workshop, sandbox, run_jobs):
    invoice = _synced_invoice(client, auth, workshop, sandbox, run_jobs)
    _void(client, workshop, invoice, run_jobs)
    connection = db.session.get(Business, workshop.business_id).branches[0].connection
    others = [{"id": b.id, "name": b.name} for b in sandbox.state.businesses.values()
              if b.id != connection.sage_business_id]
    choose_business(connection, others[0]["id"], others, confirmed=True)
    db.session.expire_all()
    assert db.session.get(Invoice, invoice.id).sage_id is None
    _, view = _run(workshop, invoice)
    sage_now = view.walk.state("sage_now")
    # The void was done before the switch: it is void in the earlier business.
    assert sage_now.value == "void" and "never sent" not in sage_now.latest.summary
    assert view.walk.outcome_step.id == "done"

    # Another invoice made before the switch and not voided: any copy in Sage is in the earlier business.
    second = factories.invoice(db.session.get(Business, workshop.business_id).branches[0],
                               invoice.contact, "50.00", tax_code="vat_standard")
    second.created_at = invoice.created_at
    db.session.commit()
    _, view = _run(workshop, second)
    assert view.walk.state("sage_now").value == "other_business"
    message = view.suggested_message
    assert "never sent" not in message and "switched to another Sage business" in message
    assert f"void invoice {second.number} there by hand" in message
    assert not any(b in message for b in BROKEN), message


def test_a_void_made_in_sage_directly_is_recorded_from_the_checklist_by_asking_sage_what_changed(
        client, auth, workshop, sandbox, run_jobs):
    invoice = _synced_invoice(client, auth, workshop, sandbox, run_jobs)
    _sage(sandbox).void_invoice(invoice.sage_id, "Voided by the bookkeeper")  # in Sage, not through the portal
    support = factories.support()
    run, view = _run(workshop, invoice)
    assert _path(view)[:3] == [("invoice", "on_branch"), ("void_job", "none"), ("sage_now", "void_outside")]
    assert view.walk.current.step.id == "record_void_outside"
    before = _requests_to(sandbox)

    result = runs.run_action(run, "record_void_outside", actions.Actor(acting_as=support, real=support))

    assert result.summary == ("Sage was asked what changed there: 1 invoice voided there outside the portal, "
                              "0 contacts deleted there (sent again at the next sync).")
    assert _requests_to(sandbox) - before == 2  # read-only: the two lists of the daily look
    recorded = db.session.get(Invoice, invoice.id)
    assert "Voided in Sage outside the portal" in recorded.sage_note
    assert "Voided by the bookkeeper" in recorded.sage_note
    view = runs.view(run)
    assert view.walk.outcome_step.id == "done" and view.suggested_outcome == "resolved"
    audited = db.session.scalars(db.select(AuditEvent).where(AuditEvent.kind == "checklist.action")).all()
    assert len(audited) == 1 and "1 invoice voided there" in audited[0].summary



def test_asking_sage_what_changed_is_offered_for_an_invoice_sage_lacks_and_refused_in_words_when_it_cannot_ask(
        client, auth, workshop, sandbox, run_jobs):
    invoice = _synced_invoice(client, auth, workshop, sandbox, run_jobs)
    with sandbox.state.lock:  # deleted in Sage
        del sandbox.state.businesses[SOLO_BUSINESS].invoices[invoice.sage_id]
    support = factories.support()
    run, view = _run(workshop, invoice)
    assert view.walk.state("sage_now").value == "missing" and view.walk.current.step.id == "look_for_drift"
    connection = workshop.connection()
    connection.state = ConnectionState.NEEDS_REAUTH  # its sign-in lapsed meanwhile
    db.session.commit()
    before = _requests_to(sandbox)

    with pytest.raises(actions.ActionRefused, match="needs to sign in to Sage again"):
        runs.run_action(run, "look_for_drift", actions.Actor(acting_as=support, real=support))
    assert _requests_to(sandbox) == before
    runs.answer(run, "look_for_drift", "skipped", support)
    assert runs.view(run).walk.outcome_step.id == "missing_in_sage"
