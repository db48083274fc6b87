"""Sign in, sign out, change password."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, make_response, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from portal import accounts, log_safety, password_reset, puppet, sessions, two_factor
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
                # Registered only once it opened an account, so failed guesses can't crowd real
                # secrets out of the filter's bounded list.
                log_safety.protect(request.form["password"])
                throttle.clear_account(email)
                sessions.begin(user, private_key)
                user.last_login_at = utcnow()
                db.session.commit()
                _sync_what_is_waiting(user, private_key)
                target = _safe_next(request.args.get("next"))
                if user.is_support:  # support's second step comes before anything else
                    return redirect(url_for("auth.second_step", next=target))
                return redirect(target or home_for(user))
    return render_template("auth/login.html", email=email), status


def _sync_what_is_waiting(user, private_key) -> None:
    """Sage One AUS branches whose owner chose it: send what is waiting with the key just opened."""
    from portal.integrations.sage_one_aus.on_sign_in import sync_waiting

    try:
        if sync_waiting(user, private_key):
            flash("What was waiting is being sent to Sage One AUS, as you chose.", "info")
    except Exception:  # a sign-in must never fail because of it
        db.session.rollback()
        current_app.logger.exception("sign-in sync could not be started")


@bp.post("/logout")
def logout():
    """End any puppet session, then the login session itself."""
    if current_user.is_authenticated:
        puppet.end("support logged out")
        sessions.end()
    flash("You have signed out.", "info")
    return redirect(url_for("auth.login"))


def _throttled_message(wait: int, what: str) -> str:
    minutes = max(1, round(wait / 60))
    return f"Too many {what}. Wait {minutes} minute{'s' if minutes != 1 else ''} and try again."


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password():
    """Change the signed-in person's password (their Sage One AUS key is kept).

    Guesses at the current password meet the sign-in throttles. A change ends every other login
    of the account and gives this one a new session id.
    """
    if puppet.current_session() is not None:
        flash("A puppet session can't change the customer's password.", "error")
        return redirect(url_for("customer.dashboard"))
    status = 200
    if request.method == "POST":
        new = request.form.get("new_password", "")
        address = request.remote_addr or ""
        wait = throttle.seconds_until_allowed(current_user.email, address)
        if wait:
            flash(_throttled_message(wait, "password attempts"), "error")
            status = 429
        elif new != request.form.get("confirm_password", ""):
            flash("The new passwords don't match.", "error")
            status = 400
        else:
            try:
                key = accounts.change_password(current_user, request.form.get("current_password", ""), new)
            except accounts.WrongPassword as exc:
                throttle.record_failure(current_user.email, address)
                flash(str(exc), "error")
                status = 400
            except accounts.PasswordRejected as exc:
                flash(str(exc), "error")
                status = 400
            else:
                log_safety.protect(request.form.get("current_password"))
                log_safety.protect(new)
                user = current_user._get_current_object()
                extra = sessions.carried_over()
                sessions.end_all_for(user.id)
                sessions.begin(user, key, **extra)
                flash("Your password has been changed. Every other signed-in session has ended.", "success")
                return redirect(home_for(user))
    return render_template("auth/change_password.html"), status


RESET_REQUESTED = ("If an account uses that address, we've sent it a link to reset the password. "
                   "The link works once, for {minutes} minutes. Check your inbox (and spam folder).")


@bp.route("/password/forgot", methods=["GET", "POST"])
def forgot_password():
    """Ask for a password-reset link by email; the answer is the same whether or not the address
    has an account (throttled per address typed and per network address)."""
    email = request.form.get("email", "").strip()[:254]
    status = 200
    sent = False
    if request.method == "POST":
        if "@" not in email:
            flash("Enter the email address you sign in with.", "error")
            status = 400
        else:
            wait = throttle.take_reset_request(email, request.remote_addr or "")
            if wait:
                flash(_throttled_message(wait, "reset requests"), "error")
                status = 429
            else:
                password_reset.request_link(email)
                sent = True
    return render_template("auth/forgot_password.html", email=email, sent=sent,
                           message=RESET_REQUESTED.format(minutes=current_app.config["PASSWORD_RESET_MINUTES"])), status


@bp.route("/password/reset", methods=["GET", "POST"])
def reset_password():
    """Choose a new password through the link of a reset email; ends every session of the account."""
    token = request.values.get("token", "")
    if request.method == "GET":
        if password_reset.token_or_none(token) is None:
            flash(str(password_reset.ResetLinkRejected()), "error")
            return redirect(url_for("auth.forgot_password"))
        return render_template("auth/reset_password.html", token=token)
    new = request.form.get("new_password", "")
    if new != request.form.get("confirm_password", ""):
        flash("The new passwords don't match.", "error")
        return render_template("auth/reset_password.html", token=token), 400
    try:
        user = password_reset.complete(token, new)
    except password_reset.ResetLinkRejected as exc:
        flash(str(exc), "error")
        return redirect(url_for("auth.forgot_password"))
    except accounts.PasswordRejected as exc:
        flash(str(exc), "error")
        return render_template("auth/reset_password.html", token=token), 400
    log_safety.protect(new)
    if current_user.is_authenticated:
        sessions.end()
    message = "Your password has been reset and every signed-in session has ended. Sign in with the new password."
    if user.is_customer:
        message += " Saved Sage One AUS logins need entering again: the branch pages say where."
    flash(message, "success")
    return redirect(url_for("auth.login"))


# Endpoints a support person may reach before giving their second factor.
BEFORE_SECOND_STEP = frozenset({"auth.second_step", "auth.two_factor_setup", "auth.logout", "auth.login",
                                "static", "health.healthz"})


def require_second_factor():
    """before_request guard: a support login reaches nothing but the second step until it is done."""
    if request.endpoint in BEFORE_SECOND_STEP or not current_user.is_authenticated:
        return None
    real = puppet.real_user()
    if real is None or not real.is_support or (sessions.record() or {}).get("second_factor"):
        return None
    target = url_for("auth.second_step")
    if request.htmx:
        response = make_response("", 401)
        response.headers["HX-Redirect"] = target
        return response
    return redirect(target)


def _second_step_done(user, target: str | None):
    sessions.forget_current()
    sessions.begin(user, None, second_factor=True)  # a new session id once both steps are done
    return redirect(target or home_for(user))


@bp.route("/login/second-step", methods=["GET", "POST"])
@login_required
def second_step():
    """Support's second sign-in step: a code from the authenticator app or a recovery code
    (throttled like the password)."""
    user = current_user._get_current_object()
    target = _safe_next(request.args.get("next"))
    if not user.is_support or (sessions.record() or {}).get("second_factor"):
        return redirect(target or home_for(user))
    if not two_factor.is_enrolled(user):
        return redirect(url_for("auth.two_factor_setup", next=target))
    status = 200
    if request.method == "POST":
        address = request.remote_addr or ""
        wait = throttle.seconds_until_allowed(user.email, address)
        if wait:
            flash(_throttled_message(wait, "attempts"), "error")
            status = 429
        elif two_factor.verify(user, request.form.get("code", "")[:64]):
            throttle.clear_account(user.email)
            return _second_step_done(user, target)
        else:
            throttle.record_failure(user.email, address)
            flash("That code isn't right. Type the current 6-digit code from your app, or a recovery code.", "error")
            status = 400
    return render_template("auth/second_step.html"), status


@bp.route("/account/two-factor/setup", methods=["GET", "POST"])
@login_required
def two_factor_setup():
    """Set up two-step sign-in (support staff): scan the QR code, confirm with a first code, and
    see the recovery codes once."""
    user = current_user._get_current_object()
    target = _safe_next(request.args.get("next"))
    if not user.is_support or two_factor.is_enrolled(user):
        return redirect(target or home_for(user))
    record = sessions.record() or {}
    if "pending_totp" not in record:  # one secret per login until confirmed, so a reload keeps it
        secret = two_factor.new_secret()
        sessions.update(pending_totp=two_factor.seal_secret(secret, user))
    else:
        secret = two_factor.open_secret(record["pending_totp"], user)
    if request.method == "GET":
        return render_template("auth/two_factor_setup.html", secret=secret,
                               qr=two_factor.qr_code_data_uri(user, secret))
    try:
        codes = two_factor.enrol(user, secret, request.form.get("code", "")[:64])
    except two_factor.TwoFactorError as exc:
        flash(str(exc), "error")
        return render_template("auth/two_factor_setup.html", secret=secret,
                               qr=two_factor.qr_code_data_uri(user, secret)), 400
    sessions.forget_current()
    sessions.begin(user, None, second_factor=True)
    return render_template("auth/recovery_codes.html", codes=codes, next=target or home_for(user))
