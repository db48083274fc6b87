"""The Sage One AUS pages of a branch: connect, sync, void, disconnect.

Every unsafe request is refused in a puppet session by one guard registered on the blueprint
(`puppet.refuse_sage_one_aus_writes`); the pages show the actions disabled with the reason.
"""
from __future__ import annotations

from flask import (
    Blueprint,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from werkzeug.exceptions import NotFound
from werkzeug.routing import BuildError

from portal import puppet, sessions
from portal.access import branch_for, customer_required
from portal.integrations.sage_one_aus import credentials, overview, sync
from portal.integrations.sage_one_aus.errors import (
    SageOneApiKeyRefused,
    SageOneAuthFailed,
    SageOneBusy,
    SageOneError,
    SageOneLocked,
    SageOneRateLimited,
)
from portal.job_views import announce_start
from portal.jobqueue import JobAlreadyRunning, JobRefused, active_job
from portal.web import wants_fragment

bp = Blueprint("sage_one_aus", __name__, url_prefix="/integrations/sage-one-aus")


bp.before_request(puppet.refuse_sage_one_aus_writes)


@bp.errorhandler(puppet.PuppetReadOnly)
def _puppet_refused(error: puppet.PuppetReadOnly):
    """Explain a refused write in a puppet session, with the checklist for it."""
    template = "integrations/sage_one_aus/_puppet_refused.html" if wants_fragment() \
        else "integrations/sage_one_aus/puppet_refused.html"
    return render_template(template, message=error.description), 403


def puppet_checklist_url(branch_id: int | None = None) -> str | None:
    """The support checklist for "can't authenticate Sage One AUS while puppeted", if it exists yet."""
    try:
        return url_for("checklists.start", scenario="sage-one-aus-puppet-auth", branch_id=branch_id)
    except BuildError:
        return None


@bp.context_processor
def _page_context() -> dict:
    branch_id = (request.view_args or {}).get("branch_id")
    return {"puppet_checklist_url": puppet_checklist_url(branch_id), "puppet_refusal": credentials.PUPPET_REFUSAL}


def _branch(branch_id: int):
    return branch_for(current_user, branch_id)


def _to_page(branch_id: int):
    return redirect(url_for("sage_one_aus.show", branch_id=branch_id))


RECORDS_TEMPLATE = "integrations/sage_one_aus/_records.html"
RECORDS_FRAGMENT = "sage-one-records"  # the id the filter form and the pager ask for alone
VOIDABLE_TEMPLATE = "integrations/sage_one_aus/_voidable.html"
VOIDABLE_FRAGMENT = "sage-one-voidable"  # the void list's search and pager ask for it alone


def _records(branch, default_kind: str = "customers") -> overview.RecordsPage:
    args = request.args
    return overview.records(branch, args.get("kind") or default_kind, args.get("state"), args.get("q", ""),
                            args.get("page", 1, type=int))


@bp.get("/branches/<int:branch_id>")
@customer_required
def show(branch_id: int):
    """The branch's Sage One AUS page: state, login, counts, pending and failed rows, jobs, history.

    An htmx request of the filter form or the pager gets only the pending-and-failed fragment the page
    includes, read in two queries, and the void list's search and pager only that list (any other htmx
    request, such as a region read again when a job ends, gets the whole page and keeps its part); the
    page and the fragments share one URL (both vary on HX-Request).
    """
    branch = branch_for(current_user, branch_id, with_connection=True)
    fragment = request.htmx.target if wants_fragment() else None
    if fragment == RECORDS_FRAGMENT:
        return render_template(RECORDS_TEMPLATE, branch=branch, records=_records(branch))
    voidable = overview.voidable_invoices(branch.id, request.args.get("vq", ""),
                                          request.args.get("vpage", 1, type=int))
    if fragment == VOIDABLE_FRAGMENT:
        return render_template(VOIDABLE_TEMPLATE, branch=branch, voidable=voidable)
    view = overview.branch_overview(branch, branch.connection)
    return render_template("integrations/sage_one_aus/branch.html", view=view, voidable=voidable,
                           records=_records(branch, overview.waiting_kind(view.counts)))


@bp.get("/branches/<int:branch_id>/connect")
@customer_required
def connect_form(branch_id: int):
    """The login form (in a puppet session: why only the customer can do this)."""
    branch = _branch(branch_id)
    return render_template("integrations/sage_one_aus/connect.html", view=overview.branch_overview(branch),
                           username=request.args.get("username", ""))


@bp.post("/branches/<int:branch_id>/connect")
@customer_required
def connect(branch_id: int):
    """Verify the Sage One login and store it for this customer; asks for a company if several.

    Answers within two seconds whatever Sage does: the check never waits for a request slot and
    says Sage is busy instead."""
    branch = _branch(branch_id)
    username = request.form.get("username", "").strip()
    error, status, headers = None, 200, {}
    try:
        result = credentials.begin_connect(branch, current_user, sessions.private_key(), username,
                                           request.form.get("password", ""))
    except credentials.UsernameMismatch as exc:
        error, status = str(exc), 409
    except credentials.ConnectRefused as exc:
        error, status = str(exc), 400
    except SageOneAuthFailed as exc:
        error, status = _auth_failure_message(exc), 401
    except SageOneLocked as exc:
        error, status = str(exc), 423
    except SageOneBusy as exc:
        error, status, headers = str(exc), 503, {"Retry-After": str(max(1, round(exc.retry_after)))}
    except SageOneRateLimited as exc:
        error, status = str(exc), 503
    except SageOneApiKeyRefused as exc:
        error, status = str(exc), 503
    except SageOneError as exc:
        error, status = str(exc), 502
    else:
        if isinstance(result, credentials.PendingConnect):
            return render_template("integrations/sage_one_aus/choose_company.html", branch=branch, pending=result)
        flash(f"Connected to Sage One AUS as {result.sage_one_username} ({result.sage_one_company_name}).", "success")
        return _to_page(branch.id)
    return render_template("integrations/sage_one_aus/connect.html", view=overview.branch_overview(branch),
                           username=username, error=error), status, headers


def _auth_failure_message(exc: SageOneAuthFailed) -> str:
    left = exc.attempts_left
    if left is None:
        return str(exc)
    if left == 0:
        return (f"{exc} Sage has seen 20 failed logins for this username in the last hour: one more and it "
                "locks the username for 24 hours. Check the password on Sage One's own sign-in page first.")
    return (f"{exc} {left} more failed attempt{'s' if left != 1 else ''} in the next hour and Sage will lock "
            "this username for 24 hours.")


@bp.post("/branches/<int:branch_id>/connect/company")
@customer_required
def choose_company(branch_id: int):
    """Finish connecting with the company picked from the verified login."""
    branch = _branch(branch_id)
    try:
        company_id = int(request.form.get("company_id", ""))
    except ValueError:
        company_id = None
    try:
        connection = credentials.finish_connect(branch, current_user, sessions.private_key(), company_id)
    except credentials.ConnectRefused as exc:
        pending = credentials.pending(branch, current_user)
        if pending is None:
            flash(str(exc), "error")
            return redirect(url_for("sage_one_aus.connect_form", branch_id=branch.id))
        return render_template("integrations/sage_one_aus/choose_company.html", branch=branch, pending=pending,
                               error=str(exc)), 400
    flash(f"Connected to Sage One AUS as {connection.sage_one_username} ({connection.sage_one_company_name}).",
          "success")
    return _to_page(branch.id)


@bp.post("/branches/<int:branch_id>/sync-on-sign-in")
@customer_required
def sync_on_sign_in(branch_id: int):
    """Choose whether what is waiting is sent each time the login's owner signs in."""
    from portal.integrations.sage_one_aus.on_sign_in import set_sync_on_sign_in

    branch = _branch(branch_id)
    connection = credentials.active_connection(branch)
    if connection is None:
        flash("This branch isn't connected to Sage One AUS.", "error")
        return _to_page(branch.id)
    on = request.form.get("on") == "yes"
    set_sync_on_sign_in(connection, on)
    flash("What is waiting is now sent to Sage One AUS each time you sign in." if on else
          "What is waiting is no longer sent when you sign in; use Sync now.", "success")
    return _to_page(branch.id)


@bp.post("/branches/<int:branch_id>/sync")
@customer_required
def sync_now(branch_id: int):
    """Queue a sync of the branch's pending customers and invoices."""
    branch = _branch(branch_id)
    try:
        sync.enqueue_sync(branch, current_user, sessions.private_key(), puppeteer=puppet.current_puppeteer())
    except JobAlreadyRunning as exc:
        if request.htmx:
            return _running(branch, "Already running", str(exc), level="info"), 409
        flash(str(exc), "info")
    except (sync.SyncRefused, JobRefused) as exc:
        if request.htmx:
            return _running(branch, "Not started", str(exc)), 409
        flash(str(exc), "error")
    else:
        if request.htmx:
            return announce_start(_running(branch), branch.id)
        flash("Sync started. Progress shows below.", "success")
    return _to_page(branch.id)


def _running(branch, title: str | None = None, message: str | None = None, level: str = "error"):
    """The branch's running Sage One AUS jobs (what the sync button swaps in), with a refusal if any."""
    notice = {"title": title, "message": message, "level": level} if title else None
    running = [job for job in (active_job(branch.id, kind) for kind in (sync.SYNC_KIND, sync.VOID_KIND)) if job]
    return render_template("integrations/_running.html", running=running, notice=notice)


def _invoice(branch, invoice_id: int):
    invoice = sync.void_target(branch, invoice_id)
    if invoice is None:
        raise NotFound()
    return invoice


@bp.get("/branches/<int:branch_id>/invoices/<int:invoice_id>/void")
@customer_required
def confirm_void(branch_id: int, invoice_id: int):
    """Ask for confirmation (and a reason) before reversing an invoice in Sage One AUS."""
    branch = _branch(branch_id)
    return render_template("integrations/sage_one_aus/confirm_void.html", view=overview.branch_overview(branch),
                           invoice=_invoice(branch, invoice_id))


@bp.post("/branches/<int:branch_id>/invoices/<int:invoice_id>/void")
@customer_required
def void(branch_id: int, invoice_id: int):
    """Queue the reversal of the invoice by a credit note for its full amount."""
    branch = _branch(branch_id)
    invoice = _invoice(branch, invoice_id)
    try:
        sync.enqueue_void(branch, current_user, sessions.private_key(), invoice, request.form.get("reason", ""),
                          puppeteer=puppet.current_puppeteer())
    except (sync.SyncRefused, JobRefused) as exc:
        flash(str(exc), "error")
    else:
        flash(f"Voiding invoice {invoice.number}. Progress shows below.", "success")
    return _to_page(branch.id)


@bp.get("/branches/<int:branch_id>/disconnect")
@customer_required
def confirm_disconnect(branch_id: int):
    """Ask for confirmation before disconnecting Sage One AUS."""
    branch = _branch(branch_id)
    return render_template("integrations/sage_one_aus/confirm_disconnect.html",
                           view=overview.branch_overview(branch))


@bp.post("/branches/<int:branch_id>/disconnect")
@customer_required
def disconnect(branch_id: int):
    """Disconnect the branch from Sage One AUS and forget the stored password."""
    branch = _branch(branch_id)
    try:
        credentials.disconnect(branch, current_user)
    except credentials.ConnectRefused as exc:
        flash(str(exc), "error")
    else:
        flash("Sage One AUS is disconnected. Any Sage One login can be connected now.", "success")
    return _to_page(branch.id)

