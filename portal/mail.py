"""Outgoing mail: one plain-text message at a time through the configured SMTP server."""
from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import make_msgid

from flask import current_app


class MailError(RuntimeError):
    """The message could not be handed to the mail server (not configured, down or refusing)."""


def send(to: str, subject: str, body: str) -> None:
    """Send `body` to `to`; raises MailError when the SMTP server can't take it."""
    config = current_app.config
    if not config.get("SMTP_HOST"):
        raise MailError("PORTAL_SMTP_HOST is not set, so the portal cannot send mail")
    message = EmailMessage()
    message["From"] = config["MAIL_FROM"]
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="portal")
    message.set_content(body)
    try:
        with smtplib.SMTP(config["SMTP_HOST"], int(config["SMTP_PORT"]),
                          timeout=float(config["SMTP_TIMEOUT_SECONDS"])) as smtp:
            if config["SMTP_STARTTLS"]:
                smtp.starttls(context=ssl.create_default_context())
            if config.get("SMTP_USERNAME"):
                smtp.login(config["SMTP_USERNAME"], config.get("SMTP_PASSWORD") or "")
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        raise MailError(f"the mail server at {config['SMTP_HOST']}:{config['SMTP_PORT']} "
                        f"did not take the message: {exc}") from exc
