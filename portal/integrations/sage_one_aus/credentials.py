"""Connecting a branch to Sage One AUS: verify the login, keep username continuity, store the
password so only its owner's private key opens it (PRODUCT rules 5, 6 and 7).

* Rule 5: without the customer's own private key (a puppet session, support, a stale login) nothing
  here runs; `require_private_key` refuses first.
* Rule 6: `check_continuity` refuses a username other than the one the branch is connected as,
  until the branch is disconnected.
* Rule 7: the password is stored only as `keys.encrypt_sage_one_password(...)`; while a customer picks
  one of several companies it waits in Redis in that same encrypted form, never in the clear.
* Failed logins are counted per username (Sage locks a username for 24 hours after 20 failures in an
  hour) and never retried by the portal. A refusal of the portal's own API key is not a failed
  login: nothing is counted or changed, and support is told.
* Connecting is done while a person waits: the login check never waits for a request slot or
  backs off (`interactive`), and says Sage is busy instead.
"""
from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime

from limits import parse
from sqlalchemy.orm.attributes import set_committed_value

from portal import audit, keys, timefmt
from portal.extensions import db, get_redis
from portal.integrations.sage_one_aus import ratelimit
from portal.integrations.sage_one_aus.client import Company, SageOneClient
from portal.integrations.sage_one_aus.errors import (
    SageOneApiKeyRefused,
    SageOneAuthFailed,
    SageOneLocked,
)
from portal.models import (
    Connection,
    ConnectionState,
    Contact,
    Invoice,
    Provider,
    SyncState,
    User,
    utcnow,
)

LOGIN_FAILURES_BEFORE_LOCK = 20
PENDING_SECONDS = 600
CREDENTIALS_REJECTED = "Credentials rejected — re-enter your Sage One password"
PUPPET_REFUSAL = (
    "Sage One AUS can't be authenticated in a puppet session. It signs in with the customer's own "
    "Sage One username and password, which only the customer can enter and unlock with their portal "
    "login. Ask the customer to sign in and connect Sage One AUS themselves."
)
NO_KEY_REFUSAL = (
    "Your sign-in no longer holds the key that protects your Sage One password. Sign out and sign "
    "in again, then try once more."
)
_PENDING_PREFIX = "portal:sage-one-aus:pending:"
_LOCK_PREFIX = "portal:sage-one-aus:locked:"


class ConnectRefused(Exception):
    """Connecting, re-authenticating or disconnecting was refused; the message says why."""


class UsernameMismatch(ConnectRefused):
    """Rule 6: the branch is connected as another Sage One username."""


class CredentialsUnavailable(Exception):
    """The stored Sage One password cannot be opened (reset key, another owner); the message says why."""


@dataclass
class PendingConnect:
    """A verified login waiting for the customer to pick one of its companies."""

    username: str
    companies: list[Company]


# --- where a branch stands -------------------------------------------------------------------


def connection_of(branch) -> Connection | None:
    """The branch's connection row (any provider, any state), also kept as `branch.connection` so
    the templates that read it there do not load it a second time."""
    connection = db.session.scalar(db.select(Connection).where(Connection.branch_id == branch.id))
    set_committed_value(branch, "connection", connection)
    return connection


def active_connection(branch) -> Connection | None:
    """The branch's Sage One AUS connection unless it is disconnected."""
    connection = connection_of(branch)
    if connection is None or connection.provider != Provider.SAGE_ONE_AUS or not connection.is_active:
        return None
    return connection


def require_private_key(private_key: bytes | None) -> bytes:
    """The key, or ConnectRefused: puppet sessions, support and stale logins have none (rule 5)."""
    if private_key is None:
        raise ConnectRefused(NO_KEY_REFUSAL)
    return private_key


def check_continuity(branch, username: str) -> None:
    """Rule 6: refuse a different Sage One username than the one the branch is connected as."""
    connection = active_connection(branch)
    if connection is None or not connection.sage_one_username:
        return
    if connection.sage_one_username.strip().lower() != username.strip().lower():
        raise UsernameMismatch(
            f"This branch is connected as {connection.sage_one_username}; disconnect Sage One AUS "
            "first to use another login."
        )


def _check_provider_free(branch) -> None:
    connection = connection_of(branch)
    if connection is not None and connection.provider != Provider.SAGE_ONE_AUS and connection.is_active:
        raise ConnectRefused(
            f"This branch is connected to {connection.provider.label}. Disconnect it first: a branch "
            "uses one accounting provider at a time."
        )


# --- failed logins and the username lock --------------------------------------------------------


def _failure_window():
    return parse(f"{LOGIN_FAILURES_BEFORE_LOCK}/hour")


def _failure_key(username: str) -> tuple[str, str]:
    return ("sage-one-aus-login-failures", username.strip().lower())


def attempts_left(username: str) -> int:
    """How many more failed logins Sage allows this hour before it locks the username for 24 hours."""
    _, remaining = ratelimit.limiter().get_window_stats(_failure_window(), *_failure_key(username))
    return max(0, remaining)


def record_login_failure(username: str) -> int:
    """Count one failed login (Sage counts it too) and return the attempts left."""
    ratelimit.limiter().hit(_failure_window(), *_failure_key(username))
    left = attempts_left(username)
    for connection in _connections_with_username(username):
        connection.login_failures = LOGIN_FAILURES_BEFORE_LOCK - left
    return left


def locked_until(username: str) -> datetime | None:
    """When Sage's lock on this username ends, if Sage has locked it."""
    raw = get_redis().get(f"{_LOCK_PREFIX}{username.strip().lower()}")
    if raw is None:
        return None
    until = datetime.fromtimestamp(float(raw), UTC)
    return until if until > utcnow() else None


def record_lock(username: str, until: datetime) -> None:
    """Remember that Sage locked the username, so the portal does not call Sage with it before then."""
    get_redis().set(f"{_LOCK_PREFIX}{username.strip().lower()}", until.timestamp(),
                    exat=math.ceil(until.timestamp()) + 1)
    for connection in _connections_with_username(username):
        connection.locked_until = until


def _connections_with_username(username: str) -> list[Connection]:
    return db.session.scalars(
        db.select(Connection).where(
            db.func.lower(Connection.sage_one_username) == username.strip().lower(),
            Connection.provider == Provider.SAGE_ONE_AUS,
        )
    ).all()


def _lock_message(until: datetime) -> str:
    return (f"Sage One AUS has locked this username after too many failed logins, until "
            f"{timefmt.with_zone(until)}. Wait for the lock to lift, or reset the password on Sage One.")


def verify(username: str, password: str) -> list[Company]:
    """Check a login against Sage (Company/Get) once, without waiting; raises SageOneAuthFailed with
    attempts left, SageOneLocked, SageOneApiKeyRefused, SageOneBusy or another SageOneError. Never
    retries a refused login."""
    until = locked_until(username)
    if until is not None:
        raise SageOneLocked(_lock_message(until), until)
    known = [c.sage_one_company_id for c in _connections_with_username(username) if c.sage_one_company_id]
    client = SageOneClient.from_config(username, password, interactive=True, login_unverified=True,
                                       known_company_ids=known)
    try:
        return client.companies()
    except SageOneAuthFailed as exc:
        exc.attempts_left = record_login_failure(username)
        db.session.commit()
        raise
    except SageOneLocked as exc:
        record_lock(username, exc.until)
        db.session.commit()
        raise


def record_api_key_refused(branch, actor_id: int | None = None) -> None:
    """Tell support that Sage refused the portal's API key while this branch used it (the caller commits)."""
    audit.record("sage_one_aus.api_key_refused",
                 "Sage One AUS refused the portal's API key (PORTAL_SAGE_ONE_API_KEY); the customer's login "
                 "was not checked and nothing was changed", branch=branch, actor_id=actor_id)


# --- connect ------------------------------------------------------------------------------------


def begin_connect(branch, user: User, private_key: bytes | None, username: str, password: str):
    """Verify a login for the branch; returns the Connection, or PendingConnect when the login has
    several companies. Raises ConnectRefused, UsernameMismatch or a SageOneError."""
    private_key = require_private_key(private_key)
    username = (username or "").strip()
    if not username or not password:
        raise ConnectRefused("Enter your Sage One username (your email) and password.")
    if len(username) > 254:
        raise ConnectRefused("That username is too long for a Sage One login.")
    check_continuity(branch, username)
    _check_provider_free(branch)
    try:
        companies = verify(username, password)
    except SageOneApiKeyRefused:
        record_api_key_refused(branch)
        db.session.commit()
        raise
    if not companies:
        raise ConnectRefused("This Sage One login works, but it has no company to connect to.")
    if len(companies) == 1:
        return store(branch, user, private_key, username, password, companies[0])
    blob = keys.encrypt_sage_one_password(user, private_key, username, password)
    get_redis().set(_pending_key(branch, user), json.dumps({
        "username": username,
        "companies": [[c.id, c.name] for c in companies],
        "password": base64.b64encode(blob).decode(),
    }), ex=PENDING_SECONDS)
    return PendingConnect(username, companies)


def _pending_key(branch, user) -> str:
    return f"{_PENDING_PREFIX}{branch.id}:{user.id}"


def pending(branch, user: User) -> PendingConnect | None:
    """The login this user verified for the branch and still has to pick a company for."""
    raw = get_redis().get(_pending_key(branch, user))
    if raw is None:
        return None
    record = json.loads(raw)
    return PendingConnect(record["username"], [Company(int(i), n) for i, n in record["companies"]])


def finish_connect(branch, user: User, private_key: bytes | None, company_id: int | None) -> Connection:
    """Connect the branch to the company picked from a pending login; raises ConnectRefused."""
    private_key = require_private_key(private_key)
    raw = get_redis().get(_pending_key(branch, user))
    if raw is None:
        raise ConnectRefused("The company choice timed out. Enter your Sage One login again.")
    record = json.loads(raw)
    company = next((Company(int(i), n) for i, n in record["companies"] if int(i) == company_id), None)
    if company is None:
        raise ConnectRefused("Pick one of the companies listed.")
    check_continuity(branch, record["username"])
    _check_provider_free(branch)
    try:
        password = keys.decrypt_sage_one_password(
            user, private_key, record["username"], base64.b64decode(record["password"]))
    except keys.CiphertextRejected:
        raise ConnectRefused("The company choice can't be completed. Enter your Sage One login again.") from None
    connection = store(branch, user, private_key, record["username"], password, company)
    get_redis().delete(_pending_key(branch, user))
    return connection


def store(branch, user: User, private_key: bytes, username: str, password: str, company: Company) -> Connection:
    """Save a verified login on the branch, encrypted for `user` only, and record who did it."""
    connection = connection_of(branch)
    now = utcnow()
    was_active = connection is not None and connection.provider == Provider.SAGE_ONE_AUS and connection.is_active
    previous_owner = connection.credentials_owner if was_active else None
    if connection is None:
        connection = Connection(branch_id=branch.id, provider=Provider.SAGE_ONE_AUS,
                                state=ConnectionState.CONNECTED)
        db.session.add(connection)
    elif connection.provider != Provider.SAGE_ONE_AUS or connection.sage_one_company_id not in (None, company.id):
        _forget_ids(branch)
    connection.provider = Provider.SAGE_ONE_AUS
    connection.state = ConnectionState.CONNECTED
    connection.state_reason = None
    connection.sage_one_username = username
    connection.sage_one_company_id = company.id
    connection.sage_one_company_name = company.name
    connection.sage_one_password_enc = keys.encrypt_sage_one_password(user, private_key, username, password)
    connection.credentials_owner_id = user.id
    connection.credentials_key_generation = user.key_generation
    connection.connected_by_id = user.id
    connection.connected_at = now
    connection.disconnected_at = None
    connection.locked_until = None
    connection.login_failures = LOGIN_FAILURES_BEFORE_LOCK - attempts_left(username)
    db.session.flush()
    if not was_active:
        kind, summary = "sage_one_aus.connected", f"{user.email} connected Sage One AUS as {username} ({company.name})"
    elif previous_owner is not None and previous_owner.id != user.id:
        kind, summary = ("sage_one_aus.taken_over",
                         f"{user.email} re-authenticated Sage One AUS as {username}, taking it over from "
                         f"{previous_owner.email}")
    else:
        kind, summary = "sage_one_aus.reauthenticated", f"{user.email} re-authenticated Sage One AUS as {username}"
    audit.record(kind, summary, branch=branch, details={
        "username": username, "company_id": company.id, "company_name": company.name,
        "credentials_owner_id": user.id,
        "previous_owner_id": previous_owner.id if previous_owner is not None else None,
    })
    db.session.commit()
    return connection


def _forget_ids(branch) -> None:
    """Ids from another provider or company mean nothing to this company: everything is pending again."""
    for model in (Contact, Invoice):
        db.session.execute(
            db.update(model).where(model.branch_id == branch.id)
            .values(sage_id=None, sync_state=SyncState.PENDING, sync_error=None, synced_at=None)
            .execution_options(synchronize_session=False)
        )
    connection = connection_of(branch)
    if connection is not None:
        connection.ids_sage_business_id = None


def disconnect(branch, user: User) -> Connection:
    """Disconnect the branch from Sage One AUS and drop the stored password; raises ConnectRefused."""
    connection = active_connection(branch)
    if connection is None:
        raise ConnectRefused("This branch isn't connected to Sage One AUS.")
    connection.state = ConnectionState.DISCONNECTED
    connection.state_reason = None
    connection.disconnected_at = utcnow()
    connection.sage_one_password_enc = None
    connection.credentials_owner_id = None
    connection.credentials_key_generation = None
    audit.record("sage_one_aus.disconnected",
                 f"{user.email} disconnected Sage One AUS (was {connection.sage_one_username})",
                 branch=branch, details={"username": connection.sage_one_username,
                                         "company_id": connection.sage_one_company_id})
    db.session.commit()
    return connection


# --- using the stored password (jobs) -----------------------------------------------------------


def usable_by(connection: Connection, user: User) -> None:
    """Raise CredentialsUnavailable unless `user` holds the key to this connection's password now."""
    if connection.state == ConnectionState.DISCONNECTED or connection.sage_one_password_enc is None:
        raise CredentialsUnavailable("This branch isn't connected to Sage One AUS.")
    if connection.state != ConnectionState.CONNECTED:
        raise CredentialsUnavailable(connection.state_reason or connection.state.label)
    if connection.credentials_owner_id != user.id:
        owner = connection.credentials_owner
        raise CredentialsUnavailable(
            f"Only {owner.email if owner else 'the person who connected it'} can unlock the saved Sage One "
            "password. To run this yourself, re-authenticate with the same Sage One username to take "
            "the connection over."
        )
    if user.key_generation != connection.credentials_key_generation:
        needs_reauth(connection, user)
        db.session.commit()
        raise CredentialsUnavailable(connection.state_reason)


def needs_reauth(connection: Connection, owner: User) -> None:
    """Mark a connection whose password was sealed under an older key (a password reset)."""
    if connection.state == ConnectionState.NEEDS_REAUTH:
        return
    connection.state = ConnectionState.NEEDS_REAUTH
    connection.state_reason = (
        f"{owner.email}'s portal password was reset, so the saved Sage One AUS password can no "
        "longer be unlocked. Re-enter the Sage One login to resume syncing."
    )
    audit.record("connection.needs_reauth", connection.state_reason, branch=connection.branch,
                 subject_user_id=owner.id)


def password_for(connection: Connection, owner: User, private_key: bytes) -> str:
    """Open the stored Sage One password with the owner's private key; raises CredentialsUnavailable."""
    usable_by(connection, owner)
    try:
        return keys.decrypt_sage_one_password(owner, private_key, connection.sage_one_username,
                                              connection.sage_one_password_enc)
    except keys.CiphertextRejected:
        raise CredentialsUnavailable(
            "The saved Sage One password can't be unlocked with this sign-in. Re-enter the Sage One "
            "login to resume syncing."
        ) from None


def mark_credentials_rejected(connection: Connection, actor_id: int | None = None) -> None:
    """Sage answered 401 to the stored login: stop using it until the customer re-enters it (and tell them)."""
    from portal import notify

    if connection.state != ConnectionState.CREDENTIALS_REJECTED:
        notify.login_rejected(connection.branch)
    connection.state = ConnectionState.CREDENTIALS_REJECTED
    connection.state_reason = CREDENTIALS_REJECTED
    audit.record("sage_one_aus.credentials_rejected",
                 f"Sage One AUS rejected the saved login {connection.sage_one_username}",
                 branch=connection.branch, actor_id=actor_id,
                 details={"username": connection.sage_one_username})
