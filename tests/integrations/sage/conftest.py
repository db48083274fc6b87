"""Sage test helpers: a business with a sharing sibling branch, and the OAuth dance over real HTTP.

The consent form is the sandbox's own (driven with `requests`), the callback is the portal's (the
test client), so every step of a connect runs for real.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pytest

from portal.extensions import db
from portal.models import Branch, Connection, User
from sage_sandbox.seed import hex_id
from sage_sandbox.testing import authorize
from tests import factories

LEAD_BUSINESS = hex_id("business", "Harbour Auto Pty Ltd")
FLEET_BUSINESS = hex_id("business", "Harbour Auto Fleet Services")
SOLO_BUSINESS = hex_id("business", "Solo Tyres & Exhausts")
SAGE_USER = "solo@harbour-auto.test"  # one Sage business: no choice step
MULTI_SAGE_USER = "sage@harbour-auto.test"  # two Sage businesses


@dataclass
class Workshop:
    business_id: int
    head_office_id: int
    sibling_id: int
    owner_id: int

    @property
    def owner(self) -> User:
        return db.session.get(User, self.owner_id)

    @property
    def head_office(self) -> Branch:
        return db.session.get(Branch, self.head_office_id)

    def connection(self, branch_id: int | None = None) -> Connection | None:
        return db.session.scalar(db.select(Connection).where(Connection.branch_id == (branch_id or self.head_office_id))
                                 .execution_options(populate_existing=True))


@pytest.fixture
def workshop(app) -> Workshop:
    """Harbour-like business: head office and a sibling that shares with head office; one owner."""
    business = factories.business("Harbour Auto", branches=("Sydney", "Parramatta"))
    business.branches[1].shares_with_head_office = True
    db.session.commit()
    owner = factories.customer(business)
    return Workshop(business.id, business.branches[0].id, business.branches[1].id, owner.id)


def start_connect(client, branch_id: int) -> dict:
    """POST connect; return the authorize URL's query (state, redirect_uri …)."""
    response = client.post(f"/integrations/sage/branches/{branch_id}/connect")
    assert response.status_code == 302, response.data
    query = {k: v[0] for k, v in parse_qs(urlsplit(response.headers["Location"]).query).items()}
    return query


def sign_in_at_sage(sandbox, query: dict, email: str = SAGE_USER) -> dict:
    """Approve on the sandbox's consent form; return the callback query (code, state)."""
    return authorize(sandbox.url, email, redirect_uri=query["redirect_uri"], state=query["state"])


def connect(client, sandbox, branch_id: int, email: str = SAGE_USER, business_id: str | None = None,
            confirm: bool = False):
    """Run the whole connect: portal → Sage consent → portal callback (→ business choice)."""
    query = start_connect(client, branch_id)
    callback = sign_in_at_sage(sandbox, query, email)
    response = client.get("/integrations/sage/callback", query_string={"code": callback["code"],
                                                                       "state": callback["state"]})
    assert response.status_code == 302, response.get_data(as_text=True)
    if "/business" in response.headers["Location"]:
        data = {"business_id": business_id or LEAD_BUSINESS}
        if confirm:
            data["confirm"] = "yes"
        response = client.post(f"/integrations/sage/branches/{branch_id}/business", data=data)
        assert response.status_code == 302, response.get_data(as_text=True)
    return response


def sage_contacts(sandbox, business_id: str = SOLO_BUSINESS) -> list[dict]:
    """The contacts the sandbox holds for a Sage business."""
    with sandbox.state.lock:
        return list(sandbox.state.businesses[business_id].contacts.values())


def sage_invoices(sandbox, business_id: str = SOLO_BUSINESS) -> list[dict]:
    with sandbox.state.lock:
        return list(sandbox.state.businesses[business_id].invoices.values())


@pytest.fixture
def run_jobs(drain_jobs):
    """Drain the queue with a real worker, then forget the test's cached rows so it re-reads them."""

    def run():
        drain_jobs()
        db.session.expire_all()

    return run
