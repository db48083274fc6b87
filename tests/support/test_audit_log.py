"""The audit log for support leads: search by email, kind and dates; CSV export."""
from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest

from portal.extensions import db
from portal.models import AuditEvent, utcnow
from tests import factories


@pytest.fixture
def world(app):
    business = factories.business("Harbour Auto")
    customer = factories.customer(business, email="owner@harbour-auto.test")
    support = factories.support(email="sam@portal.test")
    lead = factories.support(email="lead@portal.test", lead=True)
    now = utcnow()
    db.session.add_all([
        AuditEvent(kind="puppet.started", summary="sam started puppeting owner", business_id=business.id,
                   actor_id=support.id, subject_user_id=customer.id, occurred_at=now - timedelta(days=10)),
        AuditEvent(kind="puppet.write", summary="=HYPERLINK(\"x\") POST /sync", business_id=business.id,
                   actor_id=support.id, subject_user_id=customer.id, occurred_at=now - timedelta(days=1),
                   address="10.0.0.7"),
        AuditEvent(kind="connection.connected", summary="Sydney connected", business_id=business.id,
                   actor_id=customer.id, occurred_at=now),
    ])
    db.session.commit()
    return {"lead": lead, "support": support, "customer": customer, "now": now}


def _summaries(body):
    return {s for s in ["sam started puppeting owner", "POST /sync", "Sydney connected"] if s in body}


@pytest.mark.parametrize("args,expected", [
    ({}, {"sam started puppeting owner", "POST /sync", "Sydney connected"}),
    ({"email": "sam@"}, {"sam started puppeting owner", "POST /sync"}),
    ({"email": "owner@harbour"}, {"sam started puppeting owner", "POST /sync", "Sydney connected"}),
    ({"kind": "puppet"}, {"sam started puppeting owner", "POST /sync"}),
    ({"kind": "puppet.write"}, {"POST /sync"}),
    ({"kind": "connection."}, {"Sydney connected"}),
])
def test_leads_search_the_audit_log(world, client, auth, args, expected):
    auth.login(world["lead"])
    body = client.get("/support/audit", query_string=args).get_data(as_text=True)
    assert _summaries(body) == expected


def test_leads_search_by_date_range(world, client, auth):
    auth.login(world["lead"])
    day = lambda delta: (world["now"] - timedelta(days=delta)).date().isoformat()  # noqa: E731
    body = client.get("/support/audit", query_string={"from": day(2), "to": day(1)}).get_data(as_text=True)
    assert _summaries(body) == {"POST /sync"}


def test_a_bad_date_gets_a_clear_message(world, client, auth):
    auth.login(world["lead"])
    response = client.get("/support/audit", query_string={"from": "last tuesday"})
    assert response.status_code == 400 and "must be a date like" in response.get_data(as_text=True)


def test_the_csv_export_has_both_people_the_address_and_defuses_formulas(world, client, auth):
    auth.login(world["lead"])
    response = client.get("/support/audit.csv", query_string={"kind": "puppet"}, buffered=True)
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [r["kind"] for r in rows] == ["puppet.write", "puppet.started"]
    write = rows[0]
    assert write["actor_email"] == "sam@portal.test" and write["subject_email"] == "owner@harbour-auto.test"
    assert write["address"] == "10.0.0.7" and write["business"] == "Harbour Auto"
    assert write["summary"].startswith("'=HYPERLINK")


def test_support_who_are_not_leads_cannot_read_the_audit_log(world, client, auth):
    auth.login(world["support"])
    response = client.get("/support/audit")
    assert response.status_code == 403 and "Only support leads" in response.get_data(as_text=True)


def test_the_console_links_the_audit_log_for_leads_only(world, client, auth):
    auth.login(world["support"])
    assert "Audit log" not in client.get("/support/").get_data(as_text=True)
    auth.logout()
    auth.login(world["lead"])
    assert "Audit log" in client.get("/support/").get_data(as_text=True)
