"""Sign-in: flask-login wired to server-side sessions (portal.sessions) and puppet sessions."""
from __future__ import annotations

import functools

from flask import Flask, g, make_response, redirect, request, url_for
from sqlalchemy import bindparam, select
from sqlalchemy.orm import joinedload

from portal import puppet, sessions
from portal.extensions import db, login_manager
from portal.models import User


def init_app(app: Flask) -> None:
    """Configure flask-login and register the auth blueprint."""
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to continue."
    login_manager.login_message_category = "info"
    login_manager.session_protection = None  # the server-side session record does this job

    from portal.auth.views import bp, require_second_factor

    app.register_blueprint(bp)
    app.before_request(require_second_factor)


@functools.cache
def _user_statement():
    """The signed-in user, read at every request: built once. The business comes with the user
    (nearly every page a customer opens reads it)."""
    return select(User).where(User.id == bindparam("user_id")).options(joinedload(User.business))


@login_manager.user_loader
def _load_user(user_id: str):
    record = sessions.record()
    if record is None or str(record.get("user_id")) != user_id:
        return None
    real = db.session.scalars(_user_statement(), {"user_id": int(user_id)}).first()
    if real is None:
        return None
    g.real_user = real
    return puppet.resolve(real, record.get("puppet_session_id"))


@login_manager.unauthorized_handler
def _unauthorized():
    login_url = url_for("auth.login", next=request.full_path if request.method == "GET" else None)
    if request.htmx:
        # A fragment must not get a login page swapped into it: send the whole page there.
        response = make_response("", 401)
        response.headers["HX-Redirect"] = login_url
        return response
    return redirect(login_url)
