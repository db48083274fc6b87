"""RQ entry points that send mail."""
from __future__ import annotations


def send_password_reset(email: str) -> bool:
    """Mail a password-reset link to `email` if it has an account; raises MailError to be retried."""
    from portal import password_reset

    return password_reset.send_link(email)
