"""The portal's own sign-in passwords are kept out of every log line, as Sage One AUS passwords are:
registered with the log filter at sign-in, at a password change (old and new) and at a reset."""
from __future__ import annotations

import logging
import uuid

import pytest

from portal import log_safety
from tests import factories
from tests.test_password_reset import _ask, _link, _reset

probe = logging.getLogger("portal.password-probe")


def _unique_password() -> str:
    # Unique to each test: the filter's list lives as long as the process, so a password another
    # test registered would make this one pass for the wrong reason.
    return f"Pw-{uuid.uuid4().hex}"


def _logged(caplog, secret: str) -> str:
    """What a log line that slipped the password through would say once the filter has seen it."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=probe.name):
        probe.info("the form held %s (and %s)", secret, secret[3:12])
    (record,) = caplog.records
    return record.getMessage()


def _assert_protected(caplog, secret: str) -> None:
    message = _logged(caplog, secret)
    assert secret not in message and secret[3:12] not in message and log_safety.REDACTED in message, message


@pytest.mark.parametrize("who", ["customer", "support"])
def test_a_sign_in_password_is_removed_from_every_log_line(client, auth, caplog, who):
    password = _unique_password()
    user = (factories.customer(factories.business(), password=password) if who == "customer"
            else factories.support(password=password))
    assert password in _logged(caplog, password)  # not registered before anyone signs in with it
    assert auth.login(user, password).status_code == 302
    _assert_protected(caplog, password)


def test_a_wrong_sign_in_password_is_not_registered(client, auth, caplog):
    # Only a password that opened an account is registered: failed guesses must not push the real
    # secrets out of the filter's bounded list.
    user = factories.customer(factories.business())
    wrong = _unique_password()
    assert auth.login(user, wrong).status_code == 401
    assert wrong in _logged(caplog, wrong)


def test_both_passwords_of_a_password_change_are_removed_from_every_log_line(client, auth, caplog):
    old, new = _unique_password(), _unique_password()
    user = factories.customer(factories.business(), password=old)
    auth.login(user, old)
    response = client.post("/account/password", data={"current_password": old, "new_password": new,
                                                      "confirm_password": new})
    assert response.status_code == 302
    _assert_protected(caplog, old)
    _assert_protected(caplog, new)


def test_a_refused_password_change_registers_nothing_new(client, auth, caplog):
    user = factories.customer(factories.business())
    auth.login(user)
    guess, new = _unique_password(), _unique_password()
    response = client.post("/account/password", data={"current_password": guess, "new_password": new,
                                                      "confirm_password": new})
    assert response.status_code == 400
    assert guess in _logged(caplog, guess) and new in _logged(caplog, new)


def test_a_reset_password_is_removed_from_every_log_line(client, caplog, outbox, drain_jobs):
    user = factories.customer(factories.business())
    _ask(client, user.email)
    drain_jobs()
    new = _unique_password()
    assert new in _logged(caplog, new)
    assert _reset(client, _link(outbox), new).status_code == 302
    _assert_protected(caplog, new)
