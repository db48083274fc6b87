"""The per-user key scheme (PRODUCT rules 7 and 8, "The per-user key")."""
import base64
import time

import pytest
from cryptography.fernet import Fernet

from portal import accounts, keys
from portal.extensions import db
from portal.models import Connection, ConnectionState, Provider
from tests import factories


def test_wrong_password_cannot_unwrap_the_private_key(app):
    user = factories.customer(factories.business())
    with pytest.raises(keys.WrongPassword):
        keys.unwrap_private_key(user, "not-the-password")


def test_right_password_unwraps_the_same_key_every_time(app):
    user = factories.customer(factories.business())
    assert keys.unwrap_private_key(user, factories.PASSWORD) == keys.unwrap_private_key(user, factories.PASSWORD)
    assert len(keys.unwrap_private_key(user, factories.PASSWORD)) == 32


def test_users_get_distinct_salts_and_keys(app):
    business = factories.business()
    a, b = factories.customer(business), factories.customer(business)
    assert a.key_salt != b.key_salt
    assert keys.unwrap_private_key(a, factories.PASSWORD) != keys.unwrap_private_key(b, factories.PASSWORD)


def test_wrapped_key_moved_to_another_user_does_not_open(app):
    business = factories.business()
    a, b = factories.customer(business), factories.customer(business)
    b.wrapped_private_key, b.key_salt = a.wrapped_private_key, a.key_salt
    with pytest.raises(keys.WrongPassword):
        keys.unwrap_private_key(b, factories.PASSWORD)


def test_sage_one_password_opens_only_for_its_user_and_username(app):
    business = factories.business()
    a, b = factories.customer(business), factories.customer(business)
    key_a = keys.unwrap_private_key(a, factories.PASSWORD)
    blob = keys.encrypt_sage_one_password(a, key_a, "newcastle@harbour-auto.test", "sage-secret")
    assert keys.decrypt_sage_one_password(a, key_a, "NEWCASTLE@harbour-auto.test", blob) == "sage-secret"
    with pytest.raises(keys.CiphertextRejected):
        keys.decrypt_sage_one_password(a, key_a, "someone-else@harbour-auto.test", blob)
    with pytest.raises(keys.CiphertextRejected):
        keys.decrypt_sage_one_password(b, keys.unwrap_private_key(b, factories.PASSWORD),
                                       "newcastle@harbour-auto.test", blob)
    with pytest.raises(keys.CiphertextRejected):  # right key, but the row claims another user
        keys.decrypt_sage_one_password(b, key_a, "newcastle@harbour-auto.test", blob)


def test_token_at_rest_is_bound_to_its_row(app):
    blob = keys.encrypt_at_rest("refresh-token-value", "connection/1/refresh")
    assert b"refresh-token-value" not in blob
    assert keys.decrypt_at_rest(blob, "connection/1/refresh") == "refresh-token-value"
    with pytest.raises(keys.CiphertextRejected):
        keys.decrypt_at_rest(blob, "connection/2/refresh")


def test_sealed_job_key_opens_within_its_lifetime_only(app):
    private_key = b"k" * 32
    sealed = keys.seal_for_job(private_key)
    assert base64.urlsafe_b64encode(private_key).decode() not in sealed
    assert keys.unseal_for_job(sealed) == private_key
    old = Fernet(base64.urlsafe_b64encode(keys._app_key("job-seal"))).encrypt_at_time(
        private_key, int(time.time()) - app.config["JOB_SEAL_SECONDS"] - 5
    ).decode()
    with pytest.raises(keys.SealExpired):
        keys.unseal_for_job(old)
    with pytest.raises(keys.SealExpired):
        keys.unseal_for_job(sealed[:-4] + "AAAA")


def test_password_change_rewraps_the_same_key(app):
    user = factories.customer(factories.business())
    before = keys.unwrap_private_key(user, factories.PASSWORD)
    accounts.change_password(user, factories.PASSWORD, "a-brand-new-password")
    assert keys.unwrap_private_key(user, "a-brand-new-password") == before
    with pytest.raises(keys.WrongPassword):
        keys.unwrap_private_key(user, factories.PASSWORD)


def test_reset_makes_a_new_key_and_marks_sage_one_aus_for_reauthentication(app):
    business = factories.business(branches=("Newcastle", "Sydney"))
    user = factories.customer(business)
    before = keys.unwrap_private_key(user, factories.PASSWORD)
    sage_one = factories.connection(business.branches[0], Provider.SAGE_ONE_AUS,
                                    credentials_owner_id=user.id, sage_one_username="n@harbour.test")
    sage = factories.connection(business.branches[1], Provider.SAGE)
    accounts.reset_password(user, "reset-by-email-link")
    assert keys.unwrap_private_key(user, "reset-by-email-link") != before
    db.session.refresh(sage_one)
    db.session.refresh(sage)
    assert sage_one.state == ConnectionState.NEEDS_REAUTH
    assert "password was reset" in sage_one.state_reason
    assert sage.state == ConnectionState.CONNECTED
    assert db.session.get(Connection, sage_one.id).state_reason.startswith(user.email)


def test_nothing_secret_is_stored_in_the_clear_after_a_login(app, client, auth, redis_client, database_url):
    user = factories.customer(factories.business())
    private_key = keys.unwrap_private_key(user, factories.PASSWORD)
    auth.login(user)
    assert client.get("/").status_code == 200
    needles = [factories.PASSWORD.encode(), private_key, base64.b64encode(private_key),
               base64.urlsafe_b64encode(private_key), private_key.hex().encode()]
    dump = b"".join(
        name + (redis_client.dump(name) or b"") + (redis_client.get(name) or b"")
        for name in redis_client.scan_iter("*") if redis_client.type(name) == b"string"
    )
    assert dump, "expected a session record in Redis"
    for needle in needles:
        assert needle not in dump
    if database_url.startswith("sqlite:///"):
        db.session.commit()
        raw = open(database_url.removeprefix("sqlite:///"), "rb").read()
        for needle in needles:
            assert needle not in raw
    cookie = client.get_cookie("portal_session").value.encode()
    for needle in needles[1:]:
        assert needle not in cookie
