"""Account services: create users, check passwords, change and reset them (keeping rule 7's key)."""
from __future__ import annotations

from flask import current_app
from werkzeug.security import check_password_hash, generate_password_hash

from portal import audit, keys
from portal.extensions import db
from portal.models import Connection, ConnectionState, Provider, Role, User, find_user_by_email, utcnow

MIN_PASSWORD_LENGTH = 10


def _hash(password: str) -> str:
    return generate_password_hash(password, method=current_app.config["PASSWORD_HASH_METHOD"])


def _dummy_hash() -> str:
    """A hash to check against when the email is unknown, so a missing account costs the same."""
    cache = current_app.extensions.setdefault("portal_dummy_hash", {})
    method = current_app.config["PASSWORD_HASH_METHOD"]
    if method not in cache:
        cache[method] = _hash("not-a-real-password")
    return cache[method]


class PasswordRejected(ValueError):
    """A new password does not meet the rules; the message says which."""


class WrongPassword(PasswordRejected):
    """The current password given to confirm a change is not the account's."""


def _check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordRejected(f"Use at least {MIN_PASSWORD_LENGTH} characters.")


def create_user(email: str, password: str, role: Role, business=None, name: str = "", **extra) -> User:
    """Add a user (customers also get their salt and wrapped private key); the caller commits."""
    user = User(
        email=email.strip().lower(),
        name=name,
        role=role,
        business=business,
        password_hash=_hash(password),
        **extra,
    )
    db.session.add(user)
    db.session.flush()
    if role == Role.CUSTOMER:
        keys.create_private_key(user, password)
    return user


def authenticate(email: str, password: str) -> tuple[User, bytes | None] | None:
    """The user and their unwrapped private key when the password is right, else None."""
    user = find_user_by_email(email)
    if user is None:
        check_password_hash(_dummy_hash(), password)
        return None
    if not check_password_hash(user.password_hash, password):
        return None
    private_key = keys.unwrap_private_key(user, password) if user.role == Role.CUSTOMER else None
    return user, private_key


def change_password(user: User, old_password: str, new_password: str) -> bytes | None:
    """Change a password knowing the old one: the same private key is re-wrapped (rule 7 holds)."""
    if not check_password_hash(user.password_hash, old_password):
        raise WrongPassword("Your current password is not right.")
    _check_new_password(new_password)
    private_key = None
    if user.role == Role.CUSTOMER:
        private_key = keys.rewrap_private_key(user, old_password, new_password)
    user.password_hash = _hash(new_password)
    audit.record("account.password_changed", f"{user.email} changed their password",
                 business_id=user.business_id, subject_user_id=user.id)
    db.session.commit()
    return private_key


def reset_password(user: User, new_password: str) -> bytes | None:
    """Reset without the old password: a new private key, so Sage One AUS logins it sealed need
    re-entering; their connections say so. Returns the new key."""
    _check_new_password(new_password)
    user.password_hash = _hash(new_password)
    private_key = None
    if user.role == Role.CUSTOMER:
        private_key = keys.replace_private_key(user, new_password)
        stale = db.session.scalars(
            db.select(Connection).where(
                Connection.credentials_owner_id == user.id,
                Connection.provider == Provider.SAGE_ONE_AUS,
                Connection.state != ConnectionState.DISCONNECTED,
            )
        ).all()
        for connection in stale:
            connection.state = ConnectionState.NEEDS_REAUTH
            connection.state_reason = (
                f"{user.email}'s portal password was reset, so the saved Sage One AUS password "
                "can no longer be unlocked. Re-enter the Sage One login to resume syncing."
            )
            connection.updated_at = utcnow()
            audit.record("connection.needs_reauth", connection.state_reason,
                         branch=connection.branch, subject_user_id=user.id)
    audit.record("account.password_reset", f"{user.email}'s password was reset",
                 business_id=user.business_id, subject_user_id=user.id)
    db.session.commit()
    return private_key
