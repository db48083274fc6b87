"""Sage Accounting API v3.1: bearer auth, X-Business, rate limit, contacts, sales invoices and lookups."""

import math
from collections import deque
from urllib.parse import unquote_plus

from flask import Blueprint, current_app, g, jsonify, request

from . import v31_records as records
from .state import SandboxState

bp = Blueprint("sandbox_v31", __name__, url_prefix="/v3.1")

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 200
UNPAGED = 2147483647
DAY = 86400
BASE_ATTRIBUTES = ("id", "displayed_as", "$path")
OPEN_PATHS = ("/v3.1/businesses", "/v3.1/user")  # served whatever X-Business says


class ApiError(Exception):
    """A v3.1 failure, answered as a `$severity` array."""

    def __init__(self, status: int, data_code: str, message: str, source: str = "", headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.entries = [error_entry(data_code, message, source)]
        self.headers = headers or {}


def error_entry(data_code: str, message: str, source: str = "") -> dict:
    """Return one element of Sage's error array."""
    return {"$severity": "error", "$dataCode": data_code, "$message": message, "$source": source}


def error_response(status: int, entries: list, headers: dict | None = None):
    """Return a JSON error-array response."""
    response = jsonify(entries)
    response.status_code = status
    response.headers.update(headers or {})
    return response


@bp.errorhandler(ApiError)
def _api_error(error: ApiError):
    return error_response(error.status, error.entries, error.headers)


@bp.errorhandler(records.Invalid)
def _invalid(error: records.Invalid):
    return error_response(422, [error_entry("RecordInvalid", message, source) for source, message in error.errors])


def _state() -> SandboxState:
    return current_app.extensions["sage_sandbox"]


# ------------------------------------------------------------------------ guards

@bp.before_request
def authenticate_and_throttle():
    """Require a live bearer token, pick the business from X-Business, and apply the per-business limit."""
    state = _state()
    with state.lock:
        state.counters["v3.1"] += 1
        header = request.headers.get("Authorization", "")
        scheme, _, token_value = header.partition(" ")
        token = state.access_tokens.get(token_value.strip()) if scheme.lower() == "bearer" else None
        if token is None:
            raise ApiError(401, "AuthorizationFailure", "Missing or invalid access token.")
        if token.expires_at <= state.now():
            raise ApiError(401, "AuthorizationFailure", "The access token has expired.")
        user = state.sage_user(token.user_email)
        g.user, g.token = user, token
        g.business = _select_business(state, user)
        _throttle(state, g.business)
        g.business.requests += 1
        g.business.last_request_at = state.now()
        g.business.first_request_at = g.business.first_request_at or g.business.last_request_at
        if token.scope == "readonly" and request.method not in ("GET", "HEAD", "OPTIONS"):
            raise ApiError(403, "MultiUserAccessDenied",
                           "The current user is not allowed to access that resource with that method.")


def _select_business(state: SandboxState, user):
    requested = request.headers.get("X-Business", "").strip()
    open_path = request.path.rstrip("/") in OPEN_PATHS or request.path.startswith("/v3.1/businesses/")
    if requested and requested in user.business_ids:
        return state.businesses[requested]
    if requested and not open_path:
        raise ApiError(404, "RecordNotFound", "The business in X-Business was not found for this user.", "X-Business")
    if not requested and not open_path and state.config["SANDBOX_REQUIRE_X_BUSINESS"] and len(user.business_ids) > 1:
        raise ApiError(401, "AuthorizationFailure", "X-Business is required for a user with several businesses.")
    return state.businesses[user.business_ids[0]]


def _throttle(state: SandboxState, business) -> None:
    """Apply the daily budget, then the per-minute limit; only admitted requests count toward either."""
    now = state.now()
    day = int(now // DAY)
    if business.day != day:
        business.day, business.day_requests = day, 0
    budget = state.sage_daily_limit
    if budget and business.day_requests >= budget:
        business.limited_per_day += 1
        state.limit_counters["v3.1_per_day_429"] += 1
        retry_after = max(1, math.ceil((day + 1) * DAY - now))  # the budget renews at midnight UTC
        raise ApiError(429, "TooManyRequests",
                       f"Daily limit of {budget} requests exceeded for this business. "
                       f"Retry after {retry_after} seconds.",
                       headers={"Retry-After": str(retry_after)})
    limit = state.sage_rate_limit
    if limit:
        span = float(state.config["SANDBOX_SAGE_RATE_WINDOW_SECONDS"])  # Sage's minute; tests shorten it
        window = state.sage_windows.setdefault(business.id, deque())
        while window and window[0] <= now - span:
            window.popleft()
        if len(window) >= limit:
            business.limited_per_minute += 1
            state.limit_counters["v3.1_per_minute_429"] += 1
            retry_after = max(1, math.ceil(window[0] + span - now))
            raise ApiError(429, "TooManyRequests",
                           f"Rate limit of {limit} requests per minute exceeded for this business. "
                           f"Retry after {retry_after} seconds.",
                           headers={"Retry-After": str(retry_after)})
        window.append(now)
    business.day_requests += 1


# ------------------------------------------------------------------------ helpers

def _base_url() -> str:
    return request.host_url


def _body(key: str) -> dict:
    if request.mimetype != "application/json":
        raise ApiError(415, "UnsupportedMediaType", "The request body must be application/json.")
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get(key), dict):
        raise ApiError(422, "RecordInvalid", f"The request body must be a JSON object with a {key!r} object.", key)
    return body[key]


def _page_args() -> tuple[int, int]:
    try:
        per_page = int(request.args.get("items_per_page", DEFAULT_PAGE_SIZE))
        page = int(request.args.get("page", 1))
    except ValueError:
        raise ApiError(422, "RecordInvalid", "page and items_per_page must be integers.", "page") from None
    return max(1, page), min(MAX_PAGE_SIZE, max(1, per_page))


def _since_arg(name: str = "updated_or_created_since") -> float | None:
    value = request.args.get(name)
    if not value:
        return None
    try:
        return records.parse_since(value)
    except ValueError:
        raise ApiError(422, "RecordInvalid", f"{name} must be a date or an ISO-8601 date-time.", name) from None


def _shape() -> str:
    return _state().config["SANDBOX_V31_SHAPE"]


def reply(body, status: int = 200):
    """Answer with a record body in the configured wire shape (live: decimal strings and nulls; spec: numbers)."""
    response = jsonify(records.render(body, _shape()))
    response.status_code = status
    return response


def _names(argument: str) -> str | set | None:
    """Parse an `attributes`/`nested_attributes` value: None (base only), "all", or a set of names."""
    wanted = (request.args.get(argument) or "").strip()
    if not wanted:
        return None
    if wanted == "all":
        return "all"
    return {n.strip() for n in wanted.split(",") if n.strip()}


def _as_link(value, nested):
    """Cut a nested record down to its base attributes plus any `nested_attributes` asked for."""
    if isinstance(value, list):
        return [_as_link(v, nested) for v in value]
    if not isinstance(value, dict) or "id" not in value or nested == "all":
        return value  # value objects without an id (tax_treatment, links) are not records
    return {k: v for k, v in value.items() if k in BASE_ATTRIBUTES or (nested and k in nested)}


def _select_attributes(full: dict) -> dict:
    """Shape a list item: base attributes unless `attributes=` asks, nested records as links unless
    `nested_attributes=` asks."""
    wanted, nested = _names("attributes"), _names("nested_attributes")
    base = {k: v for k, v in full.items() if k in BASE_ATTRIBUTES}
    if wanted is None:
        return base
    chosen = full if wanted == "all" else {**base, **{k: v for k, v in full.items() if k in wanted}}
    return {k: (v if k in BASE_ATTRIBUTES else _as_link(v, nested)) for k, v in chosen.items()}


def _page_path(resource: str, number: int) -> str:
    """Echo the query exactly as sent (nothing re-encoded: `sort=date:asc` keeps its colon), with only
    `page` changed, or added in front when it was not sent."""
    parts = [p for p in request.query_string.decode("utf-8", "replace").split("&") if p]
    echoed, placed = [], False
    for part in parts:
        if unquote_plus(part.partition("=")[0]) == "page":
            if not placed:
                echoed.append(f"page={number}")
                placed = True
            continue
        echoed.append(part)
    if not placed:
        echoed.insert(0, f"page={number}")
    return f"/{resource}?{'&'.join(echoed)}"


def _envelope(resource: str, items: list, to_json) -> dict:
    """Page `items` and return the live `$total/$page/$next/$back/$itemsPerPage/$items` envelope."""
    page, per_page = _page_args()
    total = len(items)
    last_page = max(1, math.ceil(total / per_page))
    page = min(page, last_page)  # past the end Sage answers with the last page
    chunk = items[(page - 1) * per_page: page * per_page]
    return {
        "$total": total,
        "$page": page,
        "$next": _page_path(resource, page + 1) if page < last_page else None,
        "$back": _page_path(resource, page - 1) if page > 1 else None,
        "$itemsPerPage": per_page,
        "$items": [_select_attributes(to_json(item)) for item in chunk],
    }


def _not_found(kind: str):
    return ApiError(404, "RecordNotFound", f"The {kind} was not found.")


# ------------------------------------------------------------------------ businesses and user

@bp.get("/businesses")
def list_businesses():
    """List the businesses the signed-in user can open (unpaged, with `$items_per_page`)."""
    state = _state()
    with state.lock:
        businesses = [state.businesses[b] for b in g.user.business_ids]
        if _shape() == "spec":  # the published schema lists whole Business records
            items = [records.business_json(b) for b in businesses]
        else:  # live: base attributes (displayed_as, id, $path) unless attributes= asks
            items = [_select_attributes({**records.business_link(b), **records.business_json(b)})
                     for b in businesses]
    return reply({"$total": len(items), "$page": 1, "$next": None, "$back": None,
                  "$items_per_page": UNPAGED, "$items": items})


@bp.get("/businesses/<key>")
def get_business(key: str):
    """Return one of the user's businesses; `lead` means the lead business."""
    state = _state()
    with state.lock:
        business_id = g.user.business_ids[0] if key == "lead" else key
        if business_id not in g.user.business_ids:
            raise _not_found("business")
        return reply(records.business_json(state.businesses[business_id]))


@bp.get("/user")
def get_user():
    """Return the signed-in Sage user."""
    return reply(records.user_json(g.user))


# ------------------------------------------------------------------------ contacts

def _find_contact(contact_id: str) -> dict:
    contact = g.business.contacts.get(contact_id)
    if contact is None:
        raise _not_found("contact")
    return contact


def _contact_matches(contact: dict, search: str | None, email: str | None, type_id: str | None,
                     since: float | None) -> bool:
    if type_id and type_id not in contact["contact_type_ids"]:
        return False
    if since is not None and contact["updated_at"] < since:
        return False
    if email and ((contact.get("main_contact_person") or {}).get("email") or "").lower() != email.lower():
        return False
    if search:
        needle = search.lower()
        return needle in contact["name"].lower() or needle in (contact.get("reference") or "").lower()
    return True


@bp.get("/contacts")
def list_contacts():
    """List the business's contacts, filtered by search, email, contact_type_id and updated_or_created_since."""
    state = _state()
    since = _since_arg()
    deleted_since = _since_arg("deleted_since")
    args = request.args
    with state.lock:
        business = g.business
        if deleted_since is not None:  # the contacts deleted after that time (exclusive), as tombstones
            gone = [{"id": cid, "displayed_as": name, "$path": f"/contacts/{cid}", "deleted_at": records.iso(at)}
                    for cid, (name, at) in business.deleted_contacts.items() if at > deleted_since]
            return reply(_envelope("contacts", gone, lambda c: c))
        found = [c for c in business.contacts.values()
                 if _contact_matches(c, args.get("search"), args.get("email"), args.get("contact_type_id"), since)]
        return reply(_envelope("contacts", found, lambda c: records.contact_json(c, business, _base_url())))


@bp.post("/contacts")
def create_contact():
    """Create a contact (201); 422 RecordInvalid when name/contact_type_ids are missing or reference is taken."""
    state = _state()
    data = _body("contact")
    with state.lock:
        records.validate_contact(data, g.business, creating=True)
        now = state.now()
        contact = records.apply_contact({"id": records.new_id(), "created_at": now}, data, now)
        g.business.put_contact(contact)
        return reply(records.contact_json(contact, g.business, _base_url()), 201)


@bp.get("/contacts/<contact_id>")
def get_contact(contact_id: str):
    """Return one contact of the selected business."""
    state = _state()
    with state.lock:
        return reply(records.contact_json(_find_contact(contact_id), g.business, _base_url()))


@bp.put("/contacts/<contact_id>")
def update_contact(contact_id: str):
    """Update a contact with the fields given; none are required."""
    state = _state()
    data = _body("contact")
    with state.lock:
        contact = _find_contact(contact_id)
        records.validate_contact(data, g.business, creating=False, contact_id=contact_id)
        previous_reference = contact.get("reference")
        records.apply_contact(contact, data, state.now())
        g.business.put_contact(contact, previous_reference)
        return reply(records.contact_json(contact, g.business, _base_url()))


@bp.delete("/contacts/<contact_id>")
def delete_contact(contact_id: str):
    """Delete a contact (204); refused while invoices refer to it."""
    state = _state()
    with state.lock:
        _find_contact(contact_id)
        if any(i["contact_id"] == contact_id for i in g.business.invoices.values()):
            raise ApiError(422, "RecordInvalid", "The contact has transactions and cannot be deleted.", "base")
        g.business.remove_contact(contact_id, state.now())
    return "", 204


# ------------------------------------------------------------------------ sales invoices

SORT_KEYS = {"created_at", "updated_at", "date", "due_date"}


def _invoice_filter(invoice: dict, since: float | None) -> bool:
    args = request.args
    if args.get("contact_id") and invoice["contact_id"] != args["contact_id"]:
        return False
    if args.get("status_id") and invoice["status_id"] != args["status_id"]:
        return False
    if args.get("from_date") and invoice["date"] < args["from_date"]:
        return False
    if args.get("to_date") and invoice["date"] > args["to_date"]:
        return False
    if since is not None and invoice["updated_at"] < since:
        return False
    if args.get("search"):
        needle = args["search"].lower()
        haystack = " ".join(filter(None, (invoice["reference"], invoice["contact_name"], invoice["invoice_number"])))
        return needle in haystack.lower()
    return True


@bp.get("/sales_invoices")
def list_sales_invoices():
    """List the business's sales invoices with the documented filters and `sort`."""
    state = _state()
    since = _since_arg()
    sort = request.args.get("sort")
    with state.lock:
        business = g.business
        found = [i for i in business.invoices.values() if _invoice_filter(i, since)]
        if sort:
            key, _, direction = sort.partition(":")
            if key not in SORT_KEYS or direction not in ("", "asc", "desc"):
                raise ApiError(422, "RecordInvalid", "sort must be created_at, updated_at, date or due_date "
                                                     "with an optional :asc or :desc.", "sort")
            found.sort(key=lambda i: i[key], reverse=direction == "desc")
        return reply(_envelope("sales_invoices", found, lambda i: records.invoice_json(i, business, _base_url())))


@bp.post("/sales_invoices")
def create_sales_invoice():
    """Create a sales invoice (201); 422 RecordInvalid listing every invalid field."""
    state = _state()
    data = _body("sales_invoice")
    with state.lock:
        business = g.business
        invoice = records.build_invoice(data, business, state.config["SANDBOX_INVOICE_DEFAULT_STATUS"], state.now())
        invoice["invoice_number"] = f"SI-{business.next_invoice_number}"
        business.next_invoice_number += 1
        business.invoices[invoice["id"]] = invoice
        return reply(records.invoice_json(invoice, business, _base_url()), 201)


def _find_invoice(invoice_id: str) -> dict:
    invoice = g.business.invoices.get(invoice_id)
    if invoice is None:
        raise _not_found("sales invoice")
    return invoice


@bp.get("/sales_invoices/<invoice_id>")
def get_sales_invoice(invoice_id: str):
    """Return one sales invoice of the selected business."""
    state = _state()
    with state.lock:
        return reply(records.invoice_json(_find_invoice(invoice_id), g.business, _base_url()))


@bp.delete("/sales_invoices/<invoice_id>")
def void_sales_invoice(invoice_id: str):
    """Void a sales invoice: 200 with status VOID; void_reason is required unless the invoice is a draft."""
    state = _state()
    reason = (request.args.get("void_reason") or "").strip()
    with state.lock:
        business = g.business
        invoice = _find_invoice(invoice_id)
        if invoice["status_id"] == "VOID":
            raise ApiError(422, "RecordInvalid", f"Sales invoice {invoice['invoice_number']} has already been voided.",
                           "base")
        is_draft = invoice["status_id"] == "DRAFT"
        if is_draft and state.config["SANDBOX_VOID_DRAFT_DELETES"]:
            del business.invoices[invoice_id]
            return "", 204
        if not reason and not is_draft:
            raise ApiError(422, "RecordInvalid", "void_reason is required to void an invoice that is not a draft.",
                           "void_reason")
        if len(reason) > 200:
            raise ApiError(422, "RecordInvalid", "void_reason is too long (maximum is 200 characters).", "void_reason")
        invoice.update(status_id="VOID", void_reason=reason or None, outstanding=records.money(0),
                       updated_at=state.now())
        if int(state.config["SANDBOX_VOID_STATUS_CODE"]) == 204:
            return "", 204
        return reply(records.invoice_json(invoice, business, _base_url()))


# ------------------------------------------------------------------------ lookups

def _lookup_list(resource: str, items: list, to_json):
    return reply(_envelope(resource, items, to_json))


def _lookup_one(collection: str, item_id: str, label: str, to_json):
    """One record of a lookup collection of the selected business, or 404 RecordNotFound."""
    with _state().lock:
        item = getattr(g.business, collection).get(item_id)
        if item is None:
            raise _not_found(label)
        return reply(to_json(item))


@bp.get("/contact_types")
def list_contact_types():
    """List contact types (CUSTOMER, VENDOR)."""
    with _state().lock:
        items = list(g.business.contact_types.values())
    return _lookup_list("contact_types", items, lambda t: records.base_json("contact_types", t))


@bp.get("/contact_types/<type_id>")
def get_contact_type(type_id: str):
    """Return one contact type."""
    return _lookup_one("contact_types", type_id, "contact type", lambda t: records.base_json("contact_types", t))


@bp.get("/artefact_statuses")
def list_artefact_statuses():
    """List invoice statuses (DRAFT … VOID)."""
    with _state().lock:
        items = list(g.business.artefact_statuses.values())
    return _lookup_list("artefact_statuses", items, lambda s: records.base_json("artefact_statuses", s))


@bp.get("/artefact_statuses/<status_id>")
def get_artefact_status(status_id: str):
    """Return one artefact status."""
    return _lookup_one("artefact_statuses", status_id, "artefact status",
                       lambda s: records.base_json("artefact_statuses", s))


@bp.get("/ledger_accounts")
def list_ledger_accounts():
    """List ledger accounts, filtered by visible_in=sales, ledger_account_type_id and search."""
    args = request.args
    with _state().lock:
        business = g.business
        items = list(business.ledger_accounts.values())
        if args.get("visible_in") == "sales":
            items = [a for a in items if a["visible_in_sales"]]
        if args.get("ledger_account_type_id"):
            items = [a for a in items if a["ledger_account_type_id"] == args["ledger_account_type_id"]]
        if args.get("search"):
            needle = args["search"].lower()
            items = [a for a in items if needle in a["name"].lower() or needle in str(a["nominal_code"])]
        return _lookup_list("ledger_accounts", items, lambda a: records.ledger_account_json(a, business))


@bp.get("/ledger_accounts/<account_id>")
def get_ledger_account(account_id: str):
    """Return one ledger account."""
    return _lookup_one("ledger_accounts", account_id, "ledger account",
                       lambda a: records.ledger_account_json(a, g.business))


@bp.get("/tax_rates")
def list_tax_rates():
    """List tax rates."""
    with _state().lock:
        items = list(g.business.tax_rates.values())
    return _lookup_list("tax_rates", items, records.tax_rate_json)


@bp.get("/tax_rates/<rate_id>")
def get_tax_rate(rate_id: str):
    """Return one tax rate."""
    return _lookup_one("tax_rates", rate_id, "tax rate", records.tax_rate_json)
