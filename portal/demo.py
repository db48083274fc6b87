"""Demo data for development and tests: Harbour Auto and its three branches (idempotent)."""
from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal

from portal import accounts, two_factor
from portal.extensions import db
from portal.models import (
    Branch,
    Business,
    Contact,
    ContactKind,
    Invoice,
    InvoiceLine,
    Role,
    find_user_by_email,
    utcnow,
)

DEMO_PASSWORD = "demo-password"
CUSTOMER_EMAIL = "owner@harbour-auto.test"
SUPPORT_EMAIL = "support@portal.test"
BRANCHES = (
    # name, head office, shares with head office
    ("Sydney", True, False),
    ("Parramatta", False, True),
    ("Newcastle", False, False),
)
_FIRST = "Ava Ben Chloe Dan Ella Finn Grace Harry Isla Jack Kate Liam Mia Noah Olive Sam Tom Zoe".split()
_LAST = "Nguyen Smith Patel Brown Wilson Taylor Martin Lee Walker Young King Wright Scott Green".split()
_SUPPLIERS = ("Repco", "Burson Auto Parts", "Bapcor Trade", "Castrol Lubricants", "Bridgestone Tyres")
_WORK = ("Logbook service", "Brake pads and rotors", "Wheel alignment", "Battery replacement",
         "Air-con regas", "Timing belt", "Roadworthy inspection", "Tyre fitting")


def load(contacts_per_branch: int = 300, invoices_per_branch: int = 200) -> str:
    """Create the demo business and users if missing; returns a one-line summary."""
    if db.session.scalar(db.select(Business).where(Business.name == "Harbour Auto")) is not None:
        return "Demo data already present (Harbour Auto)."
    rng = random.Random(20261125)
    business = Business(name="Harbour Auto")
    db.session.add(business)
    for name, head_office, shares in BRANCHES:
        business.branches.append(Branch(name=name, is_head_office=head_office, shares_with_head_office=shares))
    db.session.flush()
    if find_user_by_email(CUSTOMER_EMAIL) is None:
        accounts.create_user(CUSTOMER_EMAIL, DEMO_PASSWORD, Role.CUSTOMER, business=business, name="Hannah Owner")
    if find_user_by_email(SUPPORT_EMAIL) is None:
        support = accounts.create_user(SUPPORT_EMAIL, DEMO_PASSWORD, Role.SUPPORT, name="Sam Support",
                                       is_support_lead=True)
        two_factor.set_up(support, two_factor.new_secret())
    for branch in business.branches:
        _ledger(branch, rng, contacts_per_branch, invoices_per_branch)
    db.session.commit()
    return (f"Loaded Harbour Auto: {len(BRANCHES)} branches, {contacts_per_branch} contacts and "
            f"{invoices_per_branch} invoices each. Sign in as {CUSTOMER_EMAIL} or {SUPPORT_EMAIL} "
            f"with password {DEMO_PASSWORD!r} (support's second step: `flask --app app demo-totp`).")


def _ledger(branch: Branch, rng: random.Random, n_contacts: int, n_invoices: int) -> None:
    prefix = branch.name[:3].upper()
    contacts = []
    for i in range(n_contacts):
        supplier = i % 15 == 0
        name = rng.choice(_SUPPLIERS) if supplier else f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        contact = Contact(
            branch_id=branch.id,
            kind=ContactKind.SUPPLIER if supplier else ContactKind.CUSTOMER,
            name=f"{name} ({prefix}-{i + 1:04d})" if supplier else name,
            email=f"{name.split()[0].lower()}.{i + 1}@example.test",
            phone=f"04{rng.randint(10000000, 99999999)}",
            reference=f"{prefix}-C{i + 1:05d}",
        )
        if i % 40 == 39:
            contact.deleted_at = utcnow()
        contacts.append(contact)
    db.session.add_all(contacts)
    db.session.flush()
    customers = [c for c in contacts if c.kind == ContactKind.CUSTOMER and c.deleted_at is None]
    start = date.today() - timedelta(days=120)
    for i in range(n_invoices):
        issued = start + timedelta(days=rng.randint(0, 119))
        invoice = Invoice(
            branch_id=branch.id,
            contact_id=rng.choice(customers).id,
            number=f"{prefix}-INV-{i + 1:05d}",
            issued_on=issued,
            due_on=issued + timedelta(days=14),
        )
        for _ in range(rng.randint(1, 3)):
            invoice.lines.append(InvoiceLine(
                description=rng.choice(_WORK),
                quantity=Decimal(rng.randint(1, 2)),
                unit_price=Decimal(rng.randint(80, 900)),
            ))
        invoice.total = sum((line.amount for line in invoice.lines), Decimal("0")) * Decimal("1.1")
        if i % 25 == 24:
            invoice.deleted_at = utcnow()
        db.session.add(invoice)


def support_code() -> str:
    """The demo support user's current two-step code (setting the second factor up if missing)."""
    support = find_user_by_email(SUPPORT_EMAIL)
    if support is None:
        raise LookupError("No demo support user: run `flask --app app demo-data` first.")
    if not two_factor.is_enrolled(support):
        two_factor.set_up(support, two_factor.new_secret())
    return two_factor.current_code(support)


SAGE_DEMO_BRANCH = "Sydney"
SAGE_DEMO_LOGIN = "sage@harbour-auto.test"


def connect_sage_branch(sandbox_url: str) -> str:
    """Development only: sign Sydney in to the sandbox's Harbour Auto Pty Ltd and start its first sync,
    so a new user sees a live schedule, token age and job history at first sight.

    The sandbox keeps nothing between runs, so this runs at every `make run`: it signs in again
    through the sandbox's real consent page and token endpoint, and when the sandbox no longer holds
    what the branch sent before, it clears the branch's Sage ids and lets the sync send them again.
    """
    from flask import current_app

    from portal.integrations.sage import connect as sage_connect
    from portal.integrations.sage import enqueue as sage_jobs
    from portal.integrations.sage.client import OAuthClient, SageError
    from portal.integrations.sage.tokens import store_tokens
    from portal.jobqueue import JobRefused
    from portal.models import Connection, ConnectionState, Provider
    from sage_sandbox.seed import hex_id
    from sage_sandbox.testing import authorize

    branch = db.session.scalar(db.select(Branch).join(Business).where(
        Business.name == "Harbour Auto", Branch.name == SAGE_DEMO_BRANCH))
    owner = find_user_by_email(CUSTOMER_EMAIL)
    if branch is None or owner is None:
        return "No demo data to connect."
    if branch.connection is not None and branch.connection.provider != Provider.SAGE and branch.connection.is_active:
        return f"{branch.name} is connected to another provider; left as it is."
    config = current_app.config
    callback = sage_connect.redirect_uri()
    try:
        code = authorize(sandbox_url, SAGE_DEMO_LOGIN, client_id=config["SAGE_CLIENT_ID"],
                         redirect_uri=callback)["code"]
        tokens = OAuthClient.from_config(config).exchange_code(code, callback)
    except (RuntimeError, SageError, KeyError) as exc:
        return f"Could not sign {branch.name} in to the Sage sandbox ({exc})."
    connection = branch.connection or Connection(branch_id=branch.id, provider=Provider.SAGE)
    connection.provider, connection.state, connection.state_reason = Provider.SAGE, ConnectionState.CONNECTED, None
    connection.connected_by_id = owner.id
    connection.connected_at = connection.connected_at or utcnow()
    connection.disconnected_at = None
    db.session.add(connection)
    db.session.flush()
    store_tokens(connection, tokens)
    lead = hex_id("business", "Harbour Auto Pty Ltd")
    sandbox_is_fresh = connection.ids_sage_business_id == lead  # sent there in an earlier run of the sandbox
    connection.sage_business_id = connection.ids_sage_business_id = lead
    connection.sage_business_name = "Harbour Auto Pty Ltd"
    if sandbox_is_fresh:
        sage_connect.untrust_sage_ids(branch.id)  # this sandbox run holds none of them yet
    db.session.commit()
    try:
        sage_jobs.start_sync(branch, "contacts", requested_by=owner, note=" (demo set-up)")
    except JobRefused:
        pass  # already queued or running
    return f"Signed {branch.name} in to the Sage sandbox (Harbour Auto Pty Ltd) and queued its first contact sync."
