"""Server-side login sessions.

The signed cookie holds only a random session id and a per-session secret. Redis holds the session
record (who signed in, and for a customer their private key encrypted under the app key *and* the
cookie's secret), expiring with the session and deleted at logout. A login is valid only while its
record exists, so logout and expiry are enforced on the server, not by the browser.
"""
from __future__ import annotations

import base64
import json
import os
import secrets

from flask import current_app, g, session
from flask_login import login_user, logout_user

from portal import keys
from portal.extensions import get_redis

_PREFIX = "portal:session:"


def _key(session_id: str) -> str:
    return f"{_PREFIX}{session_id}"


def _lifetime_seconds() -> int:
    return int(current_app.permanent_session_lifetime.total_seconds())


# Fields of a session record that a rotation (a new session id for the same login) carries over.
_CARRIED_OVER = ("second_factor",)


def begin(user, private_key: bytes | None, **fields) -> None:
    """Sign `user` in with a fresh session id (never reusing the pre-login one).

    `fields` are stored in the record too (`second_factor=True` once a support person gave theirs).
    """
    session.clear()
    session_id = secrets.token_urlsafe(24)
    secret = os.urandom(32)
    record: dict = {"user_id": user.id, **{k: v for k, v in fields.items() if v is not None}}
    if private_key is not None:
        blob = keys.encrypt_for_session(private_key, secret, session_id)
        record["key"] = base64.b64encode(blob).decode()
    get_redis().set(_key(session_id), json.dumps(record), ex=_lifetime_seconds())
    g.session_record = record
    session.permanent = True
    session["sid"] = session_id
    session["sk"] = base64.b64encode(secret).decode()
    login_user(user)


def record() -> dict | None:
    """This request's session record, or None when not signed in (or expired, or logged out)."""
    if "session_record" not in g:
        session_id = session.get("sid")
        raw = get_redis().get(_key(session_id)) if session_id else None
        g.session_record = json.loads(raw) if raw else None
    return g.session_record


def update(**changes) -> None:
    """Change fields of the current session record, keeping its expiry."""
    current = record()
    if current is None:
        return
    current.update(changes)
    current = {k: v for k, v in current.items() if v is not None}
    get_redis().set(_key(session["sid"]), json.dumps(current), keepttl=True)
    g.session_record = current


def carried_over() -> dict:
    """The fields of this session record that a new session id for the same login keeps."""
    current = record() or {}
    return {name: current[name] for name in _CARRIED_OVER if name in current}


def private_key() -> bytes | None:
    """The signed-in customer's private key, or None (support, puppet sessions, no login)."""
    current = record()
    if not current or "key" not in current or current.get("puppet_session_id"):
        return None
    try:
        return keys.decrypt_for_session(
            base64.b64decode(current["key"]), base64.b64decode(session["sk"]), session["sid"]
        )
    except (keys.CiphertextRejected, KeyError, ValueError):
        return None


def replace_private_key(new_key: bytes) -> None:
    """Hold a new private key for this session (after a password change or reset)."""
    blob = keys.encrypt_for_session(new_key, base64.b64decode(session["sk"]), session["sid"])
    update(key=base64.b64encode(blob).decode())


def end() -> None:
    """Forget the session on the server and in the cookie."""
    session_id = session.get("sid")
    if session_id:
        get_redis().delete(_key(session_id))
    logout_user()
    session.clear()
    g.pop("session_record", None)


def forget_current() -> None:
    """Delete this request's session record only (before `begin` gives the login a new id)."""
    session_id = session.get("sid")
    if session_id:
        get_redis().delete(_key(session_id))
    g.pop("session_record", None)


def end_all_for(user_id: int) -> int:
    """Delete every live session of one user (after a password reset); returns how many."""
    r = get_redis()
    removed = 0
    for name in r.scan_iter(match=f"{_PREFIX}*", count=500):
        raw = r.get(name)
        if raw and json.loads(raw).get("user_id") == user_id:
            removed += r.delete(name)
    return removed
