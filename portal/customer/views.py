"""The customer's self-service pages."""
from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import current_user

from portal.access import customer_required
from portal.customer import dashboard as dashboard_service

bp = Blueprint("customer", __name__)


@bp.get("/")
@customer_required
def dashboard():
    """A card per branch of the customer's business, and when support accessed the account."""
    cards = dashboard_service.branch_cards(current_user.business)
    access_log = dashboard_service.support_access_log(current_user.business_id)
    support_changes = dashboard_service.puppet_writes(current_user.business_id)
    return render_template(
        "customer/dashboard.html", cards=cards, access_log=access_log, support_changes=support_changes
    )
