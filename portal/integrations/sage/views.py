"""The Sage pages of a branch: connect, choose the business, sync, void, disconnect.

Only the business's customers (and support puppeting one of them) get here: every route is
`customer_required` and loads its branch through `branch_for`. Support may run syncs and voids in
a puppet session (audited with both people); connecting and disconnecting use the customer's own
Sage sign-in, so they are refused in a puppet session by one guard.
"""
from __future__ import annotations

import functools

from flask import (
    Blueprint,
    abort,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user
from werkzeug.exceptions import Forbidden

from portal import puppet
from portal import schedule as sage_schedule
from portal.access import branch_for, customer_required
from portal.integrations.sage import connect as sage_connect
from portal.integrations.sage import enqueue as sage_jobs
from portal.integrations.sage import mapping as sage_mapping
from portal.integrations.sage import pages, sync
from portal.integrations.sage.client import SageError, SageNotFound
from portal.job_views import announce_start
from portal.jobqueue import JobAlreadyRunning, JobRefused
from portal.models import InvoiceStatus, Provider
from portal.voids import find_invoice_unscoped
from portal.web import wants_fragment

bp = Blueprint("sage", __name__, url_prefix="/integrations/sage")

RECORDS_FRAGMENT = "sage-records"  # the ids of the page's parts that htmx asks for alone
VOIDABLE_FRAGMENT = "sage-voidable"

VOID_REASON_MAX = 200


class SignInNotInPuppetSession(Forbidden):
    """Connecting or disconnecting Sage is the customer's own step."""

    description = (
        "Support can't connect or disconnect Sage while puppeting: it needs the customer's own Sage "
        "sign-in. Ask the customer to do this from their login; syncs and voids are available here."
    )


def customer_signs_in(view):
    """Refuse the view in a puppet session (connect, reconnect, choose business, disconnect)."""

    @functools.wraps(view)
    def guarded(*args, **kwargs):
        if puppet.current_session() is not None:
            raise SignInNotInPuppetSession()
        return view(*args, **kwargs)

    return guarded


def _sage_connection(branch):
    connection = pages.branch_connection(branch)
    return connection if connection is not None and connection.provider == Provider.SAGE else None


def _page_url(branch_id: int, **args) -> str:
    return url_for("sage.branch", branch_id=branch_id, **args)


@bp.get("/branches/<int:branch_id>")
@customer_required
def branch(branch_id: int):
    """Everything about the branch's Sage connection on one page."""
    branch = branch_for(current_user, branch_id, with_connection=True)
    connection = branch.connection
    args = request.args
    # The filter forms and pagers (htmx) get the fragment they target, from the page's own URL.
    fragment = request.htmx.target if wants_fragment() else None
    if fragment != VOIDABLE_FRAGMENT:
        records = pages.records(branch.id, args.get("kind", "contacts"), args.get("state", "open"),
                                args.get("q", ""), args.get("page", 1, type=int))
        if fragment == RECORDS_FRAGMENT:
            return render_template("integrations/sage/_records.html", branch=branch, records=records)
    voidable = pages.voidable_invoices(branch.id, args.get("vq", ""), args.get("vpage", 1, type=int))
    if fragment == VOIDABLE_FRAGMENT:
        return render_template("integrations/sage/_voidable.html", branch=branch, voidable=voidable)
    return render_template(
        "integrations/sage/branch.html",
        branch=branch,
        connection=connection,
        sage=connection if connection is not None and connection.provider == Provider.SAGE else None,
        tokens=pages.token_health(connection),
        last_jobs=pages.last_jobs_by_kind(branch.id),
        running=pages.running_jobs(branch.id),
        history=pages.job_history(branch.id),
        drift=_changed_in_sage(branch.id),
        counts=pages.record_counts(branch.id),
        records=records,
        voidable=voidable,
        mappings=pages.mappings(connection),
        kind_labels=pages.KIND_LABELS,
    )


@bp.post("/branches/<int:branch_id>/connect")
@customer_required
@customer_signs_in
def connect(branch_id: int):
    """Send the customer to Sage to sign in for this branch (connect and reconnect)."""
    branch = branch_for(current_user, branch_id)
    try:
        url = sage_connect.start(current_user, branch, session.get("sid", ""))
    except sage_connect.ConnectRefused as refused:
        flash(str(refused), "error")
        return redirect(_page_url(branch.id))
    return redirect(url)


@bp.get("/callback")
@customer_required
@customer_signs_in
def callback():
    """Sage's redirect back: check the state, store the branch's tokens, then pick the business."""
    try:
        connection = sage_connect.finish(
            current_user, session.get("sid", ""), state=request.args.get("state"),
            code=request.args.get("code"), error=request.args.get("error"))
    except sage_connect.ConnectRefused as refused:
        return render_template("integrations/sage/refused.html", message=str(refused)), 400
    if connection.sage_business_id is None:
        return redirect(url_for("sage.choose_business", branch_id=connection.branch_id))
    flash(f"Connected to Sage ({connection.sage_business_name}).", "success")
    return redirect(_page_url(connection.branch_id))


@bp.route("/branches/<int:branch_id>/business", methods=["GET", "POST"])
@customer_required
@customer_signs_in
def choose_business(branch_id: int):
    """Pick which Sage business the branch uses; warns before Sage ids would be cleared."""
    branch = branch_for(current_user, branch_id)
    connection = _sage_connection(branch)
    if connection is None or not connection.is_active or connection.access_token_enc is None:
        flash("Connect this branch to Sage first.", "error")
        return redirect(_page_url(branch.id))
    try:
        businesses = sage_connect.list_businesses(connection)
    except sage_connect.ConnectRefused as refused:
        return render_template("integrations/sage/refused.html", message=str(refused)), 502
    chosen = request.form.get("business_id") if request.method == "POST" else None
    needs_confirmation = False
    if chosen:
        try:
            cleared = sage_connect.choose_business(connection, chosen, businesses,
                                                   confirmed=request.form.get("confirm") == "yes")
        except sage_connect.BusinessChoiceNeedsConfirmation:
            needs_confirmation = True
        except sage_connect.ConnectRefused as refused:
            flash(str(refused), "error")
        else:
            note = f" {cleared} Sage ids from the previous business were cleared." if cleared else ""
            flash(f"This branch now uses the Sage business {connection.sage_business_name}.{note}", "success")
            return redirect(_page_url(branch.id))
    status = 409 if needs_confirmation else 200
    return render_template("integrations/sage/choose_business.html", branch=branch, connection=connection,
                           businesses=businesses, chosen=chosen, needs_confirmation=needs_confirmation), status


@bp.route("/branches/<int:branch_id>/disconnect", methods=["GET", "POST"])
@customer_required
@customer_signs_in
def disconnect(branch_id: int):
    """Confirm, then revoke Sage's token and disconnect the branch (its data and Sage ids are kept)."""
    branch = branch_for(current_user, branch_id)
    connection = _sage_connection(branch)
    if connection is None or not connection.is_active:
        flash("This branch is not connected to Sage.", "info")
        return redirect(_page_url(branch.id))
    if request.method == "GET":
        return render_template("integrations/sage/disconnect.html", branch=branch, connection=connection)
    revoked = sage_connect.disconnect(connection)
    flash("Disconnected from Sage. Contacts, invoices and their Sage ids are kept." if revoked else
          "Disconnected here, but Sage did not confirm the revocation; the tokens were deleted anyway.",
          "success" if revoked else "warning")
    return redirect(_page_url(branch.id))


@bp.post("/branches/<int:branch_id>/sync/<kind>")
@customer_required
def sync_now(branch_id: int, kind: str):
    """Start a contact or invoice sync job (also for support in a puppet session, audited)."""
    branch = branch_for(current_user, branch_id)
    if kind not in sage_jobs.SYNC_JOBS:
        abort(404)
    return _start_job(branch, lambda **who: sage_jobs.start_sync(branch, kind, **who))


def _changed_in_sage(branch_id: int) -> dict:
    from portal.integrations.sage import drift

    return drift.changed_in_sage(branch_id)


@bp.post("/branches/<int:branch_id>/drift")
@customer_required
def look_for_drift(branch_id: int):
    """Ask Sage now what was deleted or voided there outside the portal (read-only)."""
    from portal.integrations.sage import drift

    branch = branch_for(current_user, branch_id)
    try:
        found = drift.look(sync.usable_connection(branch.id), on_a_page=True)
    except sync.SyncStopped as stopped:
        flash(str(stopped), "error")
    except SageError as error:
        flash(f"Sage couldn't be asked right now: {error}", "error")
    else:
        flash(f"Sage was asked what changed there: {drift.describe(found)}.", "success")
    return redirect(_page_url(branch.id))


@bp.post("/branches/<int:branch_id>/schedule")
@customer_required
def schedule(branch_id: int):
    """Change how often the branch syncs by itself (also while puppeting, audited)."""
    branch = branch_for(current_user, branch_id)
    connection = _sage_connection(branch)
    if connection is None or not connection.is_active:
        flash("This branch isn't connected to Sage, so it has no schedule.", "error")
        return redirect(_page_url(branch.id))
    puppeteer = puppet.current_puppeteer()
    by = f" (changed by support, {puppeteer.email}, for {current_user.email})" if puppeteer else ""
    try:
        changed = sage_schedule.set_schedule(connection, request.form.get("every", ""), by=by)
    except sage_schedule.ScheduleRefused as refused:
        flash(f"{refused} Nothing was changed.", "error")
        return redirect(_page_url(branch.id)), 302
    label = sage_schedule.LABELS[connection.sync_every]
    flash(f"This branch now syncs by itself {label}." if changed else f"It already syncs {label}.", "success")
    return redirect(_page_url(branch.id))


@bp.route("/branches/<int:branch_id>/mapping", methods=["GET", "POST"])
@customer_required
def mapping(branch_id: int):
    """Choose the Sage ledger account and tax rate for each invoice line code (also while puppeting, audited).

    The choices come live from Sage; a choice Sage did not list is refused with 400 and nothing is saved.
    """
    branch = branch_for(current_user, branch_id)
    try:
        connection = sync.usable_connection(branch.id)
    except sync.SyncStopped as stopped:
        flash(str(stopped), "error")
        return redirect(_page_url(branch.id))
    saved = sorted(sage_mapping.saved_mappings(connection).values(), key=lambda m: (m.kind, m.code))
    try:
        lookups = sage_mapping.sage_lookups(connection)
    except sage_mapping.SageLookupsUnavailable as unavailable:
        return render_template("integrations/sage/mapping.html", branch=branch, connection=connection, rows=None,
                               saved=saved, unavailable=str(unavailable),
                               kind_labels=sage_mapping.KIND_LABELS), 503 if request.method == "POST" else 200
    error = None
    if request.method == "POST":
        puppeteer = puppet.current_puppeteer()
        by = f" by support ({puppeteer.email}) for {current_user.email}" if puppeteer else ""
        try:
            changes = sage_mapping.save(connection, request.form, lookups, by=by)
        except sage_mapping.MappingRefused as refused:
            error = str(refused)
        else:
            flash(f"Saved: {len(changes)} change{'s' if len(changes) != 1 else ''} to the Sage mapping. "
                  "The next invoice sync uses it." if changes else "Nothing changed in the Sage mapping.", "success")
            return redirect(_page_url(branch.id))
    return render_template("integrations/sage/mapping.html", branch=branch, connection=connection,
                           rows=sage_mapping.rows(connection, lookups), saved=saved, unavailable=None,
                           error=error,
                           kind_labels=sage_mapping.KIND_LABELS), 400 if error else 200


@bp.route("/branches/<int:branch_id>/invoices/<int:invoice_id>/void", methods=["GET", "POST"])
@customer_required
def void(branch_id: int, invoice_id: int):
    """Show what will be voided and ask for a reason; on confirmation start the void job."""
    branch = branch_for(current_user, branch_id)
    invoice = find_invoice_unscoped(branch.id, invoice_id)
    if invoice is None:
        abort(404)
    error = None
    if request.method == "POST":
        reason = (request.form.get("reason") or "").strip()
        if not reason:
            error = "Give a reason: Sage records it on the voided invoice."
        elif len(reason) > VOID_REASON_MAX:
            error = f"Keep the reason under {VOID_REASON_MAX} characters."
        else:
            return _start_job(branch, lambda **who: sage_jobs.start_void(branch, invoice, reason, **who))
    sage_now = _sage_shows(branch, invoice) if request.args.get("check") else None
    return render_template("integrations/sage/void_confirm.html", branch=branch, invoice=invoice, error=error,
                           connection=_sage_connection(branch), sage_now=sage_now,
                           already_void=invoice.status == InvoiceStatus.VOID), 400 if error else 200


def _sage_shows(branch, invoice) -> str:
    """What Sage says about the invoice now, in words (one read that never waits on the limiter)."""
    if not invoice.sage_id:
        return "Nothing: it was never sent to Sage."
    try:
        connection = sync.usable_connection(branch.id)
        found = sync.page_client_for(connection).get_invoice(invoice.sage_id)
    except sync.SyncStopped as stopped:
        return f"Can't ask Sage: {stopped}"
    except SageNotFound:
        return "Sage has no invoice with this id (deleted there, or in another Sage business)."
    except SageError as error:
        return f"Can't ask Sage right now: {error}"
    status = found.get("status") if isinstance(found, dict) else None
    label = status.get("displayed_as") or status.get("id") if isinstance(status, dict) else None
    if isinstance(status, dict) and status.get("id") == "VOID":
        reason = found.get("void_reason")
        return "Void" + (f" (reason: {reason})" if reason else "") + ": there is nothing more to do."
    return f"{label or 'Not void'}: it is not void in Sage yet."


def _start_job(branch, start):
    """Run `start(requested_by=…, puppeteer=…, puppet_session=…)` and answer as the page expects:
    the branch's running jobs for htmx (with the refusal, if any), else a redirect with a message;
    a refusal changes nothing."""
    try:
        job = start(requested_by=current_user, puppeteer=puppet.current_puppeteer(),
                    puppet_session=puppet.current_session())
    except JobAlreadyRunning as running:
        if request.htmx:
            return _running(branch, "Already running", str(running), level="info"), 409
        flash(str(running), "info")
        return redirect(_page_url(branch.id))
    except JobRefused as refused:
        if request.htmx:
            return _running(branch, "Not started", str(refused)), 409
        flash(str(refused), "error")
        return redirect(_page_url(branch.id))
    if request.htmx:
        return announce_start(_running(branch), branch.id)
    flash(f"{job.description}: started. Its progress is shown below.", "success")
    return redirect(_page_url(branch.id))


def _running(branch, title: str | None = None, message: str | None = None, level: str = "error"):
    notice = {"title": title, "message": message, "level": level} if title else None
    return render_template("integrations/_running.html", running=pages.running_jobs(branch.id),
                           notice=notice)


@bp.app_template_global("sage_needs_business")
def _sage_needs_business(connection) -> bool:
    """Signed in to Sage but no Sage business chosen yet (the card and page ask for the choice)."""
    return pages.needs_business_choice(connection)


@bp.app_template_global("sage_schedule")
def _sage_schedule(connection) -> dict | None:
    """The branch's schedule as the card and page show it: how often, when next, what it did last."""
    if connection is None or connection.provider != Provider.SAGE or not connection.is_active:
        return None
    every = connection.sync_every or sage_schedule.DEFAULT
    return {"every": every, "label": sage_schedule.LABELS[every], "choices": sage_schedule.LABELS,
            "next": pages.next_sync_words(sage_schedule.next_sync_at(connection)), "note": connection.schedule_note}

