"""HTTP client for Sage One Accounting AUS, API 2.0.0: Basic auth with the customer's own login,
the app's API key as a query parameter, and a Content-Type header on every request (Sage answers
415 without one, even on GET).

Every failure becomes a domain error. A 401 is never retried (each failed login counts toward
Sage's 24-hour lock-out), and a Save is never retried either (a lost answer may still have created
the record; the sync looks it up before trying again). Before every company call the shared
limiter is asked for a slot, and a company that Sage has blocked is not called at all.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta

import requests
from flask import current_app

from portal.integrations.http import session_for
from portal.integrations.sage_one_aus import ratelimit
from portal.integrations.sage_one_aus.errors import (  # noqa: F401 - the client's errors
    SageOneAuthFailed,
    SageOneError,
    SageOneLocked,
    SageOneNotFound,
    SageOneRateLimited,
    SageOneUnavailable,
    SageOneValidationError,
)
from portal.models import utcnow

log = logging.getLogger(__name__)

# Sage blocks a caller for an hour after a 429 and says so only in words.
DEFAULT_BLOCK = timedelta(hours=1)
USERNAME_LOCK = timedelta(hours=24)
_GET_ATTEMPTS = 3


@dataclass(frozen=True)
class Company:
    id: int
    name: str


def _message(response: requests.Response) -> str:
    """Sage's own words from an error body: a JSON string, {"Message": ...}, or plain text."""
    try:
        body = response.json()
    except ValueError:
        return (response.text or "").strip()[:300]
    if isinstance(body, str):
        return body
    if isinstance(body, dict):
        return str(body.get("Message") or body.get("message") or "")[:300]
    return ""


class SageOneClient:
    """One customer's Sage One AUS login, optionally bound to one company."""

    def __init__(self, base_url: str, api_key: str, username: str, password: str, *,
                 company_id: int | None = None, timeout: float = 15.0,
                 session: requests.Session | None = None):
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.username = username
        self._auth = (username, password)
        self.company_id = company_id
        self.timeout = timeout
        self._http = session or session_for(self.base_url)

    def __repr__(self) -> str:
        # Never show the password, even in a debugger or a traceback's locals.
        return f"<SageOneClient {self.username} company={self.company_id}>"

    @classmethod
    def from_config(cls, username: str, password: str, company_id: int | None = None) -> SageOneClient:
        """A client for the configured Sage One host and API key."""
        config = current_app.config
        return cls(config["SAGE_ONE_API_URL"], config["SAGE_ONE_API_KEY"] or "", username, password,
                   company_id=company_id, timeout=config["HTTP_TIMEOUT_SECONDS"])

    # --- the one request path ---------------------------------------------------------------

    def request(self, verb: str, service: str, method: str, record_id: int | None = None, *,
                params: dict | None = None, body: dict | None = None) -> dict | list | None:
        """Call `{Service}/{Method}[/{id}]`; returns the JSON body or raises a SageOneError."""
        path = f"{self.base_url}/{service}/{method}" + (f"/{record_id}" if record_id is not None else "")
        query = {"apikey": self._api_key, **(params or {})}
        if self.company_id is not None:
            query["CompanyId"] = self.company_id
        attempts = _GET_ATTEMPTS if verb == "GET" else 1
        for attempt in range(1, attempts + 1):
            if self.company_id is not None:
                ratelimit.acquire(self.company_id)
            try:
                response = self._http.request(
                    verb, path, params=query, json=body, auth=self._auth, timeout=self.timeout,
                    headers={"Content-Type": "application/json", "Accept": "application/json"},
                )
            except requests.RequestException as exc:
                log.warning("Sage One %s %s/%s failed: %s", verb, service, method, type(exc).__name__)
                if attempt < attempts:
                    time.sleep(0.2 * attempt)
                    continue
                raise SageOneUnavailable("Sage One AUS could not be reached. Try again in a few minutes.") from None
            if response.status_code >= 500 and attempt < attempts:
                time.sleep(0.2 * attempt)
                continue
            return self._answer(response)
        raise SageOneUnavailable("Sage One AUS could not be reached. Try again in a few minutes.")

    def _answer(self, response: requests.Response):
        status = response.status_code
        if status in (200, 201, 202):
            return response.json() if response.content else None
        if status == 204:
            return None
        message = _message(response)
        if status == 401:
            raise SageOneAuthFailed(
                "Sage One AUS did not accept this username and password"
                + (f" (Sage said: “{message}”)." if message else ".")
            )
        if status == 429:
            now = utcnow()
            # Sage's two 429s: a request limit (with X-RequestLimit-ExceededReason) or a username lock.
            username_lock = "lock" in message.lower() and not response.headers.get("X-RequestLimit-ExceededReason")
            if not username_lock:
                until = now + DEFAULT_BLOCK
                if self.company_id is not None:
                    ratelimit.hold_off(self.company_id, until)
                raise SageOneRateLimited(
                    f"Sage One AUS blocked this company for too many requests; rate-limited until "
                    f"{until:%H:%M} UTC.", until)
            raise SageOneLocked(
                "Sage One AUS has locked this username for 24 hours after too many failed logins"
                + (f" (Sage said: “{message}”)." if message else "."), now + USERNAME_LOCK)
        if status == 404:
            raise SageOneNotFound(message or "Sage One AUS has no such record in this company.")
        if status == 402:
            raise SageOneValidationError("The Sage One AUS company's subscription has expired (Sage answered 402).")
        if status in (400, 405, 409, 415):
            raise SageOneValidationError(message or f"Sage One AUS refused the request ({status}).")
        if status == 403:
            raise SageOneValidationError(message or "Sage One AUS refused the app's API key (403).")
        raise SageOneUnavailable(
            "Sage One AUS is unavailable right now" + (" (scheduled maintenance)" if status == 503 else "")
            + f" — it answered {status}. Try again later."
        )

    # --- services -----------------------------------------------------------------------------

    def companies(self) -> list[Company]:
        """The companies this login can use (Company/Get); verifies the credentials."""
        body = self.request("GET", "Company", "Get")
        return [Company(int(c["ID"]), str(c.get("Name") or c["ID"])) for c in (body or {}).get("Results", [])]

    def list_all(self, service: str, params: dict | None = None) -> list[dict]:
        """Every result of `{service}/Get`, paging by 100 as Sage requires."""
        results: list[dict] = []
        while True:
            body = self.request("GET", service, "Get", params={**(params or {}), "$skip": len(results), "$top": 100})
            page = (body or {}).get("Results", [])
            results.extend(page)
            if not page or len(results) >= int((body or {}).get("TotalResults", 0)):
                return results

    def find(self, service: str, **fields) -> dict | None:
        """The first `{service}` whose fields equal the values given, or None (an OData $filter)."""
        terms = [
            f"{name} eq {value}" if isinstance(value, int) else f"{name} eq '{str(value).replace(chr(39), chr(39) * 2)}'"
            for name, value in fields.items()
        ]
        body = self.request("GET", service, "Get", params={"$filter": " and ".join(terms), "$top": 1})
        results = (body or {}).get("Results", [])
        return results[0] if results else None

    def get(self, service: str, record_id: int) -> dict:
        """One entity by id; raises SageOneNotFound."""
        return self.request("GET", service, "Get", record_id)

    def save(self, service: str, entity: dict) -> dict:
        """Create or update an entity with `{service}/Save`; returns the saved entity."""
        return self.request("POST", service, "Save", body=entity)
