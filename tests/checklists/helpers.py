"""Seeded situations for the checklist tests."""
from __future__ import annotations

import sqlalchemy as sa

from portal.extensions import db
from portal.models import ChecklistRun, ChecklistStepResult, Job, JobStatus, utcnow

CHECKLIST_TABLES = {ChecklistRun.__tablename__, ChecklistStepResult.__tablename__, "audit_events"}


def database_snapshot() -> dict:
    """Every row of every table except the run's own records (and the append-only audit log)."""
    db.session.expire_all()
    snapshot = {}
    with db.engine.connect() as conn:
        for table in db.metadata.sorted_tables:
            if table.name in CHECKLIST_TABLES:
                continue
            snapshot[table.name] = sorted(map(tuple, conn.execute(sa.select(table)).all()), key=repr)
    return snapshot


def job(branch, kind: str, status: JobStatus, *, created_at=None, **fields) -> Job:
    """A job row as the integrations leave it (a running one holds a live lease, as a working job does)."""
    import uuid
    from datetime import timedelta

    if status == JobStatus.RUNNING:
        fields.setdefault("lease_expires_at", utcnow() + timedelta(hours=1))

    row = Job(id=uuid.uuid4().hex, kind=kind, branch_id=branch.id, status=status,
              description=fields.pop("description", kind), created_at=created_at or utcnow(), **fields)
    db.session.add(row)
    db.session.commit()
    return row


def start_puppet(client, business, customer, reason="Ticket #1: checklist"):
    """Open a puppet session through the console (the support person must be signed in)."""
    response = client.post(f"/support/customers/{business.id}/puppet",
                           data={"user_id": customer.id, "reason": reason})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return response
