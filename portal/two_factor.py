"""Support staff's second factor: TOTP (RFC 6238, pyotp) and one-time recovery codes.

The TOTP secret is stored encrypted under the app key; recovery codes only as SHA-256 (they are
long random strings, so a fast hash is enough). A code is accepted once: the time step it belongs
to is remembered, and nothing at or before it is accepted again. A support lead can reset someone's
second factor (audited); that ends all their sessions and they enrol again at the next sign-in.
"""
from __future__ import annotations

import hashlib
import secrets
import time

import pyotp
import segno

from portal import audit, keys, sessions
from portal.extensions import db
from portal.models import RecoveryCode, User, utcnow

ISSUER = "Workshop Portal"
RECOVERY_CODES = 10
_STEP = 30


class TwoFactorError(ValueError):
    """A code was not accepted, or the reset is not allowed; the message says what to do."""


def _context(user: User) -> str:
    return f"user/{user.id}/totp"


def _digest(code: str) -> str:
    return hashlib.sha256(code.strip().lower().replace("-", "").replace(" ", "").encode()).hexdigest()


def is_enrolled(user: User) -> bool:
    return user.totp_enrolled_at is not None and user.totp_secret_enc is not None


def new_secret() -> str:
    """A fresh random TOTP secret (base32)."""
    return pyotp.random_base32()


def seal_secret(secret: str, user: User) -> str:
    """The secret encrypted for a session record while enrolment waits for its first code."""
    return keys.encrypt_at_rest(secret, _context(user) + "/pending").hex()


def open_secret(sealed: str, user: User) -> str:
    return keys.decrypt_at_rest(bytes.fromhex(sealed), _context(user) + "/pending")


def secret_of(user: User) -> str:
    """The enrolled user's TOTP secret (what an authenticator app holds)."""
    return keys.decrypt_at_rest(user.totp_secret_enc, _context(user))


def provisioning_uri(user: User, secret: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)


def qr_code_data_uri(user: User, secret: str) -> str:
    """The enrolment QR code as an SVG data URI, rendered here (never by a third party)."""
    return segno.make(provisioning_uri(user, secret), error="m").svg_data_uri(scale=5, border=2)


def _matching_step(secret: str, code: str, after: int | None) -> int | None:
    code = "".join(code.split())
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    now = int(time.time()) // _STEP
    for step in (now - 1, now, now + 1):  # one step either way, for clock drift
        if (after is None or step > after) and secrets.compare_digest(totp.at(step * _STEP), code):
            return step
    return None


def enrol(user: User, secret: str, code: str) -> list[str]:
    """Confirm enrolment with a first code from the app; returns the recovery codes (shown once).

    Raises TwoFactorError when the code doesn't match.
    """
    step = _matching_step(secret, code, None)
    if step is None:
        raise TwoFactorError("That code doesn't match. Check the time on your phone and type the current code.")
    return set_up(user, secret, step)


def set_up(user: User, secret: str, last_step: int | None = None) -> list[str]:
    """Store `secret` as the user's second factor (enrol checks a code first; the development demo
    does not); returns new recovery codes."""
    user.totp_secret_enc = keys.encrypt_at_rest(secret, _context(user))
    user.totp_enrolled_at = utcnow()
    user.totp_last_step = last_step
    codes = _replace_recovery_codes(user)
    audit.record("account.two_factor_enrolled", f"{user.email} set up two-step sign-in", subject_user_id=user.id)
    db.session.commit()
    return codes


def _replace_recovery_codes(user: User) -> list[str]:
    db.session.execute(db.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = [f"{secrets.token_hex(5)}-{secrets.token_hex(5)}" for _ in range(RECOVERY_CODES)]
    db.session.add_all(RecoveryCode(user_id=user.id, code_hash=_digest(code)) for code in codes)
    return codes


def verify(user: User, code: str) -> str | None:
    """Accept a current TOTP code or an unused recovery code (spent on use); returns which
    ("totp" or "recovery"), or None when neither matches."""
    if not is_enrolled(user):
        return None
    step = _matching_step(secret_of(user), code, user.totp_last_step)
    if step is not None:
        # Compare-and-set: two requests racing with one code cannot both pass.
        claimed = db.session.execute(
            db.update(User).where(User.id == user.id,
                                  db.or_(User.totp_last_step.is_(None), User.totp_last_step < step))
            .values(totp_last_step=step)
        ).rowcount
        db.session.commit()
        return "totp" if claimed == 1 else None
    if len(code) > 40:
        return None
    spent = db.session.execute(
        db.update(RecoveryCode)
        .where(RecoveryCode.user_id == user.id, RecoveryCode.code_hash == _digest(code), RecoveryCode.used_at.is_(None))
        .values(used_at=utcnow())
    ).rowcount
    if spent:
        audit.record("account.recovery_code_used", f"{user.email} signed in with a recovery code",
                     subject_user_id=user.id)
    db.session.commit()
    return "recovery" if spent else None


def reset(user: User, by: User) -> None:
    """Remove a support person's second factor (a lead's action, audited) and end their sessions;
    raises TwoFactorError when `by` is not a support lead or `user` is not support staff."""
    if not (by.is_support and by.is_support_lead):
        raise TwoFactorError("Only a support lead can reset someone's two-step sign-in.")
    if not user.is_support:
        raise TwoFactorError("Only support staff have a two-step sign-in to reset.")
    user.totp_secret_enc = None
    user.totp_enrolled_at = None
    user.totp_last_step = None
    db.session.execute(db.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    audit.record("account.two_factor_reset", f"{by.email} reset {user.email}'s two-step sign-in",
                 actor_id=by.id, subject_user_id=user.id)
    db.session.commit()
    sessions.end_all_for(user.id)


def current_code(user: User) -> str:
    """The code an authenticator app shows now (development's demo-totp command)."""
    return pyotp.TOTP(secret_of(user)).now()
