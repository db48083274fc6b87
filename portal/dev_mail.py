"""Development only: the page that shows what `make run`'s local mail sink received (reset links).

Registered only when PORTAL_ENV is development and PORTAL_DEV_MAILBOX names the sink's Maildir.
"""
from __future__ import annotations

from flask import Blueprint, Flask, current_app, render_template

bp = Blueprint("dev_mail", __name__, url_prefix="/_dev")


def init_app(app: Flask) -> None:
    """Register the page in development when a mailbox is configured."""
    if app.config.get("ENV_NAME") == "development" and app.config.get("DEV_MAILBOX"):
        app.register_blueprint(bp)


@bp.get("/mail")
def outbox():
    """Every message the local mail sink received, newest first."""
    from devtools.mail_sink import read_mailbox

    messages = [
        {"to": m["To"], "subject": m["Subject"], "date": m["Date"],
         "body": m.get_payload(decode=True).decode(errors="replace")}
        for m in reversed(read_mailbox(current_app.config["DEV_MAILBOX"]))
    ]
    return render_template("dev/mail.html", messages=messages)
