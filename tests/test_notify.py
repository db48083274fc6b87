"""The customer is told when only they can act: by email through a real SMTP server (the test sink),
at most once a day per problem, with the branch's link and an unsubscribe link that works in one
click; a mail server that is down delays the mail and fails nothing else."""
from __future__ import annotations

from datetime import timedelta

import pytest

from portal import notify
from portal.extensions import db
from portal.integrations.sage import tokens
from portal.models import ConnectionState, Job, JobStatus, Notification, Provider, User, utcnow
from tests import factories

pytestmark = pytest.mark.postgres


@pytest.fixture
def shop(app):
    business = factories.business("Harbour Auto", branches=("Sydney",))
    owner = factories.customer(business, email="owner@harbour-auto.test")
    manager = factories.customer(business, email="manager@harbour-auto.test")
    quiet = factories.customer(business, email="quiet@harbour-auto.test")
    quiet.notify_by_email = False
    connection = factories.connection(business.branches[0], Provider.SAGE, sage_business_id="b" * 32)
    db.session.commit()
    return {"business": business, "branch": business.branches[0], "owner": owner, "manager": manager,
            "connection": connection}


def test_a_branch_that_must_sign_in_again_is_mailed_to_each_customer_once_a_day(shop, outbox, drain_jobs):
    tokens.mark_needs_reauth(shop["connection"])
    tokens.mark_needs_reauth(shop["connection"])  # the same problem again the same day: no second mail
    drain_jobs()

    messages = outbox.messages()
    assert sorted(m["To"] for m in messages) == ["manager@harbour-auto.test", "owner@harbour-auto.test"]
    message = messages[0]
    assert "sign in to Sage again" in message["Subject"]
    parts = {part.get_content_type(): part.get_payload(decode=True).decode() for part in message.walk()
             if not part.is_multipart()}
    text, html = parts["text/plain"], parts["text/html"]
    assert f"/integrations/sage/branches/{shop['branch'].id}" in text and "Reconnect" in text
    assert "Open Sydney" in html and "Stop these emails" in html
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    rows = db.session.scalars(db.select(Notification)).all()
    assert len(rows) == 2 and all(r.sent_at is not None for r in rows)

    # A day later the same problem is told again.
    for row in rows:
        row.created_at = utcnow() - timedelta(days=1, minutes=1)
    shop["connection"].state = ConnectionState.CONNECTED
    db.session.commit()
    tokens.mark_needs_reauth(shop["connection"])
    assert db.session.scalar(db.select(db.func.count()).select_from(Notification)) == 4


def test_the_dashboard_and_the_support_customer_page_show_what_was_sent(shop, outbox, drain_jobs, client, auth):
    tokens.mark_needs_reauth(shop["connection"])
    drain_jobs()
    auth.login(shop["owner"])
    page = client.get("/").get_data(as_text=True)
    assert "Emails we sent you about problems" in page and "sign in to Sage again" in page
    auth.logout()
    auth.login(factories.support())
    page = client.get(f"/support/customers/{shop['business'].id}").get_data(as_text=True)
    assert "What the customer was told" in page and "manager@harbour-auto.test" in page


def test_one_click_unsubscribe_stops_the_mails_and_an_altered_link_does_nothing(shop, client):
    token = notify.unsubscribe_token(shop["owner"])
    page = client.get(f"/notifications/unsubscribe/{token}")
    assert page.status_code == 200 and "Stop these emails" in page.get_data(as_text=True)
    # A mail client's one-click POST carries no CSRF token: the signed link is the proof.
    assert client.post(f"/notifications/unsubscribe/{token}", csrf=False).status_code == 302
    assert db.session.get(User, shop["owner"].id).notify_by_email is False
    assert client.post(f"/notifications/unsubscribe/{token}x", csrf=False).status_code == 404
    assert db.session.get(User, shop["manager"].id).notify_by_email is True


def test_a_mail_server_that_is_down_delays_the_mail_and_fails_nothing_else(shop, app, outbox, drain_jobs):
    app.config["SMTP_PORT"] = 1  # nothing listens there
    tokens.mark_needs_reauth(shop["connection"])
    drain_jobs()
    rows = db.session.scalars(db.select(Notification)).all()
    assert rows and all(r.sent_at is None and "did not take the message" in r.error for r in rows)
    assert shop["connection"].state == ConnectionState.NEEDS_REAUTH  # the change itself stands
    assert outbox.messages() == []


def test_the_same_sync_failing_three_times_in_a_row_is_told(shop, outbox, drain_jobs):
    branch = shop["branch"]
    for n in range(3):
        row = Job(id=f"{n:032d}", kind="sage.sync_contacts", branch_id=branch.id, status=JobStatus.FAILED,
                  description="Sync contacts to Sage", error="Sage is not answering right now.",
                  created_at=utcnow() + timedelta(seconds=n))
        db.session.add(row)
        db.session.commit()
        from jobs.runtime import _tell_if_failing

        _tell_if_failing(row)
        told = db.session.scalar(db.select(db.func.count()).select_from(Notification))
        assert told == (0 if n < 2 else 2)
    drain_jobs()
    assert any("failed three times in a row" in m["Subject"] for m in outbox.messages())
