"""Sage One Accounting API 2.0.0 (AUS): apikey + Basic auth, lock-out, rate limit and company services."""

import base64
import binascii
import hmac
import re
from collections import deque

from flask import Blueprint, current_app, jsonify, request

from . import sage_one_records as records
from .sage_one_records import SageOneError
from .state import SandboxState

bp = Blueprint("sandbox_sage_one", __name__)

VERSION_RE = re.compile(r"^(2\.0\.0|2\.1\.1|1\.1\.\d+)$")
REALM = 'Basic realm="Sage One Accounting"'
RATE_LIMIT_REASON = ("Your IP address has exceeded the allowed number of transactions per minute "
                     "and has been blocked for 1 hour")
# Sage's documented wording for the failed-login rule. Both 429s say "blocked": clients tell them apart by the
# whole wording and by context (was this a login?), never by a substring.
LOCKOUT_REASON = ("Your Username has exceeded the allowed number of login attempts and has been blocked "
                  "for 24 hours")
DENIED = "Authorization has been denied for this request."
HOUR = 3600.0
SLASHES = re.compile(r"/{2,}")
# What IIS answers for a wrong API key (captured live): an HTML page, not the API's JSON.
INVALID_API_KEY_PAGE = """<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" \
"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">
<html xmlns="http://www.w3.org/1999/xhtml">
<head>
<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1"/>
<title>401 - Unauthorized: Access is denied due to invalid credentials.</title>
</head>
<body>
<div id="header"><h1>Server Error</h1></div>
<div id="content">
 <div class="content-container"><fieldset>
  <h2>401 - Unauthorized: Access is denied due to invalid credentials.</h2>
  <h3>You do not have permission to view this directory or page using the credentials that you supplied.</h3>
 </fieldset></div>
</div>
</body>
</html>
"""


class CaseInsensitiveApiPrefix:
    """WSGI middleware: route `/API/...` and `/Api/...` like `/api/...` (the rest is matched in the view), and
    serve a doubled slash (`/api/2.0.0//Company/Get`) like a single one.

    Common clients join a base URL ending in `/` to a service path starting with `/`; live Sage serves that, so
    the slashes are merged here, before Werkzeug's routing would answer with a 308 redirect instead.
    """

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        merged = SLASHES.sub("/", path)
        if merged[:5].lower() == "/api/":
            environ["PATH_INFO"] = "/api/" + merged[5:]
        return self.wsgi_app(environ, start_response)


def _state() -> SandboxState:
    return current_app.extensions["sage_sandbox"]


class InvalidApiKey(SageOneError):
    """A wrong API key, refused by IIS in front of the API with an HTML page and `X-APIKey: Invalid`."""


def error_response(state: SandboxState, error: SageOneError):
    """Return a 2.0.0 error; the body is {"Message": ...} or a bare JSON string per configuration (HTML for a
    wrong API key)."""
    if isinstance(error, InvalidApiKey):
        response = current_app.response_class(INVALID_API_KEY_PAGE, status=error.status)
        response.headers["Content-Type"] = "text/html"  # as IIS sends it, no charset parameter
    else:
        message = error.message
        body = message if state.config["SANDBOX_SAGE_ONE_ERROR_FORMAT"] == "string" else {"Message": message}
        response = jsonify(body)
        response.status_code = error.status
    response.headers.update(error.headers)
    return response


def no_resource() -> SageOneError:
    """The 404 the API answers for an unknown route, service, method, company or record."""
    return SageOneError(404, f"No HTTP resource was found that matches the request URI '{request.url}'.")


def wrong_method(allowed: str) -> SageOneError:
    """The 405 for a verb the method does not take, with the `Allow` header ASP.NET sends."""
    return SageOneError(405, f"The requested resource does not support http method '{request.method}'.",
                        {"Allow": allowed})


# ------------------------------------------------------------------------ authentication

def _check_api_key(state: SandboxState, query: dict) -> None:
    key = query.get("apikey")
    if not key:
        raise SageOneError(int(state.config["SANDBOX_SAGE_ONE_MISSING_APIKEY_STATUS"]),
                           "An API key is required (apikey query parameter).")
    if key.strip("{}").lower() != state.sage_one_api_key.strip("{}").lower():
        raise InvalidApiKey(int(state.config["SANDBOX_SAGE_ONE_WRONG_APIKEY_STATUS"]), "The API key is not valid.",
                            {"X-APIKey": "Invalid"})


def _basic_credentials() -> tuple[str, str] | None:
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        username, _, password = base64.b64decode(encoded.strip()).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return username.strip().lower(), password


def authenticate(state: SandboxState):
    """Check Basic credentials, counting failures toward the lock-out; return the Sage One user."""
    credentials = _basic_credentials()
    if credentials is None:
        # Clients such as go-ntlmssp only send credentials after a challenge, so always offer one.
        raise SageOneError(401, DENIED, {"WWW-Authenticate": REALM})
    username, password = credentials
    now = state.now()
    user = state.sage_one_users.get(username)
    if user is not None and user.locked_until > now:
        raise _locked_out(state, user)
    # compare_digest takes only ASCII text, so UTF-8 passwords are compared as bytes.
    if user is not None and hmac.compare_digest(user.password.encode(), password.encode()):
        return user
    if user is not None:
        user.failures[:] = [t for t in user.failures if t > now - HOUR] + [now]
        if len(user.failures) > int(state.config["SANDBOX_SAGE_ONE_LOCKOUT_FAILURES"]):
            user.locked_until = now + float(state.config["SANDBOX_SAGE_ONE_LOCKOUT_SECONDS"])
            user.lockouts += 1
            state.limit_counters["sage_one_lockouts"] += 1
            raise _locked_out(state, user)
    raise SageOneError(401, DENIED, {"WWW-Authenticate": REALM})


def _locked_out(state: SandboxState, user) -> SageOneError:
    user.locked_answers += 1
    state.limit_counters["sage_one_lockout_429"] += 1
    return SageOneError(429, LOCKOUT_REASON)


def throttle(state: SandboxState, key: tuple, company=None) -> None:
    """Apply the per (apikey, company, user) limit; a blocked caller who keeps calling stays blocked longer.

    Counts each block that starts and every 429 answered, on the company (and in the totals)."""
    if not state.sage_one_rate_limit:
        return
    now = state.now()
    if state.sage_one_blocks.get(key, 0) > now:
        state.sage_one_blocks[key] = now + state.sage_one_block_seconds
        raise _rate_limited(state, company)
    window = state.sage_one_windows.setdefault(key, deque())
    while window and window[0] <= now - 60:
        window.popleft()
    if len(window) >= state.sage_one_rate_limit:
        state.sage_one_blocks[key] = now + state.sage_one_block_seconds
        window.clear()
        state.limit_counters["sage_one_blocks"] += 1
        if company is not None:
            company.blocks += 1
        raise _rate_limited(state, company)
    window.append(now)


def _rate_limited(state: SandboxState, company) -> SageOneError:
    state.limit_counters["sage_one_rate_limit_429"] += 1
    if company is not None:
        company.limited += 1
    headers = {}
    if state.config["SANDBOX_SAGE_ONE_EXCEEDED_REASON_HEADER"]:
        headers["X-RequestLimit-ExceededReason"] = RATE_LIMIT_REASON
    return SageOneError(429, RATE_LIMIT_REASON, headers)


# ------------------------------------------------------------------------ dispatch

@bp.route("/api/<version>/<path:rest>", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
def dispatch(version: str, rest: str):
    """Serve `/api/{version}/{Service}/{Method}[/{id}]`, matching names case-insensitively."""
    state = _state()
    query = {k.lower(): v for k, v in request.args.items()}
    with state.lock:
        state.counters["sage_one"] += 1
        try:
            if not VERSION_RE.match(version):
                raise no_resource()
            if state.config["SANDBOX_SAGE_ONE_REQUIRE_CONTENT_TYPE"] and not request.headers.get("Content-Type"):
                raise SageOneError(415, "The request must include a Content-Type header.")
            _check_api_key(state, query)
            user = authenticate(state)
            service, method, record_id = _route(rest)
            company = None
            if service != "company":
                company = _company(state, user, query)
                company.requests += 1
            throttle(state, (state.sage_one_api_key, company.id if company else None, user.username), company)
            handler = SERVICES[service].get(method)
            if handler is None:
                raise no_resource()
            allowed, function = handler
            if request.method != allowed:
                raise wrong_method(allowed)
            return function(state, user, company, record_id, query)
        except SageOneError as error:
            return error_response(state, error)


def _route(rest: str) -> tuple[str, str, int | None]:
    parts = [p for p in rest.split("/") if p]
    if len(parts) not in (2, 3) or parts[0].lower() not in SERVICES:
        raise no_resource()
    record_id = None
    if len(parts) == 3:
        if not parts[2].isdigit():
            raise SageOneError(400, f"The id '{parts[2]}' is not valid.")
        record_id = int(parts[2])
    return parts[0].lower(), parts[1].lower(), record_id


def _company(state: SandboxState, user, query: dict):
    raw = query.get("companyid")
    if not raw:
        raise SageOneError(400, "CompanyId is required.")
    if not raw.isdigit():
        raise SageOneError(400, "CompanyId must be an integer.")
    company_id = int(raw)
    if company_id not in user.company_ids:
        raise no_resource()
    return state.companies[company_id]


def _json_body() -> dict:
    body = request.get_json(silent=True, force=True)
    if not isinstance(body, dict):
        raise SageOneError(400, "The request body must be a JSON object.")
    return body


def _ok(body, status: int = 200):
    response = jsonify(body)
    response.status_code = status
    return response


def _entity_id(body: dict):
    entity_id = body.get("ID") or 0
    if isinstance(entity_id, bool) or not isinstance(entity_id, int):
        raise SageOneError(400, "ID must be an integer.")
    return entity_id


# ------------------------------------------------------------------------ Company, Account, TaxType

def get_companies(state, user, company, record_id, query):
    """List the user's companies, or return one of them."""
    if record_id is not None:
        if record_id not in user.company_ids:
            raise no_resource()
        return _ok(records.company_json(state.companies[record_id]))
    entities = [records.company_json(state.companies[c]) for c in user.company_ids]
    return _ok(records.list_response(entities, query))


def _get_lookup(collection: dict, to_json, record_id, query):
    if record_id is not None:
        if record_id not in collection:
            raise no_resource()
        return _ok(to_json(collection[record_id]))
    return _ok(records.list_response([to_json(e) for e in collection.values()], query))


def get_accounts(state, user, company, record_id, query):
    """List the company's accounts, or return one."""
    return _get_lookup(company.accounts, lambda a: records.account_json(a, company), record_id, query)


def get_tax_types(state, user, company, record_id, query):
    """List the company's tax types, or return one."""
    return _get_lookup(company.tax_types, records.tax_type_json, record_id, query)


# ------------------------------------------------------------------------ Customer

def get_customers(state, user, company, record_id, query):
    """List the company's customers, or return one (404 when it belongs to another company)."""
    return _get_lookup(company.customers, lambda c: records.customer_json(c, company), record_id, query)


def save_customer(state, user, company, record_id, query):
    """Create (201, no ID) or update (200, with ID) a customer."""
    body = _json_body()
    entity_id = _entity_id(body)
    existing = None
    if entity_id:
        existing = company.customers.get(entity_id)
        if existing is None:
            raise no_resource()
    customer = records.save_customer(company, body, existing, state.now(), state.next_sage_one_id)
    company.customers[customer["ID"]] = customer
    return _ok(records.customer_json(customer, company), 200 if existing else 201)


def delete_customer(state, user, company, record_id, query):
    """Delete a customer; 409 while invoices or credit notes refer to it."""
    if record_id is None or record_id not in company.customers:
        raise no_resource()
    documents = list(company.invoices.values()) + list(company.credit_notes.values())
    if any(d["CustomerId"] == record_id for d in documents):
        raise SageOneError(409, "The customer is in use and cannot be deleted.")
    del company.customers[record_id]
    return "", 204


# ------------------------------------------------------------------------ TaxInvoice

def _get_documents(collection: dict, company, record_id, query):
    """List or read TaxInvoices or CustomerReturns: `includeDetail=true` fills `Lines` in lists (a single record
    always has them), `includeCustomerDetails=true` nests the whole `Customer`."""
    with_customer = (query.get("includecustomerdetails") or "").lower() == "true"
    if record_id is not None:
        if record_id not in collection:
            raise no_resource()
        return _ok(records.document_json(collection[record_id], company, include_lines=True,
                                         include_customer=with_customer))
    detail = (query.get("includedetail") or "").lower() == "true"
    entities = [records.document_json(d, company, include_lines=detail, include_customer=with_customer)
                for d in collection.values()]
    return _ok(records.list_response(entities, query))


def get_invoices(state, user, company, record_id, query):
    """List the company's tax invoices (lines with includeDetail=true), or return one."""
    return _get_documents(company.invoices, company, record_id, query)


def save_invoice(state, user, company, record_id, query):
    """Create (201) or update (200) a tax invoice; reversed invoices are locked."""
    body = _json_body()
    entity_id = _entity_id(body)
    existing = None
    if entity_id:
        existing = company.invoices.get(entity_id)
        if existing is None:
            raise no_resource()
        if existing.get("Locked"):
            raise SageOneError(400, "This document has been reversed by a credit note and cannot be edited.")
    number = f"INV{company.next_invoice_number:07d}"
    invoice = records.save_document(company, body, existing, state.now(), number)
    if existing is None:
        invoice["ID"] = state.next_sage_one_id()
        company.next_invoice_number += 1
    company.invoices[invoice["ID"]] = invoice
    return _ok(records.document_json(invoice, company, include_lines=True), 200 if existing else 201)


def delete_invoice(state, user, company, record_id, query):
    """Delete a tax invoice; only when SANDBOX_SAGE_ONE_ALLOW_INVOICE_DELETE is on (Sage offers no such call)."""
    if not state.config["SANDBOX_SAGE_ONE_ALLOW_INVOICE_DELETE"]:
        raise wrong_method("")  # an empty Allow: the call exists but is switched off
    if record_id is None or company.invoices.pop(record_id, None) is None:
        raise no_resource()
    return "", 204


# ------------------------------------------------------------------------ CustomerReturn

def get_credit_notes(state, user, company, record_id, query):
    """List the company's customer returns (credit notes), or return one."""
    return _get_documents(company.credit_notes, company, record_id, query)


def save_credit_note(state, user, company, record_id, query):
    """Create a credit note (201), reversing the invoice named by FromDocumentId; with ID update its texts."""
    body = _json_body()
    entity_id = _entity_id(body)
    if entity_id:
        note = company.credit_notes.get(entity_id)
        if note is None:
            raise no_resource()
        for key in ("Reference", "Message"):
            if key in body:
                note[key] = str(body[key] or "")
        note["Modified"] = state.now()
        return _ok(records.document_json(note, company, include_lines=True))

    invoice = None
    from_id = body.get("FromDocumentId") or 0
    if from_id:
        invoice = company.invoices.get(from_id)
        if invoice is None:
            raise SageOneError(400, "FromDocumentId does not match a tax invoice in this company.")
        if invoice.get("Locked"):
            raise SageOneError(400, f"Tax invoice {invoice['DocumentNumber']} has already been reversed.")
        if body.get("CustomerId") and body["CustomerId"] != invoice["CustomerId"]:
            raise SageOneError(400, "CustomerId must be the customer of the invoice being reversed.")
    lines = None
    if invoice is not None and not body.get("Lines"):
        lines = [dict(line) for line in invoice["Lines"]]
        body.setdefault("Inclusive", invoice["Inclusive"])
    number = f"CN{company.next_credit_note_number:07d}"
    note = records.save_document(company, body, None, state.now(), number,
                                 customer_id=invoice["CustomerId"] if invoice else None, lines=lines)
    if invoice is not None:
        if note["Total"] > invoice["AmountDue"]:
            raise SageOneError(400, "The credit note total cannot exceed the amount due on the invoice.")
        invoice["AmountDue"] -= note["Total"]
        invoice["Modified"] = state.now()
        if invoice["AmountDue"] == 0:
            invoice.update(Status=records.STATUS_REVERSED, Locked=True)
        else:
            invoice["Status"] = records.STATUS_PART_PAID
        note.update(FromDocumentId=invoice["ID"], FromDocument=invoice["DocumentNumber"], FromDocumentTypeId=1,
                    AmountDue=records.money(0))
    note["ID"] = state.next_sage_one_id()
    company.next_credit_note_number += 1
    company.credit_notes[note["ID"]] = note
    return _ok(records.document_json(note, company, include_lines=True), 201)


SERVICES = {
    "company": {"get": ("GET", get_companies)},
    "account": {"get": ("GET", get_accounts)},
    "taxtype": {"get": ("GET", get_tax_types)},
    "customer": {"get": ("GET", get_customers), "save": ("POST", save_customer),
                 "delete": ("DELETE", delete_customer)},
    "taxinvoice": {"get": ("GET", get_invoices), "save": ("POST", save_invoice),
                   "delete": ("DELETE", delete_invoice)},
    "customerreturn": {"get": ("GET", get_credit_notes), "save": ("POST", save_credit_note)},
}
