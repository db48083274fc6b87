"""Telling customers when only they can act: a branch must sign in again, Sage One AUS rejects the
stored login, the same sync failed three times in a row, a budget pause delays a mass re-sync by
more than a day.

Each problem is mailed to every customer user of the business who hasn't switched these off, at
most once a day per user, branch and problem, in plain text and HTML, with a link to the branch
page and times in the business's time zone. The message is written to the database first and
sent by an RQ job (retried), so a mail server that is down delays the mail and never fails the
sync that noticed the problem. The dashboard lists what was sent; support sees it on the customer page.
"""
from __future__ import annotations

import functools
import logging
from datetime import datetime, timedelta

from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer
from redis.exceptions import RedisError
from rq import Retry
from sqlalchemy import bindparam

from portal import timefmt
from portal.extensions import db
from portal.models import Branch, Notification, Role, User, utcnow

log = logging.getLogger(__name__)

ONCE_PER = timedelta(days=1)
NEEDS_SIGN_IN, LOGIN_REJECTED, SYNC_FAILING, RESYNC_DELAYED = (
    "needs_sign_in", "login_rejected", "sync_failing", "resync_delayed")


def local_time(moment: datetime, branch: Branch) -> str:
    """`moment` in the business's time zone, with the zone named: '3 Dec 2026, 10:15 am Sydney time (AEDT)'."""
    return timefmt.with_zone(moment, timefmt.zone_for(branch.business.time_zone))


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="portal-unsubscribe")


def unsubscribe_token(user: User) -> str:
    return _serializer().dumps(user.id)


def user_for_unsubscribe(token: str) -> User | None:
    """The user an unsubscribe link names, or None when the link was altered."""
    try:
        user_id = _serializer().loads(token)
    except BadSignature:
        return None
    return db.session.get(User, user_id) if isinstance(user_id, int) else None


def tell(branch: Branch, problem: str, subject: str, text: str) -> list[Notification]:
    """Write and queue the message for each customer of the branch's business (caller's session commits)."""
    since = utcnow() - ONCE_PER
    users = db.session.scalars(db.select(User).where(
        User.business_id == branch.business_id, User.role == Role.CUSTOMER, User.notify_by_email.is_(True))).all()
    made = []
    for user in users:
        recent = db.session.scalar(db.select(Notification.id).where(
            Notification.user_id == user.id, Notification.branch_id == branch.id,
            Notification.problem == problem, Notification.created_at > since).limit(1))
        if recent is not None:
            continue
        row = Notification(business_id=branch.business_id, branch_id=branch.id, user_id=user.id, problem=problem,
                           subject=subject, body=text)
        db.session.add(row)
        made.append(row)
    if made:
        db.session.commit()
        for row in made:
            _queue(row)
    return made


def _queue(row: Notification) -> None:
    from portal.jobqueue import get_queue

    try:
        get_queue().enqueue("jobs.notify.send", row.id, retry=Retry(max=5, interval=[30, 120, 600, 1800, 3600]),
                            job_timeout=60, result_ttl=3600, failure_ttl=7 * 86400)
    except RedisError:
        row.error = "The job queue was unavailable; the message waits to be sent."
        db.session.commit()


def branch_url(branch: Branch) -> str:
    base = current_app.config["PUBLIC_URL"].rstrip("/")
    connection = branch.connection
    if connection is not None and connection.provider.value == "sage_one_aus":
        return f"{base}/integrations/sage-one-aus/branches/{branch.id}"
    return f"{base}/integrations/sage/branches/{branch.id}"


def send(notification_id: int) -> None:
    """Send one message (the job); raises mail.MailError so RQ retries while the server is down."""
    from portal import mail

    row = db.session.get(Notification, notification_id)
    if row is None or row.sent_at is not None:
        return
    base = current_app.config["PUBLIC_URL"].rstrip("/")
    link = branch_url(row.branch)
    unsubscribe = f"{base}/notifications/unsubscribe/{unsubscribe_token(row.user)}"
    text = (f"{row.body}\n\nOpen the branch: {link}\n\n"
            f"You get these because you look after {row.branch.business.name} in the Workshop Portal. "
            f"To stop them: {unsubscribe}\n")
    html = current_app.jinja_env.get_template("mail/notification.html").render(
        notification=row, link=link, unsubscribe=unsubscribe)
    try:
        mail.send(row.user.email, row.subject, text, html=html, unsubscribe=unsubscribe)
    except mail.MailError as exc:
        row.error = str(exc)
        db.session.commit()
        raise
    row.sent_at, row.error = utcnow(), None
    db.session.commit()


@functools.cache
def _recent_statement():
    return (db.select(Notification).where(Notification.business_id == bindparam("business_id"))
            .order_by(Notification.created_at.desc()).limit(bindparam("limit")))


def recent_for(business_id: int, limit: int = 10) -> list[Notification]:
    """What the business's customers were told lately (newest first)."""
    return db.session.scalars(_recent_statement(), {"business_id": business_id, "limit": limit}).all()


# --- The problems ---------------------------------------------------------------------------------


def branch_needs_sign_in(branch: Branch, reason: str) -> None:
    tell(branch, NEEDS_SIGN_IN, f"{branch.name}: sign in to Sage again to keep it syncing",
         f"{branch.name} can't sync with Sage until someone signs in to Sage again for it.\n\n"
         f"Why: {reason}\n\nOpen the branch and use Reconnect. Contacts, invoices and their Sage ids are kept.")


def login_rejected(branch: Branch) -> None:
    tell(branch, LOGIN_REJECTED, f"{branch.name}: Sage One AUS no longer accepts the saved login",
         f"Sage One AUS refused the saved login of {branch.name}, so its syncs have stopped.\n\n"
         "Open the branch and enter the Sage One password again (the same Sage One username; to use "
         "another, disconnect first). Nothing waiting is lost.")


def sync_failing(branch: Branch, description: str, error: str | None) -> None:
    tell(branch, f"{SYNC_FAILING}:{description}"[:60], f"{branch.name}: '{description}' failed three times in a row",
         f"'{description}' for {branch.name} failed three times in a row.\n\nThe last time it said: "
         f"{error or 'no reason was given'}\n\nOpen the branch to see what is waiting and why.")


def resync_delayed(branch: Branch, resume_at: datetime, last_day: datetime) -> None:
    tell(branch, RESYNC_DELAYED, f"{branch.name}: the contact re-sync to Sage will take more than a day",
         f"{branch.name} is sending all its contacts to Sage again, and Sage's daily request budget for the "
         f"business is used up. It continues by itself at {local_time(resume_at, branch)} and should "
         f"finish around {local_time(last_day, branch)}. Nothing needs doing unless that is too late.")
