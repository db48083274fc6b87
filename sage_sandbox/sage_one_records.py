"""Validation, JSON shapes and OData list handling of Sage One (2.0.0) records."""

import re
import uuid
import zlib
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from .seed import SEED_TIME, Company

MAX_RESULTS = 100
LINE_TYPE_ITEM, LINE_TYPE_ACCOUNT = 0, 1
STATUS_UNPAID, STATUS_PART_PAID, STATUS_REVERSED = (1, "Unpaid"), (2, "Partially Paid"), (4, "Reversed")


class SageOneError(Exception):
    """A 2.0.0 failure: an HTTP status and the message for the body."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def stamp(ts: float) -> str:
    """Format a time as Sage One does: ISO-8601 without an offset."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def money(value) -> Decimal:
    """Round to cents."""
    return Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _date(value, field: str) -> str:
    if isinstance(value, str):
        try:
            return date.fromisoformat(value[:10]).isoformat()
        except ValueError:
            pass
    raise SageOneError(400, f"{field} is required and must be a date (yyyy-mm-dd).")


def _number(value, field: str, default=None):
    if value is None:
        if default is None:
            raise SageOneError(400, f"{field} is required.")
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SageOneError(400, f"{field} must be a number.")
    return value


# ------------------------------------------------------------------------ company, accounts, tax types

def _guid(*parts) -> str:
    """A stable GUID for a seeded or stored record, so repeated reads agree."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "sage-one-sandbox:" + ":".join(map(str, parts))))


def company_json(company: Company, is_owner: bool = True) -> dict:
    """Return a company as Company/Get lists it, with the members of the API help's sample payload."""
    seeded = stamp(SEED_TIME)
    seed_date = seeded[:10]
    address = ["1 Hunter Street", company.city, "NSW", "2300", "Australia"]
    return {
        "ID": company.id,
        "Name": company.name,
        "CurrencySymbol": "$",
        "CurrencyDecimalDigits": 2,
        "NumberDecimalDigits": 2,
        "DecimalSeparator": ".",
        "HoursDecimalDigits": 2,
        "ItemCostPriceDecimalDigits": 2,
        "ItemSellingPriceDecimalDigits": 2,
        **{f"PostalAddress{n}": line for n, line in enumerate(address, 1)},
        "GroupSeparator": ",",
        "RoundingValue": 0,
        "TaxSystem": 0,
        "RoundingType": 0,
        "AgeMonthly": True,
        "DisplayInactiveItems": False,
        "WarnWhenItemCostIsZero": False,
        "DoNotAllowProcessingIntoNegativeQuantities": False,
        "WarnWhenItemQuantityIsZero": False,
        "WarnWhenItemSellingBelowCost": False,
        "CountryId": 13,
        "CompanyEntityTypeId": 1,
        "TakeOnBalanceDate": seed_date,
        "EnableCustomerZone": False,
        "EnableAutomaticBankFeedRefresh": False,
        "ContactName": "Accounts",
        "Telephone": "02 4900 0000",
        "Fax": "",
        "Mobile": "",
        "Email": f"accounts@{company.city.lower()}.harbour-auto.test",
        "IsPrimarySendingEmail": True,
        **{f"PostalAddress0{n}": line for n, line in enumerate(address, 1)},
        **{f"CompanyInfo0{n}": "" for n in range(1, 6)},
        "IsOwner": is_owner,
        "UseCCEmail": False,
        "CCEmail": "",
        "DateFormatId": 1,
        "CheckForDuplicateCustomerReferences": False,
        "CheckForDuplicateSupplierReferences": False,
        "DisplayName": company.name,
        "DisplayInactiveCustomers": False,
        "DisplayInactiveSuppliers": False,
        "DisplayInactiveTimeProjects": False,
        "UseInclusiveProcessingByDefault": False,
        "LockProcessing": False,
        "LockProcessingDate": None,
        "LockTimesheetProcessing": False,
        "LockTimesheetProcessingDate": None,
        "TaxPeriodFrequency": 3,
        "PreviousTaxPeriodEndDate": "2024-12-31",
        "PreviousTaxReturnDate": None,
        "UseNoreplyEmail": False,
        "AgeingBasedOnDueDate": False,
        "UseLogoOnEmails": False,
        "UseLogoOnCustomerZone": False,
        "City": company.city,
        "State": "NSW",
        "Country": "Australia",
        "HomeCurrencyId": 1,
        "CurrencyId": 1,
        "Created": seeded,
        "Modified": seeded,
        "Active": True,
        "TaxNumber": company.tax_number,
        "RegisteredName": company.name,
        "RegistrationNumber": company.tax_number,
        "IsPracticeAccount": False,
        "LogoPositionID": 0,
        "Attachment": None,
        "CompanyTaxNumber": company.tax_number,
        "TaxOffice": "",
        "CustomerZoneGuid": _guid("company", company.id),
        "ClientTypeId": 0,
        "DisplayTotalTypeId": 0,
        "DisplayInCompanyConsole": True,
        "LastLoginDate": seed_date,
        "Status": 0,
    }


# Account types by category (the numbering is the sandbox's own; Sage's enumeration is not published).
ACCOUNT_TYPES = {"Sales": 1, "Other Income": 2, "Cost of Sales": 3}


def account_json(account: dict, company: Company) -> dict:
    """Return a ledger account as Account/Get lists it, with its category and default tax type."""
    seeded = stamp(SEED_TIME)
    category = account["Category"]
    tax_type = company.tax_types.get(account.get("DefaultTaxTypeId"))
    return {
        "ID": account["ID"],
        "Name": account["Name"],
        "Category": {"ID": zlib.crc32(category.encode()) % 1000, "Description": category, "Comment": "",
                     "Order": ACCOUNT_TYPES.get(category, 0), "Created": seeded, "Modified": seeded},
        "Active": True,
        "Balance": 0.0,
        "Description": account["Name"],
        "ReportingGroupId": None,
        "UnallocatedAccount": False,
        "IsTaxLocked": False,
        "AccountType": ACCOUNT_TYPES.get(category, 0),
        "HasActivity": False,
        "DefaultTaxTypeId": tax_type["ID"] if tax_type else None,
        "DefaultTaxType": tax_type_json(tax_type) if tax_type else None,
        "Created": seeded,
        "Modified": seeded,
    }


def tax_type_json(tax_type: dict) -> dict:
    """Return a tax type as TaxType/Get lists it."""
    return {**tax_type, "HasActivity": False, "IsManualTax": False, "Active": True,
            "Created": stamp(SEED_TIME), "Modified": stamp(SEED_TIME)}


# ------------------------------------------------------------------------ customers

CUSTOMER_DEFAULTS = {
    "Name": "", "Category": None, "SalesRepresentativeId": None, "SalesRepresentative": None, "TaxReference": "",
    "ContactName": "", "Telephone": "", "Fax": "", "Mobile": "", "Email": "", "WebAddress": "", "Active": True,
    "IsObfuscated": False, "Balance": 0.0, "CreditLimit": 0.0, "CommunicationMethod": 0,
    **{f"PostalAddress0{i}": "" for i in range(1, 6)},
    **{f"DeliveryAddress0{i}": "" for i in range(1, 6)},
    "AutoAllocateToOldestInvoice": True, "EnableCustomerZone": False, "CustomerZoneGuid": None, "CashSale": False,
    **{f"TextField{i}": "" for i in range(1, 4)},
    **{f"NumericField{i}": 0.0 for i in range(1, 4)},
    **{f"YesNoField{i}": False for i in range(1, 4)},
    **{f"DateField{i}": None for i in range(1, 4)},
    "DefaultPriceListId": 1, "DefaultPriceList": None, "DefaultPriceListName": "Selling Price",
    "AcceptsElectronicInvoices": False, "BusinessRegistrationNumber": "", "TaxStatusVerified": None,
    "CurrencyId": 1, "CurrencySymbol": "$", "HasActivity": False, "DefaultDiscountPercentage": 0.0,
    "DefaultTaxTypeId": None, "DefaultTaxType": None, "DueDateMethodId": 0, "DueDateMethodValue": 0, "CityId": None,
    "HasSpecialCountryTax": False, "AccountingAgreement": False, "HasSpecialCountryTaxActivity": False,
}
DEFAULT_PRICE_LIST = {"ID": 1, "Description": "Selling Price", "IsDefault": True}
CUSTOMER_READ_ONLY = {"ID", "Balance", "HasActivity", "IsObfuscated", "Created", "Modified", "CurrencySymbol",
                      "SalesRepresentative", "CustomerZoneGuid", "DefaultPriceListId", "DefaultPriceList",
                      "DefaultPriceListName", "DefaultTaxType", "TaxStatusVerified", "HasSpecialCountryTaxActivity"}
CUSTOMER_WRITABLE = set(CUSTOMER_DEFAULTS) - CUSTOMER_READ_ONLY


def save_customer(company: Company, body: dict, existing: dict | None, now: float, new_id) -> dict:
    """Create or update a customer from a Save body; raises SageOneError(400) on invalid data."""
    name = body.get("Name", existing["Name"] if existing else None)
    if not isinstance(name, str) or not name.strip():
        raise SageOneError(400, "Customer Name is required.")
    if len(name) > 100:
        raise SageOneError(400, "Customer Name cannot be longer than 100 characters.")
    email = body.get("Email")
    if isinstance(email, str) and email and "@" not in email:
        raise SageOneError(400, "Email address is invalid.")
    customer = existing or {"ID": new_id(), "Created": now}
    for key, value in body.items():
        if key in CUSTOMER_WRITABLE:
            customer[key] = value
    customer["Modified"] = now
    return customer


def customer_json(customer: dict, company: Company) -> dict:
    """Return a stored customer with every documented field."""
    invoices = [i for i in company.invoices.values() if i["CustomerId"] == customer["ID"]]
    tax_type = company.tax_types.get(customer.get("DefaultTaxTypeId"))
    return {
        "ID": customer["ID"],
        **{k: customer.get(k, v) for k, v in CUSTOMER_DEFAULTS.items()},
        "Balance": float(sum((money(i["AmountDue"]) for i in invoices), Decimal("0"))),
        "HasActivity": bool(invoices),
        "CustomerZoneGuid": _guid("customer", customer["ID"]),
        "DefaultPriceList": dict(DEFAULT_PRICE_LIST),
        "DefaultTaxType": tax_type_json(tax_type) if tax_type else None,
        "Created": stamp(customer["Created"]),
        "Modified": stamp(customer["Modified"]),
    }


# ------------------------------------------------------------------------ invoices and credit notes

def _optional_id(body: dict, field: str):
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise SageOneError(400, f"{field} must be an integer.")
    return value


def build_lines(company: Company, raw_lines, inclusive: bool) -> list:
    """Validate document lines and return them with computed amounts; raises SageOneError(400)."""
    if not isinstance(raw_lines, list) or not raw_lines:
        raise SageOneError(400, "At least one line is required.")
    lines = []
    for number, raw in enumerate(raw_lines, start=1):
        if not isinstance(raw, dict):
            raise SageOneError(400, f"Line {number} is invalid.")
        line_type = raw.get("LineType", LINE_TYPE_ITEM)
        selection = raw.get("SelectionId")
        # Items are not modelled, so only Account lines (LineType 1) can select anything.
        if line_type != LINE_TYPE_ACCOUNT or selection not in company.accounts:
            raise SageOneError(400, "Valid Selection Required")
        tax_type_id = raw.get("TaxTypeId") or 0
        if tax_type_id and tax_type_id not in company.tax_types:
            raise SageOneError(400, f"Line {number}: Valid Tax Type Required")
        percentage = Decimal(str(company.tax_types[tax_type_id]["Percentage"])) if tax_type_id else Decimal("0")
        quantity = Decimal(str(_number(raw.get("Quantity"), "Quantity", default=1)))
        if quantity <= 0:
            raise SageOneError(400, f"Line {number}: Quantity must be greater than zero.")
        if inclusive:
            unit_inclusive = money(_number(raw.get("UnitPriceInclusive"), f"Line {number}: UnitPriceInclusive"))
            total = money(unit_inclusive * quantity)
            exclusive = money(total * 100 / (100 + percentage))
            unit_exclusive = money(unit_inclusive * 100 / (100 + percentage))
        else:
            unit_exclusive = money(_number(raw.get("UnitPriceExclusive"), f"Line {number}: UnitPriceExclusive"))
            exclusive = money(unit_exclusive * quantity)
            total = money(exclusive * (100 + percentage) / 100)
            unit_inclusive = money(unit_exclusive * (100 + percentage) / 100)
        lines.append({
            "SelectionId": selection, "TaxTypeId": tax_type_id, "Description": str(raw.get("Description") or ""),
            "LineType": line_type, "Quantity": float(quantity), "UnitPriceExclusive": float(unit_exclusive),
            "UnitPriceInclusive": float(unit_inclusive), "Unit": raw.get("Unit") or "",
            "TaxPercentage": float(percentage), "DiscountPercentage": 0.0, "Exclusive": exclusive,
            "Discount": Decimal("0"), "Tax": total - exclusive, "Total": total, "Comments": raw.get("Comments") or "",
            **{f"AnalysisCategoryId{n}": _optional_id(raw, f"AnalysisCategoryId{n}") for n in range(1, 4)},
            "$TrackingCode": str(raw.get("$TrackingCode") or ""), "CurrencyId": 1,
            "UnitCost": float(_number(raw.get("UnitCost"), f"Line {number}: UnitCost", default=0.0)),
            "UID": str(uuid.uuid4()),
        })
    return lines


def save_document(company: Company, body: dict, existing: dict | None, now: float, number: str,
                  customer_id=None, lines=None) -> dict:
    """Validate the header of a TaxInvoice or CustomerReturn body and return the stored document."""
    customer_id = customer_id if customer_id is not None else body.get("CustomerId")
    customer = company.customers.get(customer_id) if isinstance(customer_id, int) else None
    if not customer_id:
        raise SageOneError(400, "Customer is required.")
    if customer is None:
        raise SageOneError(400, "Customer not found.")
    doc_date = _date(body.get("Date"), "Date")
    due = _date(body["DueDate"], "DueDate") if body.get("DueDate") else \
        (date.fromisoformat(doc_date) + timedelta(days=30)).isoformat()
    inclusive = bool(body.get("Inclusive", False))
    if lines is None:
        lines = build_lines(company, body.get("Lines"), inclusive)
    document = existing or {"ID": None, "Created": now, "DocumentNumber": number, "UID": str(uuid.uuid4())}
    exclusive = sum((line["Exclusive"] for line in lines), Decimal("0"))
    tax = sum((line["Tax"] for line in lines), Decimal("0"))
    # The addresses default to the customer's, as Sage fills them in when a document is made.
    addresses = {f"{kind}0{n}": str(body.get(f"{kind}0{n}", customer.get(f"{kind}0{n}")) or "")
                 for kind in ("PostalAddress", "DeliveryAddress") for n in range(1, 6)}
    document.update({
        "CustomerId": customer["ID"], "CustomerName": customer["Name"], "Date": doc_date, "DueDate": due,
        "Inclusive": inclusive, "Reference": str(body.get("Reference") or ""),
        "Message": str(body.get("Message") or ""),
        "ExternalReference": str(body.get("ExternalReference") or ""),
        "SalesRepresentativeId": _optional_id(body, "SalesRepresentativeId"), **addresses,
        "Lines": lines, "Exclusive": exclusive, "Tax": tax, "Total": exclusive + tax, "Modified": now,
    })
    document["AmountDue"] = exclusive + tax
    return document


def _line_json(line: dict, line_id: int) -> dict:
    return {"ID": line_id, **{k: (float(v) if isinstance(v, Decimal) else v) for k, v in line.items()}}


def document_json(document: dict, company: Company, include_lines: bool, include_customer: bool = False) -> dict:
    """Return a TaxInvoice or CustomerReturn with its computed amounts (and the whole Customer when asked)."""
    status_id, status = document.get("Status", STATUS_UNPAID)
    customer = company.customers.get(document["CustomerId"])
    currency_id = (customer or {}).get("CurrencyId", 1)
    out = {
        "ID": document["ID"],
        "Date": document["Date"],
        "DueDate": document["DueDate"],
        "CustomerId": document["CustomerId"],
        "CustomerName": customer["Name"] if customer else document["CustomerName"],
        "Customer": customer_json(customer, company) if include_customer and customer else None,
        "SalesRepresentativeId": document.get("SalesRepresentativeId"),
        "SalesRepresentative": None,
        "StatusId": status_id,
        "Status": status,
        "Paid": False,
        "Locked": document.get("Locked", False),
        "Editable": not document.get("Locked", False),
        "Printed": False,
        "Inclusive": document["Inclusive"],
        "DiscountPercentage": 0.0,
        "TaxReference": "",
        "DocumentNumber": document["DocumentNumber"],
        "Reference": document["Reference"],
        "Message": document["Message"],
        "Discount": 0.0,
        "Exclusive": float(document["Exclusive"]),
        "Tax": float(document["Tax"]),
        "Rounding": 0.0,
        "Total": float(document["Total"]),
        "AmountDue": float(document["AmountDue"]),
        **{f"{kind}0{n}": document.get(f"{kind}0{n}", "")
           for kind in ("PostalAddress", "DeliveryAddress") for n in range(1, 6)},
        "FromDocument": document.get("FromDocument", ""),
        "FromDocumentId": document.get("FromDocumentId", 0),
        "FromDocumentTypeId": document.get("FromDocumentTypeId", 0),
        "AllowOnlinePayment": False,
        "TaxPeriodId": None,
        "CurrencyId": currency_id,
        "Customer_CurrencyId": currency_id,
        "Customer_ExchangeRate": 1.0,
        "HasAttachments": False,
        "HasNotes": False,
        "HasAnticipatedDate": False,
        "AnticipatedDate": None,
        "ExternalReference": document.get("ExternalReference", ""),
        "UID": document.get("UID"),
        "Created": stamp(document["Created"]),
        "Modified": stamp(document["Modified"]),
        "Lines": [_line_json(line, document["ID"] * 100 + n) for n, line in enumerate(document["Lines"], 1)]
        if include_lines else [],
    }
    return out


# ------------------------------------------------------------------------ OData lists

_TERM = re.compile(
    r"^\s*(?:(?P<field>[A-Za-z_][\w/]*)\s+(?P<op>eq|ne|gt|ge|lt|le)\s+(?P<value>'(?:[^']|'')*'|-?\d+(?:\.\d+)?"
    r"|true|false|null)|substringof\(\s*(?P<sub>'(?:[^']|'')*')\s*,\s*(?P<subfield>[A-Za-z_]\w*)\s*\)"
    r"|startswith\(\s*(?P<swfield>[A-Za-z_]\w*)\s*,\s*(?P<sw>'(?:[^']|'')*')\s*\))\s*$",
    re.IGNORECASE)


def _literal(text: str):
    lowered = text.lower()
    if text.startswith("'"):
        return text[1:-1].replace("''", "'")
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "null":
        return None
    return float(text) if "." in text else int(text)


def _field(entity: dict, name: str):
    for key, value in entity.items():
        if key.lower() == name.lower():
            return value
    raise SageOneError(400, f"Could not find a property named '{name}' in the $filter.")


def _compare(left, op: str, right) -> bool:
    if isinstance(left, str) and isinstance(right, str):
        left, right = left.lower(), right.lower()
    try:
        return {"eq": left == right, "ne": left != right}[op] if op in ("eq", "ne") else {
            "gt": left > right, "ge": left >= right, "lt": left < right, "le": left <= right}[op]
    except TypeError:
        return False


def compile_filter(expression: str | None):
    """Compile a basic OData $filter (eq/ne/gt/ge/lt/le, substringof, startswith, joined by and)."""
    if not expression:
        return lambda entity: True
    terms = []
    for part in re.split(r"\s+and\s+", expression.strip(), flags=re.IGNORECASE):
        match = _TERM.match(part)
        if not match:
            raise SageOneError(400, f"The $filter expression '{expression}' is not supported.")
        terms.append(match.groupdict())

    def test(entity: dict) -> bool:
        for term in terms:
            if term["field"]:
                ok = _compare(_field(entity, term["field"]), term["op"].lower(), _literal(term["value"]))
            elif term["subfield"]:
                ok = _literal(term["sub"]).lower() in str(_field(entity, term["subfield"]) or "").lower()
            else:
                ok = str(_field(entity, term["swfield"]) or "").lower().startswith(_literal(term["sw"]).lower())
            if not ok:
                return False
        return True

    return test


def list_response(entities: list, query: dict) -> dict:
    """Filter, order and page entities into {TotalResults, ReturnedResults, Results}."""
    test = compile_filter(query.get("$filter"))
    found = [e for e in entities if test(e)]
    for clause in reversed([c.strip() for c in (query.get("$orderby") or "").split(",") if c.strip()]):
        name, _, direction = clause.partition(" ")
        found.sort(key=lambda e: (_field(e, name) is None, _field(e, name)),
                   reverse=direction.strip().lower() == "desc")
    try:
        skip = int(query.get("$skip") or 0)
        top = int(query.get("$top") or MAX_RESULTS)
    except ValueError:
        raise SageOneError(400, "$skip and $top must be integers.") from None
    if skip < 0 or top < 0:
        raise SageOneError(400, "$skip and $top cannot be negative.")
    page = found[skip: skip + min(top, MAX_RESULTS)]
    return {"TotalResults": len(found), "ReturnedResults": len(page), "Results": page}
