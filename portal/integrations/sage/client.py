"""HTTP to Sage Business Cloud Accounting v3.1: the OAuth token endpoint and the API.

Both clients raise domain errors, never return error strings, and never put a token in a message.
Retries live here, once: reads retry 5xx, timeouts and dropped connections with back-off
(`portal.integrations.retry`, through the client's injectable `sleep`); a 429 puts the business on
hold for Sage's `Retry-After` in the shared limiter, so no process sends it anything before then,
and is then tried again; a 401 asks the token provider for a fresh token once. Writes (POST,
DELETE) are never retried blindly, because a lost response may hide a write that happened: they
raise SageUnavailable and the sync decides (it looks the record up first).

Lists are read as live Sage sends them: items carry only the attributes asked for (`attributes=`),
and further pages are followed through `$next` exactly as Sage wrote it.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import requests
from authlib.integrations.requests_client import OAuth2Session, OAuthError

from portal import metrics, timefmt
from portal.integrations.http import session_for
from portal.integrations.numbers import UnusableNumber, decimal_from
from portal.integrations.retry import backoff_seconds

log = logging.getLogger(__name__)

SCOPE = "full_access"
READ_ATTEMPTS = 4
RATE_LIMIT_WAITS = 6
MAX_RETRY_AFTER_SECONDS = 120
PAGE_SIZE = 200  # Sage's maximum items_per_page
MAX_PAGES = 10_000  # a $next chain longer than this is not Sage paging but a loop


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


class SageAnswerUnusable(SageError):
    """Sage answered, but with something the portal cannot use (HTML, an unknown shape, a bad number)."""


class SageBusy(SageError):
    """The business's request slots are taken for longer than the caller may wait (web pages)."""

    def __init__(self, retry_in: float):
        super().__init__("Sage is busy with this business's other requests right now (its request limit is "
                         "in use). Try again in a minute.")
        self.retry_in = retry_in


class BudgetExhausted(SageError):
    """The business's daily request budget is used up until `renews_at` (UTC)."""

    def __init__(self, renews_at: datetime):
        super().__init__(f"This Sage business has used its daily request budget; it renews at "
                         f"{timefmt.with_zone(renews_at)}.")
        self.renews_at = renews_at


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
    """Sage's authorize URL, token endpoint (code exchange, refresh) and revocation, through Authlib.

    The portal keeps what Authlib does not know about: the per-connection refresh lock and the
    single-use state (`tokens.py`, `connect.py`). Token calls are never retried: a lost refresh
    response may already have rotated the token. `before_request` (the business's limiter, when
    known) is called before each call.
    """

    def __init__(self, *, auth_url: str, token_url: str, revoke_url: str, client_id: str,
                 client_secret: str, timeout: float, http: requests.Session | None = None,
                 before_request: Callable[[], None] | None = None):
        self.auth_url = auth_url
        self.token_url = token_url
        self.revoke_url = revoke_url
        self.timeout = timeout
        self._before_request = before_request or (lambda: None)
        # client_secret_post: Sage wants client_id and client_secret in the form body.
        self.http = http or session_for(token_url, OAuth2Session(
            client_id, client_secret, token_endpoint_auth_method="client_secret_post",
            revocation_endpoint_auth_method="client_secret_post"))

    @classmethod
    def from_config(cls, config, before_request: Callable[[], None] | None = None) -> OAuthClient:
        """Build from the app config (SAGE_* settings)."""
        return cls(auth_url=config["SAGE_AUTH_URL"], token_url=config["SAGE_TOKEN_URL"],
                   revoke_url=config["SAGE_REVOKE_URL"], client_id=config["SAGE_CLIENT_ID"],
                   client_secret=config["SAGE_CLIENT_SECRET"], timeout=config["HTTP_TIMEOUT_SECONDS"],
                   before_request=before_request)

    def authorize_url(self, redirect_uri: str, state: str) -> str:
        """Where the customer's browser goes to sign in to Sage and approve the portal."""
        url, _ = self.http.create_authorization_url(self.auth_url, state=state, redirect_uri=redirect_uri,
                                                    scope=SCOPE)
        return url

    def exchange_code(self, code: str, redirect_uri: str) -> TokenSet:
        """Trade the single-use code for tokens; raises SageTokenRejected, SageAuthError, SageUnavailable."""
        return self._token_call(lambda: self.http.fetch_token(
            self.token_url, grant_type="authorization_code", code=code, redirect_uri=redirect_uri,
            timeout=self.timeout, headers={"Accept": "application/json"}))

    def refresh(self, refresh_token: str) -> TokenSet:
        """Trade a refresh token for a new pair (the old one dies); raises like exchange_code."""
        with metrics.token_refresh():
            return self._token_call(lambda: self.http.refresh_token(
                self.token_url, refresh_token=refresh_token, timeout=self.timeout,
                headers={"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"}))

    def revoke(self, refresh_token: str) -> None:
        """Revoke a refresh token at Sage; raises SageUnavailable or SageAuthError if Sage didn't confirm."""
        self._before_request()
        try:
            response = self.http.revoke_token(self.revoke_url, token=refresh_token, timeout=self.timeout,
                                              headers={"Accept": "application/json"})
        except requests.RequestException as exc:
            raise SageUnavailable(f"Sage's sign-in service could not be reached ({type(exc).__name__}).") from None
        if response.status_code != 200:
            raise SageAuthError(f"Sage did not confirm the revocation (HTTP {response.status_code}).")

    def _token_call(self, call) -> TokenSet:
        self._before_request()
        try:
            body = call()
        except OAuthError as exc:
            if exc.error == "invalid_grant":
                raise SageTokenRejected(
                    "Sage no longer accepts this sign-in (the token expired or was revoked).") from None
            raise SageAuthError(f"Sage refused the sign-in ({exc.error}).") from None
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "?"
            raise SageUnavailable(f"Sage's sign-in service answered {status}; try again shortly.") from None
        except requests.RequestException as exc:
            raise SageUnavailable(f"Sage's sign-in service could not be reached ({type(exc).__name__}).") from None
        except (ValueError, TypeError):
            raise SageAnswerUnusable("Sage's sign-in service answered with something that is not a token.") from None
        if not isinstance(body, dict) or not body.get("access_token") or not body.get("refresh_token"):
            raise SageAnswerUnusable("Sage's sign-in service answered without the tokens it should send.")
        try:
            return TokenSet(
                access_token=body["access_token"],
                refresh_token=body["refresh_token"],
                expires_in=int(decimal_from(body.get("expires_in") or 300, "expires_in")),
                refresh_token_expires_in=int(decimal_from(body.get("refresh_token_expires_in") or 2678400,
                                                          "refresh_token_expires_in")),
                requested_by_id=body.get("requested_by_id"),
            )
        except UnusableNumber as exc:
            raise SageAnswerUnusable(str(exc)) from None


class SageClient:
    """The v3.1 API for one Sage business, through a shared rate limiter.

    `token` returns a current access token; `token(force=True)` must refresh it (called once on a
    401). `limiter()` returns once this business may make another request; when it also has
    `hold_off(seconds)`, a 429 puts the business on hold there for every process.
    """

    def __init__(self, *, api_url: str, business_id: str | None, token: Callable[..., str],
                 limiter: Callable[[], None] | None = None, timeout: float = 15.0,
                 http: requests.Session | None = None, sleep: Callable[[float], None] = time.sleep,
                 patient: bool = True):
        self.api_url = api_url.rstrip("/")
        self.business_id = business_id
        self._token = token
        self._limiter = limiter or (lambda: None)
        self.timeout = timeout
        self.http = http or session_for(self.api_url)
        self._sleep = sleep
        # An impatient client (a page someone waits on) never retries or waits out a 429.
        self.patient = patient
        self.requests_sent = 0
        self.rate_limited_responses = 0
        self.retried_requests = 0

    def back_off(self, attempt: int) -> None:
        """Wait before another try of a write whose answer was lost (the caller looked first)."""
        self._sleep(backoff_seconds(attempt))

    # --- resources -------------------------------------------------------------------------------

    def businesses(self) -> list[dict]:
        """The businesses the signed-in Sage user can open (`id`, `displayed_as`)."""
        return list(self.each("/businesses"))

    def count_contacts(self) -> int:
        """How many contacts the business has in Sage."""
        return self.count("/contacts")

    def count(self, path: str) -> int:
        """`$total` of a list, read with one item per page."""
        return int(decimal_from(_envelope(self.get(path, params={"items_per_page": 1})).get("$total") or 0, "$total"))

    def contact_references(self) -> Iterator[tuple[str, str]]:
        """(reference, id) of every contact of the business, in pages of 200 (for matching locally)."""
        for item in self.each("/contacts", {"attributes": "reference", "items_per_page": PAGE_SIZE}):
            if item.get("reference"):
                yield item["reference"], item["id"]

    def find_contact_by_reference(self, reference: str) -> dict | None:
        """The Sage contact whose reference is `reference` (trimmed, any case), or None.

        Sage's `search` matches names and references by substring, so every page is read until
        the exact one is found.
        """
        wanted = normalise_reference(reference)
        for item in self.each("/contacts", {"search": reference.strip(), "attributes": "reference",
                                            "items_per_page": PAGE_SIZE}):
            if normalise_reference(item.get("reference")) == wanted:
                return item
        return None

    def create_contact(self, body: dict) -> dict:
        """POST a contact (not retried: see the module docstring)."""
        return self.post("/contacts", {"contact": body})

    def update_contact(self, sage_id: str, body: dict) -> dict:
        """PUT changed contact fields (idempotent, so retried like a read)."""
        return self.request("PUT", f"/contacts/{sage_id}", json={"contact": body}, retry=True)

    def invoice_references(self) -> Iterator[tuple[str, str]]:
        """(reference, id) of every sales invoice of the business, in pages of 200."""
        for item in self.each("/sales_invoices", {"attributes": "reference", "items_per_page": PAGE_SIZE}):
            if item.get("reference"):
                yield item["reference"], item["id"]

    def find_invoice_by_reference(self, reference: str) -> dict | None:
        """The Sage sales invoice whose reference is `reference` (trimmed, any case), or None."""
        wanted = normalise_reference(reference)
        for item in self.each("/sales_invoices", {"search": reference.strip(), "attributes": "reference",
                                                  "items_per_page": PAGE_SIZE}):
            if normalise_reference(item.get("reference")) == wanted:
                return item
        return None

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
        return list(self.each("/ledger_accounts", {"visible_in": "sales", "items_per_page": PAGE_SIZE,
                                                   "attributes": "nominal_code,name"}))

    def tax_rates(self) -> list[dict]:
        """Tax rates with their name and percentage (a Decimal, whether Sage sent a string or a number)."""
        rates = []
        for item in self.each("/tax_rates", {"items_per_page": PAGE_SIZE, "attributes": "name,percentage"}):
            try:
                rates.append({**item, "percentage": decimal_from(item.get("percentage"),
                                                                 f"the percentage of tax rate {item.get('id')}")})
            except UnusableNumber as exc:
                raise SageAnswerUnusable(str(exc)) from None
        return rates

    # --- lists -----------------------------------------------------------------------------------

    def each(self, path: str, params: dict | None = None) -> Iterator[dict]:
        """Every item of a list, following `$next` as Sage sends it (relative to the API's base)."""
        body = _envelope(self.get(path, params=params))
        seen: set[str] = set()
        while True:
            yield from body["$items"]
            next_path = body.get("$next")
            if not next_path:
                return
            if next_path in seen or len(seen) >= MAX_PAGES:
                raise SageAnswerUnusable(f"Sage's list of {path} pages back to a page it already sent.")
            seen.add(next_path)
            body = _envelope(self.request("GET", self._follow(next_path), retry=True, absolute=True))

    def _follow(self, next_path: str) -> str:
        """The URL of a `$next` link: relative to the API base; never a link to another host."""
        base = urlsplit(self.api_url)
        link = urlsplit(next_path)
        if link.scheme or link.netloc:
            if (link.scheme, link.netloc) != (base.scheme, base.netloc):
                raise SageAnswerUnusable("Sage's next-page link points at another host; it was not followed.")
            return next_path
        if link.path.startswith(base.path.rstrip("/") + "/"):
            return f"{base.scheme}://{base.netloc}{next_path}"  # already includes /v3.1
        return f"{self.api_url}/{next_path.lstrip('/')}"

    # --- transport -------------------------------------------------------------------------------

    def get(self, path: str, params: dict | None = None) -> dict:
        return self.request("GET", path, params=params, retry=True)

    def post(self, path: str, body: dict) -> dict:
        return self.request("POST", path, json=body, retry=False)

    def request(self, method: str, path: str, *, params: dict | None = None, json: dict | None = None,
                retry: bool, absolute: bool = False) -> dict | list | None:
        """One API call with the rules above; returns the decoded JSON body (None for 204)."""
        attempt, waits, refreshed = 0, 0, False
        url = path if absolute else f"{self.api_url}{path}"
        while True:
            self._limiter()
            headers = {"Authorization": f"Bearer {self._token()}", "Accept": "application/json"}
            if self.business_id:
                headers["X-Business"] = self.business_id
            self.requests_sent += 1
            try:
                response = self.http.request(method, url, params=params, json=json,
                                             headers=headers, timeout=self.timeout)
            except requests.RequestException as exc:
                metrics.sage_request("sage", self.business_id, None)
                failure = SageUnavailable(f"Sage did not answer ({type(exc).__name__}).")
            else:
                status = response.status_code
                metrics.sage_request("sage", self.business_id, status)
                if status < 300:
                    return _decoded(response) if status != 204 else None
                if status == 429:
                    self.rate_limited_responses += 1
                    retry_after = _retry_after(response)
                    waits += 1
                    if not self.patient:
                        self._hold_off(retry_after)
                        raise SageBusy(retry_after)
                    if waits > RATE_LIMIT_WAITS or retry_after > MAX_RETRY_AFTER_SECONDS:
                        self._hold_off(retry_after)
                        raise SageRateLimited(retry_after)
                    # The request was refused, not performed, so repeating it is safe even for writes;
                    # the hold makes every process wait, and the limiter waits it out before the retry.
                    if not self._hold_off(retry_after):
                        self._sleep(retry_after)
                    continue
                if status == 401 and not refreshed:
                    refreshed = True
                    self._token(force=True)
                    continue
                if status < 500:
                    raise _client_error(response)
                failure = SageUnavailable(f"Sage answered {status}: {_first_message(response)}")
            if not retry or not self.patient or attempt >= READ_ATTEMPTS - 1:
                raise failure
            self.retried_requests += 1
            self._sleep(backoff_seconds(attempt))
            attempt += 1

    def _hold_off(self, seconds: float) -> bool:
        hold_off = getattr(self._limiter, "hold_off", None)
        if hold_off is None:
            return False
        hold_off(seconds)
        return True


def normalise_reference(reference: str | None) -> str:
    """How references are compared: trimmed, case-insensitive."""
    return (reference or "").strip().lower()


def _decoded(response: requests.Response):
    """The JSON body of a success; SageAnswerUnusable for HTML or anything else that is not JSON."""
    try:
        return response.json()
    except ValueError:
        kind = (response.headers.get("Content-Type") or "no content type").split(";")[0]
        raise SageAnswerUnusable(f"Sage answered with {kind} where JSON was expected; nothing was changed.") from None


def _envelope(body) -> dict:
    """A list answer as live Sage sends it: an object with an `$items` list of objects."""
    if not isinstance(body, dict) or not isinstance(body.get("$items"), list) \
            or not all(isinstance(i, dict) and i.get("id") for i in body["$items"]):
        raise SageAnswerUnusable("Sage answered a list request in a shape the portal does not know; "
                                 "nothing was changed.")
    return body


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
