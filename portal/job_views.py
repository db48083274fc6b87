"""The self-polling job progress partial (queued → running → finished/failed)."""
from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import current_user, login_required
from werkzeug.exceptions import NotFound

from portal.access import job_for
from portal.jobqueue import live_progress, reconcile

bp = Blueprint("jobs", __name__, url_prefix="/jobs")


@bp.app_template_global("job_progress")
def _job_progress(job) -> dict:
    """A job's latest progress, for pages that include the progress partial directly."""
    return live_progress(job)


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
    """The progress partial of one job; it stops polling once the job has ended."""
    job = job_for(current_user, job_id)
    if job.status.is_active:
        reconcile(job)
    return render_template("_job_progress.html", job=job, progress=live_progress(job))
