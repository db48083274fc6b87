"""Sage One AUS sync and void: the workflows the jobs run, and the one place they are enqueued.

Both need the credentials owner's private key (PRODUCT rule 8): enqueueing takes it from the
customer's own login session and hands it over sealed (`keys.hold_for_job`: the seal waits in a
Redis key of its own that expires with it, and the job's arguments carry only its reference), and
nothing is enqueued without it. A row about to be sent is marked in flight first, so after a crash or a lost answer the
next run looks it up in Sage before creating it again: nothing is duplicated.
"""
from __future__ import annotations

import logging
from datetime import date
from decimal import Decimal

from portal import audit, jobqueue, keys, timefmt
from portal.extensions import db
from portal.integrations.sage_one_aus import credentials, ratelimit, shapes
from portal.integrations.sage_one_aus.client import API_KEY_REFUSED, SageOneClient
from portal.integrations.sage_one_aus.errors import (
    SageOneApiKeyRefused,
    SageOneAuthFailed,
    SageOneBusy,
    SageOneError,
    SageOneLocked,
    SageOneNotFound,
    SageOneRateLimited,
    SageOneUnavailable,
    SageOneUnusableAnswer,
)
from portal.models import (
    Branch,
    Connection,
    Contact,
    ContactKind,
    Invoice,
    InvoiceStatus,
    Job,
    Provider,
    SyncOutcome,
    SyncState,
    utcnow,
)
from portal.voids import VoidOutcome, find_invoice_unscoped

log = logging.getLogger(__name__)

SYNC_KIND = "sage_one_aus.sync"
VOID_KIND = "sage_one_aus.void"
IN_FLIGHT = "Being sent to Sage One AUS…"

# Void outcomes (portal/voids.py, shared with Sage), recorded in the job result and the audit event.
REVERSED = VoidOutcome.REVERSED
ALREADY_REVERSED = VoidOutcome.ALREADY_REVERSED
NEVER_SYNCED = VoidOutcome.NEVER_SYNCED
MISSING_IN_SAGE = VoidOutcome.MISSING_IN_SAGE
SAGE_REFUSED = VoidOutcome.SAGE_REFUSED

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
        raise SyncRefused(f"Sage One AUS has locked {connection.sage_one_username} until "
                          f"{_local(until, connection)} after too many failed logins.")
    until = ratelimit.blocked_until(connection.sage_one_company_id)
    if until is None and connection.is_rate_limited():
        until = connection.rate_limited_until
    if until is not None:
        raise SyncRefused(f"Rate-limited until {_local(until, connection)}: Sage One AUS blocked this company for too "
                          "many requests, and calling before then would extend the block. Try again after that.")
    return connection


def _local(moment, connection: Connection) -> str:
    return timefmt.for_business(moment, connection.branch.business)


KEY = object()  # where the key's reference goes in a job's arguments


def _enqueue(private_key: bytes, kind: str, func: str, args: tuple, **options) -> Job:
    """Enqueue with the key held for the job under a reference (its only trace in the job's arguments)."""
    reference = keys.hold_for_job(private_key)
    try:
        return jobqueue.enqueue(kind, func, args=tuple(reference if a is KEY else a for a in args), **options)
    except BaseException:
        keys.drop_for_job(reference)  # nothing will take it
        raise


def enqueue_sync(branch, user, private_key: bytes | None, puppeteer=None) -> Job:
    """Queue a sync of the branch's pending contacts and invoices; raises SyncRefused or JobRefused."""
    _ready(branch, user, private_key)
    return _enqueue(private_key, SYNC_KIND, "jobs.sage_one_aus.sync_branch", (branch.id, KEY), branch=branch,
                    requested_by=user, puppeteer=puppeteer, description="Sync with Sage One AUS")


def void_target(branch, invoice_id: int) -> Invoice | None:
    """The branch's invoice for a void, looked up unscoped: soft-deleted invoices can be voided too."""
    return find_invoice_unscoped(branch.id, invoice_id)


def enqueue_void(branch, user, private_key: bytes | None, invoice: Invoice, reason: str, puppeteer=None) -> Job:
    """Queue the reversal of one invoice by a credit note; raises SyncRefused or JobRefused."""
    reason = (reason or "").strip() or "Voided from the portal"
    if len(reason) > 255:
        raise SyncRefused("Keep the reason under 255 characters.")
    _ready(branch, user, private_key)
    return _enqueue(private_key, VOID_KIND, "jobs.sage_one_aus.void_invoice", (branch.id, invoice.id, KEY, reason),
                    branch=branch, requested_by=user, puppeteer=puppeteer,
                    description=f"Void invoice {invoice.number} in Sage One AUS",
                    params={"invoice_id": invoice.id, "invoice_number": invoice.number})


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
                     f"Sage One AUS rate-limited {connection.sage_one_company_name} "
                     f"until {_local(exc.until, connection)}",
                     branch=connection.branch, actor_id=actor_id,
                     details={"company_id": connection.sage_one_company_id, "until": exc.until.isoformat()})
        return SyncStopped(f"Rate-limited until {_local(exc.until, connection)}: Sage One AUS blocked this company for "
                           "an hour for too many requests (this is not a login problem). Nothing more is sent "
                           "before then, since calling during the block extends it; run it again after that.")
    if isinstance(exc, SageOneLocked):
        credentials.record_lock(connection.sage_one_username, exc.until)
        if exc.until is None:
            return SyncStopped(str(exc))
        return SyncStopped(f"Sage One AUS has locked {connection.sage_one_username} after too many failed logins, "
                           f"until {_local(exc.until, connection)}. Wait for the lock to lift, or reset the "
                           "password on Sage One's own sign-in page.")
    if isinstance(exc, SageOneApiKeyRefused):
        # The portal's own key: the customer's saved login is fine and is left exactly as it is.
        credentials.record_api_key_refused(connection.branch, actor_id)
        return SyncStopped(f"{API_KEY_REFUSED} Nothing more was sent; run it again once support has fixed it.")
    if isinstance(exc, SageOneUnusableAnswer):
        return SyncStopped(f"{exc} The run stopped; nothing more was sent.")
    return SyncStopped(f"{exc} Nothing was lost.")


def _finish(connection: Connection, ok: bool) -> None:
    now = utcnow()
    connection.last_sync_at = now
    connection.last_sync_outcome = SyncOutcome.SUCCEEDED if ok else SyncOutcome.FAILED
    if ok:
        connection.last_successful_sync_at = now


def _lookups(client: SageOneClient) -> tuple[dict, dict]:
    accounts = {shapes.text(a.get("Name")).strip().lower(): shapes.integer(a.get("ID"), "the account list", "ID")
                for a in client.list_all("Account")}
    tax_types = {}
    for tax_type in client.list_all("TaxType"):
        # Read (as a Decimal, string or number) so a tax type Sage describes unreadably stops the run here.
        shapes.optional_decimal(tax_type.get("Percentage"), "the tax type list", "Percentage")
        tax_types[shapes.text(tax_type.get("Name")).strip().lower()] = shapes.integer(
            tax_type.get("ID"), "the tax type list", "ID")
    return accounts, tax_types


def _sage_id(record: dict, what: str) -> str:
    return str(shapes.integer(record.get("ID"), what, "ID"))


def _mapped(table: dict, names: dict, code: str) -> int | None:
    code = (code or "").strip().lower()
    return table.get(names.get(code, code).lower())


def _push_contact(client: SageOneClient, contact: Contact) -> None:
    if contact.sync_state == SyncState.FAILED or contact.sync_error == IN_FLIGHT:
        existing = client.find("Customer", TextField1=contact.reference)
        if existing is not None:
            contact.mark_synced(_sage_id(existing, "a customer look-up"))
            return
    contact.sync_error = IN_FLIGHT
    db.session.commit()
    saved = client.save("Customer", {
        "Name": contact.name, "Email": contact.email or "", "Telephone": contact.phone or "",
        "TextField1": contact.reference,
    })
    contact.mark_synced(_sage_id(saved, "the saved customer"))


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
            invoice.mark_synced(_sage_id(existing, "a tax invoice look-up"))
            return
    invoice.sync_error = IN_FLIGHT
    db.session.commit()
    saved = client.save("TaxInvoice", body)
    invoice.mark_synced(_sage_id(saved, "the saved tax invoice"))


# Failures that say nothing about one record: the run stops at the first.
_RUN_STOPPERS = (SageOneAuthFailed, SageOneApiKeyRefused, SageOneRateLimited, SageOneLocked, SageOneUnavailable,
                 SageOneBusy)


def run_sync(branch_id: int, private_key: bytes, progress, actor_id: int | None = None) -> dict:
    """Send the branch's pending customers, then its pending issued invoices; raises SyncStopped."""
    branch, connection, client = _client(branch_id, private_key)
    client.on_wait = getattr(progress, "waiting", None)  # "waiting for Sage One AUS's rate limit, resumes in …"
    if hasattr(progress, "paced_by"):  # the first minute's burst must not promise that pace for the rest
        progress.paced_by(ratelimit.slots_per_window(), ratelimit.WINDOW_SECONDS, lambda: client.requests_sent)
    contacts = db.session.scalars(
        db.select(Contact).where(Contact.branch_id == branch.id, Contact.kind == ContactKind.CUSTOMER,
                                 Contact.sync_state != SyncState.SYNCED).order_by(Contact.id)).all()
    invoices = db.session.scalars(
        db.select(Invoice).where(Invoice.branch_id == branch.id, Invoice.status == InvoiceStatus.ISSUED,
                                 Invoice.sync_state != SyncState.SYNCED).order_by(Invoice.id)).all()
    total, done, failures, synced = len(contacts) + len(invoices), 0, 0, {"contacts": 0, "invoices": 0}
    progress.update(0, total, failures=0)

    def step(row, push, *args) -> None:
        nonlocal done, failures
        try:
            push(client, row, *args)
            synced["contacts" if isinstance(row, Contact) else "invoices"] += 1
        except _RUN_STOPPERS:
            raise  # the whole run stops; a row left in flight is looked up next time
        except SageOneUnusableAnswer as exc:
            if exc.whole_run:
                raise
            row.mark_failed(str(exc))  # looked up in Sage before it is sent again
            failures += 1
        except (_Unmappable, SageOneError) as exc:
            row.mark_failed(str(exc))
            failures += 1
        done += 1
        progress.update(done, total, failures=failures)  # the estimate is the measured rate's (jobs/runtime.py)
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


_INVOICE = "the tax invoice"
_NOTE = "the credit note"
REVERSED_STATUS_ID = 4


def _is_reversed(document: dict) -> bool:
    return shapes.flag(document.get("Locked"), _INVOICE, "Locked") or \
        shapes.optional_integer(document.get("StatusId"), _INVOICE, "StatusId") == REVERSED_STATUS_ID or \
        shapes.text(document.get("Status")).lower() in ("reversed", "void")


def _credit_lines(document: dict) -> list[dict]:
    """The invoice's lines for a credit note of its full amount; numbers read in either form, sent as numbers."""
    inclusive = shapes.flag(document.get("Inclusive"), _INVOICE, "Inclusive")
    price = "UnitPriceInclusive" if inclusive else "UnitPriceExclusive"
    lines = document.get("Lines")
    if not isinstance(lines, list) or not lines or not all(isinstance(line, dict) for line in lines):
        raise shapes.unusable(_INVOICE, "no lines")
    return [{
        "LineType": shapes.integer(line.get("LineType"), _INVOICE, "LineType"),
        "SelectionId": shapes.integer(line.get("SelectionId"), _INVOICE, "SelectionId"),
        "TaxTypeId": shapes.optional_integer(line.get("TaxTypeId"), _INVOICE, "TaxTypeId"),
        "Description": shapes.text(line.get("Description")),
        "Quantity": float(shapes.optional_decimal(line.get("Quantity"), _INVOICE, "Quantity", Decimal(1))),
        price: float(shapes.decimal(line.get(price), _INVOICE, price)),
    } for line in lines]


def run_void(branch_id: int, invoice_id: int, private_key: bytes, reason: str, progress,
             actor_id: int | None = None) -> dict:
    """Reverse one invoice in Sage One AUS with a credit note for its full amount (found unscoped,
    so soft-deleted invoices too); returns the outcome or raises SyncStopped."""
    invoice = find_invoice_unscoped(branch_id, invoice_id)
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
            body = {
                "CustomerId": shapes.customer_id(document, _INVOICE), "Date": date.today().isoformat(),
                "FromDocumentId": shapes.integer(document.get("ID"), _INVOICE, "ID"),
                "Inclusive": shapes.flag(document.get("Inclusive"), _INVOICE, "Inclusive"),
                "Reference": f"Void {invoice.number}", "Message": reason, "Lines": _credit_lines(document),
            }
            try:
                note = client.save("CustomerReturn", body)
                note_id = shapes.integer(note.get("ID"), _NOTE, "ID")
                total = shapes.optional_decimal(note.get("Total"), _NOTE, "Total", Decimal(0))
            except SageOneUnusableAnswer as exc:
                # Sage most likely made the credit note; the next void finds the invoice reversed.
                raise SageOneUnusableAnswer(
                    f"{exc} Sage One AUS may have made the credit note: check invoice {invoice.number} there "
                    "before voiding it again.", exc.whole_run) from None
            number = shapes.text(note.get("DocumentNumber")) or None
            message = f"reversed in Sage One AUS by credit note {number or note_id} for {total:.2f}."
            _void_here(invoice, reason)
            _record_void(invoice, REVERSED, message, actor_id, credit_note_id=str(note_id),
                         credit_note_number=number)
            outcome = REVERSED
    except SageOneNotFound:
        message = (f"Sage One AUS has no tax invoice {invoice.sage_id} in {connection.sage_one_company_name} "
                   "(deleted there, or sent to another company). Nothing was reversed; check Sage One and "
                   "clean it up by hand if needed.")
        _record_void(invoice, MISSING_IN_SAGE, message, actor_id)
        db.session.commit()
        raise SyncStopped(f"Invoice {invoice.number}: {message}") from None
    except (*_RUN_STOPPERS, SageOneUnusableAnswer) as exc:
        db.session.rollback()  # nothing is marked void on an answer the portal couldn't use
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
        result["credit_note_id"] = str(note_id)
    return result
