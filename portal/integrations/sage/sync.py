"""Sage workflows: contact sync (with the mass re-sync of rule 3), invoice sync, the single void.

Each function takes ids, works in batches that commit, and reports through a `progress` object
with `update(done, total, **counters)` (jobs.runtime.Progress). They raise SyncStopped with plain
words when the run cannot go on (signed out of Sage, Sage down, rate limited) and RunPaused when
the business's daily request budget is used up (the job resumes by itself when it renews);
per-record problems are recorded on the record (`sync_error`) and the run carries on.

Sage's requests are the scarce thing (a per-minute limit and a daily budget per business), so
records Sage may already hold are matched locally: when a run must look for many records, Sage's
list of references is read once in pages of 200 (`SageIndex`), and only records Sage lacks are
created. A lost answer to a create is always checked with a lookup before the create is repeated.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from flask import current_app
from sqlalchemy import func

from portal import audit, timefmt
from portal.extensions import db
from portal.integrations import tax_codes
from portal.integrations.numbers import UnusableNumber, decimal_or_none
from portal.integrations.sage.client import (
    PAGE_SIZE,
    BudgetExhausted,
    SageAnswerUnusable,
    SageAuthError,
    SageClient,
    SageError,
    SageNotFound,
    SageRateLimited,
    SageUnavailable,
    SageValidationError,
    normalise_reference,
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
    utcnow,
)
from portal.voids import VoidOutcome, find_invoice_unscoped

BATCH_SIZE = 50  # SAGE_SYNC_BATCH_SIZE in the app config overrides it
CREATE_ATTEMPTS = 4
OPEN_STATES = (SyncState.PENDING, SyncState.FAILED)

KIND_CONTACTS = "sage.sync_contacts"
KIND_INVOICES = "sage.sync_invoices"
KIND_VOID = "sage.void_invoice"


class SyncStopped(Exception):
    """The run stopped before the end; the message says why and what happens next."""


class RunPaused(Exception):
    """The business's daily request budget is used up: the run continues by itself at `resume_at`."""

    def __init__(self, message: str, resume_at: datetime):
        super().__init__(message)
        self.resume_at = resume_at


def rate_limit_for(connection: Connection, *, max_wait: float | None = None, on_wait=None) -> BusinessRateLimit:
    """The shared limiter of the connection's Sage business (minute limit, margin, daily budget)."""
    config = current_app.config
    return BusinessRateLimit(config["REDIS_URL"], connection.sage_business_id,
                             int(config["SAGE_RATE_LIMIT_PER_MINUTE"] or 0),
                             margin=float(config["SAGE_RATE_MARGIN"] or 0),
                             daily_budget=int(config["SAGE_DAILY_REQUEST_BUDGET"] or 0),
                             budget_window_seconds=int(config.get("SAGE_BUDGET_WINDOW_SECONDS") or 86400),
                             window_seconds=int(config.get("SAGE_RATE_WINDOW_SECONDS") or 60) + 1,
                             max_wait=max_wait, on_wait=on_wait)


def client_for(connection: Connection, progress=None) -> SageClient:
    """A v3.1 client for a job: it waits for the business's shared limit and backs off on failures.

    With the job's `progress`, its waits for the limit are shown and its estimate keeps to the limit."""
    limit = rate_limit_for(connection, on_wait=progress.waiting if progress is not None else None)
    client = SageClient(api_url=current_app.config["SAGE_API_URL"], business_id=connection.sage_business_id,
                        token=TokenProvider(connection.id, before_refresh=limit), limiter=limit,
                        timeout=float(current_app.config["HTTP_TIMEOUT_SECONDS"]))
    if progress is not None and limit.minute is not None:
        progress.paced_by(limit.minute.amount, limit.minute.get_expiry(), lambda: client.requests_sent)
    return client


def page_client_for(connection: Connection) -> SageClient:
    """A v3.1 client for a page a person is waiting on: it never waits long for the limiter or
    backs off, raising SageBusy instead, so the page answers at once with what it has."""
    limit = rate_limit_for(connection, max_wait=float(current_app.config["SAGE_PAGE_WAIT_SECONDS"]))
    return SageClient(api_url=current_app.config["SAGE_API_URL"], business_id=connection.sage_business_id,
                      token=TokenProvider(connection.id, before_refresh=limit), limiter=limit,
                      timeout=float(current_app.config["HTTP_TIMEOUT_SECONDS"]), patient=False)


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


# --- Finding what Sage already holds --------------------------------------------------------------


class SageIndex:
    """How a run finds the Sage record with a given reference, at the fewest requests.

    `kind` "listed": Sage's references were read once (pages of 200) and are matched locally.
    "empty": Sage holds none of this kind, so there is nothing to find. "lookup": too few
    records to look for to be worth reading the whole list: each is searched on its own.
    """

    def __init__(self, kind: str, lookup=None, ids: dict[str, str] | None = None):
        self.kind = kind
        self._lookup = lookup
        self._ids = ids or {}

    @classmethod
    def build(cls, client: SageClient, resource: str, wanted: int) -> SageIndex:
        """Choose the cheapest way to look for `wanted` records of `resource` (contacts or invoices)."""
        lookup = client.find_contact_by_reference if resource == "contacts" else client.find_invoice_by_reference
        total = client.count(f"/{resource}")
        if total == 0:
            return cls("empty", lookup)
        if math.ceil(total / PAGE_SIZE) > wanted:
            return cls("lookup", lookup)
        pairs = client.contact_references() if resource == "contacts" else client.invoice_references()
        return cls("listed", lookup, {normalise_reference(reference): sage_id for reference, sage_id in pairs})

    def find(self, reference: str | None) -> str | None:
        """The Sage id of the record with this reference, if Sage has one."""
        if not reference:
            return None
        if self.kind == "listed":
            return self._ids.get(normalise_reference(reference))
        if self.kind == "lookup":
            found = self._lookup(reference)
            return found["id"] if found else None
        return None

    def confirm(self, reference: str | None) -> str | None:
        """After a lost answer or a refusal: ask Sage itself, whatever the index says."""
        if not reference:
            return None
        found = self._lookup(reference)
        return found["id"] if found else None


NO_INDEX = SageIndex("empty")


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


def push_contact(client: SageClient, contact: Contact, index: SageIndex = NO_INDEX) -> str:
    """Create, link or update one contact in Sage; returns created/linked/updated/failed.

    Raises SageAuthError, SageUnavailable, SageRateLimited or BudgetExhausted when the run should stop.
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
                index = SageIndex("lookup", client.find_contact_by_reference)
        found = index.find(contact.reference)
        if found:
            contact.mark_synced(found)
            return "linked"
        return _create_contact(client, contact, body, index)
    except SageValidationError as error:
        contact.mark_failed(f"Sage refused this contact: {error.message}")
        return "failed"
    except SageAnswerUnusable as error:
        contact.mark_failed(f"Not sent: {error}")
        return "failed"


def _create_contact(client: SageClient, contact: Contact, body: dict, index: SageIndex) -> str:
    for attempt in range(CREATE_ATTEMPTS):
        try:
            created = client.create_contact(body)
            contact.mark_synced(created["id"])
            return "created"
        except SageUnavailable:
            if attempt == CREATE_ATTEMPTS - 1 or not contact.reference:
                raise
            client.back_off(attempt)
        except SageValidationError as error:
            # Sage says the reference exists: another run created it; link to it.
            found = index.confirm(contact.reference) if _reference_taken(error) else None
            if found is None:
                raise
            contact.mark_synced(found)
            return "linked"
        # The response was lost: Sage may have created the contact anyway, so look before writing
        # it again — a retry must never create a second one.
        found = index.confirm(contact.reference)
        if found:
            contact.mark_synced(found)
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
    with_ids = db.session.scalar(
        db.select(func.count()).select_from(Contact).where(*live, Contact.sage_id.is_not(None)))
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

    def count(self, outcome: str) -> None:
        self.done += 1
        if outcome == "failed":
            self.failures += 1
        else:
            setattr(self, outcome, getattr(self, outcome) + 1)

    def _figures(self) -> dict:
        return {"failures": self.failures, "batches_done": self.batches_done, "batches_total": self.batches_total,
                "created": self.created, "linked": self.linked, "updated": self.updated}

    def report(self, progress) -> None:
        progress.update(self.done, self.total, **self._figures())
        db.session.commit()

    def report_record(self, progress) -> None:
        """After each record: progress moves per record (job.meta only; the batch commits later)."""
        progress.tick(self.done, self.total, **self._figures())

    def as_dict(self) -> dict:
        return asdict(self)


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


def _send_in_batches(connection: Connection, progress, counters: RunCounters, noun: str, batches,
                     build_index, push) -> SageIndex:
    """What both syncs do: find what Sage holds (`build_index`), then `push(row, index)` each open
    row, committing a batch at a time; returns the index used.

    A batch's changes stay in memory until its commit, so no write transaction (on SQLite, the one
    database lock) is held while the run waits on Sage. The lease is checked before every row.
    Sage's stops become RunPaused (budget used: resumes by itself), a wait for an outage, or
    SyncStopped with how far the run got.
    """
    try:
        index = build_index()
        for batch in batches:
            with db.session.no_autoflush:
                for row in batch:
                    progress.check()
                    counters.count(push(row, index))
                    counters.report_record(progress)
            counters.batches_done += 1
            db.session.commit()
            counters.report(progress)
    except BudgetExhausted as exhausted:
        counters.report(progress)  # keeps what Sage already confirmed, and shows how far it got
        raise _paused(connection, exhausted, counters, noun) from None
    except SageUnavailable as error:
        counters.report(progress)
        _wait_out_outage(progress, counters, noun, error)
        _record_outcome(connection, succeeded=False, error=error)
        raise SyncStopped(f"{_stop_reason(error)} {counters.done} of {counters.total} {noun} were "
                          "processed; the rest stay pending and the next run resumes with them.") from None
    except (SageError, SyncStopped) as error:
        db.session.commit()  # keep what Sage already confirmed in this batch
        _record_outcome(connection, succeeded=False, error=error)
        raise SyncStopped(f"{_stop_reason(error)} {counters.done} of {counters.total} {noun} were "
                          "processed; the rest stay pending and the next run resumes with them.") from None
    return index


def sync_contacts(branch_id: int, progress) -> dict:
    """Send the branch's pending and failed contacts to Sage in committed batches; returns a summary.

    During a mass re-sync Sage may already hold these contacts (the branch's contacts were entered
    in that business before, or a killed run created some), so they are matched against Sage's
    list first and only the missing ones are created. Raises SyncStopped (with what was done so
    far) when Sage or the sign-in stops the run, RunPaused when the daily budget is used up.
    """
    connection = usable_connection(branch_id)
    client = client_for(connection, progress)
    flagged = flag_mass_resync(connection)
    counters = RunCounters(total=_count_open(Contact, branch_id))
    counters.batches_total = math.ceil(counters.total / batch_size())
    counters.report(progress)
    mass_resync = connection.mass_resync_started_at is not None
    index = _send_in_batches(
        connection, progress, counters, "contacts", _open_batches(Contact, branch_id),
        lambda: SageIndex.build(client, "contacts", counters.total) if mass_resync and counters.total else NO_INDEX,
        lambda contact, index: push_contact(client, contact, index))
    _record_outcome(connection, succeeded=counters.failures == 0)
    if connection.mass_resync_started_at is not None and not _count_open(
            Contact, branch_id, Contact.sync_state == SyncState.PENDING):
        connection.mass_resync_started_at = None
    db.session.commit()
    contacts = f"{counters.done} contact{'' if counters.done == 1 else 's'}"
    summary = (f"Sent {contacts} to Sage: {counters.created} created, {counters.linked} linked "
               f"to existing Sage contacts, {counters.updated} updated, {counters.failures} failed.")
    return {"summary": summary, "mass_resync_flagged": flagged, "matched_by": index.kind,
            "sage_requests": client.requests_sent, "rate_limited_responses": client.rate_limited_responses,
            **counters.as_dict()}


def _paused(connection: Connection, exhausted: BudgetExhausted, counters: RunCounters, noun: str) -> RunPaused:
    """Record a budget pause on the connection and return the RunPaused to raise."""
    connection = db.session.get(Connection, connection.id)
    connection.rate_limited_until = exhausted.renews_at
    audit.record("sync.paused_for_budget",
                 f"Sage's daily request budget for {connection.sage_business_name or 'this business'} is used up; "
                 f"the {noun} sync resumes by itself at {_local(exhausted.renews_at, connection)}",
                 branch=connection.branch,
                 details={"resume_at": exhausted.renews_at.isoformat(), "done": counters.done,
                          "total": counters.total, "sage_business_id": connection.sage_business_id})
    db.session.commit()
    left = max(counters.total - counters.done, 0)
    budget = int(current_app.config["SAGE_DAILY_REQUEST_BUDGET"] or 0)
    days = math.ceil(left / budget) if budget else 1  # about one request per record still to send
    zone = timefmt.zone_for(connection.branch.business.time_zone)
    last_day = timefmt.when(timefmt.local(exhausted.renews_at + timedelta(days=days - 1), zone).date())
    finish = (f" At this budget the last of them goes on {last_day}."
              if days > 1 else "")
    if days > 1 and connection.mass_resync_started_at is not None:
        from portal import notify

        notify.resync_delayed(connection.branch, exhausted.renews_at, exhausted.renews_at + timedelta(days=days - 1))
    return RunPaused(f"Paused: this Sage business has used its daily request budget. {counters.done} of "
                     f"{counters.total} {noun} are done; the rest are sent when the budget renews "
                     f"at {_local(exhausted.renews_at, connection)}, by itself.{finish}", exhausted.renews_at)


def _local(moment: datetime, connection: Connection) -> str:
    return timefmt.for_business(moment, connection.branch.business)


def _wait_out_outage(progress, counters: RunCounters, noun: str, error: SageUnavailable) -> None:
    """Sage stopped answering: pause the run and try again later, a few times (raises RunPaused),
    rather than burn its retries in seconds. Returns when the pauses are used up."""
    from portal.models import Job

    pauses = [int(p) for p in str(current_app.config["SAGE_OUTAGE_PAUSE_SECONDS"]).split(",") if p.strip()]
    row = db.session.get(Job, progress.job_id) if getattr(progress, "job_id", None) else None
    if row is None:
        return
    taken = int((row.params or {}).get("outage_pauses") or 0)
    if taken >= len(pauses):
        return
    row.params = {**(row.params or {}), "outage_pauses": taken + 1}
    db.session.commit()
    resume_at = utcnow() + timedelta(seconds=pauses[taken])
    again = timefmt.for_business(resume_at, row.branch.business)
    raise RunPaused(f"Sage isn't answering right now ({error}). {counters.done} of {counters.total} {noun} are "
                    f"done; the run waits and tries again at {again} by itself "
                    f"(wait {taken + 1} of {len(pauses)}).", resume_at)


def _stop_reason(error: Exception) -> str:
    if isinstance(error, SageRateLimited):
        return f"Sage kept limiting requests (asked to wait {error.retry_after:g} seconds)."
    if isinstance(error, SageAuthError):
        return "Sage no longer accepts this branch's sign-in; reconnect to Sage."
    if isinstance(error, SageUnavailable):
        return "Sage is not answering right now."
    return str(error)


def _record_outcome(connection: Connection, *, succeeded: bool, error: Exception | None = None) -> None:
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


class UnmappedCode(Exception):
    """An invoice line code has no confident Sage mapping; the message says what to choose."""


@dataclass
class Choice:
    """A default Sage lookup for a local code: `item` None when no choice is safe; `reason` says why."""

    item: dict | None
    reason: str


class AccountMapper:
    """Sage ledger account and tax rate ids per local code: the saved choice, else a confident default.

    A default is stored (with its reason) the first time a code is met, so every invoice of a run,
    and the next runs, use the same one. A code without a confident default is never guessed:
    the invoice using it stops with UnmappedCode.
    """

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
                if choice.item is None:
                    raise UnmappedCode(choice.reason)
                row = SageAccountMapping(branch_id=self.connection.branch_id,
                                         sage_business_id=self.connection.sage_business_id, kind=kind,
                                         code=code, sage_id=choice.item["id"], sage_name=label_of(choice.item),
                                         default_reason=choice.reason)
                db.session.add(row)
            self._cache[key] = row.sage_id
        return self._cache[key]

    def _default(self, kind: str, code: str) -> Choice:
        if kind not in self._lookups:
            items = self.client.ledger_accounts() if kind == self.LEDGER else self.client.tax_rates()
            if not items:
                raise SyncStopped(f"Sage returned no {kind.replace('_', ' ')}s for this business.")
            self._lookups[kind] = items
        return default_choice(kind, code, self._lookups[kind])


def label_of(item: dict) -> str:
    """How a Sage lookup is shown: its displayed_as, else its name, else its id."""
    return item.get("displayed_as") or item.get("name") or item["id"]


def default_choice(kind: str, code: str, items: list[dict]) -> Choice:
    """The Sage lookup a local code defaults to, and why; `item` is None when none is safe.

    Ledger accounts: one named like the code, else Sage's usual sales account. Tax rates: only a
    rate of exactly the code's own percentage (one named like the code first), never another.
    """
    words = code.lower().replace("_", " ").replace("-", " ").split()

    def named(candidates):
        return [i for i in candidates
                if any(w in (i.get("name") or i.get("displayed_as") or "").lower() for w in words)]

    if kind == AccountMapper.LEDGER:
        match = named(items)
        if match:
            return Choice(match[0], f"Chosen by the portal: its name matches the code “{code}”.")
        usual = next((i for i in items if str(i.get("nominal_code")) == "4000"), None) or next(
            (i for i in items if (i.get("name") or "").lower() == "sales"), None)
        if usual is not None:
            return Choice(usual, "Chosen by the portal: Sage's usual sales account.")
        return Choice(items[0], "Chosen by the portal: the first account Sage lists for sales.")
    percent = tax_codes.percent_of(code)
    if percent is None:
        return Choice(None, f"The portal doesn't know which rate the tax code “{code}” means, so it chooses "
                            "none: pick one. Invoices with this code wait until then.")
    same_rate = [i for i in items if _percentage(i) == percent]
    if not same_rate:
        return Choice(None, f"Sage lists no {percent:g}% tax rate for this business, so none was chosen for "
                            f"{tax_codes.describe(code)}: pick one. Invoices with this code wait until then.")
    match = named(same_rate)
    chosen = (match or same_rate)[0]
    return Choice(chosen, f"Chosen by the portal: {label_of(chosen)} has the same rate as {tax_codes.describe(code)}.")


def _percentage(item: dict) -> Decimal | None:
    try:
        return decimal_or_none(item.get("percentage"), "a tax rate's percentage")
    except UnusableNumber:
        return None


def invoice_body(invoice: Invoice, contact_sage_id: str, mapper: AccountMapper) -> dict:
    """The v3.1 sales invoice body with lines mapped to ledger accounts and tax rates.

    Quantities and prices go as decimal strings, as live Sage sends and accepts them: no float rounding.
    """
    body = {
        "contact_id": contact_sage_id,
        "date": invoice.issued_on.isoformat(),
        "reference": invoice.number,
        "invoice_lines": [
            {
                "description": line.description,
                "ledger_account_id": mapper.ledger_account(line.account_code),
                "tax_rate_id": mapper.tax_rate(line.tax_code),
                "quantity": str(line.quantity),
                "unit_price": str(line.unit_price),
            }
            for line in invoice.lines
        ],
    }
    if invoice.due_on:
        body["due_date"] = invoice.due_on.isoformat()
    return body


def push_invoice(client: SageClient, invoice: Invoice, mapper: AccountMapper, index: SageIndex) -> str:
    """Send one issued invoice (its contact first when Sage lacks it); returns created/linked/failed.

    Invoices have no unique reference in Sage, so a run looks for each one before creating it
    (`index`: Sage's list read once, or a search each), and a lost answer is looked up again.
    """
    contact = invoice.contact
    if not contact.sage_id or contact.sync_state != SyncState.SYNCED:
        contact_index = SageIndex("lookup", client.find_contact_by_reference)
        if push_contact(client, contact, contact_index) == "failed":
            invoice.mark_failed(f"Its contact {contact.name} could not be sent to Sage: {contact.sync_error}")
            return "failed"
    try:
        body = invoice_body(invoice, contact.sage_id, mapper)
    except UnmappedCode as unmapped:
        invoice.mark_failed(f"Not sent: {unmapped}")
        return "failed"
    try:
        found = index.find(invoice.number)
        if found:
            invoice.mark_synced(found)
            return "linked"
        for attempt in range(CREATE_ATTEMPTS):
            try:
                created = client.create_invoice(body)
                invoice.mark_synced(created["id"])
                return "created"
            except SageUnavailable:
                if attempt == CREATE_ATTEMPTS - 1:
                    raise
                client.back_off(attempt)
                found = index.confirm(invoice.number)
                if found:
                    invoice.mark_synced(found)
                    return "linked"
    except SageValidationError as error:
        invoice.mark_failed(f"Sage refused this invoice: {error.message}")
        return "failed"
    except SageAnswerUnusable as error:
        invoice.mark_failed(f"Not sent: {error}")
        return "failed"
    return "failed"


def sync_invoices(branch_id: int, progress) -> dict:
    """Send the branch's issued, pending or failed invoices to Sage in committed batches."""
    connection = usable_connection(branch_id)
    client = client_for(connection, progress)
    mapper = AccountMapper(connection, client)
    issued = (Invoice.status == InvoiceStatus.ISSUED,)
    counters = RunCounters(total=_count_open(Invoice, branch_id, *issued))
    counters.batches_total = math.ceil(counters.total / batch_size())
    counters.report(progress)
    index = _send_in_batches(
        connection, progress, counters, "invoices", _open_batches(Invoice, branch_id, *issued),
        lambda: SageIndex.build(client, "sales_invoices", counters.total) if counters.total else NO_INDEX,
        lambda invoice, index: push_invoice(client, invoice, mapper, index))
    _record_outcome(connection, succeeded=counters.failures == 0)
    invoices = f"{counters.done} invoice{'' if counters.done == 1 else 's'}"
    summary = (f"Sent {invoices} to Sage: {counters.created} created, {counters.linked} "
               f"already there, {counters.failures} failed.")
    return {"summary": summary, "matched_by": index.kind, "sage_requests": client.requests_sent,
            "rate_limited_responses": client.rate_limited_responses, **counters.as_dict()}


# --- The single void (rule 4) ---------------------------------------------------------------------


def void_invoice(branch_id: int, invoice_id: int, reason: str) -> dict:
    """Void one invoice in Sage, found unscoped; returns the outcome (a VoidOutcome) and a summary.

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
        return {**base, "outcome": VoidOutcome.NEVER_SYNCED,
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
            return {**base, "outcome": VoidOutcome.ALREADY_VOID,
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
            return {**base, "outcome": VoidOutcome.SAGE_REFUSED, "message": error.message,
                    "summary": f"Sage refused to void {label}: {error.message}"}
    except SageError as error:
        raise SyncStopped(f"{_stop_reason(error)} {label} was not voided; try again.") from None
    _mark_void(invoice, reason)
    return {**base, "outcome": VoidOutcome.VOIDED, "summary": f"{label} is now void in Sage."}


def _status(sage_invoice: dict | None) -> str | None:
    status = (sage_invoice or {}).get("status")
    return status.get("id") if isinstance(status, dict) else None


def _missing(base: dict, label: str) -> dict:
    return {**base, "outcome": VoidOutcome.MISSING_IN_SAGE,
            "summary": f"Sage has no invoice with the id recorded for {label}, so nothing was voided. "
                       "It needs manual clean-up: check in Sage whether it was deleted there or belongs "
                       "to another Sage business."}


def _mark_void(invoice: Invoice, reason: str) -> None:
    invoice.status = InvoiceStatus.VOID
    invoice.voided_at = invoice.voided_at or utcnow()
    invoice.void_reason = reason[:255]
    db.session.commit()
