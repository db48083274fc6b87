"""Validation and JSON shapes of v3.1 records (contacts, sales invoices, lookups, businesses, user)."""

import re
import secrets
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from .seed import SEED_TIME, Business, SageUser

CURRENCY = {"id": "GBP", "displayed_as": "Pound Sterling (GBP)", "$path": "/currencies/GBP"}
COUNTRIES = {"GB": "United Kingdom (GB)", "IE": "Ireland (IE)", "US": "United States (US)", "CA": "Canada (CA)"}
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

CONTACT_LIMITS = {"name": 100, "reference": 10, "tax_number": 255, "notes": 4000, "locale": 10,
                  "credit_terms_and_conditions": 2000, "registered_number": 25, "aux_reference": 4,
                  "source_guid": 255}
ADDRESS_LIMITS = {"address_line_1": 50, "address_line_2": 50, "city": 50, "postal_code": 10, "region": 50,
                  "name": 50}
PERSON_LIMITS = {"name": 50, "job_title": 50, "telephone": 50, "mobile": 50, "fax": 50, "email": 100}
INVOICE_LIMITS = {"reference": 25, "notes": 2000, "terms_and_conditions": 2000, "contact_name": 255,
                  "contact_reference": 255}
CREATABLE_STATUSES = ("DRAFT", "PRO_FORMA", "UNPAID")


class Invalid(Exception):
    """One or more field errors, answered as 422 RecordInvalid entries."""

    def __init__(self, errors: list[tuple[str, str]]):
        super().__init__("; ".join(message for _, message in errors))
        self.errors = errors


def iso(ts: float) -> str:
    """Format a POSIX time the way Sage does: ISO-8601 UTC to the second with a Z."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_since(value: str) -> float:
    """Parse a date or date-time filter value into POSIX time; raises ValueError."""
    if DATE_RE.match(value):
        return datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp()
    parsed = datetime.fromisoformat(value.replace(" ", "+"))  # '+' arrives as a space when not URL-encoded
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def money(value) -> Decimal:
    """Round to pennies the way an invoice total is rounded."""
    return Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def new_id() -> str:
    """Return a new 32-character lowercase hex id."""
    return secrets.token_hex(16)


def link(resource: str, record_id: str, displayed_as: str) -> dict:
    """Return the nested {id, displayed_as, $path} link Sage uses for references."""
    return {"id": record_id, "displayed_as": displayed_as, "$path": f"/{resource}/{record_id}"}


def drop_none(value):
    """Remove null members recursively; the published schema has no nullable fields."""
    if isinstance(value, dict):
        return {k: drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_none(v) for v in value]
    return value


def decimal_string(value) -> str:
    """Write a decimal as the live API does (Ruby BigDecimal): '10.0', '-430035.84', '0.0', '120.5'."""
    number = Decimal(str(value))
    if number == number.to_integral_value():
        return f"{int(number)}.0"
    return format(number.normalize(), "f")


def _numbers_as(value, convert):
    if isinstance(value, dict):
        return {k: _numbers_as(v, convert) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers_as(v, convert) for v in value]
    if isinstance(value, (Decimal, float)):
        return convert(value)
    return value


def render(body, shape: str):
    """Turn a record's JSON (decimals as Decimal, absent values as None) into the chosen wire shape.

    "live" (what api.accounting.sage.com sends): decimals as strings, null members kept.
    "spec" (the published schema): decimals as JSON numbers, null members left out.
    Integers (nominal codes, credit days, envelope counts) are integers in both, and a list envelope keeps its
    null `$next`/`$back` in both.
    """
    if isinstance(body, dict) and "$items" in body:
        return {**body, "$items": [render(item, shape) for item in body["$items"]]}
    if shape == "spec":
        return _numbers_as(drop_none(body), float)
    return _numbers_as(body, decimal_string)


def decimal_value(value) -> Decimal | None:
    """Return a number sent as a JSON number or a numeric string ("12.50", as live Sage accepts), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = Decimal(str(value))
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except ArithmeticError:
            return None
    else:
        return None
    return number if number.is_finite() else None


# ------------------------------------------------------------------------ validation helpers

def _check_strings(data: dict, limits: dict, prefix: str, errors: list) -> None:
    for name, limit in limits.items():
        if name in data and data[name] is not None:
            if not isinstance(data[name], str):
                errors.append((f"{prefix}{name}", f"{prefix}{name} must be a string"))
            elif len(data[name]) > limit:
                errors.append((f"{prefix}{name}", f"{prefix}{name} is too long (maximum is {limit} characters)"))


def _check_number(data: dict, name: str, source: str, errors: list, integer: bool = False) -> None:
    value = data.get(name)
    if value is None:
        return
    number = decimal_value(value)
    if number is None or (integer and number != number.to_integral_value()):
        errors.append((source, f"{source} must be {'an integer' if integer else 'a number'}"))


def _valid_date(value) -> bool:
    if not isinstance(value, str) or not DATE_RE.match(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


# ------------------------------------------------------------------------ lookups

def ledger_account_json(account: dict, business: Business) -> dict:
    """Return a ledger account in the published LedgerAccount shape."""
    rate = business.tax_rates.get(account["tax_rate_id"])
    scopes = ["sales", "reporting"] if account["visible_in_sales"] else ["reporting", "journals"]
    return {
        "id": account["id"],
        "displayed_as": f"{account['name']} ({account['nominal_code']})",
        "$path": f"/ledger_accounts/{account['id']}",
        "created_at": iso(SEED_TIME),
        "updated_at": iso(SEED_TIME),
        "name": account["name"],
        "display_name": account["name"],
        "nominal_code": account["nominal_code"],
        "visible_scopes": scopes,
        "included_in_chart": True,
        "ledger_account_type": {"id": account["ledger_account_type_id"],
                                "displayed_as": account["ledger_account_type_id"].replace("_", " ").title(),
                                "$path": f"/ledger_account_types/{account['ledger_account_type_id']}"},
        "tax_rate": link("tax_rates", rate["id"], rate["name"]) if rate else None,
        "fixed_tax_rate": False,
        "visible_in_banking": False,
        "visible_in_expenses": not account["visible_in_sales"],
        "visible_in_journals": True,
        "visible_in_other_payments": False,
        "visible_in_other_receipts": False,
        "visible_in_reporting": True,
        "visible_in_sales": account["visible_in_sales"],
        "is_control_account": False,
    }


def tax_rate_json(rate: dict) -> dict:
    """Return a tax rate in the published TaxRate shape."""
    return {
        "id": rate["id"],
        "displayed_as": f"{rate['name']} {rate['percentage']:g}%",
        "$path": f"/tax_rates/{rate['id']}",
        "created_at": iso(SEED_TIME),
        "updated_at": iso(SEED_TIME),
        "name": rate["name"],
        "percentage": Decimal(str(rate["percentage"])),
        "percentages": [{"percentage": Decimal(str(rate["percentage"])), "from_date": "2011-01-04"}],
        "is_visible": True,
        "retailer": False,
        "editable": False,
        "deletable": False,
        "is_combined_rate": False,
    }


def base_json(resource: str, item: dict) -> dict:
    """Return a simple lookup (contact type, artefact status) in the Base shape."""
    return link(resource, item["id"], item["displayed_as"])


# ------------------------------------------------------------------------ businesses and user

def business_json(business: Business) -> dict:
    """Return a business in the published Business shape."""
    return {
        "id": business.id,
        "displayed_as": business.name,
        "name": business.name,
        "address_line_1": business.address_line_1,
        "address_line_2": None,
        "city": business.city,
        "postal_code": business.postal_code,
        "country": {"id": business.country, "displayed_as": COUNTRIES.get(business.country, business.country)},
        "region": None,
        "telephone": business.telephone,
        "mobile": None,
        "website": None,
        "is_demo": False,
        "ni_based": False,
        "subscriptions": [{"id": "ACCOUNTING", "displayed_as": "Accounting", "active": True, "status": "active",
                           "created_at": iso(SEED_TIME), "updated_at": iso(SEED_TIME)}],
        "created_at": iso(SEED_TIME),
        "updated_at": iso(SEED_TIME),
    }


def business_link(business: Business) -> dict:
    """Return a /businesses list item as the live API sends it: displayed_as, id, $path."""
    return {"displayed_as": business.name, "id": business.id, "$path": f"/businesses/{business.id}"}


def user_json(user: SageUser) -> dict:
    """Return the signed-in Sage user in the published User shape."""
    return {
        "id": user.id,
        "displayed_as": f"{user.first_name} {user.last_name}",
        "first_name": user.first_name,
        "last_name": user.last_name,
        "initials": f"{user.first_name[0]}{user.last_name[0]}",
        "email": user.email,
        "locale": user.locale,
        "created_at": iso(SEED_TIME),
        "updated_at": iso(SEED_TIME),
    }


# ------------------------------------------------------------------------ contacts

def validate_contact(data: dict, business: Business, creating: bool, contact_id: str | None = None) -> None:
    """Raise Invalid unless `data` is an acceptable contact body for this business."""
    errors: list[tuple[str, str]] = []
    name = data.get("name")
    if creating or "name" in data:
        if not isinstance(name, str) or not name.strip():
            errors.append(("name", "name can't be blank"))
    if creating or "contact_type_ids" in data:
        type_ids = data.get("contact_type_ids")
        if not isinstance(type_ids, list) or not type_ids:
            errors.append(("contact_type_ids", "contact_type_ids can't be blank"))
        elif any(t not in business.contact_types for t in type_ids):
            errors.append(("contact_type_ids", "contact_type_ids must be CUSTOMER or VENDOR"))
    _check_strings(data, CONTACT_LIMITS, "", errors)
    reference = data.get("reference")
    if isinstance(reference, str) and reference:
        holder = business.contact_with_reference(reference)
        if holder is not None and holder != contact_id:
            errors.append(("reference", "reference has already been taken"))
    for key in ("main_address", "delivery_address"):
        if data.get(key) is not None:
            if not isinstance(data[key], dict):
                errors.append((key, f"{key} must be an object"))
            else:
                _check_strings(data[key], ADDRESS_LIMITS, f"{key}.", errors)
    person = data.get("main_contact_person")
    if person is not None:
        if not isinstance(person, dict):
            errors.append(("main_contact_person", "main_contact_person must be an object"))
        else:
            _check_strings(person, PERSON_LIMITS, "main_contact_person.", errors)
            email = person.get("email")
            if isinstance(email, str) and email and "@" not in email:
                errors.append(("main_contact_person.email", "main_contact_person.email is invalid"))
    _check_number(data, "credit_limit", "credit_limit", errors)
    _check_number(data, "credit_days", "credit_days", errors, integer=True)
    account_id = data.get("default_sales_ledger_account_id")
    if account_id is not None and account_id not in business.ledger_accounts:
        errors.append(("default_sales_ledger_account_id", "default_sales_ledger_account_id is not a ledger account"))
    rate_id = data.get("default_sales_tax_rate_id")
    if rate_id is not None and rate_id not in business.tax_rates:
        errors.append(("default_sales_tax_rate_id", "default_sales_tax_rate_id is not a tax rate"))
    if errors:
        raise Invalid(errors)


CONTACT_FIELDS = ("name", "reference", "contact_type_ids", "tax_number", "notes", "locale", "credit_limit",
                  "credit_days", "credit_terms_and_conditions", "registered_number", "aux_reference",
                  "source_guid", "default_sales_ledger_account_id", "default_sales_tax_rate_id")


def apply_contact(contact: dict, data: dict, now: float) -> dict:
    """Copy writable fields from a validated body onto a stored contact."""
    for name in CONTACT_FIELDS:
        if name in data:
            contact[name] = data[name]
    if data.get("credit_limit") is not None:
        contact["credit_limit"] = decimal_value(data["credit_limit"])
    if data.get("credit_days") is not None:
        contact["credit_days"] = int(decimal_value(data["credit_days"]))
    for key in ("main_address", "delivery_address", "main_contact_person", "bank_account_details"):
        if isinstance(data.get(key), dict):
            merged = {**(contact.get(key) or {"id": new_id()}), **data[key]}
            contact[key] = merged
    contact["updated_at"] = now
    return contact


def _address_json(address: dict | None, kind: str, contact_id: str) -> dict | None:
    if not address:
        return None
    country_id = address.get("country_id") or "GB"
    return {
        "id": address["id"],
        "displayed_as": ", ".join(filter(None, (address.get("address_line_1"), address.get("city"),
                                                 address.get("postal_code")))),
        "$path": f"/addresses/{address['id']}",
        "address_line_1": address.get("address_line_1"),
        "address_line_2": address.get("address_line_2"),
        "city": address.get("city"),
        "postal_code": address.get("postal_code"),
        "region": address.get("region"),
        "name": address.get("name"),
        "country": {"id": country_id, "displayed_as": COUNTRIES.get(country_id, country_id),
                    "$path": f"/countries/{country_id}"},
        "address_type": {"id": kind, "displayed_as": kind.title(), "$path": f"/address_types/{kind}"},
        "contact": {"id": contact_id, "$path": f"/contacts/{contact_id}"},
        "is_main_address": kind == "ACCOUNTS",
    }


def contact_display(contact: dict) -> str:
    """Return how Sage displays a contact: 'Name (REFERENCE)'."""
    return f"{contact['name']} ({contact['reference']})" if contact.get("reference") else contact["name"]


def contact_json(contact: dict, business: Business, base_url: str) -> dict:
    """Return a stored contact in the published Contact shape."""
    invoices = [i for i in business.invoices.values() if i["contact_id"] == contact["id"]]
    balance = sum((money(i["outstanding"]) for i in invoices), Decimal("0"))
    person = contact.get("main_contact_person")
    account = business.ledger_accounts.get(contact.get("default_sales_ledger_account_id") or "")
    rate = business.tax_rates.get(contact.get("default_sales_tax_rate_id") or "")
    return {
        "id": contact["id"],
        "displayed_as": contact_display(contact),
        "$path": f"/contacts/{contact['id']}",
        "created_at": iso(contact["created_at"]),
        "updated_at": iso(contact["updated_at"]),
        "deleted_at": None,
        "links": [{"href": f"{base_url}_sandbox/#contact-{contact['id']}", "rel": "alternate",
                   "type": "text/html"}],
        "contact_types": [base_json("contact_types", business.contact_types[t]) for t in contact["contact_type_ids"]],
        "name": contact["name"],
        "reference": contact.get("reference"),
        "default_sales_ledger_account": link("ledger_accounts", account["id"],
                                             f"{account['name']} ({account['nominal_code']})") if account else None,
        "default_sales_tax_rate": link("tax_rates", rate["id"], rate["name"]) if rate else None,
        "default_purchase_ledger_account": None,
        "tax_number": contact.get("tax_number"),
        "notes": contact.get("notes"),
        "locale": contact.get("locale") or "en",
        "main_address": _address_json(contact.get("main_address"), "ACCOUNTS", contact["id"]),
        "delivery_address": _address_json(contact.get("delivery_address"), "DELIVERY", contact["id"]),
        "main_contact_person": {
            "id": person["id"],
            "displayed_as": person.get("name") or contact["name"],
            "$path": f"/contact_persons/{person['id']}",
            "name": person.get("name"),
            "job_title": person.get("job_title"),
            "telephone": person.get("telephone"),
            "mobile": person.get("mobile"),
            "email": person.get("email"),
            "fax": person.get("fax"),
            "is_main_contact": True,
            "is_preferred_contact": bool(person.get("is_preferred_contact", False)),
            "contact_person_types": [{"id": "ACCOUNTS", "displayed_as": "Accounts",
                                      "$path": "/contact_person_types/ACCOUNTS"}],
        } if person else None,
        "bank_account_details": {k: v for k, v in (contact.get("bank_account_details") or {}).items()
                                 if k in ("account_name", "account_number", "sort_code", "bic", "iban")} or None,
        "credit_limit": Decimal(str(contact.get("credit_limit") or 0)),
        "credit_days": contact.get("credit_days") if contact.get("credit_days") is not None else 30,
        "credit_terms": None,
        "credit_terms_and_conditions": contact.get("credit_terms_and_conditions"),
        "product_sales_price_type": None,
        "registered_number": contact.get("registered_number"),
        "aux_reference": contact.get("aux_reference"),
        "source_guid": contact.get("source_guid"),
        "currency": CURRENCY,
        "balance": balance,
        "deletable": not invoices,
        "email": person.get("email") if person else None,
        "system": False,
        "is_active": True,
        "gdpr_obfuscated": False,
        "has_unfinished_recurring_invoices": False,
        "cis_registered": False,
        "ni_based": False,
        "gb_based": business.country == "GB",
        "destination_vat_blocking": False,
        "tax_treatment": {"home_tax": True, "eu_tax_registered": False, "eu_not_tax_registered": False,
                          "rest_of_world_tax": False, "is_importer": False},
        "tax_calculation": None,
        "auxiliary_account": None,
    }


# ------------------------------------------------------------------------ sales invoices

def build_invoice(data: dict, business: Business, default_status: str, now: float) -> dict:
    """Validate a sales invoice body and return the record to store; raises Invalid."""
    errors: list[tuple[str, str]] = []
    contact = business.contacts.get(data.get("contact_id") or "")
    if not data.get("contact_id"):
        errors.append(("contact_id", "contact_id can't be blank"))
    elif contact is None:
        errors.append(("contact_id", "contact_id does not match a contact in this business"))
    if not _valid_date(data.get("date")):
        errors.append(("date", "date can't be blank and must be a date (YYYY-MM-DD)"))
    if data.get("due_date") is not None and not _valid_date(data["due_date"]):
        errors.append(("due_date", "due_date must be a date (YYYY-MM-DD)"))
    _check_strings(data, INVOICE_LIMITS, "", errors)
    status_id = data.get("status_id") or default_status
    if status_id not in CREATABLE_STATUSES:
        errors.append(("status_id", f"status_id must be one of {', '.join(CREATABLE_STATUSES)}"))
    raw_lines = data.get("invoice_lines")
    lines = []
    if not isinstance(raw_lines, list) or not raw_lines:
        errors.append(("invoice_lines", "invoice_lines can't be blank"))
        raw_lines = []
    for number, line in enumerate(raw_lines, start=1):
        if not isinstance(line, dict):
            errors.append(("invoice_lines", f"Line {number}: must be an object"))
            continue
        if not isinstance(line.get("description"), str) or not line["description"].strip():
            errors.append(("invoice_lines.description", f"Line {number}: description can't be blank"))
        account = business.ledger_accounts.get(line.get("ledger_account_id") or "")
        if account is None:
            errors.append(("invoice_lines.ledger_account_id",
                           f"Line {number}: ledger_account_id is not a ledger account of this business"))
        # Live Sage accepts numbers sent as strings ("12.50") as well as JSON numbers.
        unit_price = decimal_value(line.get("unit_price"))
        quantity = decimal_value(line.get("quantity", 1))
        if unit_price is None:
            errors.append(("invoice_lines.unit_price", f"Line {number}: unit_price must be a number"))
        if quantity is None or quantity <= 0:
            errors.append(("invoice_lines.quantity", f"Line {number}: quantity must be a positive number"))
        rate_id = line.get("tax_rate_id") or (account or {}).get("tax_rate_id")
        if line.get("tax_rate_id") is not None and line["tax_rate_id"] not in business.tax_rates:
            errors.append(("invoice_lines.tax_rate_id", f"Line {number}: tax_rate_id is not a tax rate"))
        if errors:
            continue
        net = money(quantity * unit_price)
        tax = money(net * Decimal(str(business.tax_rates[rate_id]["percentage"])) / 100)
        lines.append({"id": new_id(), "description": line["description"], "ledger_account_id": account["id"],
                      "quantity": quantity, "unit_price": unit_price, "tax_rate_id": rate_id,
                      "net": net, "tax": tax, "total": net + tax})
    if errors:
        raise Invalid(errors)
    net = sum((line["net"] for line in lines), Decimal("0"))
    tax = sum((line["tax"] for line in lines), Decimal("0"))
    due = data.get("due_date") or (date.fromisoformat(data["date"]) + timedelta(days=30)).isoformat()
    return {
        "id": new_id(),
        "contact_id": contact["id"],
        "contact_name": data.get("contact_name") or contact["name"],
        "contact_reference": data.get("contact_reference") or contact.get("reference"),
        "date": data["date"],
        "due_date": due,
        "reference": data.get("reference"),
        "notes": data.get("notes"),
        "terms_and_conditions": data.get("terms_and_conditions"),
        "status_id": status_id,
        "void_reason": None,
        "lines": lines,
        "net": net,
        "tax": tax,
        "total": net + tax,
        "outstanding": net + tax,
        "created_at": now,
        "updated_at": now,
    }


def invoice_json(invoice: dict, business: Business, base_url: str) -> dict:
    """Return a stored sales invoice in the published SalesInvoice shape."""
    contact = business.contacts.get(invoice["contact_id"])
    status = business.artefact_statuses[invoice["status_id"]]
    contact_link = (link("contacts", contact["id"], contact_display(contact)) if contact
                    else link("contacts", invoice["contact_id"], invoice["contact_name"]))
    zero = Decimal("0")
    return {
        "id": invoice["id"],
        "displayed_as": invoice["invoice_number"],
        "$path": f"/sales_invoices/{invoice['id']}",
        "created_at": iso(invoice["created_at"]),
        "updated_at": iso(invoice["updated_at"]),
        "deleted_at": None,
        "links": [{"href": f"{base_url}_sandbox/#invoice-{invoice['id']}", "rel": "alternate",
                   "type": "text/html"}],
        "editable": invoice["status_id"] in ("DRAFT", "PRO_FORMA", "UNPAID"),
        "transaction_type": {"id": "SALES_INVOICE", "displayed_as": "Sales Invoice",
                             "$path": "/transaction_types/SALES_INVOICE"},
        "contact": contact_link,
        "invoice_number_prefix": "SI-",
        "invoice_number": invoice["invoice_number"],
        "contact_name": invoice["contact_name"],
        "contact_reference": invoice["contact_reference"],
        "date": invoice["date"],
        "due_date": invoice["due_date"],
        "reference": invoice["reference"],
        "notes": invoice["notes"],
        "terms_and_conditions": invoice["terms_and_conditions"],
        "net_amount": invoice["net"],
        "tax_amount": invoice["tax"],
        "total_amount": invoice["total"],
        "payments_allocations_total_amount": zero,
        "payments_allocations_total_discount": zero,
        "total_paid": zero,
        "outstanding_amount": invoice["outstanding"],
        "currency": CURRENCY,
        "exchange_rate": Decimal("1"),
        "inverse_exchange_rate": Decimal("1"),
        "base_currency_net_amount": invoice["net"],
        "base_currency_tax_amount": invoice["tax"],
        "base_currency_total_amount": invoice["total"],
        "base_currency_outstanding_amount": invoice["outstanding"],
        "total_quantity": sum((Decimal(str(line["quantity"])) for line in invoice["lines"]), zero),
        "total_discount_amount": zero,
        "status": base_json("artefact_statuses", status),
        "sent": False,
        "sent_by_email": False,
        "void_reason": invoice["void_reason"],
        "invoice_lines": [_line_json(line, business) for line in invoice["lines"]],
        "last_paid": None,
        "tax_reconciled": False,
        "migrated": False,
    }


def _line_json(line: dict, business: Business) -> dict:
    account = business.ledger_accounts[line["ledger_account_id"]]
    rate = business.tax_rates[line["tax_rate_id"]]
    return {
        "id": line["id"],
        "displayed_as": line["description"],
        "description": line["description"],
        "ledger_account": link("ledger_accounts", account["id"], f"{account['name']} ({account['nominal_code']})"),
        "quantity": Decimal(str(line["quantity"])),
        "unit_price": Decimal(str(line["unit_price"])),
        "net_amount": line["net"],
        "tax_rate": link("tax_rates", rate["id"], rate["name"]),
        "tax_amount": line["tax"],
        "total_amount": line["total"],
        "unit_price_includes_tax": False,
        "discount_amount": Decimal("0"),
        "discount_percentage": Decimal("0"),
        "trade_of_asset": False,
    }
