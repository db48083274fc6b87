"""Shared set-up for the support console tests."""
from __future__ import annotations

from datetime import timedelta

from portal.extensions import db
from portal.models import PuppetSession, utcnow
from tests import factories


def customer_world(name: str = "Harbour Auto", branches=("Sydney", "Parramatta")):
    """A business with branches and one customer user."""
    business = factories.business(name, branches=branches)
    return business, factories.customer(business, email=f"owner@{name.lower().replace(' ', '-')}.test")


def start_puppet(client, business, customer, reason: str = "Ticket #1234: sync stuck"):
    """POST the customer page's puppet form; returns the response."""
    return client.post(
        f"/support/customers/{business.id}/puppet", data={"user_id": customer.id, "reason": reason}
    )


def live_session() -> PuppetSession | None:
    """The one live puppet session in the database, if any."""
    return db.session.scalar(db.select(PuppetSession).where(PuppetSession.ended_at.is_(None)))


def expire(puppet_session: PuppetSession) -> None:
    """Move the session's time limit into the past, as if the minutes had run out."""
    puppet_session.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
