"""Support's two-step sign-in: TOTP enrolment with a locally rendered QR code, recovery codes shown
once and stored hashed, required before any support page or puppet session, reset by a lead."""
import re

import pyotp

from portal import two_factor
from portal.extensions import db
from portal.models import AuditEvent, RecoveryCode, User
from tests import factories
from tests.support.helpers import customer_world, start_puppet


def test_a_password_alone_reaches_no_support_page_and_no_puppet_session(client, auth):
    business, customer = customer_world()
    support = factories.support()
    response = auth.login(support, second_step=False)
    assert response.headers["Location"].startswith("/login/second-step")
    for path in ("/support/", f"/support/customers/{business.id}", "/support/checklists/", "/account/password"):
        blocked = client.get(path)
        assert blocked.status_code == 302 and blocked.headers["Location"].startswith("/login/second-step"), path
    fragment = client.get("/support/", headers={"HX-Request": "true"})
    assert fragment.status_code == 401 and fragment.headers["HX-Redirect"].startswith("/login/second-step")
    assert start_puppet(client, business, customer).headers["Location"].startswith("/login/second-step")
    assert db.session.scalar(db.select(db.func.count()).select_from(AuditEvent).where(
        AuditEvent.kind == "puppet.started")) == 0


def test_the_right_code_opens_the_console_once_and_wrong_codes_are_throttled(client, auth):
    support = factories.support()
    auth.login(support, second_step=False)
    for _ in range(5):
        assert client.post("/login/second-step", data={"code": "000000"}).status_code == 400
    assert client.post("/login/second-step", data={"code": factories.current_totp(support)}).status_code == 429
    assert client.get("/support/").status_code == 302


def test_a_code_is_accepted_only_once(app, client, auth):
    support = factories.support()
    auth.login(support, second_step=False)
    code = factories.current_totp(support)
    assert client.post("/login/second-step", data={"code": code}).status_code == 302
    assert client.get("/support/").status_code == 200
    other = app.test_client()
    other.post("/login", data={"email": support.email, "password": factories.PASSWORD})
    assert other.post("/login/second-step", data={"code": code}).status_code == 400


def test_enrolment_shows_a_local_qr_code_then_the_recovery_codes_once_stored_hashed(client, auth):
    support = factories.support(enrolled=False)
    response = auth.login(support)
    assert response.headers["Location"].startswith("/login/second-step")
    page = client.get("/account/two-factor/setup").get_data(as_text=True)
    assert 'src="data:image/svg+xml' in page
    secret = re.search(r'id="totp-key">([A-Z2-7]+)<', page).group(1)
    assert client.post("/account/two-factor/setup", data={"code": "123456"}).status_code == 400
    done = client.post("/account/two-factor/setup", data={"code": pyotp.TOTP(secret).now()})
    codes = re.findall(r"<li><code>([0-9a-f]{10}-[0-9a-f]{10})</code></li>", done.get_data(as_text=True))
    assert len(codes) == 10
    stored = {row.code_hash for row in db.session.scalars(db.select(RecoveryCode))}
    assert len(stored) == 10 and not stored & set(codes)
    assert client.get("/support/").status_code == 200
    assert client.get("/account/two-factor/setup").status_code == 302  # not shown again
    # A recovery code works once in place of the app's code.
    auth.logout()
    auth.login(support, second_step=False)
    assert client.post("/login/second-step", data={"code": codes[0]}).status_code == 302
    auth.logout()
    auth.login(support, second_step=False)
    assert client.post("/login/second-step", data={"code": codes[0]}).status_code == 400


def test_a_lead_resets_another_persons_second_factor_audited_and_their_sessions_end(app, client, auth):
    colleague = factories.support()
    theirs = app.test_client()
    from tests.conftest import AuthActions

    AuthActions(theirs).login(colleague)
    assert theirs.get("/support/").status_code == 200
    lead = factories.support(lead=True)
    auth.login(lead)
    assert f"/support/team/{colleague.id}/two-factor/reset" in client.get("/support/team").get_data(as_text=True)
    assert client.post(f"/support/team/{colleague.id}/two-factor/reset").status_code == 302
    db.session.expire_all()
    assert not two_factor.is_enrolled(db.session.get(User, colleague.id))
    assert theirs.get("/support/").status_code == 302
    event = db.session.scalar(db.select(AuditEvent).where(AuditEvent.kind == "account.two_factor_reset"))
    assert event.actor_id == lead.id and event.subject_user_id == colleague.id


def test_only_a_lead_can_reset_a_second_factor(client, auth):
    colleague = factories.support()
    auth.login(factories.support())
    assert client.get("/support/team").status_code == 403
    assert client.post(f"/support/team/{colleague.id}/two-factor/reset").status_code == 403
    assert two_factor.is_enrolled(db.session.get(User, colleague.id))


def test_customers_have_no_second_step(client, auth):
    customer = factories.customer(factories.business())
    assert auth.login(customer, second_step=False).headers["Location"] == "/"
    assert client.get("/").status_code == 200


def test_the_demo_support_user_is_enrolled_and_demo_totp_prints_a_code_the_portal_accepts(app, client, runner):
    from portal import demo

    demo.load(contacts_per_branch=5, invoices_per_branch=1)
    result = runner.invoke(args=["demo-totp"])
    assert result.exit_code == 0, result.output
    code = result.output.split()[0]
    client.post("/login", data={"email": demo.SUPPORT_EMAIL, "password": demo.DEMO_PASSWORD})
    assert client.post("/login/second-step", data={"code": code}).status_code == 302
    assert client.get("/support/").status_code == 200
