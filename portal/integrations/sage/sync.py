"""Sage workflows: contact sync (with the mass re-sync of rule 3), invoice sync, the single void.

Each function takes ids, works in batches that commit, and reports through a `progress` object
with `update(done, total, **counters)` (jobs.runtime.Progress). They raise SyncStopped with plain
words when the run cannot go on (signed out of Sage, Sage down, rate limited); per-record problems
are recorded on the record (`sync_error`) and the run carries on.
"""
from __future__ import annotations

import math
import time
from datetime import timedelta
from dataclasses import asdict, dataclass, field

from flask import current_app
from sqlalchemy import func

from portal import audit
from portal.extensions import db
from portal.integrations.sage.client import (
    BACKOFF_SECONDS,
    SageAuthError,
    SageClient,
    SageError,
    SageNotFound,
    SageRateLimited,
    SageUnavailable,
    SageValidationError,
)
from portal.integrations.sage.ratelimit import BusinessRateLimit
from portal.integrations.sage.tokens import TokenProvider
from portal.models import (
    Branch,
    Connection,
    ConnectionState,
    Contact,
    ContactKind,
    Invoice,
    InvoiceStatus,
    Provider,
    SageAccountMapping,
    SyncOutcome,
    SyncState,
    unscoped,
    utcnow,
)

BATCH_SIZE = 50  # SAGE_SYNC_BATCH_SIZE in the app config overrides it
CREATE_ATTEMPTS = 4
OPEN_STATES = (SyncState.PENDING, SyncState.FAILED)

KIND_CONTACTS = "sage.sync_contacts"
KIND_INVOICES = "sage.sync_invoices"
KIND_VOID = "sage.void_invoice"


class SyncStopped(Exception):
    """The run stopped before the end; the message says why and what happens next."""


def client_for(connection: Connection) -> SageClient:
    """A v3.1 client for this connection's Sage business, behind the shared per-business limit."""
    config = current_app.config
    limit = BusinessRateLimit(config["REDIS_URL"], connection.sage_business_id,
                              int(config["SAGE_RATE_LIMIT_PER_MINUTE"] or 0))
    return SageClient(api_url=config["SAGE_API_URL"], business_id=connection.sage_business_id,
                      token=TokenProvider(connection.id), limiter=limit,
                      timeout=float(config["HTTP_TIMEOUT_SECONDS"]))


def usable_connection(branch_id: int) -> Connection:
    """The branch's Sage connection if it can sync now; raises SyncStopped saying what to do."""
    connection = db.session.scalar(db.select(Connection).where(Connection.branch_id == branch_id))
    if connection is None or connection.provider != Provider.SAGE:
        raise SyncStopped("This branch is not connected to Sage.")
    if connection.state == ConnectionState.NEEDS_REAUTH:
        raise SyncStopped("This branch needs to sign in to Sage again before it can sync (use Reconnect).")
    if connection.state != ConnectionState.CONNECTED:
        raise SyncStopped("This branch is not connected to Sage.")
    if not connection.sage_business_id:
        raise SyncStopped("Choose which Sage business this branch uses before syncing.")
    return connection


# --- Records as Sage wants them -------------------------------------------------------------------


def contact_body(contact: Contact) -> dict:
    """The v3.1 contact body: CUSTOMER or VENDOR, and the email through main_contact_person."""
    body = {
        "name": contact.name,
        "contact_type_ids": ["VENDOR" if contact.kind == ContactKind.SUPPLIER else "CUSTOMER"],
        "reference": contact.reference,
    }
    person = {key: value for key, value in (("email", contact.email), ("telephone", contact.phone)) if value}
    if person:
        body["main_contact_person"] = {"name": contact.name[:50], **person}
    return body


def _reference_taken(error: SageValidationError) -> bool:
    message = error.message.lower()
    return error.field in ("reference", "") and any(w in message for w in ("taken", "already exists", "in use"))


def push_contact(client: SageClient, contact: Contact, *, look_up_first: bool) -> str:
    """Create, link or update one contact in Sage; returns created/linked/updated/failed.

    Raises SageAuthError, SageUnavailable or SageRateLimited when the run should stop.
    """
    body = contact_body(contact)
    try:
        if contact.sage_id:
            try:
                client.update_contact(contact.sage_id, body)
                contact.mark_synced(contact.sage_id)
                return "updated"
            except SageNotFound:
                contact.sage_id = None  # deleted in Sage: find it by reference or create it again
                look_up_first = True
        if look_up_first and contact.reference:
            found = client.find_contact_by_reference(contact.reference)
            if found:
                contact.mark_synced(found["id"])
                return "linked"
        return _create_contact(client, contact, body)
    except SageValidationError as error:
        contact.mark_failed(f"Sage refused this contact: {error.message}")
        return "failed"


def _create_contact(client: SageClient, contact: Contact, body: dict) -> str:
    for attempt in range(CREATE_ATTEMPTS):
        try:
            created = client.create_contact(body)
            contact.mark_synced(created["id"])
            return "created"
        except SageUnavailable:
            if attempt == CREATE_ATTEMPTS - 1 or not contact.reference:
                raise
            time.sleep(BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS) - 1)])
        except SageValidationError as error:
            # Sage says the reference exists: another run created it; link to it.
            found = client.find_contact_by_reference(contact.reference) if _reference_taken(error) else None
            if found is None:
                raise
            contact.mark_synced(found["id"])
            return "linked"
        # The response was lost: Sage may have created the contact anyway, so look before writing
        # it again — a retry must never create a second one.
        found = client.find_contact_by_reference(contact.reference)
        if found:
            contact.mark_synced(found["id"])
            return "linked"
    raise SageUnavailable("Sage did not answer while creating a contact.")


# --- Contact sync ---------------------------------------------------------------------------------


def flag_mass_resync(connection: Connection) -> int:
    """Rule 3: when no contact of the branch has a Sage id, flag every one pending in one statement.

    Records `sync.mass_resync_flagged` with the count, sets mass_resync_started_at/total, commits;
    returns how many were flagged (0 when the rule does not apply).
    """
    branch_id = connection.branch_id
    live = (Contact.branch_id == branch_id, Contact.deleted_at.is_(None))
    with_ids = db.session.scalar(db.select(func.count()).select_from(Contact).where(*live, Contact.sage_id.is_not(None)))
    if with_ids:
        return 0
    result = db.session.execute(
        db.update(Contact).where(*live).values(sync_state=SyncState.PENDING, sync_error=None)
        .execution_options(synchronize_session=False)
    )
    count = result.rowcount or 0
    if not count:
        return 0
    connection.mass_resync_started_at = utcnow()
    connection.mass_resync_total = count
    audit.record(
        "sync.mass_resync_flagged",
        f"No contact had a Sage id, so all {count} contacts were flagged to be sent to Sage again",
        branch=db.session.get(Branch, branch_id),
        details={"count": count, "sage_business_id": connection.sage_business_id},
    )
    db.session.commit()
    return count


@dataclass
class RunCounters:
    """What a sync run did, reported as job progress and returned in the job result."""

    done: int = 0
    total: int = 0
    failures: int = 0
    created: int = 0
    linked: int = 0
    updated: int = 0
    batches_done: int = 0
    batches_total: int = 0
    started: float = field(default_factory=time.monotonic)

    def count(self, outcome: str) -> None:
        self.done += 1
        if outcome == "failed":
            self.failures += 1
        else:
            setattr(self, outcome, getattr(self, outcome) + 1)

    def eta_seconds(self) -> int | None:
        elapsed = time.monotonic() - self.started
        if not self.done or elapsed <= 0:
            return None
        return math.ceil(max(self.total - self.done, 0) / (self.done / elapsed))

    def report(self, progress) -> None:
        progress.update(self.done, self.total, failures=self.failures, batches_done=self.batches_done,
                        batches_total=self.batches_total, eta_seconds=self.eta_seconds(),
                        created=self.created, linked=self.linked, updated=self.updated)
        db.session.commit()

    def as_dict(self) -> dict:
        data = asdict(self)
        data.pop("started")
        return data


def batch_size() -> int:
    """Rows per committed batch: a killed worker loses at most this many rows' progress."""
    return int(current_app.config.get("SAGE_SYNC_BATCH_SIZE") or BATCH_SIZE)


def _open_batches(model, branch_id: int, *where):
    """Yield batches of open (pending/failed) rows by ascending id, never holding more than one."""
    last_id = 0
    size = batch_size()
    while True:
        batch = db.session.scalars(
            db.select(model)
            .where(model.branch_id == branch_id, model.sync_state.in_(OPEN_STATES), model.id > last_id, *where)
            .order_by(model.id)
            .limit(size)
        ).all()
        if not batch:
            return
        last_id = batch[-1].id
        yield batch


def _count_open(model, branch_id: int, *where) -> int:
    return db.session.scalar(
        db.select(func.count()).select_from(model)
        .where(model.branch_id == branch_id, model.sync_state.in_(OPEN_STATES), model.deleted_at.is_(None), *where)
    ) or 0


def sync_contacts(branch_id: int, progress) -> dict:
    """Send the branch's pending and failed contacts to Sage in committed batches; returns a summary.

    Raises SyncStopped (with what was done so far) when Sage or the sign-in stops the run.
    """
    connection = usable_connection(branch_id)
    client = client_for(connection)
    flagged = flag_mass_resync(connection)
    counters = RunCounters(total=_count_open(Contact, branch_id))
    counters.batches_total = math.ceil(counters.total / batch_size())
    counters.report(progress)
    look_up_first = False
    try:
        if connection.mass_resync_started_at is not None:
            # During a mass re-sync Sage may already hold these contacts (a reconnect to the same
            # business, or a run killed after Sage created a contact): look each one up first.
            # A business with no contacts at all has nothing to find, so the lookups are skipped.
            look_up_first = client.count_contacts() > 0
        for batch in _open_batches(Contact, branch_id):
            for contact in batch:
                counters.count(push_contact(client, contact, look_up_first=look_up_first))
            counters.batches_done += 1
            db.session.commit()
            counters.report(progress)
    except (SageError, SyncStopped) as error:
        db.session.commit()  # keep the contacts Sage already confirmed in this batch
        _record_outcome(connection, succeeded=False, error=error, client=client)
        raise SyncStopped(f"{_stop_reason(error)} {counters.done} of {counters.total} contacts were "
                          "processed; the rest stay pending and the next run resumes with them.") from None
    _record_outcome(connection, succeeded=counters.failures == 0, client=client)
    if connection.mass_resync_started_at is not None and not _count_open(Contact, branch_id, Contact.sync_state == SyncState.PENDING):
        connection.mass_resync_started_at = None
    db.session.commit()
    summary = (f"Sent {counters.done} contacts to Sage: {counters.created} created, {counters.linked} linked "
               f"to existing Sage contacts, {counters.updated} updated, {counters.failures} failed.")
    return {"summary": summary, "mass_resync_flagged": flagged, "look_up_first": look_up_first,
            "rate_limited_responses": client.rate_limited_responses, **counters.as_dict()}


def _stop_reason(error: Exception) -> str:
    if isinstance(error, SageRateLimited):
        return f"Sage kept limiting requests (asked to wait {error.retry_after:g} seconds)."
    if isinstance(error, SageAuthError):
        return "Sage no longer accepts this branch's sign-in; reconnect to Sage."
    if isinstance(error, SageUnavailable):
        return "Sage is not answering right now."
    return str(error)


def _record_outcome(connection: Connection, *, succeeded: bool, client: SageClient,
                    error: Exception | None = None) -> None:
    now = utcnow()
    connection = db.session.get(Connection, connection.id)
    connection.last_sync_at = now
    connection.last_sync_outcome = SyncOutcome.SUCCEEDED if succeeded else SyncOutcome.FAILED
    if succeeded:
        connection.last_successful_sync_at = now
    if isinstance(error, SageRateLimited):
        connection.rate_limited_until = now + timedelta(seconds=error.retry_after)
    db.session.commit()


# --- Invoice sync ---------------------------------------------------------------------------------


class AccountMapper:
    """Sage ledger account and tax rate ids per local code, defaulted from Sage's lookups once."""

    LEDGER, TAX = "ledger_account", "tax_rate"

    def __init__(self, connection: Connection, client: SageClient):
        self.connection = connection
        self.client = client
        self._cache: dict[tuple[str, str], str] = {}
        self._lookups: dict[str, list[dict]] = {}

    def ledger_account(self, code: str) -> str:
        return self._sage_id(self.LEDGER, code)

    def tax_rate(self, code: str) -> str:
        return self._sage_id(self.TAX, code)

    def _sage_id(self, kind: str, code: str) -> str:
        key = (kind, code)
        if key not in self._cache:
            row = db.session.scalar(db.select(SageAccountMapping).where(
                SageAccountMapping.branch_id == self.connection.branch_id,
                SageAccountMapping.sage_business_id == self.connection.sage_business_id,
                SageAccountMapping.kind == kind, SageAccountMapping.code == code))
            if row is None:
                choice = self._default(kind, code)
                row = SageAccountMapping(branch_id=self.connection.branch_id,
                                         sage_business_id=self.connection.sage_business_id, kind=kind,
                                         code=code, sage_id=choice["id"],
                                         sage_name=choice.get("displayed_as") or choice.get("name") or "")
                db.session.add(row)
            self._cache[key] = row.sage_id
        return self._cache[key]

    def _default(self, kind: str, code: str) -> dict:
        if kind not in self._lookups:
            items = self.client.ledger_accounts() if kind == self.LEDGER else self.client.tax_rates()
            if not items:
                raise SyncStopped(f"Sage returned no {kind.replace('_', ' ')}s for this business.")
            self._lookups[kind] = items
        return default_choice(kind, code, self._lookups[kind])


def default_choice(kind: str, code: str, items: list[dict]) -> dict:
    """A sensible Sage lookup for a local code: a name match, else the usual sales account / standard rate."""
    words = code.lower().replace("_", " ").replace("-", " ").split()
    named = [i for i in items if any(w in (i.get("name") or i.get("displayed_as") or "").lower() for w in words)]
    if kind == AccountMapper.LEDGER:
        if named:
            return named[0]
        return next((i for i in items if str(i.get("nominal_code")) == "4000"), None) or next(
            (i for i in items if (i.get("name") or "").lower() == "sales"), items[0])
    if any(w in ("free", "zero", "exempt", "none", "nil") for w in words):
        return next((i for i in items if not i.get("percentage")), items[0])
    if named:
        return named[0]
    return max(items, key=lambda i: float(i.get("percentage") or 0))


def invoice_body(invoice: Invoice, contact_sage_id: str, mapper: AccountMapper) -> dict:
    """The v3.1 sales invoice body with lines mapped to ledger accounts and tax rates."""
    body = {
        "contact_id": contact_sage_id,
        "date": invoice.issued_on.isoformat(),
        "reference": invoice.number,
        "invoice_lines": [
            {
                "description": line.description,
                "ledger_account_id": mapper.ledger_account(line.account_code),
                "tax_rate_id": mapper.tax_rate(line.tax_code),
                "quantity": float(line.quantity),
                "unit_price": float(line.unit_price),
            }
            for line in invoice.lines
        ],
    }
    if invoice.due_on:
        body["due_date"] = invoice.due_on.isoformat()
    return body


def push_invoice(client: SageClient, invoice: Invoice, mapper: AccountMapper) -> str:
    """Send one issued invoice (its contact first when Sage lacks it); returns created/linked/failed."""
    contact = invoice.contact
    if not contact.sage_id or contact.sync_state != SyncState.SYNCED:
        if push_contact(client, contact, look_up_first=True) == "failed":
            invoice.mark_failed(f"Its contact {contact.name} could not be sent to Sage: {contact.sync_error}")
            return "failed"
    try:
        # Invoices have no unique reference in Sage, so look before every create: a reconnect or a
        # lost response must not produce a second copy.
        found = client.find_invoice_by_reference(invoice.number)
        if found:
            invoice.mark_synced(found["id"])
            return "linked"
        for attempt in range(CREATE_ATTEMPTS):
            try:
                created = client.create_invoice(invoice_body(invoice, contact.sage_id, mapper))
                invoice.mark_synced(created["id"])
                return "created"
            except SageUnavailable:
                if attempt == CREATE_ATTEMPTS - 1:
                    raise
                time.sleep(BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS) - 1)])
                found = client.find_invoice_by_reference(invoice.number)
                if found:
                    invoice.mark_synced(found["id"])
                    return "linked"
    except SageValidationError as error:
        invoice.mark_failed(f"Sage refused this invoice: {error.message}")
        return "failed"
    return "failed"


def sync_invoices(branch_id: int, progress) -> dict:
    """Send the branch's issued, pending or failed invoices to Sage in committed batches."""
    connection = usable_connection(branch_id)
    client = client_for(connection)
    mapper = AccountMapper(connection, client)
    issued = (Invoice.status == InvoiceStatus.ISSUED,)
    counters = RunCounters(total=_count_open(Invoice, branch_id, *issued))
    counters.batches_total = math.ceil(counters.total / batch_size())
    counters.report(progress)
    try:
        for batch in _open_batches(Invoice, branch_id, *issued):
            for invoice in batch:
                counters.count(push_invoice(client, invoice, mapper))
            counters.batches_done += 1
            db.session.commit()
            counters.report(progress)
    except (SageError, SyncStopped) as error:
        db.session.commit()
        _record_outcome(connection, succeeded=False, error=error, client=client)
        raise SyncStopped(f"{_stop_reason(error)} {counters.done} of {counters.total} invoices were "
                          "processed; the rest stay pending for the next run.") from None
    _record_outcome(connection, succeeded=counters.failures == 0, client=client)
    summary = (f"Sent {counters.done} invoices to Sage: {counters.created} created, {counters.linked} "
               f"already there, {counters.failures} failed.")
    return {"summary": summary, "rate_limited_responses": client.rate_limited_responses, **counters.as_dict()}


# --- The single void (rule 4) ---------------------------------------------------------------------

VOIDED, ALREADY_VOID, NEVER_SYNCED, MISSING_IN_SAGE, SAGE_REFUSED = (
    "voided", "already_void", "never_synced", "missing_in_sage", "sage_refused")


def find_invoice_unscoped(branch_id: int, invoice_id: int) -> Invoice | None:
    """The invoice of this branch by id, soft-deleted ones included (the single void needs them)."""
    return db.session.scalar(unscoped(Invoice).where(Invoice.id == invoice_id, Invoice.branch_id == branch_id))


def void_invoice(branch_id: int, invoice_id: int, reason: str) -> dict:
    """Void one invoice in Sage, found unscoped; returns the outcome (see the constants above).

    Already void: nothing is sent again. Never synced / missing in Sage: nothing can be sent, and
    the result says so plainly. Raises SyncStopped when Sage or the sign-in stops it.
    """
    invoice = find_invoice_unscoped(branch_id, invoice_id)
    if invoice is None:
        raise SyncStopped("That invoice does not exist on this branch.")
    label = f"Invoice {invoice.number}" + (" (deleted in the portal)" if invoice.is_deleted else "")
    base = {"invoice_id": invoice.id, "invoice_number": invoice.number, "sage_id": invoice.sage_id,
            "was_deleted": invoice.is_deleted, "reason": reason}
    if not invoice.sage_id:
        return {**base, "outcome": NEVER_SYNCED,
                "summary": f"{label} was never sent to Sage, so there is nothing to void there. Nothing was sent."}
    connection = usable_connection(branch_id)
    client = client_for(connection)
    try:
        try:
            current = client.get_invoice(invoice.sage_id)
        except SageNotFound:
            return _missing(base, label)
        if _status(current) == "VOID":
            _mark_void(invoice, current.get("void_reason") or reason)
            return {**base, "outcome": ALREADY_VOID,
                    "summary": f"{label} was already void in Sage; nothing was sent again."}
        try:
            client.void_invoice(invoice.sage_id, reason)
        except SageUnavailable:
            # The answer was lost; Sage may have voided it. Look before deciding anything.
            if _status(client.get_invoice(invoice.sage_id)) != "VOID":
                raise
        except SageNotFound:
            return _missing(base, label)
        except SageValidationError as error:
            return {**base, "outcome": SAGE_REFUSED, "message": error.message,
                    "summary": f"Sage refused to void {label}: {error.message}"}
    except SageError as error:
        raise SyncStopped(f"{_stop_reason(error)} {label} was not voided; try again.") from None
    _mark_void(invoice, reason)
    return {**base, "outcome": VOIDED, "summary": f"{label} is now void in Sage."}


def _status(sage_invoice: dict | None) -> str | None:
    return ((sage_invoice or {}).get("status") or {}).get("id")


def _missing(base: dict, label: str) -> dict:
    return {**base, "outcome": MISSING_IN_SAGE,
            "summary": f"Sage has no invoice with the id recorded for {label}, so nothing was voided. "
                       "It needs manual clean-up: check in Sage whether it was deleted there or belongs "
                       "to another Sage business."}


def _mark_void(invoice: Invoice, reason: str) -> None:
    invoice.status = InvoiceStatus.VOID
    invoice.voided_at = invoice.voided_at or utcnow()
    invoice.void_reason = reason[:255]
    db.session.commit()
