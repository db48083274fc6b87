"""Password reset by email: a single-use, expiring link whose token is stored only hashed.

The request answers the same whether or not the address has an account: the web request only
queues a job with the address, and the worker looks the account up, makes the token and mails
the link. A mail server that is down fails that job (RQ retries it), never the request.
Completing a reset makes a new private key (accounts.reset_password: Sage One AUS connections ask
for the Sage One login again, saying why) and ends every login session of the account.
"""
from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from flask import current_app
from rq import Retry

from portal import accounts, mail, sessions
from portal.extensions import db
from portal.jobqueue import FAILURE_TTL, QUEUED_TTL, get_queue
from portal.models import PasswordResetToken, User, find_user_by_email, utcnow


class ResetLinkRejected(ValueError):
    """The link is unknown, used or expired; the message says what to do."""

    def __init__(self):
        super().__init__("This reset link has expired or was already used. Ask for a new one below.")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def request_link(email: str) -> None:
    """Queue the job that mails a reset link to `email` if it has an account (nothing otherwise)."""
    get_queue().enqueue(
        "jobs.mail.send_password_reset", email.strip().lower(),
        job_timeout=60, ttl=QUEUED_TTL, result_ttl=0, failure_ttl=FAILURE_TTL,
        retry=Retry(max=3, interval=[10, 60, 300]),
    )


def issue_token(user: User) -> str:
    """A new reset token for `user` (its hash is stored; the caller mails the token)."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    db.session.add(PasswordResetToken(
        user_id=user.id, token_hash=_digest(token), created_at=now,
        expires_at=now + timedelta(minutes=current_app.config["PASSWORD_RESET_MINUTES"]),
    ))
    db.session.commit()
    return token


def send_link(email: str) -> bool:
    """Mail a reset link to the account with this address; False when there is none.

    Raises mail.MailError when the mail server can't take the message (the job is retried).
    """
    user = find_user_by_email(email)
    if user is None:
        return False
    token = issue_token(user)
    minutes = current_app.config["PASSWORD_RESET_MINUTES"]
    link = f"{current_app.config['PUBLIC_URL'].rstrip('/')}/password/reset?token={token}"
    mail.send(user.email, "Reset your Workshop Portal password", (
        "Someone asked to reset the password of your Workshop Portal account.\n\n"
        f"Open this link within {minutes} minutes to choose a new password (it works once):\n\n"
        f"{link}\n\n"
        "Resetting signs you out everywhere. A saved Sage One AUS login can't be unlocked with the\n"
        "new password, so the portal will ask you to enter it again.\n\n"
        "If you didn't ask for this, ignore this message: your password stays as it is.\n"
    ))
    return True


def token_or_none(token: str | None) -> PasswordResetToken | None:
    """The usable reset token row for `token`, or None (unknown, used or expired)."""
    if not token or len(token) > 100:
        return None
    row = db.session.scalar(db.select(PasswordResetToken).where(PasswordResetToken.token_hash == _digest(token)))
    return row if row is not None and row.is_usable() else None


def complete(token: str | None, new_password: str) -> User:
    """Set a new password through a reset link and end every session of the account.

    Raises ResetLinkRejected, or accounts.PasswordRejected when the new password breaks a rule.
    """
    row = token_or_none(token)
    if row is None:
        raise ResetLinkRejected()
    user = row.user
    # Claim every outstanding link of the account in the same transaction as the new password, so
    # two requests racing with one link cannot both reset it, and a rejected password spends nothing.
    claimed = db.session.execute(
        db.update(PasswordResetToken)
        .where(PasswordResetToken.user_id == user.id, PasswordResetToken.used_at.is_(None))
        .values(used_at=utcnow())
        .returning(PasswordResetToken.id)
    ).scalars().all()
    if row.id not in claimed:
        db.session.rollback()
        raise ResetLinkRejected()
    try:
        accounts.reset_password(user, new_password)  # commits the claim with the new password
    except accounts.PasswordRejected:
        db.session.rollback()
        raise
    sessions.end_all_for(user.id)
    return user
