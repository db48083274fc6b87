"""The support console."""
from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for

from portal import puppet
from portal.access import support_required

bp = Blueprint("support", __name__, url_prefix="/support")


@bp.get("/")
@support_required
def home():
    """The console's front page."""
    return render_template("support/home.html")


@bp.post("/puppet/end")
@support_required
def end_puppet():
    """End the current puppet session and return to the console."""
    ended = puppet.end("ended by support")
    if ended is not None:
        flash(f"Puppet session as {ended.customer_user.email} ended.", "info")
    return redirect(url_for("support.home"))
