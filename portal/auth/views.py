"""Sign in, sign out, change password."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from portal import accounts, puppet, sessions
from portal.auth import throttle
from portal.extensions import db
from portal.models import utcnow

bp = Blueprint("auth", __name__)

GENERIC_FAILURE = "That email and password don't match an account. Check them and try again."


def _safe_next(target: str | None) -> str | None:
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


def home_for(user) -> str:
    """Where a signed-in person lands."""
    return url_for("support.home") if user.is_support else url_for("customer.dashboard")


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Show the sign-in form; on POST check the password (throttled) and open a session."""
    if current_user.is_authenticated and request.method == "GET":
        return redirect(home_for(current_user))
    email = request.form.get("email", "").strip()
    status = 200
    if request.method == "POST":
        address = request.remote_addr or ""
        wait = throttle.seconds_until_allowed(email, address)
        if wait:
            minutes = max(1, round(wait / 60))
            flash(f"Too many sign-in attempts. Wait {minutes} minute{'s' if minutes != 1 else ''} "
                  "and try again, or reset your password.", "error")
            status = 429
        else:
            result = accounts.authenticate(email, request.form.get("password", ""))
            if result is None:
                throttle.record_failure(email, address)
                flash(GENERIC_FAILURE, "error")
                status = 401
            else:
                user, private_key = result
                throttle.clear_account(email)
                sessions.begin(user, private_key)
                user.last_login_at = utcnow()
                db.session.commit()
                return redirect(_safe_next(request.args.get("next")) or home_for(user))
    return render_template("auth/login.html", email=email), status


@bp.post("/logout")
def logout():
    """End any puppet session, then the login session itself."""
    if current_user.is_authenticated:
        puppet.end("support logged out")
        sessions.end()
    flash("You have signed out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password():
    """Change the signed-in person's password (their Sage One AUS key is kept)."""
    if puppet.current_session() is not None:
        flash("A puppet session can't change the customer's password.", "error")
        return redirect(url_for("customer.dashboard"))
    status = 200
    if request.method == "POST":
        new = request.form.get("new_password", "")
        if new != request.form.get("confirm_password", ""):
            flash("The new passwords don't match.", "error")
            status = 400
        else:
            try:
                key = accounts.change_password(current_user, request.form.get("current_password", ""), new)
            except accounts.PasswordRejected as exc:
                flash(str(exc), "error")
                status = 400
            else:
                if key is not None:
                    sessions.replace_private_key(key)
                flash("Your password has been changed.", "success")
                return redirect(home_for(current_user))
    return render_template("auth/change_password.html"), status
