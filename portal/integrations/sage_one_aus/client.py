"""HTTP client for Sage One Accounting AUS, API 2.0.0: Basic auth with the customer's own login
(UTF-8, as Sage reads it), the app's API key as a query parameter, and a Content-Type header on
every request (Sage answers 415 without one, even on GET).

Every failure becomes a domain error, and retries, back-off and pacing live here, once:

* Every request, retries included, first takes a slot from the shared limiter (`ratelimit`); a
  company Sage has blocked is not called at all. A page's client (`interactive=True`) never waits
  for a slot or backs off: it gets SageOneBusy and the page says so.
* A GET is retried (twice, after a back-off on the pacing clock) when Sage can't be reached or
  answers 5xx. A Save never is (a lost answer may still have created the record; the sync looks it
  up before trying again), nor is a 401 (each failed login counts toward Sage's 24-hour lock-out)
  or a 429 (calling during a block extends it).
* A 401 that is an IIS page or says `X-APIKey: Invalid` is the portal's API key, not the
  customer's login: SageOneApiKeyRefused, logged for support, and no failed login is counted.
* Sage's two 429s are told apart by their whole wording and by whether the login was still being
  checked, not by the optional `X-RequestLimit-ExceededReason` header.
* Answers are read through `shapes`: numbers as Decimals in either form, anything unusable raises
  SageOneUnusableAnswer.
"""
from __future__ import annotations

import base64
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import requests
from flask import current_app

from portal import log_safety, metrics, timefmt
from portal.extensions import get_redis
from portal.integrations.http import session_for
from portal.integrations.sage_one_aus import ratelimit, shapes
from portal.integrations.sage_one_aus.errors import (  # noqa: F401 - the client's errors
    SageOneApiKeyRefused,
    SageOneAuthFailed,
    SageOneBusy,
    SageOneError,
    SageOneLocked,
    SageOneNotFound,
    SageOneRateLimited,
    SageOneUnavailable,
    SageOneUnusableAnswer,
    SageOneValidationError,
)

log = logging.getLogger(__name__)

# Sage blocks a caller for an hour after too many requests, and a username for 24 hours after too
# many failed logins; it says so only in words, and these are the defaults when the words don't.
DEFAULT_BLOCK = timedelta(hours=1)
USERNAME_LOCK = timedelta(hours=24)
_GET_ATTEMPTS = 3
BACK_OFF_SECONDS = (0.5, 2.0)  # before the second and third attempt of a GET
# A person waits for a page: connect, read timeouts that keep the whole answer short
# (PORTAL_SAGE_ONE_PAGE_TIMEOUT_SECONDS overrides the read timeout).
INTERACTIVE_TIMEOUT = (0.5, 1.2)

API_KEY_REFUSED = ("Sage One AUS refused the portal's API key; this is a problem on our side, support has "
                   "been told. Your Sage One login was not affected and nothing was changed.")
_API_KEY_FLAG = "portal:sage-one-aus:api-key-refused"

# Sage's own words: the request limit ("Your IP address has exceeded the allowed number of
# transactions per minute and has been blocked for 1 hour") and the failed-login lock-out.
_RATE_LIMIT_WORDS = re.compile(
    r"exceeded the allowed number of (transactions|requests)|(transactions|requests) per (minute|day)"
    r"|request limit|too many requests", re.IGNORECASE)
_LOCK_OUT_WORDS = re.compile(
    r"failed log ?ins?|log ?in attempts|incorrect (password|login)|(user ?name|account|user)\b[^.]*\blocked"
    r"|\blocked\b[^.]*\b(user ?name|account|user)\b", re.IGNORECASE)
_DURATION = re.compile(r"\bfor (?:an? |one |(\d+) )(minute|hour|day)s?\b", re.IGNORECASE)


@dataclass(frozen=True)
class Company:
    id: int
    name: str


def _message(response: requests.Response) -> str:
    """Sage's own words from an error body: a JSON string, {"Message": ...}, or plain text."""
    if not _is_json(response):
        return ""
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, str):
        return body[:300]
    if isinstance(body, dict):
        return str(body.get("Message") or body.get("message") or "")[:300]
    return ""


def _is_json(response: requests.Response) -> bool:
    kind = response.headers.get("Content-Type", "").lower()
    return "json" in kind or (not kind and response.content[:1] in (b"{", b"[", b'"'))


def _duration(text: str, default: timedelta) -> timedelta:
    match = _DURATION.search(text or "")
    if not match:
        return default
    amount = int(match.group(1) or 1)
    return {"minute": timedelta(minutes=amount), "hour": timedelta(hours=amount),
            "day": timedelta(days=amount)}[match.group(2).lower()]


def _span(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    if hours >= 1 and hours == int(hours):
        return f"{int(hours)} hour{'s' if hours != 1 else ''}"
    minutes = round(delta.total_seconds() / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def classify_429(text: str, *, login_unverified: bool) -> str:
    """"rate_limit" or "lock_out" for a 429 with `text` (Sage's message), judged by the whole wording
    and, when the wording says neither, by the context: a 429 to a login still being checked is the
    lock-out (Sage answers the 21st failed login so), one to a login already working the rate limit."""
    rate = bool(_RATE_LIMIT_WORDS.search(text or ""))
    lock = bool(_LOCK_OUT_WORDS.search(text or ""))
    if rate != lock:
        return "rate_limit" if rate else "lock_out"
    return "lock_out" if login_unverified else "rate_limit"


# --- the portal's API key, refused ------------------------------------------------------------


def api_key_refused_at() -> datetime | None:
    """When Sage One last refused the portal's API key, until a request with it succeeds again."""
    raw = get_redis().get(_API_KEY_FLAG)
    return datetime.fromtimestamp(float(raw), UTC) if raw is not None else None


def _note_api_key_refused(status: int) -> None:
    log.error("Sage One AUS refused the portal's API key (HTTP %s): PORTAL_SAGE_ONE_API_KEY is wrong or was "
              "revoked by Sage. Customers' Sage One logins are not affected; fix the setting.", status)
    get_redis().set(_API_KEY_FLAG, ratelimit.clock().now(), ex=7 * 24 * 3600)


def _note_api_key_accepted() -> None:
    get_redis().delete(_API_KEY_FLAG)


class SageOneClient:
    """One customer's Sage One AUS login, optionally bound to one company."""

    def __init__(self, base_url: str, api_key: str, username: str, password: str, *,
                 company_id: int | None = None, timeout: float | tuple = 15.0,
                 session: requests.Session | None = None, interactive: bool = False,
                 login_unverified: bool = False, known_company_ids: Iterable[int] = (),
                 on_wait: Callable[[float | None], None] | None = None):
        # A base URL ending in "/" would make `/api/2.0.0//Company/Get`; live Sage serves it, but one slash is plainer.
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.username = username
        # Sage reads Basic credentials as UTF-8; requests would encode text as Latin-1 (and fail on "密").
        self._auth = (username.encode("utf-8"), password.encode("utf-8"))
        log_safety.protect(password)
        log_safety.protect(api_key, parts=False)
        log_safety.protect(base64.b64encode(self._auth[0] + b":" + self._auth[1]).decode(), parts=False)
        self.company_id = company_id
        self.interactive = interactive
        self.login_unverified = login_unverified
        self.known_company_ids = tuple(dict.fromkeys(int(c) for c in known_company_ids))
        self.timeout = INTERACTIVE_TIMEOUT if interactive else timeout
        self.on_wait = on_wait  # told when a request waits for Sage's limit (a run's progress)
        self.requests_sent = 0  # every request sent, retries included (a run's estimate reads it)
        self._http = session or session_for(self.base_url)

    def __repr__(self) -> str:
        # Never show the password, even in a debugger or a traceback's locals.
        return f"<SageOneClient {self.username} company={self.company_id}>"

    @classmethod
    def from_config(cls, username: str, password: str, company_id: int | None = None, **options) -> SageOneClient:
        """A client for the configured Sage One host and API key."""
        config = current_app.config
        client = cls(config["SAGE_ONE_API_URL"], config["SAGE_ONE_API_KEY"] or "", username, password,
                     company_id=company_id, timeout=config["HTTP_TIMEOUT_SECONDS"], **options)
        if client.interactive and config.get("SAGE_ONE_PAGE_TIMEOUT_SECONDS"):
            client.timeout = (INTERACTIVE_TIMEOUT[0], float(config["SAGE_ONE_PAGE_TIMEOUT_SECONDS"]))
        return client

    # --- pacing -------------------------------------------------------------------------------

    def _buckets(self) -> list[str]:
        """The limiter buckets one request counts in (see `ratelimit`)."""
        if self.company_id is not None:
            return [ratelimit.company_bucket(self.company_id)]
        return [ratelimit.login_bucket(self.username), *map(ratelimit.company_bucket, self.known_company_ids)]

    def _hold(self, until: datetime) -> None:
        for bucket in self._buckets():
            ratelimit.hold_off(bucket, until)

    # --- the one request path ---------------------------------------------------------------

    def request(self, verb: str, service: str, method: str, record_id: int | None = None, *,
                params: dict | None = None, body: dict | None = None):
        """Call `{Service}/{Method}[/{id}]`; returns the JSON body or raises a SageOneError."""
        path = f"{self.base_url}/{service}/{method}" + (f"/{record_id}" if record_id is not None else "")
        query = {"apikey": self._api_key, **(params or {})}
        if self.company_id is not None:
            query["CompanyId"] = self.company_id
        attempts = _GET_ATTEMPTS if verb == "GET" and not self.interactive else 1
        for attempt in range(1, attempts + 1):
            ratelimit.acquire(self._buckets(), wait=not self.interactive, on_wait=self.on_wait)
            self.requests_sent += 1
            try:
                response = self._http.request(
                    verb, path, params=query, json=body, auth=self._auth, timeout=self.timeout,
                    headers={"Content-Type": "application/json", "Accept": "application/json"},
                )
            except requests.RequestException as exc:
                metrics.sage_request("sage_one_aus", self._buckets()[0], None)
                log.warning("Sage One %s %s/%s failed: %s", verb, service, method, type(exc).__name__)
                if attempt < attempts:
                    ratelimit.back_off(BACK_OFF_SECONDS[attempt - 1])
                    continue
                if self.interactive and isinstance(exc, requests.Timeout):
                    raise SageOneUnavailable("Sage One AUS is slow to answer right now; nothing was changed. "
                                             "Try again in a minute.") from None
                raise SageOneUnavailable("Sage One AUS could not be reached. Try again in a few minutes.") from None
            metrics.sage_request("sage_one_aus", self._buckets()[0], response.status_code)
            if response.status_code >= 500 and attempt < attempts:
                ratelimit.back_off(BACK_OFF_SECONDS[attempt - 1])
                continue
            return self._answer(response, f"{service}/{method}")
        raise SageOneUnavailable("Sage One AUS could not be reached. Try again in a few minutes.")

    def _answer(self, response: requests.Response, what: str):
        status = response.status_code
        if status in (200, 201, 202, 204):
            if api_key_refused_at() is not None:
                _note_api_key_accepted()
            if status == 204 or not response.content:
                return None
            if not _is_json(response):
                raise shapes.unusable(what, f"a {response.headers.get('Content-Type') or 'non-JSON'} page instead "
                                            "of data", whole_run=True)
            try:
                return response.json()
            except ValueError:
                raise shapes.unusable(what, "data that is not valid JSON", whole_run=True) from None
        message = _message(response)
        if status in (401, 403) and self._is_api_key_refusal(response, message):
            _note_api_key_refused(status)
            raise SageOneApiKeyRefused(API_KEY_REFUSED)
        if status == 401:
            raise SageOneAuthFailed(
                "Sage One AUS did not accept this username and password"
                + (f" (Sage said: “{message}”)." if message else ".")
            )
        if status == 429:
            return self._too_many(response, message)
        if status == 404:
            raise SageOneNotFound(message or "Sage One AUS has no such record in this company.")
        if status == 402:
            raise SageOneValidationError("The Sage One AUS company's subscription has expired (Sage answered 402).")
        if status in (400, 405, 409, 415):
            raise SageOneValidationError(message or f"Sage One AUS refused the request ({status}).")
        raise SageOneUnavailable(
            "Sage One AUS is unavailable right now" + (" (scheduled maintenance)" if status == 503 else "")
            + f" — it answered {status}. Try again later."
        )

    @staticmethod
    def _is_api_key_refusal(response: requests.Response, message: str) -> bool:
        # Live Sage: a wrong key is an IIS text/html 401 with `X-APIKey: Invalid`; a wrong login is
        # 401 JSON {"Message": "Authorization has been denied for this request."}. A missing key is 403.
        if response.headers.get("X-APIKey", "").strip().lower() == "invalid" or response.status_code == 403:
            return True
        return not _is_json(response) or bool(re.search(r"\bapi ?key\b", message, re.IGNORECASE))

    def _too_many(self, response: requests.Response, message: str):
        """Sage's two 429s: the request limit (hold the company off for the block) or the lock-out."""
        words = " ".join(filter(None, [message, response.headers.get("X-RequestLimit-ExceededReason", "")]))
        now = datetime.fromtimestamp(ratelimit.clock().now(), UTC)
        if classify_429(words, login_unverified=self.login_unverified) == "rate_limit":
            block = _duration(words, DEFAULT_BLOCK)
            until = now + block
            self._hold(until)
            log.warning("Sage One AUS rate-limited %s for %s (429)", self._buckets()[0], _span(block))
            raise SageOneRateLimited(
                f"Sage One AUS blocked this company for {_span(block)} for sending more than "
                f"{ratelimit.published_per_minute()} requests a minute: rate-limited until {timefmt.with_zone(until)}. "
                "The portal sends it nothing before then (calling during the block extends it); run it again "
                "after that.", until)
        lock = _duration(words, USERNAME_LOCK)
        until = now + lock
        raise SageOneLocked(
            f"Sage One AUS has locked this username for {_span(lock)} after too many failed logins, until "
            f"{timefmt.with_zone(until)}. Wait for the lock to lift, or reset the password on Sage One's own "
            "sign-in page.", until)

    # --- services -----------------------------------------------------------------------------

    def companies(self) -> list[Company]:
        """The companies this login can use (Company/Get); verifies the credentials."""
        what = "the list of companies"
        records, _ = shapes.results(self.request("GET", "Company", "Get"), what)
        companies = [Company(shapes.integer(c.get("ID"), what, "ID"), shapes.text(c.get("Name")) or str(c.get("ID")))
                     for c in records]
        if self.company_id is None:
            # Sage may have counted this request for each of the companies; so does the limiter.
            ratelimit.charge(ratelimit.company_bucket(c.id) for c in companies if c.id not in self.known_company_ids)
        return companies

    def list_all(self, service: str, params: dict | None = None) -> list[dict]:
        """Every result of `{service}/Get`, paging by 100 as Sage requires."""
        results: list[dict] = []
        what = f"the {service} list"
        while True:
            page, total = shapes.results(self.request(
                "GET", service, "Get", params={**(params or {}), "$skip": len(results), "$top": 100}), what)
            results.extend(page)
            if not page or len(results) >= total:
                return results

    def find(self, service: str, **fields) -> dict | None:
        """The first `{service}` whose fields equal the values given, or None (an OData $filter)."""
        terms = [
            f"{name} eq {value}" if isinstance(value, int)
            else f"{name} eq '{str(value).replace(chr(39), chr(39) * 2)}'"
            for name, value in fields.items()
        ]
        what = f"a {service} look-up"
        records, _ = shapes.results(
            self.request("GET", service, "Get", params={"$filter": " and ".join(terms), "$top": 1}), what)
        return shapes.entity(records[0], what) if records else None

    def get(self, service: str, record_id: int) -> dict:
        """One entity by id; raises SageOneNotFound."""
        return shapes.entity(self.request("GET", service, "Get", record_id), f"{service} {record_id}")

    def save(self, service: str, entity: dict) -> dict:
        """Create or update an entity with `{service}/Save`; returns the saved entity."""
        return shapes.entity(self.request("POST", service, "Save", body=entity), f"the saved {service}")
