"""Everything the console's customer page shows about one business."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from operator import attrgetter

from flask import abort
from sqlalchemy import select
from sqlalchemy.orm import joinedload, selectinload

from portal.extensions import db
from portal.ids import form_id
from portal.models import Branch, Business, Job, JobStatus, PuppetSession, Role, User, utcnow
from portal.models.jobs import active_on, latest_per_branch, per_branch_params
from portal.support import health, timeline
from portal.support.search import BranchResult


@dataclass
class CustomerPage:
    business: Business
    branches: list[BranchResult]
    users: list[User]
    failed_jobs: list[Job]
    active_jobs: list[Job]
    live_sessions: list[PuppetSession]
    timeline: list[timeline.Entry]
    ctx: health.HealthContext


def business_or_404(business_id: int) -> Business:
    """The business with this id, or 404."""
    business = db.session.get(Business, business_id)
    if business is None:
        abort(404)
    return business


def customer_user_or_404(business: Business, user_id) -> User:
    """A customer user of this business, or 404 (never a support person, never another business);
    400 when `user_id` is not an id at all (missing, not a number, too large)."""
    user = db.session.get(User, form_id(user_id))
    if user is None or user.business_id != business.id:
        abort(404)
    return user


FAILED_SHOWN = 10  # the business's latest failed jobs the page lists


@functools.lru_cache(maxsize=16)
def _failed_jobs_statement(branch_count: int):
    """Each branch's latest failed jobs from the newest end of its (branch, status, created) index,
    then the latest of those (by status alone it read every failed job of every business); built
    once per number of branches."""
    failed = latest_per_branch(branch_count, Job.status == JobStatus.FAILED)
    return (select(failed).order_by(failed.created_at.desc()).limit(FAILED_SHOWN)
            .options(joinedload(failed.branch), joinedload(failed.requested_by), joinedload(failed.puppeteer)))


def customer_page(business_id: int, ctx: health.HealthContext | None = None) -> CustomerPage:
    """The business, its branches and their full connection state, jobs, users and timeline."""
    ctx = ctx or health.context()
    # The branches and their connections joined in: one round trip, not three.
    business = db.session.scalars(
        select(Business)
        .where(Business.id == business_id)
        .options(joinedload(Business.branches).joinedload(Branch.connection))
    ).unique().first()
    if business is None:
        abort(404)
    branch_ids = [b.id for b in business.branches]
    users = db.session.scalars(
        select(User).where(User.business_id == business.id, User.role == Role.CUSTOMER).order_by(User.email)
    ).all()
    # Many-to-one, so joined into the row's own statement: a separate select per relation would be
    # sent only when some row has one, and the page's statements would change with its history.
    job_options = (joinedload(Job.branch), joinedload(Job.requested_by), joinedload(Job.puppeteer))
    failed_jobs = [] if not branch_ids else db.session.scalars(
        _failed_jobs_statement(len(branch_ids)), per_branch_params(branch_ids, FAILED_SHOWN)).all()
    active_jobs = sorted(db.session.scalars(active_on(branch_ids).options(*job_options)),
                         key=attrgetter("created_at"))
    live_sessions = db.session.scalars(
        select(PuppetSession)
        .where(
            PuppetSession.business_id == business.id,
            PuppetSession.ended_at.is_(None),
            PuppetSession.expires_at > ctx.now,
        )
        .options(joinedload(PuppetSession.support_user), joinedload(PuppetSession.customer_user))
    ).all()
    return CustomerPage(
        business=business,
        branches=[BranchResult(b, b.connection, health.flags(b.connection, ctx)) for b in business.branches],
        users=users,
        failed_jobs=failed_jobs,
        active_jobs=active_jobs,
        live_sessions=live_sessions,
        timeline=timeline.for_business(business.id, branch_ids=branch_ids),
        ctx=ctx,
    )


def live_puppet_sessions() -> list[PuppetSession]:
    """Every puppet session running now, oldest first, with both people loaded."""
    return db.session.scalars(
        select(PuppetSession)
        .where(PuppetSession.ended_at.is_(None), PuppetSession.expires_at > utcnow())
        .order_by(PuppetSession.started_at)
        .options(
            selectinload(PuppetSession.support_user),
            selectinload(PuppetSession.customer_user),
            selectinload(PuppetSession.business),
        )
    ).all()


def support_staff() -> list[User]:
    """Every support user, by email."""
    return db.session.scalars(select(User).where(User.role == Role.SUPPORT).order_by(User.email)).all()


def support_user_or_404(user_id: int) -> User:
    """The support user with this id, or 404."""
    user = db.session.get(User, user_id)
    if user is None or not user.is_support:
        abort(404)
    return user
