"""Active puppet sessions: a support person ends their own stale sessions there; a lead ends anyone's."""
from portal.extensions import db
from portal.models import AuditEvent, PuppetSession
from tests import factories
from tests.conftest import AuthActions
from tests.support.helpers import customer_world, live_session, start_puppet


def _other_login(app, user):
    other = app.test_client()
    AuthActions(other).login(user)
    return other


def test_support_ends_their_own_session_left_open_in_another_browser(app, client, auth):
    business, customer = customer_world()
    support = factories.support()
    elsewhere = _other_login(app, support)
    start_puppet(elsewhere, business, customer)
    session = live_session()
    auth.login(support)
    page = client.get("/support/puppet/sessions").get_data(as_text=True)
    assert f"/support/puppet/sessions/{session.id}/end" in page
    response = client.post(f"/support/puppet/sessions/{session.id}/end")
    assert response.status_code == 302
    assert live_session() is None
    assert db.session.get(PuppetSession, session.id).end_reason == "ended from the sessions page"
    back = elsewhere.get("/", follow_redirects=True).get_data(as_text=True)
    assert "puppet session as" in back and "ended" in back
    assert "Puppet session." not in back  # no banner any more


def test_support_cannot_end_another_persons_session(app, client, auth):
    business, customer = customer_world()
    colleague = factories.support()
    start_puppet(_other_login(app, colleague), business, customer)
    session = live_session()
    auth.login(factories.support())
    listing = client.get("/support/puppet/sessions").get_data(as_text=True)
    assert f"/support/puppet/sessions/{session.id}/end" not in listing
    response = client.post(f"/support/puppet/sessions/{session.id}/end")
    assert response.status_code == 403
    assert live_session() is not None


def test_a_lead_ends_anyones_session_and_it_is_audited(app, client, auth):
    business, customer = customer_world()
    colleague = factories.support()
    start_puppet(_other_login(app, colleague), business, customer)
    session = live_session()
    lead = factories.support(lead=True)
    auth.login(lead)
    assert client.post(f"/support/puppet/sessions/{session.id}/end").status_code == 302
    assert live_session() is None
    event = db.session.scalar(db.select(AuditEvent).where(AuditEvent.kind == "puppet.ended"))
    assert event.actor_id == lead.id and event.puppet_session_id == session.id
    assert db.session.get(PuppetSession, session.id).end_reason == "ended by a support lead"
    assert client.post(f"/support/puppet/sessions/{session.id}/end").status_code == 409  # already ended


def test_the_banner_stays_in_view_on_long_pages():
    from pathlib import Path

    css = (Path(__file__).resolve().parents[2] / "static" / "portal.css").read_text()
    rule = css[css.index(".puppet-banner {"):]
    rule = rule[:rule.index("}")]
    assert "position: sticky" in rule and "top: 0" in rule
