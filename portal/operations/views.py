"""The Operations page (support leads): each section is also an htmx fragment the page polls.

`GET /support/operations/` is the whole page; with `HX-Request` and `?section=<name>` it answers
that section alone. Only Retry writes: a confirmation page, then a POST (CSRF, audited).
"""
from __future__ import annotations

import functools

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from portal import puppet, schedule
from portal.access import support_required
from portal.extensions import db
from portal.models import Job
from portal.operations import retry as retries
from portal.operations import state
from portal.web import wants_fragment

bp = Blueprint("operations", __name__, url_prefix="/support/operations")

POLL_SECONDS = 5
SECTIONS = {
    "queues": lambda: {"queues": state.queues()},
    "workers": lambda: {"workers": state.workers()},
    "failed": lambda: dict(zip(("failed", "failed_total"), state.failed_jobs(), strict=True)),
    "schedule": lambda: {"schedule": state.scheduled_runs(), "schedule_labels": schedule.LABELS},
    "limiters": lambda: {"limiters": state.limiters()},
}


@bp.before_request
def _not_while_puppeting():
    from portal.support.views import EndPuppetFirst

    if current_user.is_authenticated and puppet.current_session() is not None:
        raise EndPuppetFirst()


def lead_required(view):
    """Only support leads (the real signed-in person) may use the view; others get 403."""

    @functools.wraps(view)
    @support_required
    def guarded(*args, **kwargs):
        if not puppet.real_user().is_support_lead:
            abort(403, "Only support leads can open the Operations page.")
        return view(*args, **kwargs)

    return guarded


@bp.get("/")
@lead_required
def page():
    """Queues, workers, failed jobs, the schedule and Sage's limiters; `?section=` for one of them (htmx)."""
    section = request.args.get("section")
    if wants_fragment() and section in SECTIONS:
        return render_template(f"operations/_{section}.html", poll=POLL_SECONDS, **SECTIONS[section]())
    context = {}
    for fill in SECTIONS.values():
        context.update(fill())
    return render_template("operations/page.html", poll=POLL_SECONDS, **context)


def _failed_job_or_404(job_id: str) -> Job:
    job = db.session.get(Job, job_id[:64])
    if job is None:
        abort(404)
    return job


@bp.route("/jobs/<job_id>/retry", methods=["GET", "POST"])
@lead_required
def retry(job_id: str):
    """Confirm, then run a failed job again through the integration's guarded enqueue (audited)."""
    job = _failed_job_or_404(job_id)
    if request.method == "POST":
        try:
            queued = retries.retry(job, puppet.real_user())
        except retries.RetryRefused as refused:
            return _confirm(job, refusal=str(refused)), refused.status
        flash(f"Queued again: “{queued.description}” for {job.branch.name} ({job.branch.business.name}). "
              "Follow it under Workers.", "success")
        return redirect(url_for("operations.page") + "#failed-title")
    return _confirm(job)


def _confirm(job: Job, refusal: str | None = None):
    offer = retries.offer_for(job)
    sage_now = retries.sage_shows(job) if offer == retries.OFFER_CHECK and request.args.get("check") else None
    return render_template("operations/retry.html", job=job, offer=offer, sage_now=sage_now,
                           refusal=refusal or retries.refusal_now(job), posted=refusal is not None)
