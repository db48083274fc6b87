"""The support console: find a customer, see their health, puppet them, read the audit log."""
from __future__ import annotations

import functools

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_login import current_user
from werkzeug.exceptions import Forbidden

from portal import notify, puppet, timefmt, two_factor
from portal.access import support_required
from portal.ids import parse_id
from portal.models import utcnow
from portal.support import audit_log, customers, health, search
from portal.web import wants_fragment

bp = Blueprint("support", __name__, url_prefix="/support")

# The only console endpoint a puppet session may reach: the banner's "End session" button.
_ALLOWED_WHILE_PUPPETING = frozenset({"support.end_puppet"})


class EndPuppetFirst(Forbidden):
    description = (
        "You are puppeting a customer, so you see only their pages. "
        "End the puppet session (the button in the purple banner) to go back to the support console."
    )


@bp.before_request
def _console_not_while_puppeting():
    # Loading current_user resolves the puppet session for this request.
    if current_user.is_authenticated and puppet.current_session() is not None:
        if request.endpoint not in _ALLOWED_WHILE_PUPPETING:
            raise EndPuppetFirst()


def _lead_required(view):
    """Only support leads may use the view."""

    @functools.wraps(view)
    @support_required
    def guarded(*args, **kwargs):
        if not puppet.real_user().is_support_lead:
            abort(403, "Only support leads can do this: the audit log and the support team page are theirs.")
        return view(*args, **kwargs)

    return guarded


def _int_arg(name: str, default: int | None) -> int | None:
    """A whole-number query parameter (a page, a number of hours), or `default` when it is missing,
    not a number or beyond any real page."""
    value = parse_id(request.args.get(name))
    return default if value is None else value


@bp.get("/")
@support_required
def home():
    """The console: live customer search (htmx gets the results alone) and the health overview."""
    stale_hours, stale_error = _stale_hours()
    ctx = health.context(stale_hours)
    results = search.search(
        request.args.get("q", ""), request.args.get("health"), _int_arg("page", 1) or 1, ctx
    )
    if wants_fragment():
        return render_template("support/_results.html", results=results)
    return render_template(
        "support/home.html", results=results, overview=health.recent_overview(ctx.stale_hours), ctx=ctx,
        stale_error=stale_error, stale_asked=request.args.get("stale_hours", "") if stale_error else None,
    )


def _stale_hours() -> tuple[int | None, str | None]:
    """The console's stale threshold from the query, or (None, why) when it is given but not 1–MAX hours."""
    raw = (request.args.get("stale_hours") or "").strip()
    if not raw:
        return None, None
    hours = parse_id(raw)
    if hours is None or not 1 <= hours <= health.MAX_STALE_HOURS:
        return None, (f"Give the stale threshold as a whole number of hours from 1 to {health.MAX_STALE_HOURS}; "
                      f"“{raw[:20]}” isn't one. The default of {health.DEFAULT_STALE_HOURS} hours is used.")
    return hours, None


@bp.get("/customers/<int:business_id>")
@support_required
def customer(business_id: int):
    """A customer's business: branches, full connection state, jobs, users and timeline."""
    ctx = health.context(_int_arg("stale_hours", None))
    page = customers.customer_page(business_id, ctx)
    timefmt.use_zone(page.business.time_zone)  # times as the customer reads them, the zone named in the footer
    return render_template("support/customer.html", page=page, messages=notify.recent_for(business_id))


@bp.post("/customers/<int:business_id>/puppet")
@support_required
def start_puppet(business_id: int):
    """Start a puppet session as one of this business's customers, with a reason."""
    business = customers.business_or_404(business_id)
    timefmt.use_zone(business.time_zone)
    user = customers.customer_user_or_404(business, request.form.get("user_id"))
    try:
        puppet.start(puppet.real_user(), user, request.form.get("reason", ""), request.remote_addr)
    except puppet.PuppetError as exc:
        flash(str(exc), "error")
        page = customers.customer_page(business_id)
        return render_template(
            "support/customer.html", page=page, chosen_user_id=user.id, reason=request.form.get("reason", "")
        ), 400
    flash(f"You are now seeing the portal as {user.email}. Everything you change is recorded.", "info")
    return redirect(url_for("customer.dashboard"))


@bp.post("/puppet/end")
@support_required
def end_puppet():
    """End the current puppet session and return to the console."""
    ended = puppet.end("ended by support")
    if ended is not None:
        flash(f"Puppet session as {ended.customer_user.email} ended.", "info")
        return redirect(url_for("support.customer", business_id=ended.business_id))
    return redirect(url_for("support.home"))


@bp.get("/puppet/sessions")
@support_required
def puppet_sessions():
    """Every live puppet session: who, as whom, since when, why, and in which mode."""
    return render_template("support/puppet_sessions.html", sessions=customers.live_puppet_sessions())


@bp.post("/puppet/sessions/<int:session_id>/end")
@support_required
def end_puppet_session(session_id: int):
    """End one live puppet session: one's own (left open elsewhere) or, for a lead, anyone's."""
    try:
        ended = puppet.end_session(session_id, puppet.real_user())
    except puppet.PuppetError as exc:
        flash(str(exc), "error")
        return render_template("support/puppet_sessions.html", sessions=customers.live_puppet_sessions()), \
            403 if "Only" in str(exc) else 409
    flash(f"Ended {ended.support_user.email}'s puppet session as {ended.customer_user.email}.", "success")
    return redirect(url_for("support.puppet_sessions"))


@bp.get("/team")
@_lead_required
def team():
    """Support staff and whether each has two-step sign-in set up (support leads)."""
    return render_template("support/team.html", people=customers.support_staff())


@bp.post("/team/<int:user_id>/two-factor/reset")
@_lead_required
def reset_two_factor(user_id: int):
    """Reset a support person's two-step sign-in (support leads; audited; ends their sessions)."""
    person = customers.support_user_or_404(user_id)
    try:
        two_factor.reset(person, puppet.real_user())
    except two_factor.TwoFactorError as exc:
        abort(403, str(exc))
    flash(f"{person.email}'s two-step sign-in was reset and their sessions ended. "
          "They set it up again at their next sign-in.", "success")
    return redirect(url_for("support.team"))


@bp.get("/audit")
@_lead_required
def audit():
    """Search the audit log by email, kind and date range (support leads)."""
    try:
        query = audit_log.parse(request.args)
    except audit_log.BadAuditQuery as exc:
        flash(str(exc), "error")
        return render_template("support/audit.html", page=None, args=request.args, kinds=audit_log.kinds()), 400
    page = audit_log.search(query, _int_arg("page", 1) or 1)
    return render_template("support/audit.html", page=page, args=request.args, kinds=audit_log.kinds())


@bp.get("/audit.csv")
@_lead_required
def audit_csv():
    """Export the matching audit events as CSV, streamed (support leads)."""
    try:
        query = audit_log.parse(request.args)
    except audit_log.BadAuditQuery as exc:
        abort(400, str(exc))
    filename = f"audit-log-{utcnow():%Y%m%d-%H%M}.csv"
    return Response(
        stream_with_context(audit_log.csv_lines(query)),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )
