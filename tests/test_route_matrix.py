"""Every route of the app, whatever blueprint added it, against the people who must not use it.

Each blueprint keeps a detailed matrix beside its own tests; this one walks `app.url_map`, so a
new route is covered (or this test fails and says which route to classify) by construction.
"""

from portal.extensions import db
from portal.models import AuditEvent, Connection, Invoice, Job
from tests import factories

PUBLIC = {"auth.login", "auth.forgot_password", "auth.reset_password", "health.healthz", "status.page", "static",
          "customer.unsubscribe_page", "customer.unsubscribe",  # the signed link in a mail is the proof
          "metrics.scrape"}  # no sign-in: its own address allow-list (tests/test_metrics.py)
# Support-only routes: customers get 403. Customer-only routes: support (not puppeting) gets 403/404.
SUPPORT_PREFIXES = ("support.", "checklists.", "operations.")
CUSTOMER_ONLY = {"customer.dashboard", "customer.branch_card", "customer.sync_from_card", "customer.settings",
                 "customer.save_settings", "sage.callback"}
BRANCH_ROUTES_PREFIXES = ("sage.", "sage_one_aus.")
ANY_SIGNED_IN = {"auth.logout", "auth.change_password", "auth.second_step", "auth.two_factor_setup", "jobs.progress"}


def _rules(app):
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule, method


def _url(rule, **values) -> str:
    defaults = {"branch_id": 999_999, "invoice_id": 999_999, "business_id": 999_999, "run_id": 999_999,
                "job_id": "no-such-job", "kind": "contacts", "filename": "portal.css", "session_id": 999_999,
                "user_id": 999_999, "token": "not-a-signed-token"}
    args = {name: values.get(name, defaults[name]) for name in rule.arguments}
    return rule.build(args, append_unknown=False)[1]


def test_every_route_is_classified(app):
    unclassified = [
        rule.endpoint for rule in app.url_map.iter_rules()
        if rule.endpoint not in PUBLIC | CUSTOMER_ONLY | ANY_SIGNED_IN
        and not rule.endpoint.startswith(SUPPORT_PREFIXES + BRANCH_ROUTES_PREFIXES)
    ]
    assert unclassified == [], "add these routes to the matrix in tests/test_route_matrix.py"


def test_anonymous_requests_to_every_private_route_go_to_the_login_page(app, client):
    for rule, method in _rules(app):
        if rule.endpoint in PUBLIC:
            continue
        response = client.open(_url(rule), method=method)
        assert response.status_code == 302, (method, rule.rule, response.status_code)
        assert response.headers["Location"].startswith("/login"), (method, rule.rule)
        if rule.endpoint == "auth.logout":  # signing out while signed out just shows the login page
            continue
        fragment = client.open(_url(rule), method=method, headers={"HX-Request": "true"})
        assert fragment.status_code == 401, (method, rule.rule, fragment.status_code)
        assert fragment.headers["HX-Redirect"].startswith("/login")


def test_customers_cannot_use_any_support_route(app, client, auth):
    business = factories.business()
    auth.login(factories.customer(business))
    for rule, method in _rules(app):
        if rule.endpoint.startswith(SUPPORT_PREFIXES):
            response = client.open(_url(rule, business_id=business.id), method=method)
            assert response.status_code == 403, (method, rule.rule, response.status_code)


def test_another_business_cannot_reach_a_branch_through_any_route(app, client, auth):
    theirs = factories.business("Harbour Auto", branches=("Sydney",))
    branch = theirs.branches[0]
    contact = factories.contacts(branch, 1)[0]
    invoice = factories.invoice(branch, contact, sage_id="abc")
    factories.connection(branch)
    before = [db.session.scalar(db.select(db.func.count()).select_from(m)) for m in (Job, Connection, AuditEvent)]
    auth.login(factories.customer(factories.business("Elsewhere Motors")))
    for rule, method in _rules(app):
        if "branch_id" in rule.arguments:
            response = client.open(_url(rule, branch_id=branch.id, invoice_id=invoice.id), method=method,
                                   data={"reason": "crafted", "username": "x", "password": "y"})
            assert response.status_code == 404, (method, rule.rule, response.status_code)
            assert "Harbour Auto" not in response.get_data(as_text=True)
    after = [db.session.scalar(db.select(db.func.count()).select_from(m)) for m in (Job, Connection, AuditEvent)]
    assert after == before
    assert db.session.get(Invoice, invoice.id).voided_at is None


def test_support_without_a_puppet_session_cannot_act_on_a_customers_branch(app, client, auth):
    business = factories.business(branches=("Sydney",))
    branch = business.branches[0]
    invoice = factories.invoice(branch, factories.contacts(branch, 1)[0], sage_id="abc")
    auth.login(factories.support())
    for rule, method in _rules(app):
        if rule.endpoint.startswith(BRANCH_ROUTES_PREFIXES) and method == "POST":
            response = client.open(_url(rule, branch_id=branch.id, invoice_id=invoice.id), method=method)
            assert response.status_code in (403, 404), (method, rule.rule, response.status_code)
    assert db.session.scalar(db.select(db.func.count()).select_from(Job)) == 0


def test_every_sage_one_aus_write_is_refused_in_a_puppet_session(app, client, auth):
    from portal.models import ConnectionState, Provider

    business = factories.business(branches=("Newcastle",))
    branch = business.branches[0]
    customer = factories.customer(business)
    invoice = factories.invoice(branch, factories.contacts(branch, 1)[0], sage_id="41")
    connection = factories.connection(branch, Provider.SAGE_ONE_AUS, sage_one_username="newcastle@harbour-auto.test",
                                      sage_one_company_id=20001, credentials_owner_id=customer.id)
    auth.login(factories.support())
    started = client.post(f"/support/customers/{business.id}/puppet",
                          data={"user_id": customer.id, "reason": "Ticket 4711"})
    assert started.status_code == 302
    writes = [rule for rule, method in _rules(app) if rule.endpoint.startswith("sage_one_aus.") and method == "POST"]
    assert writes, "expected Sage One AUS write routes"
    for rule in writes:
        response = client.post(_url(rule, branch_id=branch.id, invoice_id=invoice.id),
                               data={"username": "other@harbour-auto.test", "password": "x", "reason": "crafted",
                                     "company_id": "20001"})
        assert response.status_code == 403, (rule.rule, response.status_code)
        assert "only the customer can unlock" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.scalar(db.select(db.func.count()).select_from(Job)) == 0
    assert db.session.get(Connection, connection.id).state == ConnectionState.CONNECTED
    assert db.session.get(Connection, connection.id).sage_one_username == "newcastle@harbour-auto.test"
