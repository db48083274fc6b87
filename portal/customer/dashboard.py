"""What the customer dashboard shows, gathered in a fixed number of queries."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func

from portal.extensions import db
from portal.models import AuditEvent, Branch, Connection, Job, PuppetSession


@dataclass
class BranchCard:
    branch: Branch
    connection: Connection | None
    last_job: Job | None
    active_jobs: list[Job]


def branch_cards(business) -> list[BranchCard]:
    """One card per branch with its connection, last job and running jobs."""
    branches = db.session.scalars(
        db.select(Branch).where(Branch.business_id == business.id).order_by(Branch.id)
    ).all()
    ids = [b.id for b in branches]
    connections = {
        c.branch_id: c
        for c in db.session.scalars(db.select(Connection).where(Connection.branch_id.in_(ids)))
    }
    latest = (
        db.select(Job.branch_id, func.max(Job.created_at).label("at"))
        .where(Job.branch_id.in_(ids))
        .group_by(Job.branch_id)
        .subquery()
    )
    last_jobs = {
        j.branch_id: j
        for j in db.session.scalars(
            db.select(Job).join(latest, (Job.branch_id == latest.c.branch_id) & (Job.created_at == latest.c.at))
        )
    }
    active: dict[int, list[Job]] = {}
    for job in db.session.scalars(
        db.select(Job).where(Job.branch_id.in_(ids), Job.status.in_(("queued", "running")))
    ):
        active.setdefault(job.branch_id, []).append(job)
    return [BranchCard(b, connections.get(b.id), last_jobs.get(b.id), active.get(b.id, [])) for b in branches]


def support_access_log(business_id: int, limit: int = 10) -> list[PuppetSession]:
    """The latest times support puppeted someone in this business: by whom, when and why."""
    return db.session.scalars(
        db.select(PuppetSession)
        .where(PuppetSession.business_id == business_id)
        .order_by(PuppetSession.started_at.desc())
        .limit(limit)
    ).all()


def puppet_writes(business_id: int, limit: int = 20) -> list[AuditEvent]:
    """Changes support made while puppeting this business's users."""
    return db.session.scalars(
        db.select(AuditEvent)
        .where(
            AuditEvent.business_id == business_id,
            AuditEvent.puppet_session_id.is_not(None),
            AuditEvent.kind.not_in(("puppet.started", "puppet.ended")),
        )
        .order_by(AuditEvent.occurred_at.desc())
        .limit(limit)
    ).all()
