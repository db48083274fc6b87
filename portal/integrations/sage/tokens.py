"""Sage tokens: encrypted at rest, stored with the time they were issued, refreshed under a lock.

Sage rotates refresh tokens and the previous one dies on use, so two workers refreshing the same
connection at once would leave one of them holding a dead token (and the connection apparently
revoked). Refreshes therefore take a Redis lock per connection; whoever waited re-reads the row
and uses the token the first one stored.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app
from redis.exceptions import LockError

from portal import keys
from portal.extensions import db, get_redis
from portal.integrations.sage.client import (
    OAuthClient,
    SageAuthError,
    SageTokenRejected,
    SageUnavailable,
    TokenSet,
)
from portal.models import Connection, ConnectionState, utcnow

# Refresh when the access token has less than this left, so a request never leaves with a token
# that dies on the way.
REFRESH_MARGIN = timedelta(seconds=60)
LOCK_SECONDS = 30

REAUTH_REASON = (
    "Sage no longer accepts this branch's sign-in (it expired or was revoked). Reconnect to Sage: "
    "your contacts, invoices and their Sage ids are kept."
)


def _context(connection: Connection, which: str) -> str:
    return f"connection/{connection.id}/{which}"


def store_tokens(connection: Connection, tokens: TokenSet, now: datetime | None = None) -> None:
    """Encrypt and store a fresh token pair with its issue time and both expiries (caller commits)."""
    now = now or utcnow()
    connection.access_token_enc = keys.encrypt_at_rest(tokens.access_token, _context(connection, "access"))
    connection.refresh_token_enc = keys.encrypt_at_rest(tokens.refresh_token, _context(connection, "refresh"))
    connection.token_issued_at = now
    connection.access_token_expires_at = now + timedelta(seconds=tokens.expires_in)
    connection.refresh_token_expires_at = now + timedelta(seconds=tokens.refresh_token_expires_in)
    connection.first_authorized_at = connection.first_authorized_at or now


def clear_tokens(connection: Connection) -> None:
    """Forget both tokens and their expiries (caller commits)."""
    connection.access_token_enc = None
    connection.refresh_token_enc = None
    connection.access_token_expires_at = None
    connection.refresh_token_expires_at = None


def refresh_token_of(connection: Connection) -> str | None:
    """The decrypted refresh token, or None when there is none; raises SageTokenRejected (and marks
    the branch for re-authentication) when it can't be decrypted."""
    if not connection.refresh_token_enc:
        return None
    return _decrypt(connection, connection.refresh_token_enc, "refresh")


UNREADABLE_REASON = (
    "The portal can no longer read this branch's saved Sage sign-in (its encryption key was changed). "
    "Reconnect to Sage: your contacts, invoices and their Sage ids are kept."
)


def _decrypt(connection: Connection, blob: bytes, which: str) -> str:
    try:
        return keys.decrypt_at_rest(blob, _context(connection, which))
    except keys.CiphertextRejected:
        # A token sealed under another key is lost for good: ask for a new sign-in, don't fail.
        mark_needs_reauth(connection, UNREADABLE_REASON)
        db.session.commit()
        raise SageTokenRejected(UNREADABLE_REASON) from None


def mark_needs_reauth(connection: Connection, reason: str = REAUTH_REASON) -> None:
    """Move a connection to needs re-authentication with a plain reason, and tell the customers
    (portal/notify.py: at most once a day; this commits)."""
    from portal import notify

    first_time = connection.state != ConnectionState.NEEDS_REAUTH
    connection.state = ConnectionState.NEEDS_REAUTH
    connection.state_reason = reason
    clear_tokens(connection)
    db.session.commit()
    if first_time:
        notify.branch_needs_sign_in(connection.branch, reason)


def _reload(connection_id: int) -> Connection:
    # populate_existing: another worker may have stored new tokens since this session read the row.
    connection = db.session.scalar(
        db.select(Connection).where(Connection.id == connection_id).execution_options(populate_existing=True)
    )
    if connection is None or connection.state != ConnectionState.CONNECTED or not connection.access_token_enc:
        raise SageAuthError("This branch is not signed in to Sage; reconnect it first.")
    return connection


def _fresh_enough(connection: Connection) -> bool:
    expires = connection.access_token_expires_at
    return expires is not None and expires - REFRESH_MARGIN > utcnow()


def _access_of(connection: Connection) -> str:
    return _decrypt(connection, connection.access_token_enc, "access")


def access_token(connection_id: int, *, force: bool = False, stale: str | None = None,
                 before_refresh=None) -> str:
    """A usable access token, refreshing first when it is about to expire (or `force`, after a 401).

    Raises SageTokenRejected (the connection is now needs_reauth), SageAuthError, SageUnavailable.
    `before_refresh` (the business's limiter) is called before a refresh goes to Sage.
    """
    connection = _reload(connection_id)
    if not force and _fresh_enough(connection):
        return _access_of(connection)
    lock = get_redis().lock(f"portal:sage:refresh:{connection_id}", timeout=LOCK_SECONDS,
                            blocking_timeout=LOCK_SECONDS + 5)
    try:
        with lock:
            db.session.commit()  # end any read transaction so the re-read below sees the other worker's commit
            connection = _reload(connection_id)
            current = _access_of(connection)
            if _fresh_enough(connection) and (not force or current != stale):
                return current  # another worker refreshed while we waited for the lock
            oauth = OAuthClient.from_config(current_app.config, before_request=before_refresh)
            try:
                tokens = oauth.refresh(refresh_token_of(connection))
            except SageTokenRejected:
                mark_needs_reauth(connection)
                db.session.commit()
                raise
            store_tokens(connection, tokens)
            db.session.commit()
            return tokens.access_token
    except LockError:
        raise SageUnavailable("Another worker is refreshing this branch's Sage sign-in; try again shortly.") from None


class TokenProvider:
    """The `token(force=False)` callable a SageClient uses for one connection; caches between calls."""

    def __init__(self, connection_id: int, before_refresh=None):
        self.connection_id = connection_id
        self._before_refresh = before_refresh
        self._token: str | None = None
        self._good_until: datetime | None = None

    def __call__(self, force: bool = False) -> str:
        if force or self._token is None or self._good_until is None or self._good_until <= utcnow():
            self._token = access_token(self.connection_id, force=force, stale=self._token,
                                       before_refresh=self._before_refresh)
            connection = db.session.get(Connection, self.connection_id)
            self._good_until = connection.access_token_expires_at - REFRESH_MARGIN
        return self._token


def refresh_now(connection_id: int, before_refresh=None) -> None:
    """Refresh the connection's tokens now, whatever their age (an idle branch's refresh token
    nearing its 31 days), under the same lock as every refresh; raises like access_token."""
    connection = _reload(connection_id)
    access_token(connection_id, force=True, stale=_access_of(connection), before_refresh=before_refresh)
