"""Who may see what: the guards and the load-or-404 helpers every view goes through."""
from __future__ import annotations

import functools

from flask import abort
from flask_login import current_user, login_required
from sqlalchemy.orm import joinedload

from portal import puppet
from portal.extensions import db
from portal.models import Branch, Job


def support_required(view):
    """Only support staff (the real signed-in person, even while puppeting) may use the view."""

    @functools.wraps(view)
    @login_required
    def guarded(*args, **kwargs):
        real = puppet.real_user()
        if real is None or not real.is_support:
            abort(403)
        return view(*args, **kwargs)

    return guarded


def customer_required(view):
    """Only a customer (or support puppeting one) may use the view."""

    @functools.wraps(view)
    @login_required
    def guarded(*args, **kwargs):
        if not current_user.is_customer:
            abort(403)
        return view(*args, **kwargs)

    return guarded


def branch_for(user, branch_id: int, *, with_connection: bool = False) -> Branch:
    """The branch if `user` may see it (its business's customers; support), else 404;
    `with_connection` loads its connection in the same statement (a page that only reads it)."""
    branch = db.session.get(Branch, branch_id, options=[joinedload(Branch.connection)] if with_connection else None)
    if branch is None:
        abort(404)
    real = puppet.real_user()
    if user.is_customer and branch.business_id == user.business_id:
        return branch
    if user.is_support and real is not None and real.is_support:
        return branch
    abort(404)


def job_for(user, job_id: str) -> Job:
    """The job if `user` may see its branch, else 404."""
    job = db.session.get(Job, job_id)
    if job is None:
        abort(404)
    branch_for(user, job.branch_id)
    return job
