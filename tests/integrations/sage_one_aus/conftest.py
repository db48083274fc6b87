"""Set-up for the Sage One AUS tests: a workshop with a Newcastle branch, its owner, and helpers
that connect it through the real pages against the sandbox."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from portal.models import Branch, Business, User
from tests import factories

USERNAME = "newcastle@harbour-auto.test"
MULTI_USERNAME = "multi@harbour-auto.test"
SAGE_PASSWORD = "sandbox-password"
NEWCASTLE_COMPANY = 20001


@dataclass
class World:
    business: Business
    branch: Branch
    other_branch: Branch
    owner: User
    colleague: User


@pytest.fixture
def world(app) -> World:
    business = factories.business("Harbour Auto", branches=("Newcastle", "Maitland"))
    owner = factories.customer(business, email="owner@harbour-auto.test")
    colleague = factories.customer(business, email="colleague@harbour-auto.test")
    return World(business, business.branches[0], business.branches[1], owner, colleague)


def connect(client, branch, username: str = USERNAME, password: str = SAGE_PASSWORD, **extra):
    """POST the connect form of a branch."""
    return client.post(f"/integrations/sage-one-aus/branches/{branch.id}/connect",
                       data={"username": username, "password": password, **extra})


def sync(client, branch):
    """POST the branch's Sync button."""
    return client.post(f"/integrations/sage-one-aus/branches/{branch.id}/sync")


def void(client, branch, invoice, reason: str = "Raised in error"):
    """POST the confirmed void of an invoice."""
    return client.post(f"/integrations/sage-one-aus/branches/{branch.id}/invoices/{invoice.id}/void",
                       data={"reason": reason})


def disconnect(client, branch):
    """POST the confirmed disconnect."""
    return client.post(f"/integrations/sage-one-aus/branches/{branch.id}/disconnect")


def start_puppet(client, business, customer, reason: str = "Ticket #77: Sage One AUS help"):
    """Open a puppet session through the support console's form."""
    response = client.post(f"/support/customers/{business.id}/puppet",
                           data={"user_id": customer.id, "reason": reason})
    assert response.status_code in (302, 303), response.get_data(as_text=True)[:500]
    return response


def sandbox_requests(sandbox) -> int:
    """How many Sage One AUS requests the sandbox has served."""
    return sandbox.state.snapshot()["requests"]["sage_one"]


def company(sandbox, company_id: int = NEWCASTLE_COMPANY):
    """The sandbox's company (customers, invoices and credit notes as it stores them)."""
    return sandbox.state.companies[company_id]


@pytest.fixture
def sandbox_clock(app, sandbox):
    """The portal's pacing clock, moved on (for the portal and the sandbox alike) whenever the
    portal waits, so a test can run minutes of Sage One's per-minute limit in a moment."""
    import time

    from portal.integrations.sage_one_aus import ratelimit

    moved = {"seconds": 0.0}

    def sleep(seconds: float) -> None:
        moved["seconds"] += seconds
        sandbox.state.advance_clock(seconds)

    clock = ratelimit.Clock(now=lambda: time.time() + moved["seconds"], sleep=sleep)
    app.extensions["sage_one_aus_clock"] = clock
    yield clock
    app.extensions.pop("sage_one_aus_clock", None)


@pytest.fixture
def every_logger_enabled():
    """Alembic's fileConfig (run by the migration fixture) disables existing loggers; turn them back on."""
    import logging

    disabled = [lg for lg in logging.root.manager.loggerDict.values()
                if isinstance(lg, logging.Logger) and lg.disabled]
    for logger in disabled:
        logger.disabled = False
    yield
    for logger in disabled:
        logger.disabled = True


def limit_stats(sandbox) -> dict:
    """The sandbox's rate-limit counters: blocks started and 429s answered, in total."""
    return sandbox.state.snapshot()["rate_limits"]
