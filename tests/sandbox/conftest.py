"""Fixtures: a fresh sandbox on an ephemeral loopback port per test, and thin HTTP helpers for both APIs."""

import pytest
import requests

from sage_sandbox.seed import PASSWORD
from sage_sandbox.testing import obtain_tokens, start_sandbox

from .helpers import API_KEY, NEWCASTLE, Api


@pytest.fixture
def sandbox_config():
    """Config for the per-test sandbox; override in a test module or with indirect parametrisation."""
    return {}


@pytest.fixture
def sandbox(sandbox_config):
    """A fresh sandbox for this test only."""
    running = start_sandbox(sandbox_config)
    yield running
    running.stop()


@pytest.fixture
def http(sandbox):
    """Plain session against the sandbox root."""
    with requests.Session() as session:
        yield Api(sandbox.url, session)


@pytest.fixture
def tokens(sandbox):
    """A token pair for sage@harbour-auto.test obtained through the real consent page."""
    return obtain_tokens(sandbox.url)


@pytest.fixture
def v31(sandbox, tokens):
    """v3.1 API helper authenticated as sage@harbour-auto.test."""
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {tokens['access_token']}"
        yield Api(sandbox.url + "/v3.1", session)


@pytest.fixture
def aus(sandbox):
    """Sage One 2.0.0 helper signed in as newcastle@harbour-auto.test, sending JSON content type."""
    with requests.Session() as session:
        session.auth = ("newcastle@harbour-auto.test", PASSWORD)
        session.headers["Content-Type"] = "application/json"
        session.params = {"apikey": API_KEY, "CompanyId": NEWCASTLE}
        yield Api(sandbox.url + "/api/2.0.0", session)
