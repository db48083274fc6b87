"""Sage One AUS sync and void: the workflows the jobs run, and the one place they are enqueued.

Both need the credentials owner's private key (PRODUCT rule 8): enqueueing takes it from the
customer's own login session and passes it sealed (`keys.seal_for_job`), and nothing is enqueued
without it. A row about to be sent is marked in flight first, so after a crash or a lost answer the
next run looks it up in Sage before creating it again: nothing is duplicated.
"""
from __future__ import annotations

import logging
import time
from datetime import date
from decimal import Decimal

from portal import audit, jobqueue, keys
from portal.extensions import db
from portal.integrations.sage_one_aus import credentials, ratelimit
from portal.integrations.sage_one_aus.client import SageOneClient
from portal.integrations.sage_one_aus.errors import (
    SageOneAuthFailed,
    SageOneError,
    SageOneLocked,
    SageOneNotFound,
    SageOneRateLimited,
    SageOneUnavailable,
)
from portal.models import (
    Branch,
    Connection,
    ContactKind,
    Contact,
    Invoice,
    InvoiceStatus,
    Job,
    Provider,
    SyncOutcome,
    SyncState,
    unscoped,
    utcnow,
)

log = logging.getLogger(__name__)

SYNC_KIND = "sage_one_aus.sync"
VOID_KIND = "sage_one_aus.void"
IN_FLIGHT = "Being sent to Sage One AUS…"

# Void outcomes, recorded in the job result and in the "sage_one_aus.void" audit event.
REVERSED = "reversed"
ALREADY_REVERSED = "already_reversed"
NEVER_SYNCED = "never_synced"
MISSING_IN_SAGE = "missing_in_sage"
SAGE_REFUSED = "sage_refused"

# The portal's line codes and the Sage One account / tax type names they mean.
ACCOUNT_NAMES = {"sales": "Sales", "labour": "Sales - Labour", "parts": "Sales - Parts",
                 "freight": "Freight Recovered"}
TAX_TYPE_NAMES = {"gst": "GST", "gst_free": "GST Free", "free": "GST Free", "exempt": "GST Free",
                  "input_taxed": "Input Taxed"}


class SyncRefused(Exception):
    """A sync or void cannot be started; the message is for the person who asked."""


class SyncStopped(Exception):
    """A run stopped early; the message says why and what to do (the job shows it)."""


# --- enqueueing (from the customer's own session only) -----------------------------------------


def _ready(branch, user, private_key: bytes | None) -> Connection:
    if private_key is None:
        raise SyncRefused(
            "Sage One AUS syncs and voids need the key that only the customer's own sign-in holds, so "
            "they can't be started from a puppet session or by support. If this is your own login, sign "
            "out and in again."
        )
    connection = credentials.active_connection(branch)
    if connection is None:
        raise SyncRefused("This branch isn't connected to Sage One AUS.")
    try:
        credentials.password_for(connection, user, private_key)
    except credentials.CredentialsUnavailable as exc:
        raise SyncRefused(str(exc)) from None
    until = credentials.locked_until(connection.sage_one_username)
    if until is not None:
        raise SyncRefused(f"Sage One AUS has locked {connection.sage_one_username} until {until:%d %b %H:%M} UTC "
                          "after too many failed logins.")
    until = ratelimit.blocked_until(connection.sage_one_company_id)
    if until is None and connection.is_rate_limited():
        until = connection.rate_limited_until
    if until is not None:
        raise SyncRefused(f"Rate-limited until {until:%H:%M} UTC: Sage One AUS blocked this company for too "
                          "many requests, and calling before then would extend the block. Try again after that.")
    return connection


def enqueue_sync(branch, user, private_key: bytes | None, puppeteer=None) -> Job:
    """Queue a sync of the branch's pending contacts and invoices; raises SyncRefused or JobRefused."""
    _ready(branch, user, private_key)
    return jobqueue.enqueue(
        SYNC_KIND, "jobs.sage_one_aus.sync_branch", branch=branch, requested_by=user, puppeteer=puppeteer,
        description="Sync with Sage One AUS", args=(branch.id, keys.seal_for_job(private_key)),
    )


def void_target(branch, invoice_id: int) -> Invoice | None:
    """The branch's invoice for a void, looked up unscoped: soft-deleted invoices can be voided too."""
    return db.session.scalar(unscoped(Invoice).where(Invoice.id == invoice_id, Invoice.branch_id == branch.id))


def enqueue_void(branch, user, private_key: bytes | None, invoice: Invoice, reason: str, puppeteer=None) -> Job:
    """Queue the reversal of one invoice by a credit note; raises SyncRefused or JobRefused."""
    reason = (reason or "").strip() or "Voided from the portal"
    if len(reason) > 255:
        raise SyncRefused("Keep the reason under 255 characters.")
    _ready(branch, user, private_key)
    return jobqueue.enqueue(
        VOID_KIND, "jobs.sage_one_aus.void_invoice", branch=branch, requested_by=user, puppeteer=puppeteer,
        description=f"Void invoice {invoice.number} in Sage One AUS",
        args=(branch.id, invoice.id, keys.seal_for_job(private_key), reason),
        params={"invoice_id": invoice.id, "invoice_number": invoice.number},
    )


# --- running (inside a job) ---------------------------------------------------------------------


def _client(branch_id: int, private_key: bytes) -> tuple[Branch, Connection, SageOneClient]:
    branch = db.session.get(Branch, branch_id)
    connection = credentials.active_connection(branch) if branch is not None else None
    if connection is None:
        raise SyncStopped("This branch isn't connected to Sage One AUS any more; nothing was sent.")
    owner = connection.credentials_owner
    try:
        if owner is None:
            raise credentials.CredentialsUnavailable(connection.state_reason or "No one holds this login's key.")
        password = credentials.password_for(connection, owner, private_key)
    except credentials.CredentialsUnavailable as exc:
        db.session.commit()  # keeps a needs_reauth marked on the way
        raise SyncStopped(f"{exc} Nothing was sent.") from None
    client = SageOneClient.from_config(connection.sage_one_username, password, connection.sage_one_company_id)
    return branch, connection, client


def _stop(connection: Connection, exc: SageOneError, actor_id: int | None) -> SyncStopped:
    """Record why Sage stopped a run, and return the failure to raise."""
    if isinstance(exc, SageOneAuthFailed):
        credentials.record_login_failure(connection.sage_one_username)
        credentials.mark_credentials_rejected(connection, actor_id)
        return SyncStopped(f"{credentials.CREDENTIALS_REJECTED}. Sage One AUS refused the saved login, so "
                           "syncing has stopped; nothing is retried until the password is re-entered.")
    if isinstance(exc, SageOneRateLimited):
        for other in db.session.scalars(db.select(Connection).where(
                Connection.provider == Provider.SAGE_ONE_AUS,
                Connection.sage_one_company_id == connection.sage_one_company_id)):
            other.rate_limited_until = max(exc.until, other.rate_limited_until or exc.until)
        audit.record("sage_one_aus.rate_limited",
                     f"Sage One AUS rate-limited {connection.sage_one_company_name} until {exc.until:%H:%M} UTC",
                     branch=connection.branch, actor_id=actor_id,
                     details={"company_id": connection.sage_one_company_id, "until": exc.until.isoformat()})
        return SyncStopped(f"Rate-limited until {exc.until:%H:%M} UTC: Sage One AUS blocked this company for "
                           "too many requests. Nothing more is sent before then; run it again after that.")
    if isinstance(exc, SageOneLocked):
        credentials.record_lock(connection.sage_one_username, exc.until)
        return SyncStopped(str(exc))
    return SyncStopped(f"{exc} Nothing was lost; run it again later.")


def _finish(connection: Connection, ok: bool) -> None:
    now = utcnow()
    connection.last_sync_at = now
    connection.last_sync_outcome = SyncOutcome.SUCCEEDED if ok else SyncOutcome.FAILED
    if ok:
        connection.last_successful_sync_at = now


def _lookups(client: SageOneClient) -> tuple[dict, dict]:
    accounts = {str(a.get("Name", "")).strip().lower(): int(a["ID"]) for a in client.list_all("Account")}
    tax_types = {str(t.get("Name", "")).strip().lower(): int(t["ID"]) for t in client.list_all("TaxType")}
    return accounts, tax_types


def _mapped(table: dict, names: dict, code: str) -> int | None:
    code = (code or "").strip().lower()
    return table.get(names.get(code, code).lower())


def _push_contact(client: SageOneClient, contact: Contact) -> None:
    if contact.sync_state == SyncState.FAILED or contact.sync_error == IN_FLIGHT:
        existing = client.find("Customer", TextField1=contact.reference)
        if existing is not None:
            contact.mark_synced(str(existing["ID"]))
            return
    contact.sync_error = IN_FLIGHT
    db.session.commit()
    saved = client.save("Customer", {
        "Name": contact.name, "Email": contact.email or "", "Telephone": contact.phone or "",
        "TextField1": contact.reference,
    })
    contact.mark_synced(str(saved["ID"]))


class _Unmappable(Exception):
    pass


def _invoice_body(invoice: Invoice, accounts: dict, tax_types: dict) -> dict:
    lines = []
    for line in invoice.lines:
        account_id = _mapped(accounts, ACCOUNT_NAMES, line.account_code)
        if account_id is None:
            raise _Unmappable(f"Line “{line.description}”: no Sage One AUS account matches code “{line.account_code}”.")
        tax_type_id = _mapped(tax_types, TAX_TYPE_NAMES, line.tax_code)
        if tax_type_id is None:
            raise _Unmappable(f"Line “{line.description}”: no Sage One AUS tax type matches code “{line.tax_code}”.")
        lines.append({
            "LineType": 1, "SelectionId": account_id, "TaxTypeId": tax_type_id,
            "Description": line.description, "Quantity": float(line.quantity),
            # Portal prices include GST, so the Sage One total equals the portal's.
            "UnitPriceInclusive": float(line.unit_price),
        })
    body = {
        "CustomerId": int(invoice.contact.sage_id), "Date": invoice.issued_on.isoformat(),
        "Reference": invoice.number, "Message": "", "Inclusive": True, "Lines": lines,
    }
    if invoice.due_on:
        body["DueDate"] = invoice.due_on.isoformat()
    return body


def _push_invoice(client: SageOneClient, invoice: Invoice, accounts: dict, tax_types: dict) -> None:
    contact = invoice.contact
    if contact is None or contact.sage_id is None:
        reason = f": {contact.sync_error}" if contact is not None and contact.sync_error else "."
        raise _Unmappable(f"Its contact isn't in Sage One AUS yet{reason}")
    body = _invoice_body(invoice, accounts, tax_types)
    if invoice.sync_state == SyncState.FAILED or invoice.sync_error == IN_FLIGHT:
        existing = client.find("TaxInvoice", Reference=invoice.number, CustomerId=int(contact.sage_id))
        if existing is not None:
            invoice.mark_synced(str(existing["ID"]))
            return
    invoice.sync_error = IN_FLIGHT
    db.session.commit()
    saved = client.save("TaxInvoice", body)
    invoice.mark_synced(str(saved["ID"]))


def run_sync(branch_id: int, private_key: bytes, progress, actor_id: int | None = None) -> dict:
    """Send the branch's pending customers, then its pending issued invoices; raises SyncStopped."""
    branch, connection, client = _client(branch_id, private_key)
    contacts = db.session.scalars(
        db.select(Contact).where(Contact.branch_id == branch.id, Contact.kind == ContactKind.CUSTOMER,
                                 Contact.sync_state != SyncState.SYNCED).order_by(Contact.id)).all()
    invoices = db.session.scalars(
        db.select(Invoice).where(Invoice.branch_id == branch.id, Invoice.status == InvoiceStatus.ISSUED,
                                 Invoice.sync_state != SyncState.SYNCED).order_by(Invoice.id)).all()
    total, done, failures, synced = len(contacts) + len(invoices), 0, 0, {"contacts": 0, "invoices": 0}
    progress.update(0, total, failures=0)
    started = time.monotonic()

    def step(row, push, *args) -> None:
        nonlocal done, failures
        try:
            push(client, row, *args)
            synced["contacts" if isinstance(row, Contact) else "invoices"] += 1
        except (SageOneAuthFailed, SageOneRateLimited, SageOneLocked, SageOneUnavailable):
            raise  # the whole run stops; a row left in flight is looked up next time
        except (_Unmappable, SageOneError) as exc:
            row.mark_failed(str(exc))
            failures += 1
        done += 1
        elapsed = time.monotonic() - started
        progress.update(done, total, failures=failures,
                        eta_seconds=round(elapsed / done * (total - done)) if done else None)
        db.session.commit()

    try:
        for contact in contacts:
            step(contact, _push_contact)
        if invoices:
            accounts, tax_types = _lookups(client)
            for invoice in invoices:
                step(invoice, _push_invoice, accounts, tax_types)
    except SageOneError as exc:
        stopped = _stop(connection, exc, actor_id)
        _finish(connection, ok=False)
        db.session.commit()
        raise stopped from None
    _finish(connection, ok=failures == 0)
    summary = (f"Sent {_count(synced['contacts'], 'customer')} and {_count(synced['invoices'], 'invoice')} "
               "to Sage One AUS"
               + (f"; {failures} failed (see the reasons on the branch page)." if failures else "."))
    if not total:
        summary = "Everything was already in Sage One AUS; nothing to send."
    audit.record("sage_one_aus.synced", summary, branch=branch, actor_id=actor_id,
                 details={**synced, "failures": failures})
    db.session.commit()
    return {"summary": summary, **synced, "failures": failures}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _record_void(invoice: Invoice, outcome: str, message: str, actor_id: int | None, **details) -> None:
    audit.record("sage_one_aus.void", f"Void of invoice {invoice.number}: {message}", branch=invoice.branch,
                 actor_id=actor_id, details={"invoice_id": invoice.id, "invoice_number": invoice.number,
                                             "outcome": outcome, "message": message, **details})


def _void_here(invoice: Invoice, reason: str) -> None:
    invoice.status = InvoiceStatus.VOID
    invoice.voided_at = invoice.voided_at or utcnow()
    invoice.void_reason = invoice.void_reason or reason


def _is_reversed(document: dict) -> bool:
    return bool(document.get("Locked")) or document.get("StatusId") == 4 or \
        str(document.get("Status", "")).lower() in ("reversed", "void")


def _credit_lines(document: dict) -> list[dict]:
    price = "UnitPriceInclusive" if document.get("Inclusive") else "UnitPriceExclusive"
    return [{"LineType": line["LineType"], "SelectionId": line["SelectionId"], "TaxTypeId": line.get("TaxTypeId"),
             "Description": line.get("Description", ""), "Quantity": line.get("Quantity", 1), price: line[price]}
            for line in document.get("Lines", [])]


def run_void(branch_id: int, invoice_id: int, private_key: bytes, reason: str, progress,
             actor_id: int | None = None) -> dict:
    """Reverse one invoice in Sage One AUS with a credit note for its full amount (found unscoped,
    so soft-deleted invoices too); returns the outcome or raises SyncStopped."""
    invoice = db.session.scalar(unscoped(Invoice).where(Invoice.id == invoice_id, Invoice.branch_id == branch_id))
    if invoice is None:
        raise SyncStopped("That invoice doesn't exist on this branch; nothing was voided.")
    progress.update(0, 1)
    if invoice.sage_id is None:
        message = "it was never sent to Sage One AUS, so it was voided here only."
        _void_here(invoice, reason)
        _record_void(invoice, NEVER_SYNCED, message, actor_id)
        progress.update(1, 1)
        db.session.commit()
        return {"summary": f"Invoice {invoice.number}: {message}", "outcome": NEVER_SYNCED}
    _, connection, client = _client(branch_id, private_key)
    try:
        document = client.get("TaxInvoice", int(invoice.sage_id))
        if _is_reversed(document):
            message = "Sage One AUS already shows it reversed; no second credit note was made."
            _void_here(invoice, reason)
            _record_void(invoice, ALREADY_REVERSED, message, actor_id)
            outcome, note = ALREADY_REVERSED, None
        else:
            note = client.save("CustomerReturn", {
                "CustomerId": document["CustomerId"], "Date": date.today().isoformat(),
                "FromDocumentId": document["ID"], "Inclusive": bool(document.get("Inclusive")),
                "Reference": f"Void {invoice.number}", "Message": reason, "Lines": _credit_lines(document),
            })
            message = (f"reversed in Sage One AUS by credit note {note.get('DocumentNumber') or note['ID']} "
                       f"for {Decimal(str(note.get('Total', 0))):.2f}.")
            _void_here(invoice, reason)
            _record_void(invoice, REVERSED, message, actor_id, credit_note_id=str(note["ID"]),
                         credit_note_number=note.get("DocumentNumber"))
            outcome = REVERSED
    except SageOneNotFound:
        message = (f"Sage One AUS has no tax invoice {invoice.sage_id} in {connection.sage_one_company_name} "
                   "(deleted there, or sent to another company). Nothing was reversed; check Sage One and "
                   "clean it up by hand if needed.")
        _record_void(invoice, MISSING_IN_SAGE, message, actor_id)
        db.session.commit()
        raise SyncStopped(f"Invoice {invoice.number}: {message}") from None
    except (SageOneAuthFailed, SageOneRateLimited, SageOneLocked, SageOneUnavailable) as exc:
        stopped = _stop(connection, exc, actor_id)
        db.session.commit()
        raise stopped from None
    except SageOneError as exc:
        message = f"Sage One AUS refused the credit note: {exc}"
        _record_void(invoice, SAGE_REFUSED, message, actor_id)
        db.session.commit()
        raise SyncStopped(f"Invoice {invoice.number}: {message}") from None
    progress.update(1, 1)
    db.session.commit()
    result = {"summary": f"Invoice {invoice.number}: {message}", "outcome": outcome}
    if note is not None:
        result["credit_note_id"] = str(note["ID"])
    return result
