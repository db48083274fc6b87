"""Small builders for test data; each commits so the app and a worker see the rows."""
from __future__ import annotations

import itertools
from datetime import date
from decimal import Decimal

from portal import accounts
from portal.extensions import db
from portal.models import (
    Branch,
    Business,
    Connection,
    ConnectionState,
    Contact,
    Invoice,
    InvoiceLine,
    Provider,
    Role,
    utcnow,
)

PASSWORD = "correct-horse-battery"
_seq = itertools.count(1)


def business(name: str | None = None, branches: tuple[str, ...] = ("Main",)) -> Business:
    """A business with branches (the first is head office)."""
    b = Business(name=name or f"Workshop {next(_seq)}")
    for i, branch_name in enumerate(branches):
        b.branches.append(Branch(name=branch_name, is_head_office=i == 0))
    db.session.add(b)
    db.session.commit()
    return b


def customer(business: Business, email: str | None = None, password: str = PASSWORD):
    """A customer user of `business` with their per-user key."""
    user = accounts.create_user(
        email or f"customer{next(_seq)}@workshop.test", password, Role.CUSTOMER, business=business
    )
    db.session.commit()
    return user


def support(email: str | None = None, password: str = PASSWORD, lead: bool = False, enrolled: bool = True):
    """A support user, with two-step sign-in set up unless `enrolled=False`."""
    user = accounts.create_user(
        email or f"support{next(_seq)}@portal.test", password, Role.SUPPORT, is_support_lead=lead
    )
    if enrolled:
        enrol_two_factor(user)
    db.session.commit()
    return user


def enrol_two_factor(user) -> str:
    """Set up a user's TOTP as an authenticator app would; returns the secret."""
    from portal import two_factor

    secret = two_factor.new_secret()
    two_factor.enrol(user, secret, totp_code(secret))
    return secret


def totp_code(secret: str, last_step: int | None = None) -> str:
    """The code an authenticator app shows now, or the next one not yet used after `last_step`."""
    import time

    import pyotp

    step = int(time.time()) // 30 - 1
    if last_step is not None and step <= last_step:
        step = last_step + 1
        while step > int(time.time()) // 30 + 1:  # every code in the window is spent: wait for the next
            time.sleep(1)
    return pyotp.TOTP(secret).at(step * 30)


def current_totp(user) -> str:
    """A code that the portal will accept now for this enrolled support user."""
    from portal import two_factor

    db.session.refresh(user)
    return totp_code(two_factor.secret_of(user), user.totp_last_step)


def contacts(branch: Branch, count: int, **fields) -> list[Contact]:
    """`count` contacts on a branch with unique references.

    A reference is unique over the run and never longer than Sage's 10 characters, whatever the
    ids are: on PostgreSQL they keep growing from test to test (sequences are not reset).
    """
    rows = [
        Contact(branch_id=branch.id, name=f"Contact {n}", email=f"c{n}@example.test",
                reference=f"C{n:06d}", **fields)
        for n in (next(_seq) for _ in range(count))
    ]
    db.session.add_all(rows)
    db.session.commit()
    return rows


def invoice(branch: Branch, contact: Contact, amount: str = "100.00", tax_code: str = "gst", **fields) -> Invoice:
    """An issued invoice with one line (GST by default; a UK branch on Sage uses e.g. `vat_standard`)."""
    fields.setdefault("number", f"INV-{next(_seq):05d}")
    row = Invoice(branch_id=branch.id, contact_id=contact.id, issued_on=date.today(), total=Decimal(amount),
                  **fields)
    row.lines.append(InvoiceLine(description="Service", unit_price=Decimal(amount), tax_code=tax_code))
    db.session.add(row)
    db.session.commit()
    return row


def connection(branch: Branch, provider: Provider = Provider.SAGE,
               state: ConnectionState = ConnectionState.CONNECTED, **fields) -> Connection:
    """A connection row in a given state (for health and access tests; no real tokens)."""
    fields.setdefault("connected_at", utcnow())
    row = Connection(branch_id=branch.id, provider=provider, state=state, **fields)
    db.session.add(row)
    db.session.commit()
    return row
