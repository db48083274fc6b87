"""Who may use the Sage routes: anonymous, the branch's customer, another business's customer,
support, and support puppeting the customer (sync and void allowed and audited; sign-in refused)."""
from __future__ import annotations

import pytest

from portal.extensions import db
from portal.models import AuditEvent, Business, Job
from tests import factories
from tests.integrations.sage.conftest import SOLO_BUSINESS, connect


@pytest.fixture
def world(app, workshop):
    contact = factories.contacts(workshop.head_office, 1)[0]
    invoice = factories.invoice(workshop.head_office, contact)
    invoice.sage_id = "f" * 32
    db.session.commit()
    factories.connection(workshop.head_office, sage_business_id=SOLO_BUSINESS, sage_business_name="Solo",
                         ids_sage_business_id=SOLO_BUSINESS)
    stranger = factories.customer(factories.business("Other Workshop"))
    support = factories.support()
    return {"workshop": workshop, "invoice_id": invoice.id, "stranger": stranger, "support": support}


def routes(world):
    b = world["workshop"].head_office_id
    i = world["invoice_id"]
    return [
        ("GET", f"/integrations/sage/branches/{b}", {}),
        ("POST", f"/integrations/sage/branches/{b}/connect", {}),
        ("GET", f"/integrations/sage/branches/{b}/business", {}),
        ("GET", f"/integrations/sage/branches/{b}/disconnect", {}),
        ("POST", f"/integrations/sage/branches/{b}/disconnect", {}),
        ("POST", f"/integrations/sage/branches/{b}/sync/contacts", {}),
        ("POST", f"/integrations/sage/branches/{b}/sync/invoices", {}),
        ("GET", f"/integrations/sage/branches/{b}/invoices/{i}/void", {}),
        ("POST", f"/integrations/sage/branches/{b}/invoices/{i}/void", {"reason": "Wrong customer"}),
    ]


ROUTE_IDS = ["page", "connect", "business", "disconnect-confirm", "disconnect", "sync-contacts",
             "sync-invoices", "void-confirm", "void"]
SIGN_IN_ROUTES = {"connect", "business", "disconnect-confirm", "disconnect"}


@pytest.mark.parametrize("index", range(len(ROUTE_IDS)), ids=ROUTE_IDS)
def test_anonymous_is_sent_to_sign_in(client, world, index):
    method, url, data = routes(world)[index]
    response = client.open(url, method=method, data=data)
    assert response.status_code == 302 and "/login" in response.headers["Location"]


@pytest.mark.parametrize("index", range(len(ROUTE_IDS)), ids=ROUTE_IDS)
def test_a_customer_of_another_business_gets_not_found(client, auth, world, index):
    auth.login(world["stranger"])
    method, url, data = routes(world)[index]
    assert client.open(url, method=method, data=data).status_code == 404


@pytest.mark.parametrize("index", range(len(ROUTE_IDS)), ids=ROUTE_IDS)
def test_support_without_a_puppet_session_is_refused(client, auth, world, index):
    auth.login(world["support"])
    method, url, data = routes(world)[index]
    assert client.open(url, method=method, data=data).status_code == 403


@pytest.mark.parametrize("index", range(len(ROUTE_IDS)), ids=ROUTE_IDS)
def test_the_branchs_customer_may_use_every_route(client, auth, world, index):
    auth.login(world["workshop"].owner)
    method, url, data = routes(world)[index]
    response = client.open(url, method=method, data=data)
    assert response.status_code in (200, 302), response.get_data(as_text=True)[:300]


def _puppet(client, auth, world):
    workshop = world["workshop"]
    auth.login(world["support"])
    response = client.post(f"/support/customers/{workshop.business_id}/puppet",
                           data={"user_id": workshop.owner_id, "reason": "Ticket #88: sync help"})
    assert response.status_code in (200, 302)


@pytest.mark.parametrize("index", range(len(ROUTE_IDS)), ids=ROUTE_IDS)
def test_support_puppeting_may_sync_and_void_but_not_sign_in_or_disconnect(client, auth, world, index):
    _puppet(client, auth, world)
    method, url, data = routes(world)[index]
    response = client.open(url, method=method, data=data)
    if ROUTE_IDS[index] in SIGN_IN_ROUTES:
        assert response.status_code == 403
        assert "customer's own Sage sign-in" in response.get_data(as_text=True).replace("&#39;", "'")
    else:
        assert response.status_code in (200, 302), response.get_data(as_text=True)[:300]


def test_a_sync_started_while_puppeting_records_both_people(client, auth, world):
    _puppet(client, auth, world)
    client.post(f"/integrations/sage/branches/{world['workshop'].head_office_id}/sync/contacts")
    job = db.session.scalar(db.select(Job))
    assert job.requested_by_id == world["workshop"].owner_id
    assert job.puppeteer_id == world["support"].id
    event = db.session.scalar(db.select(AuditEvent).where(AuditEvent.kind == "sage.sync_contacts_requested"))
    assert event.actor_id == world["support"].id
    assert event.subject_user_id == world["workshop"].owner_id
    assert event.puppet_session_id is not None


def test_a_void_by_support_while_puppeting_is_audited_with_both_ids(client, auth, workshop, sandbox, run_jobs, app):
    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id)
    contact = factories.contacts(workshop.head_office, 1)[0]
    invoice = factories.invoice(workshop.head_office, contact, tax_code="vat_standard")
    client.post(f"/integrations/sage/branches/{workshop.head_office_id}/sync/invoices")
    run_jobs()
    auth.logout()
    support = factories.support()
    _puppet(client, auth, {"workshop": workshop, "support": support})
    client.post(f"/integrations/sage/branches/{workshop.head_office_id}/invoices/{invoice.id}/void",
                data={"reason": "Customer asked on ticket #88"})
    run_jobs()
    result = db.session.scalar(db.select(AuditEvent).where(AuditEvent.kind == "sage.void_result"))
    assert result.details["outcome"] == "voided"
    assert result.actor_id == support.id and result.subject_user_id == workshop.owner_id
    assert result.details["puppeteer_id"] == support.id and result.puppet_session_id is not None
    assert db.session.get(Business, workshop.business_id) is not None
