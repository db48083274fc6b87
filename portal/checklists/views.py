"""Checklist pages for support: suggestions, start, the run with its steps, outcomes and stats.

Every route is `support_required` (the real signed-in person must be support). Runs work inside a
puppet session too — the Sage One AUS page links support here from one — and their actions then
meet the same guards as the integrations' pages.
"""
from __future__ import annotations

from flask import Blueprint, flash, make_response, redirect, render_template, request, url_for
from flask_login import current_user

from portal import puppet, sessions, timefmt
from portal.access import support_required
from portal.checklists import actions, checks, matching, runs, scenarios
from portal.checklists.engine import as_moment
from portal.extensions import db
from portal.ids import form_id
from portal.models import Branch, Business, RunOutcome
from portal.support import search
from portal.web import wants_fragment

bp = Blueprint("checklists", __name__, url_prefix="/support/checklists")


@bp.app_template_global("suggested_checklists")
def suggested_checklists(business) -> list[matching.Suggestion]:
    """The scenarios matching a business now (used by the console's customer page)."""
    return matching.for_business(business) if business is not None else []


@bp.app_template_global("open_checklist_runs")
def open_checklist_runs(business) -> list:
    """The business's unfinished checklist runs."""
    return matching.open_runs(business.id) if business is not None else []


@bp.app_template_global("check_finding")
def check_finding(step, result) -> checks.Finding | None:
    """How a check step's result reads: a label saying what was found, and its colour."""
    return checks.finding(step.check, result)


@bp.app_template_global("checklist_moment")
def checklist_moment(value):
    """An evidence value that is a moment, as a datetime for the time filters (None otherwise)."""
    return as_moment(value)


@bp.app_template_global("checklist_title")
def checklist_title(slug: str) -> str:
    """A scenario's title from its slug."""
    scenario = scenarios.get(slug)
    return scenario.title if scenario is not None else slug


def _int_arg(source, name: str) -> int | None:
    """An id field: None when absent or empty, 400 when it is there but is no id."""
    value = source.get(name, "")
    return form_id(value) if value.strip() else None


def _by():
    return puppet.real_user()


@bp.get("/")
@support_required
def index():
    """Every scenario (start any by hand) and the latest runs."""
    return render_template("checklists/index.html", scenarios=scenarios.ALL, runs=runs.recent(30),
                           business_id=_int_arg(request.args, "business_id"))


@bp.route("/start", methods=["GET", "POST"])
@support_required
def start():
    """Start a checklist by hand: find the customer (live search), then choose the branch and the
    scenario (GET); or start the run and evaluate its checks (POST). A link may name the scenario, the
    customer or the branch already (the console, the Sage One AUS page)."""
    source = request.form if request.method == "POST" else request.args
    slug = source.get("scenario", "").strip()
    scenario = runs.scenario_or_404(slug) if slug else None
    session = puppet.current_session()
    business_id = _int_arg(source, "business_id") or (session.business_id if session else None)
    business = db.session.get(Business, business_id) if business_id else None
    branch_id = _int_arg(source, "branch_id")
    branch = db.session.get(Branch, branch_id) if branch_id else None
    if branch is not None and business is None:
        business = branch.business
    query = source.get("q", "")
    if request.method == "GET" and business is None and wants_fragment():
        return _vary(render_template("checklists/_customer_results.html", results=search.search(query),
                                     scenario=scenario))
    errors: dict[str, str] = {}
    if request.method == "POST":
        if business is None:
            errors["q"] = "Find the customer this checklist is about, then choose them."
        if scenario is None:
            errors["scenario"] = "Choose the checklist to run."
        if not errors:
            try:
                run = runs.start(scenario, business, branch, _by(), session, source.get("invoice", ""))
            except runs.RunError as exc:
                errors[exc.field] = str(exc)
            else:
                return redirect(url_for("checklists.run", run_id=run.id))
    if business is not None:
        timefmt.use_zone(business.time_zone)
    results = search.search(query) if business is None and query.strip() else None
    page = render_template("checklists/start.html", scenario=scenario, scenarios=scenarios.ALL, business=business,
                           branch=branch, invoice=source.get("invoice", ""), errors=errors, query=query,
                           results=results)
    return _vary(page), 400 if errors else 200


def _vary(body):
    """A page whose htmx answer is a fragment: caches must keep the two apart."""
    response = make_response(body)
    response.vary.add("HX-Request")
    return response


@bp.get("/runs/<int:run_id>")
@support_required
def run(run_id: int):
    """A run: its steps with check results and evidence, the current step, and the outcome."""
    return _render_run(runs.run_or_404(run_id))


def _render_run(run, status: int = 200, error: str | None = None):
    timefmt.use_zone(run.business.time_zone)
    customers = [u for u in run.business.users if u.is_customer]
    return render_template("checklists/run.html", view=runs.view(run), run=run, error=error,
                           action_labels=actions.LABELS, outcomes=list(RunOutcome),
                           puppet_session=puppet.current_session(), customers=customers,
                           diagnostics=run.diagnostics or runs.diagnostics(run)), status


def _apply(run_id: int, change):
    run = runs.run_or_404(run_id)
    try:
        change(run)
    except runs.RunError as exc:
        db.session.rollback()
        return _render_run(run, 400, str(exc))
    return redirect(url_for("checklists.run", run_id=run.id, _anchor=request.form.get("anchor") or None))


@bp.post("/runs/<int:run_id>/answer")
@support_required
def answer(run_id: int):
    """Answer the current question (or skip an optional step)."""
    return _apply(run_id, lambda run: runs.answer(run, request.form.get("step", ""), request.form.get("value", ""),
                                                  _by(), request.form.get("note", "")))


@bp.post("/runs/<int:run_id>/notes")
@support_required
def add_note(run_id: int):
    """Attach a note to a step."""
    return _apply(run_id, lambda run: runs.add_note(run, request.form.get("step", ""), request.form.get("note", ""),
                                                    _by()))


@bp.post("/runs/<int:run_id>/recheck")
@support_required
def recheck(run_id: int):
    """Evaluate every check again; the earlier evidence is kept."""
    return _apply(run_id, lambda run: runs.recheck(run, _by(), puppet.current_session()))


@bp.post("/runs/<int:run_id>/action")
@support_required
def run_action(run_id: int):
    """Run a step's remediation action through the integration's own enqueue path and guards."""
    run = runs.run_or_404(run_id)
    actor = actions.Actor(acting_as=current_user, real=_by(), puppet_session=puppet.current_session(),
                          private_key=sessions.private_key())
    try:
        result = runs.run_action(run, request.form.get("step", ""), actor)
    except runs.RunError as exc:
        return _render_run(run, 400, str(exc))
    except actions.ActionRefused as exc:
        return _render_run(run, 403, str(exc))
    except puppet.PuppetReadOnly as exc:
        return _render_run(run, 403, exc.description)
    flash(result.summary, "success")
    return redirect(url_for("checklists.run", run_id=run.id))


@bp.get("/runs/<int:run_id>/diagnostics.txt")
@support_required
def diagnostics(run_id: int):
    """The run's diagnostics summary as plain text, to paste into a ticket."""
    run = runs.run_or_404(run_id)
    text = run.diagnostics or runs.diagnostics(run)
    return text, 200, {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"}


@bp.post("/runs/<int:run_id>/pause")
@support_required
def pause(run_id: int):
    """Pause the run for anyone in support to resume."""
    return _apply(run_id, lambda run: runs.pause(run, _by(), request.form.get("note", "")))


@bp.post("/runs/<int:run_id>/resume")
@support_required
def resume(run_id: int):
    """Resume a paused run (whoever resumes holds it)."""
    return _apply(run_id, lambda run: runs.resume(run, _by()))


@bp.post("/runs/<int:run_id>/finish")
@support_required
def finish(run_id: int):
    """End the run with an outcome and its message."""
    return _apply(run_id, lambda run: runs.finish(run, _by(), request.form.get("outcome", ""),
                                                  request.form.get("message", "")))


@bp.get("/stats")
@support_required
def stats():
    """Which scenarios occur most and which outcomes they end in."""
    return render_template("checklists/stats.html", stats=runs.stats(), outcomes=list(RunOutcome))
