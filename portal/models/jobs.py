"""A row per background job (sync, void …), keyed by its RQ job id."""
from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.base import UTCDateTime, utcnow, value_enum


class JobStatus(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"

    @property
    def is_active(self) -> bool:
        return self in (JobStatus.QUEUED, JobStatus.RUNNING)


ACTIVE_STATUSES = ("queued", "running")
# The predicate of the partial index of active jobs. A query that spells it so (a literal, not
# parameters) reads that small index instead of every job of the branch and kind.
ACTIVE_WHERE = "status IN ('queued', 'running')"


class Job(db.Model):
    """Who asked for what on which branch, how far it got and how it ended."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_branch_kind_created", "branch_id", "kind", "created_at"),
        # A branch's (or business's) latest jobs of any kind, read newest first instead of sorted whole.
        Index("ix_jobs_branch_created", "branch_id", "created_at"),
        # A branch's latest failed jobs (the support customer page), not every failed job there is.
        Index("ix_jobs_branch_status_created", "branch_id", "status", "created_at"),
        # At most one queued or running job of a kind per branch, enforced by the database too.
        Index(
            "uq_jobs_one_active_per_branch_kind",
            "branch_id",
            "kind",
            unique=True,
            sqlite_where=text(ACTIVE_WHERE),
            postgresql_where=text(ACTIVE_WHERE),
        ),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40), index=True)
    branch_id: Mapped[int] = mapped_column(ForeignKey("branches.id"))
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # The support person, when the job was asked for inside a puppet session.
    puppeteer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    status: Mapped[JobStatus] = mapped_column(
        value_enum(JobStatus, 20),
        default=JobStatus.QUEUED,
        index=True,
    )
    description: Mapped[str] = mapped_column(String(255), default="")
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    progress_done: Mapped[int] = mapped_column(default=0)
    progress_total: Mapped[int | None] = mapped_column()
    result: Mapped[dict | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A paused run (a Sage daily budget used up) continues as another RQ job at `resume_at`;
    # `rq_job_id` names the RQ job that carries the row now (None: the row's own id).
    rq_job_id: Mapped[str | None] = mapped_column(String(64))
    resume_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # While running, the job renews this (portal/leases.py); a row whose lease lapsed is dead.
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    branch = relationship("Branch")
    requested_by = relationship("User", foreign_keys=[requested_by_id])
    puppeteer = relationship("User", foreign_keys=[puppeteer_id])

    @property
    def rq_id(self) -> str:
        """The RQ job carrying this row now."""
        return self.rq_job_id or self.id

    @property
    def percent(self) -> int:
        if not self.progress_total:
            return 0
        return min(100, round(100 * self.progress_done / self.progress_total))

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.kind} {self.status.value}>"


def latest_per_branch(branch_count: int, *criteria):
    """Job, aliased over each of `branch_count` branches' latest jobs meeting `criteria`, newest first
    by `created_at`, for a statement that orders and limits them again across the branches; run it
    with `per_branch_params(branch_ids, limit)`.

    Each branch's part reads the newest end of its (branch, …, created) index and stops after the
    limit; the parts are joined by UNION ALL. `id IN (each branch's latest) OR …` found the same
    rows, but PostgreSQL plans that OR as a scan of every job there is. The branches and the limit
    are parameters, so a caller builds its statement once per number of branches (it is large, and
    SQLAlchemy would work out its cache key again for every new copy).
    """
    from sqlalchemy import bindparam, select, union_all
    from sqlalchemy.orm import aliased

    # Each part a subquery of its own: SQLite takes ORDER BY and LIMIT in a compound's part only so.
    parts = [select(Job).where(Job.branch_id == bindparam(f"branch_{n}"), *criteria).order_by(Job.created_at.desc())
             .limit(bindparam("per_branch")).subquery().select() for n in range(branch_count)]
    return aliased(Job, union_all(*parts).subquery("latest_jobs"))


def branch_params(branch_ids) -> dict:
    """The branches of a statement built per number of branches, as its `branch_{n}` parameters."""
    return {f"branch_{n}": branch_id for n, branch_id in enumerate(branch_ids)}


def per_branch_params(branch_ids, limit: int) -> dict:
    """The parameters of a `latest_per_branch` statement for these branches."""
    return {"per_branch": limit, **branch_params(branch_ids)}


def active_on(branch_ids):
    """The queued or running jobs of these branches, read from the partial index of active jobs.

    Unordered on purpose: asked to sort them by time, SQLite read every job of the table instead of
    that small index (3.4 ms at 8,000 jobs, growing); the callers sort the few rows themselves.
    """
    return db.select(Job).where(Job.branch_id.in_(branch_ids), text(ACTIVE_WHERE))
