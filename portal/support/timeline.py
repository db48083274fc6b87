"""One timeline per customer: audit events and jobs, merged newest first."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.orm import aliased

from portal.extensions import db
from portal.models import AuditEvent, Branch, JobStatus, User
from portal.models.jobs import latest_per_branch, per_branch_params

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


def _from_event(event) -> Entry:
    return Entry(
        at=event.occurred_at,
        category=_category(event.kind),
        kind=event.kind,
        summary=event.summary,
        branch_name=event.branch_name,
        who=event.who,
        as_whom=event.subject if event.puppet_session_id else None,
        problem=event.kind.endswith(("failed", "refused", "rejected", "write_refused")),
    )


def _from_job(job) -> Entry:
    status = JobStatus(job.status).value
    summary = f"{job.description or job.kind}: {status}"
    if job.error:
        summary += f" — {job.error}"
    elif job.summary:
        summary += f" — {job.summary}"
    who = job.requested_by
    if job.puppeteer is not None:
        who = f"{job.puppeteer} (puppeting {who})"
    return Entry(
        at=job.ended_at or job.started_at or job.created_at,
        category="job",
        kind=f"job.{status}",
        summary=summary,
        branch_name=job.branch_name,
        who=who,
        problem=status == JobStatus.FAILED.value,
    )


@functools.cache
def _events_statement():
    actor, subject = aliased(User), aliased(User)
    return (
        select(AuditEvent.occurred_at, AuditEvent.kind, AuditEvent.summary, AuditEvent.puppet_session_id,
               Branch.name.label("branch_name"), actor.email.label("who"), subject.email.label("subject"))
        .outerjoin(Branch, Branch.id == AuditEvent.branch_id)
        .outerjoin(actor, actor.id == AuditEvent.actor_id)
        .outerjoin(subject, subject.id == AuditEvent.subject_user_id)
        .where(AuditEvent.business_id == bindparam("business_id"))
        .order_by(AuditEvent.occurred_at.desc(), AuditEvent.id.desc())
        .limit(bindparam("limit"))
    )


def _events(business_id: int, limit: int) -> list:
    """The business's latest events: the columns an entry shows, with the names it gives joined in
    (plain rows, not audit events and whole users: a timeline of 50 read as objects cost more than
    the rest of the page). The statement is built once."""
    return db.session.execute(_events_statement(), {"business_id": business_id, "limit": limit}).all()


@functools.lru_cache(maxsize=16)
def _jobs_statement(branch_count: int):
    requester, puppeteer = aliased(User), aliased(User)
    job = latest_per_branch(branch_count)
    return (
        select(job.kind, job.status, job.description, job.error, job.result["summary"].as_string().label("summary"),
               job.created_at, job.started_at, job.ended_at, Branch.name.label("branch_name"),
               requester.email.label("requested_by"), puppeteer.email.label("puppeteer"))
        .outerjoin(Branch, Branch.id == job.branch_id)
        .outerjoin(requester, requester.id == job.requested_by_id)
        .outerjoin(puppeteer, puppeteer.id == job.puppeteer_id)
        .order_by(job.created_at.desc())
        .limit(bindparam("limit"))
    )


def _jobs(branch_ids: list[int], limit: int) -> list:
    """Each branch's latest `limit` jobs from the newest end of its (branch, created) index, then the
    latest of those (ordering the business's jobs whole would read every job it ever ran); plain rows
    of what an entry shows, the result's summary read out of its JSON by the database. The statement
    is built once per number of branches."""
    if not branch_ids:
        return []
    return db.session.execute(_jobs_statement(len(branch_ids)),
                              {**per_branch_params(branch_ids, limit), "limit": limit}).all()


def for_business(business_id: int, limit: int = 50, branch_ids: list[int] | None = None) -> list[Entry]:
    """The latest `limit` things that happened to a business (fixed number of queries; `branch_ids`,
    its branches, when the caller has them already)."""
    if branch_ids is None:
        branch_ids = db.session.scalars(select(Branch.id).where(Branch.business_id == business_id)).all()
    entries = [_from_event(e) for e in _events(business_id, limit)] + [_from_job(j) for j in _jobs(branch_ids, limit)]
    entries.sort(key=lambda e: e.at, reverse=True)
    return entries[:limit]
