"""Audit rows say what happened and to whom: refusals in a puppet session are refusals, and every
row names the business the thing belongs to (so it shows on that business's dashboard only)."""
from portal.checklists import runs, scenarios
from portal.extensions import db
from portal.models import AuditEvent, Branch, Provider
from tests import factories
from tests.support.helpers import customer_world, start_puppet


def _kinds() -> list[str]:
    return [e.kind for e in db.session.scalars(db.select(AuditEvent).order_by(AuditEvent.id))]


def test_a_refused_write_in_a_puppet_session_is_recorded_as_a_refusal(client, auth):
    business, customer = customer_world()
    auth.login(factories.support())
    start_puppet(client, business, customer)
    before = len(_kinds())
    response = client.post("/account/password", data={"current_password": "x", "new_password": "y" * 12,
                                                       "confirm_password": "y" * 12})
    assert response.status_code == 302  # sent back with the reason, nothing changed
    assert _kinds()[before:] == ["puppet.write_refused"]
    event = db.session.scalar(db.select(AuditEvent).where(AuditEvent.kind == "puppet.write_refused"))
    assert event.business_id == business.id and event.subject_user_id == customer.id
    assert "refused POST /account/password" in event.summary


def test_a_refused_sage_one_aus_write_is_recorded_once_as_a_refusal(client, auth):
    business, customer = customer_world(branches=("Newcastle",))
    branch = business.branches[0]
    factories.connection(branch, Provider.SAGE_ONE_AUS, sage_one_username="nc@harbour.test",
                         credentials_owner_id=customer.id)
    auth.login(factories.support())
    start_puppet(client, business, customer)
    before = len(_kinds())
    assert client.post(f"/integrations/sage-one-aus/branches/{branch.id}/sync").status_code == 403
    assert _kinds()[before:] == ["puppet.write_refused"]


def test_a_checklist_note_is_filed_under_the_business_of_its_run(client, auth):
    puppeted, customer = customer_world("Harbour Auto")
    other, other_customer = customer_world("Elsewhere Motors", branches=("Main",))
    support = factories.support()
    run = runs.start(scenarios.get("sage-one-aus-puppet-auth"), other, other.branches[0], support)
    step = scenarios.get(run.scenario).steps[0].id
    auth.login(support)
    start_puppet(client, puppeted, customer)
    before = len(_kinds())
    response = client.post(f"/support/checklists/runs/{run.id}/notes", data={"step": step, "note": "Called them"})
    assert response.status_code == 302
    new = db.session.scalars(db.select(AuditEvent).order_by(AuditEvent.id)).all()[before:]
    assert new and all(e.business_id == other.id for e in new)
    assert all(e.subject_user_id != customer.id and e.puppet_session_id is None for e in new)
    client.post("/support/puppet/end")
    auth.logout()
    for who, business in ((customer, puppeted), (other_customer, other)):
        auth.login(who)
        page = client.get("/").get_data(as_text=True)
        assert f"/support/checklists/runs/{run.id}/notes" not in page, business.name
        assert customer.email not in page or who is customer
        auth.logout()


def test_every_audit_row_with_a_branch_names_that_branchs_business(client, auth):
    business, customer = customer_world(branches=("Sydney", "Parramatta"))
    other, _ = customer_world("Elsewhere Motors", branches=("Main",))
    support = factories.support()
    runs.start(scenarios.get("sage-one-aus-puppet-auth"), other, other.branches[0], support)
    auth.login(support)
    start_puppet(client, business, customer)
    client.post(f"/integrations/sage/branches/{business.branches[0].id}/sync/contacts")
    client.post("/support/checklists/start", data={"scenario": "sage-one-aus-puppet-auth",
                                                    "business_id": other.id, "branch_id": other.branches[0].id})
    rows = db.session.scalars(db.select(AuditEvent)).all()
    assert rows
    for event in rows:
        if event.branch_id is not None:
            assert event.business_id == db.session.get(Branch, event.branch_id).business_id, event.summary
        if event.puppet_session_id is not None:
            assert event.business_id == business.id, event.summary
