"""HTTP to Sage Business Cloud Accounting v3.1: the OAuth token endpoint and the API.

Both clients raise domain errors, never return error strings, and never put a token in a message.
Retries live here, once: reads retry 5xx, timeouts and dropped connections with back-off; a 429
waits for `Retry-After` and tries again; a 401 asks the token provider for a fresh token once.
Writes (POST, DELETE) are never retried blindly, because a lost response may hide a write that
happened: they raise SageUnavailable and the sync decides (it looks the record up first).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlencode

import requests

from portal.integrations.http import session_for

log = logging.getLogger(__name__)

SCOPE = "full_access"
READ_ATTEMPTS = 4
RATE_LIMIT_WAITS = 6
MAX_RETRY_AFTER_SECONDS = 120
BACKOFF_SECONDS = (0.2, 0.6, 1.5, 3.0)


class SageError(Exception):
    """Base of every Sage failure; the message is safe to show (never a token)."""


class SageAuthError(SageError):
    """Sage refused our credentials (expired or revoked token, no subscription, wrong client)."""


class SageTokenRejected(SageAuthError):
    """The token endpoint answered invalid_grant: the customer must sign in to Sage again."""


class SageRateLimited(SageError):
    """Sage kept answering 429; `retry_after` is how long it asked us to wait, in seconds."""

    def __init__(self, retry_after: float, message: str = "Sage is limiting requests for this business."):
        super().__init__(message)
        self.retry_after = retry_after


class SageValidationError(SageError):
    """Sage refused the record (422 and similar); `field` is Sage's $source, `message` its words."""

    def __init__(self, field: str, message: str, status: int = 422):
        super().__init__(message)
        self.field = field
        self.message = message
        self.status = status


class SageUnavailable(SageError):
    """Sage did not answer usefully (5xx, timeout, dropped connection) after the retries we allow."""


class SageNotFound(SageError):
    """Sage has no record with that id (404 RecordNotFound)."""


@dataclass(frozen=True)
class TokenSet:
    """A token response from Sage (the tokens are secrets: never log or show this object)."""

    access_token: str
    refresh_token: str
    expires_in: int
    refresh_token_expires_in: int
    requested_by_id: str | None = None

    def __repr__(self) -> str:  # keep tokens out of tracebacks and logs
        return f"<TokenSet expires_in={self.expires_in}>"


class OAuthClient:
    """Sage's authorize URL, token endpoint (code exchange, refresh) and revocation."""

    def __init__(self, *, auth_url: str, token_url: str, revoke_url: str, client_id: str,
                 client_secret: str, timeout: float, http: requests.Session | None = None):
        self.auth_url = auth_url
        self.token_url = token_url
        self.revoke_url = revoke_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.timeout = timeout
        self.http = http or session_for(token_url)

    @classmethod
    def from_config(cls, config) -> OAuthClient:
        """Build from the app config (SAGE_* settings)."""
        return cls(auth_url=config["SAGE_AUTH_URL"], token_url=config["SAGE_TOKEN_URL"],
                   revoke_url=config["SAGE_REVOKE_URL"], client_id=config["SAGE_CLIENT_ID"],
                   client_secret=config["SAGE_CLIENT_SECRET"], timeout=config["HTTP_TIMEOUT_SECONDS"])

    def authorize_url(self, redirect_uri: str, state: str) -> str:
        """Where the customer's browser goes to sign in to Sage and approve the portal."""
        query = urlencode({"client_id": self.client_id, "response_type": "code",
                           "redirect_uri": redirect_uri, "scope": SCOPE, "state": state})
        joiner = "&" if "?" in self.auth_url else "?"
        return f"{self.auth_url}{joiner}{query}"

    def exchange_code(self, code: str, redirect_uri: str) -> TokenSet:
        """Trade the single-use code for tokens; raises SageTokenRejected, SageAuthError, SageUnavailable."""
        return self._token_request({"grant_type": "authorization_code", "code": code,
                                    "redirect_uri": redirect_uri})

    def refresh(self, refresh_token: str) -> TokenSet:
        """Trade a refresh token for a new pair (the old one dies); raises like exchange_code."""
        return self._token_request({"grant_type": "refresh_token", "refresh_token": refresh_token})

    def revoke(self, refresh_token: str) -> None:
        """Revoke a refresh token at Sage; raises SageUnavailable or SageAuthError if Sage didn't confirm."""
        response = self._post(self.revoke_url, {"token": refresh_token})
        if response.status_code != 200:
            raise SageAuthError(f"Sage did not confirm the revocation (HTTP {response.status_code}).")

    def _token_request(self, fields: dict) -> TokenSet:
        response = self._post(self.token_url, fields)
        if response.status_code >= 500:
            raise SageUnavailable(f"Sage's sign-in service answered {response.status_code}; try again shortly.")
        body = _json_or_none(response)
        if response.status_code != 200 or not isinstance(body, dict) or "access_token" not in body:
            error = body.get("error") if isinstance(body, dict) else None
            if error == "invalid_grant":
                raise SageTokenRejected("Sage no longer accepts this sign-in (the token expired or was revoked).")
            raise SageAuthError(f"Sage refused the sign-in ({error or f'HTTP {response.status_code}'}).")
        return TokenSet(
            access_token=body["access_token"],
            refresh_token=body["refresh_token"],
            expires_in=int(body.get("expires_in") or 300),
            refresh_token_expires_in=int(body.get("refresh_token_expires_in") or 2678400),
            requested_by_id=body.get("requested_by_id"),
        )

    def _post(self, url: str, fields: dict) -> requests.Response:
        data = {"client_id": self.client_id, "client_secret": self.client_secret, **fields}
        # Token calls are not retried: a lost refresh response may already have rotated the token.
        try:
            return self.http.post(url, data=data, headers={"Accept": "application/json"}, timeout=self.timeout)
        except requests.RequestException as exc:
            raise SageUnavailable(f"Sage's sign-in service could not be reached ({type(exc).__name__}).") from None


class SageClient:
    """The v3.1 API for one Sage business, through a shared rate limiter.

    `token` returns a current access token; `token(force=True)` must refresh it (called once on a
    401). `limiter()` blocks until this business may make another request.
    """

    def __init__(self, *, api_url: str, business_id: str | None, token: Callable[..., str],
                 limiter: Callable[[], None] | None = None, timeout: float = 15.0,
                 http: requests.Session | None = None, sleep: Callable[[float], None] = time.sleep):
        self.api_url = api_url.rstrip("/")
        self.business_id = business_id
        self._token = token
        self._limiter = limiter or (lambda: None)
        self.timeout = timeout
        self.http = http or session_for(self.api_url)
        self._sleep = sleep
        self.rate_limited_responses = 0
        self.retried_requests = 0

    # --- resources -------------------------------------------------------------------------------

    def businesses(self) -> list[dict]:
        """The businesses the signed-in Sage user can open."""
        return self.get("/businesses")["$items"]

    def count_contacts(self) -> int:
        """How many contacts the business has in Sage."""
        return int(self.get("/contacts", params={"items_per_page": 1}).get("$total") or 0)

    def find_contact_by_reference(self, reference: str) -> dict | None:
        """The Sage contact whose reference is exactly `reference`, or None."""
        items = self.get("/contacts", params={"search": reference, "attributes": "reference",
                                              "items_per_page": 200})["$items"]
        wanted = reference.strip().lower()
        return next((c for c in items if (c.get("reference") or "").strip().lower() == wanted), None)

    def create_contact(self, body: dict) -> dict:
        """POST a contact (not retried: see the module docstring)."""
        return self.post("/contacts", {"contact": body})

    def update_contact(self, sage_id: str, body: dict) -> dict:
        """PUT changed contact fields (idempotent, so retried like a read)."""
        return self.request("PUT", f"/contacts/{sage_id}", json={"contact": body}, retry=True)

    def find_invoice_by_reference(self, reference: str) -> dict | None:
        """The Sage sales invoice whose reference is exactly `reference`, or None."""
        items = self.get("/sales_invoices", params={"search": reference, "attributes": "reference",
                                                    "items_per_page": 200})["$items"]
        return next((i for i in items if (i.get("reference") or "") == reference), None)

    def create_invoice(self, body: dict) -> dict:
        """POST a sales invoice (not retried)."""
        return self.post("/sales_invoices", {"sales_invoice": body})

    def get_invoice(self, sage_id: str) -> dict:
        """One sales invoice with its status; raises SageNotFound."""
        return self.get(f"/sales_invoices/{sage_id}", params={"attributes": "status,void_reason"})

    def void_invoice(self, sage_id: str, reason: str) -> dict | None:
        """DELETE /sales_invoices/{id}?void_reason=… (Sage's void; not retried)."""
        return self.request("DELETE", f"/sales_invoices/{sage_id}", params={"void_reason": reason}, retry=False)

    def ledger_accounts(self) -> list[dict]:
        """Ledger accounts visible in sales, with nominal code and name."""
        return self.get("/ledger_accounts", params={"visible_in": "sales", "items_per_page": 200,
                                                    "attributes": "nominal_code,name"})["$items"]

    def tax_rates(self) -> list[dict]:
        """Tax rates with their percentage."""
        return self.get("/tax_rates", params={"items_per_page": 200, "attributes": "name,percentage"})["$items"]

    # --- transport -------------------------------------------------------------------------------

    def get(self, path: str, params: dict | None = None) -> dict:
        return self.request("GET", path, params=params, retry=True)

    def post(self, path: str, body: dict) -> dict:
        return self.request("POST", path, json=body, retry=False)

    def request(self, method: str, path: str, *, params: dict | None = None, json: dict | None = None,
                retry: bool) -> dict | None:
        """One API call with the rules above; returns the decoded JSON body (None for 204)."""
        attempt, waits, refreshed = 0, 0, False
        while True:
            self._limiter()
            headers = {"Authorization": f"Bearer {self._token()}", "Accept": "application/json"}
            if self.business_id:
                headers["X-Business"] = self.business_id
            try:
                response = self.http.request(method, f"{self.api_url}{path}", params=params, json=json,
                                             headers=headers, timeout=self.timeout)
            except requests.RequestException as exc:
                failure = SageUnavailable(f"Sage did not answer ({type(exc).__name__}).")
            else:
                status = response.status_code
                if status < 300:
                    return _json_or_none(response) if status != 204 else None
                if status == 429:
                    self.rate_limited_responses += 1
                    retry_after = _retry_after(response)
                    waits += 1
                    if waits > RATE_LIMIT_WAITS or retry_after > MAX_RETRY_AFTER_SECONDS:
                        raise SageRateLimited(retry_after)
                    # The request was refused, not performed, so repeating it is safe even for writes.
                    self._sleep(retry_after)
                    continue
                if status == 401 and not refreshed:
                    refreshed = True
                    self._token(force=True)
                    continue
                if status < 500:
                    raise _client_error(response)
                failure = SageUnavailable(f"Sage answered {status}: {_first_message(response)}")
            if not retry or attempt >= READ_ATTEMPTS - 1:
                raise failure
            self.retried_requests += 1
            self._sleep(BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS) - 1)])
            attempt += 1


def _json_or_none(response: requests.Response):
    try:
        return response.json()
    except ValueError:
        return None


def _retry_after(response: requests.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0


def _errors(response: requests.Response) -> list[dict]:
    body = _json_or_none(response)
    if isinstance(body, list):
        return [e for e in body if isinstance(e, dict)]
    if isinstance(body, dict):
        return [body]
    return []


def _first_message(response: requests.Response) -> str:
    errors = _errors(response)
    return "; ".join(e.get("$message") or e.get("message") or "" for e in errors if e) or f"HTTP {response.status_code}"


def _client_error(response: requests.Response) -> SageError:
    errors = _errors(response)
    message = _first_message(response)
    codes = {e.get("$dataCode") for e in errors}
    if response.status_code == 404 or "RecordNotFound" in codes:
        return SageNotFound(message)
    if response.status_code == 401:
        return SageAuthError(f"Sage refused access: {message}")
    field = next((e.get("$source") or "" for e in errors), "")
    return SageValidationError(field, message, response.status_code)
