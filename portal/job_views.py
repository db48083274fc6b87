"""The self-polling job progress partial (queued → running → finished/failed).

When it answers for a job that has ended, it also sends the htmx event `job-ended` (HX-Trigger)
with the job, branch and kind, so every region that depends on the job re-fetches itself (the
dashboard card, the branch pages' tables). The partial stops polling then, so each page hears it once.
A sync button's answer sends `job-started` (`announce_start`), so the same regions show the new job
at once (its button off, the queued row in the history).
"""
from __future__ import annotations

import json
import math
from datetime import datetime

from flask import Blueprint, make_response, render_template
from flask_login import current_user, login_required
from werkzeug.exceptions import NotFound

from portal.access import job_for
from portal.jobqueue import live_progress, reconcile
from portal.models import utcnow

bp = Blueprint("jobs", __name__, url_prefix="/jobs")

JOB_ENDED = "job-ended"
JOB_STARTED = "job-started"


def announce_start(body, branch_id: int, status: int = 202):
    """An htmx answer to a press that queued a job, telling the page's regions (`job-started`)."""
    response = make_response(body, status)
    response.headers["HX-Trigger"] = json.dumps({JOB_STARTED: {"branch_id": branch_id}})
    return response


def _progress(job) -> dict:
    """live_progress, with the end of a wait for Sage's limit as a moment and in seconds from now
    (both None once it is past)."""
    progress = live_progress(job)
    until = progress.get("waiting_until")
    if isinstance(until, str):
        try:
            until = datetime.fromisoformat(until)
        except ValueError:
            until = None
    waiting = until is not None and until > utcnow() and job.status.is_active
    progress["waiting_until"] = until if waiting else None
    progress["waiting_seconds"] = math.ceil((until - utcnow()).total_seconds()) if waiting else None
    return progress


@bp.app_template_global("job_progress")
def _job_progress(job) -> dict:
    """A job's latest progress, for pages that include the progress partial directly."""
    return _progress(job)


@bp.app_template_global("job_by_id")
def _job_by_id(job_id):
    """The job a page names by id (a checklist step's evidence), or None if the person may not see it."""
    try:
        return job_for(current_user, str(job_id))
    except NotFound:
        return None


@bp.get("/<job_id>")
@login_required
def progress(job_id: str):
    """The progress partial of one job; once the job has ended it stops polling and says so (HX-Trigger)."""
    job = job_for(current_user, job_id)
    if job.status.is_active:
        reconcile(job)
    response = make_response(render_template("_job_progress.html", job=job, progress=_progress(job)))
    if not job.status.is_active:
        response.headers["HX-Trigger"] = json.dumps(
            {JOB_ENDED: {"job_id": job.id, "branch_id": job.branch_id, "kind": job.kind}})
    return response
