"""Form errors sit beside the fields they are about, marked for assistive technology."""
from tests import factories


def test_a_failed_sign_in_marks_both_fields_and_says_why_beside_them(client):
    factories.customer(factories.business(), email="owner@example.test")
    body = client.post("/login", data={"email": "owner@example.test", "password": "wrong"}).get_data(as_text=True)
    assert body.count('aria-invalid="true" aria-describedby="login-error"') == 2
    assert 'id="login-error" role="alert"' in body
    assert 'class="flash flash-error"' not in body  # said once, beside the fields


def test_a_puppet_session_without_a_reason_marks_the_reason_field(client, auth):
    business = factories.business()
    customer = factories.customer(business)
    auth.login(factories.support())
    response = client.post(f"/support/customers/{business.id}/puppet", data={"user_id": customer.id, "reason": " "})
    body = response.get_data(as_text=True)
    assert response.status_code == 400
    assert 'aria-invalid="true" aria-describedby="reason-error"' in body and 'id="reason-error"' in body


def test_a_void_without_a_reason_marks_the_reason_field(client, auth):
    business = factories.business(branches=("Sydney",))
    owner = factories.customer(business)
    branch = business.branches[0]
    invoice = factories.invoice(branch, factories.contacts(branch, 1)[0], sage_id="s-1")
    auth.login(owner)
    response = client.post(f"/integrations/sage/branches/{branch.id}/invoices/{invoice.id}/void", data={"reason": ""})
    body = response.get_data(as_text=True)
    assert response.status_code == 400
    assert 'aria-invalid="true" aria-describedby="reason-error"' in body and "Give a reason" in body
