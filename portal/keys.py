"""Every secret crosses this one module (PRODUCT.md, "The per-user key").

* Each customer has a random salt and a random 32-byte private key. The key is stored only wrapped
  (AES-GCM) under a key derived from the login password with scrypt and the user's salt.
* The Sage One AUS password is encrypted (AES-GCM) under a key derived from the private key and the
  salt, with associated data binding it to the user and the Sage username.
* A job that needs the private key gets it sealed (Fernet, under the app's encryption key): Redis
  never holds it in the clear and the worker refuses a seal older than JOB_SEAL_SECONDS. The
  seal waits in a Redis key of its own that expires with it (`hold_for_job`); the job's arguments
  carry only a reference, and the job deletes the seal when it takes it.
* Sage OAuth tokens are encrypted at rest under the app's encryption key, bound to their row.

Associated data always names the user (or row) so a ciphertext copied elsewhere does not open.
"""
from __future__ import annotations

import base64
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from flask import current_app

from portal.extensions import get_redis

SALT_BYTES = 16
PRIVATE_KEY_BYTES = 32
_NONCE_BYTES = 12


class KeySchemeError(Exception):
    """Base class for key failures; the message is safe to show."""


class WrongPassword(KeySchemeError):
    """The password does not unwrap this user's private key."""


class CiphertextRejected(KeySchemeError):
    """A ciphertext did not open: wrong key, or moved to another user, username or row."""


class SealExpired(KeySchemeError):
    """A sealed job key is older than allowed (or was tampered with)."""


def _aead_encrypt(key: bytes, plaintext: bytes, associated: str) -> bytes:
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated.encode())


def _aead_decrypt(key: bytes, blob: bytes, associated: str) -> bytes:
    try:
        return AESGCM(key).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], associated.encode())
    except (InvalidTag, ValueError) as exc:
        raise CiphertextRejected("the stored secret could not be opened") from exc


def _hkdf(material: bytes, salt: bytes, purpose: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=purpose.encode()).derive(material)


def _password_key(password: str, salt: bytes) -> bytes:
    n = current_app.config["KEY_SCRYPT_N"]
    return Scrypt(salt=salt, length=32, n=n, r=8, p=1).derive(password.encode())


def _wrap_aad(user_id: int) -> str:
    return f"portal/user/{user_id}/private-key"


# --- The per-user private key -------------------------------------------------------------------


def create_private_key(user, password: str) -> bytes:
    """Give `user` (already flushed, so it has an id) a new salt and private key; return the key."""
    private_key = os.urandom(PRIVATE_KEY_BYTES)
    user.key_salt = os.urandom(SALT_BYTES)
    user.wrapped_private_key = _aead_encrypt(
        _password_key(password, user.key_salt), private_key, _wrap_aad(user.id)
    )
    return private_key


def unwrap_private_key(user, password: str) -> bytes:
    """The user's private key, opened with their login password; raises WrongPassword."""
    try:
        return _aead_decrypt(
            _password_key(password, user.key_salt), user.wrapped_private_key, _wrap_aad(user.id)
        )
    except CiphertextRejected as exc:
        raise WrongPassword("the password does not open this key") from exc


def rewrap_private_key(user, old_password: str, new_password: str) -> bytes:
    """Re-wrap the same private key under a new password (a password change); returns the key."""
    private_key = unwrap_private_key(user, old_password)
    user.wrapped_private_key = _aead_encrypt(
        _password_key(new_password, user.key_salt), private_key, _wrap_aad(user.id)
    )
    return private_key


def replace_private_key(user, new_password: str) -> bytes:
    """A reset without the old password: a new key; what the old key sealed is now unreadable."""
    user.key_generation = (user.key_generation or 0) + 1
    return create_private_key(user, new_password)


# --- The Sage One AUS password (rules 7 and 8) --------------------------------------------------


def _sage_one_aad(user_id: int, username: str) -> str:
    return f"portal/user/{user_id}/sage-one-aus/{username.strip().lower()}"


def encrypt_sage_one_password(user, private_key: bytes, username: str, password: str) -> bytes:
    """Encrypt a Sage One AUS password so only this user's key opens it, for this username only."""
    key = _hkdf(private_key, user.key_salt, "sage-one-aus-password")
    return _aead_encrypt(key, password.encode(), _sage_one_aad(user.id, username))


def decrypt_sage_one_password(user, private_key: bytes, username: str, blob: bytes) -> str:
    """Open a stored Sage One AUS password; raises CiphertextRejected if anything was swapped."""
    key = _hkdf(private_key, user.key_salt, "sage-one-aus-password")
    return _aead_decrypt(key, blob, _sage_one_aad(user.id, username)).decode()


# --- The app's own encryption key ---------------------------------------------------------------


def _app_key(purpose: str) -> bytes:
    master = base64.urlsafe_b64decode(current_app.config["ENCRYPTION_KEY"])
    return _hkdf(master, b"portal", purpose)


def encrypt_at_rest(plaintext: str, context: str) -> bytes:
    """Encrypt a value stored in the database (Sage tokens) under the app key, bound to `context`."""
    return _aead_encrypt(_app_key("at-rest"), plaintext.encode(), context)


def decrypt_at_rest(blob: bytes, context: str) -> str:
    """Open a value from encrypt_at_rest; raises CiphertextRejected if it was moved."""
    return _aead_decrypt(_app_key("at-rest"), blob, context).decode()


def _sealer() -> Fernet:
    return Fernet(base64.urlsafe_b64encode(_app_key("job-seal")))


def seal_for_job(private_key: bytes) -> str:
    """Seal a private key to pass as a job argument; it opens for JOB_SEAL_SECONDS only."""
    return _sealer().encrypt(private_key).decode()


def unseal_for_job(sealed: str) -> bytes:
    """Open a sealed job key; raises SealExpired when it is too old or not ours."""
    try:
        return _sealer().decrypt(sealed.encode(), ttl=current_app.config["JOB_SEAL_SECONDS"])
    except (InvalidToken, TypeError, ValueError) as exc:
        raise SealExpired(
            "The sign-in that started this job has expired; ask the customer to start it again."
        ) from exc


# --- Sealed job keys held in Redis under a reference -------------------------------------------

_JOB_KEY_PREFIX = "portal:job-key:"


def hold_for_job(private_key: bytes) -> str:
    """Seal a private key into Redis for JOB_SEAL_SECONDS and return the reference a job passes.

    The job's own arguments (kept by RQ for a day after it ends, a week when it fails) carry only
    the reference; the seal lives in a key of its own that expires with the seal and is deleted
    when the job takes it (`take_for_job`) or ends (`drop_for_job`).
    """
    reference = secrets.token_urlsafe(18)
    get_redis().set(_JOB_KEY_PREFIX + reference, seal_for_job(private_key),
                    ex=int(current_app.config["JOB_SEAL_SECONDS"]))
    return reference


def take_for_job(reference: str) -> bytes:
    """Open the key held under `reference` and delete it from Redis; raises SealExpired when gone."""
    sealed = get_redis().getdel(_JOB_KEY_PREFIX + str(reference)) if reference else None
    if sealed is None:
        raise SealExpired("The sign-in that started this job has expired; ask the customer to start it again.")
    return unseal_for_job(sealed.decode() if isinstance(sealed, bytes) else sealed)


def drop_for_job(reference: str | None) -> None:
    """Delete the key held under `reference`, taken or not (a job that ended, a job not enqueued)."""
    if reference:
        get_redis().delete(_JOB_KEY_PREFIX + str(reference))


# --- Login sessions: the private key held server-side, encrypted ---------------------------------


def encrypt_for_session(private_key: bytes, session_secret: bytes, session_id: str) -> bytes:
    """Encrypt the key for Redis under the app key *and* a secret that only the cookie holds."""
    key = _hkdf(_app_key("session") + session_secret, b"portal-session", session_id)
    return _aead_encrypt(key, private_key, f"portal/session/{session_id}")


def decrypt_for_session(blob: bytes, session_secret: bytes, session_id: str) -> bytes:
    """Open the session's private key; raises CiphertextRejected for a foreign cookie."""
    key = _hkdf(_app_key("session") + session_secret, b"portal-session", session_id)
    return _aead_decrypt(key, blob, f"portal/session/{session_id}")
