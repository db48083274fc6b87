"""One timeline per customer: audit events and jobs, merged newest first."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import joinedload

from portal.extensions import db
from portal.models import AuditEvent, Branch, Job, JobStatus

CATEGORIES = {
    "connection": "Connection",
    "token": "Token",
    "job": "Job",
    "puppet": "Puppet session",
    "checklist": "Checklist",
    "sync": "Sync",
    "account": "Account",
}
# Events the integrations record under their provider's name ("sage.connected",
# "sage_one_aus.synced" …): what they did decides whether they read as a job or a connection event.
PROVIDER_PREFIXES = ("sage", "sage_one_aus")
JOB_ACTIONS = ("requested", "synced", "void", "void_result")


@dataclass
class Entry:
    at: datetime
    category: str  # a key of CATEGORIES, or "other"
    kind: str
    summary: str
    branch_name: str | None
    who: str | None
    as_whom: str | None = None
    problem: bool = False

    @property
    def category_label(self) -> str:
        return CATEGORIES.get(self.category, "Other")


def _category(kind: str) -> str:
    head, _, action = kind.partition(".")
    if "token" in kind:
        return "token"
    if head in PROVIDER_PREFIXES:
        return "job" if action.endswith(JOB_ACTIONS) else "connection"
    return head if head in CATEGORIES else "other"


def _from_event(event: AuditEvent) -> Entry:
    return Entry(
        at=event.occurred_at,
        category=_category(event.kind),
        kind=event.kind,
        summary=event.summary,
        branch_name=event.branch.name if event.branch is not None else None,
        who=event.actor.email if event.actor is not None else None,
        as_whom=event.subject_user.email if event.subject_user is not None and event.puppet_session_id else None,
        problem=event.kind.endswith(("failed", "refused", "rejected", "write_refused")),
    )


def _from_job(job: Job) -> Entry:
    status = job.status.value
    summary = f"{job.description or job.kind}: {status}"
    if job.error:
        summary += f" — {job.error}"
    elif job.result and job.result.get("summary"):
        summary += f" — {job.result['summary']}"
    who = job.requested_by.email if job.requested_by is not None else None
    if job.puppeteer is not None:
        who = f"{job.puppeteer.email} (puppeting {who})"
    return Entry(
        at=job.ended_at or job.started_at or job.created_at,
        category="job",
        kind=f"job.{status}",
        summary=summary,
        branch_name=job.branch.name if job.branch is not None else None,
        who=who,
        problem=job.status == JobStatus.FAILED,
    )


def for_business(business_id: int, limit: int = 50, branch_ids: list[int] | None = None) -> list[Entry]:
    """The latest `limit` things that happened to a business (fixed number of queries; `branch_ids`,
    its branches, when the caller has them already)."""
    events = db.session.scalars(
        select(AuditEvent)
        .where(AuditEvent.business_id == business_id)
        .order_by(AuditEvent.occurred_at.desc(), AuditEvent.id.desc())
        .limit(limit)
        # Joined, not selected separately: a select per relation is sent only when some row has one.
        .options(joinedload(AuditEvent.actor), joinedload(AuditEvent.subject_user), joinedload(AuditEvent.branch))
    ).all()
    # Each branch's latest `limit` from the newest end of its (branch, created) index, then the latest
    # of those: ordering the business's jobs whole would read every job it ever ran.
    if branch_ids is None:
        branch_ids = db.session.scalars(select(Branch.id).where(Branch.business_id == business_id)).all()
    latest = [Job.id.in_(select(Job.id).where(Job.branch_id == branch_id).order_by(Job.created_at.desc())
                         .limit(limit)) for branch_id in branch_ids]
    jobs = [] if not latest else db.session.scalars(
        select(Job)
        .where(or_(*latest))
        .order_by(Job.created_at.desc())
        .limit(limit)
        .options(joinedload(Job.branch), joinedload(Job.requested_by), joinedload(Job.puppeteer))
    ).all()
    entries = [_from_event(e) for e in events] + [_from_job(j) for j in jobs]
    entries.sort(key=lambda e: e.at, reverse=True)
    return entries[:limit]
