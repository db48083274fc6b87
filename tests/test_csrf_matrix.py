"""Every unsafe route, found by walking `app.url_map`, refuses a request whose CSRF token is
missing, wrong, empty or another session's, as a form and as htmx, and changes nothing."""
import pytest

from portal.extensions import db
from tests import factories
from tests.conftest import AuthActions
from tests.test_route_matrix import _url

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
# A mail client's one-click unsubscribe (RFC 8058) carries no CSRF token: the signed link in the
# message is the proof, and a link that isn't signed finds nothing (checked below and in test_notify).
SIGNED_LINK_ROUTES = {"customer.unsubscribe"}


def _unsafe_rules(app):
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods & UNSAFE):
            yield rule, method


def _snapshot():
    db.session.expire_all()
    return {table.name: db.session.execute(db.select(db.func.count()).select_from(table)).scalar()
            for table in db.metadata.sorted_tables}


@pytest.mark.parametrize("who", ["anonymous", "customer", "support"])
def test_every_unsafe_route_refuses_a_bad_csrf_token(app, client, who):
    business = factories.business(branches=("Sydney",))
    branch = business.branches[0]
    customer = factories.customer(business)
    invoice = factories.invoice(branch, factories.contacts(branch, 1)[0], sage_id="abc")
    support = factories.support(lead=True)
    other = app.test_client()
    AuthActions(other).login(factories.customer(business))
    foreign_token = other.csrf_token()
    if who != "anonymous":
        AuthActions(client).login(customer if who == "customer" else support)
    own_token = client.csrf_token()
    assert own_token != foreign_token
    before = _snapshot()
    rules = list(_unsafe_rules(app))
    assert len(rules) > 20
    for rule, method in rules:
        url = _url(rule, branch_id=branch.id, invoice_id=invoice.id, business_id=business.id)
        if rule.endpoint in SIGNED_LINK_ROUTES:
            assert client.open(url, method=method, csrf=False).status_code == 404, rule.rule
            continue
        for token in (None, "", "not-a-token", own_token[:-4] + "AAAA", foreign_token):
            for htmx in (False, True):
                headers = {"HX-Request": "true"} if htmx else {}
                data = {"reason": "crafted", "user_id": customer.id, "email": customer.email,
                        "password": factories.PASSWORD}
                if token is not None:
                    if htmx:
                        headers["X-CSRFToken"] = token
                    else:
                        data["csrf_token"] = token
                response = client.open(url, method=method, data=data, headers=headers, csrf=False)
                assert response.status_code == 400, (who, method, rule.rule, token, htmx, response.status_code)
                assert b"This form has expired" in response.data
    assert _snapshot() == before
