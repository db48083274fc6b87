"""The customer's self-service pages."""
from __future__ import annotations

from flask import Blueprint, flash, make_response, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.exceptions import NotFound

from portal import notify, puppet, sessions, timefmt
from portal.access import branch_for, customer_required
from portal.customer import dashboard as dashboard_service
from portal.customer import settings as settings_service
from portal.extensions import csrf, db
from portal.jobqueue import JobAlreadyRunning
from portal.web import wants_fragment

bp = Blueprint("customer", __name__)


@bp.get("/")
@customer_required
def dashboard():
    """A card per branch of the customer's business, and when support accessed the account."""
    cards = dashboard_service.branch_cards(current_user.business)
    access_log = dashboard_service.support_access_log(current_user.business_id)
    support_changes = dashboard_service.puppet_writes(current_user.business_id)
    return render_template(
        "customer/dashboard.html", cards=cards, access_log=access_log, support_changes=support_changes,
        messages=notify.recent_for(current_user.business_id),
    )


CARD_TEMPLATE = "customer/_branch_card.html"


def _card(branch_id: int, notice: dict | None = None, status: int = 200):
    """One branch's card as the dashboard shows it (a fragment), varying on HX-Request."""
    branch = branch_for(current_user, branch_id)
    if branch.business_id != current_user.business_id:
        raise NotFound()
    card = dashboard_service.branch_cards(current_user.business, [branch.id])[0]
    response = redirect(url_for("customer.dashboard", _anchor=f"branch-card-{branch.id}")) if not wants_fragment() \
        else (render_template(CARD_TEMPLATE, card=card, notice=notice), status)
    return _vary_on_htmx(response)


def _vary_on_htmx(response):
    response = make_response(response)
    response.vary.add("HX-Request")
    return response


@bp.get("/branches/<int:branch_id>/card")
@customer_required
def branch_card(branch_id: int):
    """The branch's dashboard card on its own: the card re-fetches it when a job ends (`job-ended`)."""
    return _card(branch_id)


@bp.post("/branches/<int:branch_id>/card/sync/<kind>")
@customer_required
def sync_from_card(branch_id: int, kind: str):
    """Start a sync from the card; answers with the card (202), or with the refusal on it (409, 403)."""
    branch = branch_for(current_user, branch_id)
    try:
        job = dashboard_service.start_sync(branch, kind, user=current_user, puppeteer=puppet.current_puppeteer(),
                                           puppet_session=puppet.current_session(),
                                           private_key=sessions.private_key())
    except JobAlreadyRunning as running:
        notice, status = {"title": "Already running", "message": str(running), "level": "info"}, 409
    except dashboard_service.CardSyncRefused as refused:
        notice, status = {"title": "Not started", "message": str(refused), "level": "error"}, 409
    except puppet.PuppetReadOnly as refused:
        notice, status = {"title": "Not started", "message": refused.description, "level": "error"}, 403
    else:
        notice, status = None, 202
        if not wants_fragment():
            flash(f"{job.description}: started. Its progress shows on the card.", "success")
    if notice is not None and not wants_fragment():
        flash(notice["message"], notice["level"])
    return _card(branch.id, notice, status)


@bp.get("/settings")
@customer_required
def settings():
    """The business's settings: the time zone its pages and emails use."""
    return render_template("customer/settings.html", zones=settings_service.choices(), errors={})


@bp.post("/settings")
@customer_required
def save_settings():
    """Change the business's time zone (audited; in a puppet session with both people)."""
    business = current_user.business
    try:
        changed = settings_service.change_time_zone(business, request.form.get("time_zone", ""), current_user,
                                                    puppeteer=puppet.current_puppeteer())
    except settings_service.SettingRefused as refused:
        return render_template("customer/settings.html", zones=settings_service.choices(),
                               errors={"time_zone": str(refused)}), 400
    timefmt.use_zone(business.time_zone)
    flash(f"Times are now shown in {timefmt.zone_label()}." if changed else "Nothing changed.",
          "success" if changed else "info")
    return redirect(url_for("customer.settings"))


@bp.get("/notifications/unsubscribe/<token>")
def unsubscribe_page(token: str):
    """The link in each message: one button stops them (no sign-in needed; the link names the user)."""
    user = notify.user_for_unsubscribe(token)
    if user is None:
        raise NotFound()
    return render_template("customer/unsubscribe.html", user=user, token=token)


@bp.post("/notifications/unsubscribe/<token>")
@csrf.exempt  # the signed token is the proof, so mail clients' one-click (RFC 8058) POST works too
def unsubscribe(token: str):
    """Stop the problem emails for the user the link names."""
    user = notify.user_for_unsubscribe(token)
    if user is None:
        raise NotFound()
    user.notify_by_email = False
    db.session.commit()
    flash("You won't get these emails any more. Problems still show on your dashboard.", "success")
    return redirect(url_for("customer.unsubscribe_page", token=token))
