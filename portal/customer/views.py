"""The customer's self-service pages."""
from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_login import current_user
from werkzeug.exceptions import NotFound

from portal import notify
from portal.access import customer_required
from portal.customer import dashboard as dashboard_service
from portal.extensions import csrf, db

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
