"""RQ entry point for customer messages (portal/notify.py); retried while the mail server is down."""
from __future__ import annotations

from portal import notify


def send(notification_id: int) -> None:
    """Mail one notification; raises when the mail server can't take it (RQ retries)."""
    notify.send(notification_id)
