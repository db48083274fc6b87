"""Record audit events: one call that fills in who acted, as whom, and from where."""
from __future__ import annotations

from flask import g, has_request_context, request

from portal.extensions import db
from portal.models import AuditEvent


def record(
    kind: str,
    summary: str,
    *,
    business_id: int | None = None,
    branch=None,
    actor_id: int | None = None,
    subject_user_id: int | None = None,
    puppet_session_id: int | None = None,
    details: dict | None = None,
) -> AuditEvent:
    """Add an audit event to the session (the caller commits).

    Inside a request the actor is the real signed-in person, and in a puppet session the customer
    they act as is the subject; worker code passes both explicitly.
    """
    if branch is not None:
        business_id = business_id or branch.business_id
    if has_request_context():
        real = g.get("real_user")
        puppet_session = g.get("puppet_session")
        if actor_id is None and real is not None:
            actor_id = real.id
        # The puppeted customer is the subject only of what happens to their own business: support
        # working on another business's checklist mid-session is not acting as this customer.
        if puppet_session is not None and business_id in (None, puppet_session.business_id):
            business_id = business_id or puppet_session.business_id
            subject_user_id = subject_user_id or puppet_session.customer_user_id
            puppet_session_id = puppet_session_id or puppet_session.id
        address = request.remote_addr
    else:
        address = None
    event = AuditEvent(
        kind=kind,
        summary=summary,
        business_id=business_id,
        branch_id=branch.id if branch is not None else None,
        actor_id=actor_id,
        subject_user_id=subject_user_id,
        puppet_session_id=puppet_session_id,
        address=address,
        details=details or {},
    )
    db.session.add(event)
    return event
