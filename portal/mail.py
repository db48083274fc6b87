"""Outgoing mail: one message at a time (plain text, optionally with HTML) through the configured SMTP server."""
from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import make_msgid

from flask import current_app

from portal import metrics


class MailError(RuntimeError):
    """The message could not be handed to the mail server (not configured, down or refusing)."""


def send(to: str, subject: str, body: str, *, html: str | None = None, unsubscribe: str | None = None) -> None:
    """Send `body` (and `html` as its alternative) to `to`; raises MailError when the SMTP server can't take it.

    `unsubscribe`: a one-click unsubscribe URL (List-Unsubscribe, RFC 8058).
    """
    config = current_app.config
    if not config.get("SMTP_HOST"):
        raise MailError("PORTAL_SMTP_HOST is not set, so the portal cannot send mail")
    message = EmailMessage()
    message["From"] = config["MAIL_FROM"]
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="portal")
    message.set_content(body)
    if html is not None:
        message.add_alternative(html, subtype="html")
    if unsubscribe is not None:
        message["List-Unsubscribe"] = f"<{unsubscribe}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    try:
        with smtplib.SMTP(config["SMTP_HOST"], int(config["SMTP_PORT"]),
                          timeout=float(config["SMTP_TIMEOUT_SECONDS"])) as smtp:
            if config["SMTP_STARTTLS"]:
                smtp.starttls(context=ssl.create_default_context())
            if config.get("SMTP_USERNAME"):
                smtp.login(config["SMTP_USERNAME"], config.get("SMTP_PASSWORD") or "")
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        metrics.mail_sent(ok=False)
        raise MailError(f"the mail server at {config['SMTP_HOST']}:{config['SMTP_PORT']} "
                        f"did not take the message: {exc}") from exc
    metrics.mail_sent()
