"""Seeded users, businesses and companies the sandbox starts with (and resets to)."""

import hashlib
import uuid
from dataclasses import dataclass, field

PASSWORD = "sandbox-password"
SEED_TIME = 1735689600.0  # 2025-01-01T00:00:00Z, so seeded records have stable timestamps


def hex_id(*parts: str) -> str:
    """Return a stable 32-character lowercase hex id derived from the given parts."""
    return hashlib.md5(":".join(parts).encode()).hexdigest()


def user_uuid(email: str) -> str:
    """Return the stable dashed UUID Sage reports as a user's requested_by_id."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"sage-sandbox:{email}"))


@dataclass
class SageUser:
    id: str
    email: str
    password: str
    first_name: str
    last_name: str
    business_ids: list  # first one is the lead business
    locale: str = "en-GB"


@dataclass
class Business:
    id: str
    name: str
    address_line_1: str
    city: str
    postal_code: str
    telephone: str
    country: str = "GB"
    contact_types: dict = field(default_factory=dict)
    ledger_accounts: dict = field(default_factory=dict)
    tax_rates: dict = field(default_factory=dict)
    artefact_statuses: dict = field(default_factory=dict)
    contacts: dict = field(default_factory=dict)
    invoices: dict = field(default_factory=dict)
    next_invoice_number: int = 1
    requests: int = 0
    # Sandbox-clock times of the first and the last admitted request (0.0: none yet), so a test can
    # tell the rate a business was served at while it was busy: requests over (last - first).
    first_request_at: float = 0.0
    last_request_at: float = 0.0
    limited_per_minute: int = 0  # 429s answered for the per-minute limit
    limited_per_day: int = 0  # 429s answered for the daily budget
    day: int = -1  # the UTC day (days since the epoch) that day_requests counts
    day_requests: int = 0
    # Lower-cased reference -> contact id, so the uniqueness check doesn't scan every contact.
    contact_ids_by_reference: dict = field(default_factory=dict)
    # Deleted contacts, id → (displayed_as, deleted at): what `deleted_since` lists.
    deleted_contacts: dict = field(default_factory=dict)

    def contact_with_reference(self, reference: str) -> str | None:
        """The id of the contact holding this reference (any case), or None."""
        return self.contact_ids_by_reference.get(reference.lower())

    def put_contact(self, contact: dict, previous_reference: str | None = None) -> None:
        """Store a created or updated contact and keep the reference index in step."""
        if previous_reference:
            self.contact_ids_by_reference.pop(previous_reference.lower(), None)
        self.contacts[contact["id"]] = contact
        if contact.get("reference"):
            self.contact_ids_by_reference[contact["reference"].lower()] = contact["id"]

    def remove_contact(self, contact_id: str, now: float | None = None) -> None:
        """Delete a contact and its reference entry, keeping a tombstone for `deleted_since`."""
        contact = self.contacts.pop(contact_id)
        if contact.get("reference"):
            self.contact_ids_by_reference.pop(contact["reference"].lower(), None)
        if now is not None:
            self.deleted_contacts[contact_id] = (contact.get("name") or contact_id, now)


@dataclass
class SageOneUser:
    username: str
    password: str
    company_ids: list
    failures: list = field(default_factory=list)  # timestamps of failed logins
    locked_until: float = 0.0
    lockouts: int = 0  # times the failed-login rule locked the username
    locked_answers: int = 0  # 429s answered because the username was (or became) locked


@dataclass
class Company:
    id: int
    name: str
    tax_number: str
    city: str
    accounts: dict = field(default_factory=dict)
    tax_types: dict = field(default_factory=dict)
    customers: dict = field(default_factory=dict)
    invoices: dict = field(default_factory=dict)
    credit_notes: dict = field(default_factory=dict)
    next_invoice_number: int = 1
    next_credit_note_number: int = 1
    requests: int = 0
    blocks: int = 0  # times a caller of this company was blocked by the rate limit
    limited: int = 0  # rate-limit 429s answered (the one that blocks and every call during a block)


CONTACT_TYPES = [("CUSTOMER", "Customer"), ("VENDOR", "Supplier")]

ARTEFACT_STATUSES = [
    ("DRAFT", "Draft"),
    ("PRO_FORMA", "Pro-Forma"),
    ("UNPAID", "Unpaid"),
    ("PART_PAID", "Part Paid"),
    ("PAID", "Paid"),
    ("VOID", "Void"),
]

# (id, name, percentage)
TAX_RATES = [
    ("GB_STANDARD", "Standard", 20.0),
    ("GB_LOWER", "Lower", 5.0),
    ("GB_ZERO", "Zero", 0.0),
    ("GB_EXEMPT", "Exempt", 0.0),
]

# (nominal code, name, ledger account type, visible in sales, default tax rate)
LEDGER_ACCOUNTS = [
    (4000, "Sales", "SALES", True, "GB_STANDARD"),
    (4010, "Sales - Labour", "SALES", True, "GB_STANDARD"),
    (4020, "Sales - Parts", "SALES", True, "GB_STANDARD"),
    (4900, "Other Income", "OTHER_INCOME", True, "GB_ZERO"),
    (5000, "Cost of Sales - Parts", "DIRECT_EXPENSES", False, "GB_STANDARD"),
    (1100, "Trade Debtors", "CURRENT_ASSETS", False, "GB_ZERO"),
]

SAGE_ONE_ACCOUNTS = [
    ("Sales", "Sales"),
    ("Sales - Labour", "Sales"),
    ("Sales - Parts", "Sales"),
    ("Freight Recovered", "Other Income"),
    ("Cost of Sales", "Cost of Sales"),
]

# (name, percentage, is default)
SAGE_ONE_TAX_TYPES = [("GST", 10.0, True), ("GST Free", 0.0, False), ("Input Taxed", 0.0, False)]

SAGE_BUSINESSES = [
    # (name, address, city, postal code, telephone)
    ("Harbour Auto Pty Ltd", "1 Wharf Road", "Portsmouth", "PO1 3AA", "023 9200 0001"),
    ("Harbour Auto Fleet Services", "9 Dock Lane", "Southampton", "SO14 2AB", "023 8000 0002"),
    ("Solo Tyres & Exhausts", "22 High Street", "Bristol", "BS1 4DJ", "0117 900 0003"),
]

SAGE_USERS = [
    # (email, first name, last name, business names; the first is the lead)
    ("sage@harbour-auto.test", "Harriet", "Harbour", ["Harbour Auto Pty Ltd", "Harbour Auto Fleet Services"]),
    ("solo@harbour-auto.test", "Sol", "Owens", ["Solo Tyres & Exhausts"]),
]

SAGE_ONE_COMPANIES = [
    # (id, name, ABN, city)
    (20001, "Harbour Auto Newcastle", "51 824 753 556", "Newcastle"),
    (20002, "Harbour Auto Maitland", "53 004 085 616", "Maitland"),
    (20003, "Harbour Auto Cessnock", "83 914 571 673", "Cessnock"),
]

SAGE_ONE_USERS = [
    ("newcastle@harbour-auto.test", [20001]),
    ("multi@harbour-auto.test", [20002, 20003]),
]

FIRST_SAGE_ONE_ENTITY_ID = 100001


def build_business(name, address, city, postal_code, telephone) -> Business:
    """Return a business with its lookups seeded and no contacts or invoices."""
    business = Business(hex_id("business", name), name, address, city, postal_code, telephone)
    for type_id, label in CONTACT_TYPES:
        business.contact_types[type_id] = {"id": type_id, "displayed_as": label}
    for status_id, label in ARTEFACT_STATUSES:
        business.artefact_statuses[status_id] = {"id": status_id, "displayed_as": label}
    for rate_id, rate_name, percentage in TAX_RATES:
        business.tax_rates[rate_id] = {"id": rate_id, "name": rate_name, "percentage": percentage}
    for code, account_name, type_id, in_sales, tax_rate_id in LEDGER_ACCOUNTS:
        account_id = hex_id(business.id, "ledger", str(code))
        business.ledger_accounts[account_id] = {
            "id": account_id,
            "nominal_code": code,
            "name": account_name,
            "ledger_account_type_id": type_id,
            "visible_in_sales": in_sales,
            "tax_rate_id": tax_rate_id,
        }
    return business


def build_company(company_id, name, tax_number, city, next_id) -> Company:
    """Return a Sage One company with accounts and tax types; next_id() hands out entity ids."""
    company = Company(company_id, name, tax_number, city)
    for account_name, category in SAGE_ONE_ACCOUNTS:
        account_id = next_id()
        company.accounts[account_id] = {"ID": account_id, "Name": account_name, "Category": category}
    for tax_name, percentage, is_default in SAGE_ONE_TAX_TYPES:
        tax_id = next_id()
        company.tax_types[tax_id] = {"ID": tax_id, "Name": tax_name, "Percentage": percentage, "IsDefault": is_default}
    default_tax_type = next(t["ID"] for t in company.tax_types.values() if t["IsDefault"])
    for account in company.accounts.values():  # made after the accounts, so seeded ids stay as they were
        account["DefaultTaxTypeId"] = default_tax_type
    return company
