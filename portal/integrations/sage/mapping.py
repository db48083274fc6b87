"""The branch's mapping of invoice line codes to its Sage business's ledger accounts and tax rates.

The choices offered are whatever Sage lists right now (read-only GETs through the branch's own
client, which never waits on the business's limiter: a busy business gets "Sage is busy" and the
saved mapping at once); a saved choice must be one of them, so a forged or stale id never reaches
an invoice. A default the portal chose is marked with why; a tax code without a rate of its own
percentage gets no default, and its invoices wait for a person's choice.
The invoice sync (`sync.AccountMapper`) reads the same rows, so a saved choice applies to the next
invoice sent.
"""
from __future__ import annotations

from dataclasses import dataclass

from portal import audit
from portal.extensions import db
from portal.integrations.sage import sync
from portal.integrations.sage.client import SageAuthError, SageBusy, SageError, SageRateLimited
from portal.models import Connection, Invoice, InvoiceLine, SageAccountMapping

LEDGER, TAX = sync.AccountMapper.LEDGER, sync.AccountMapper.TAX
KIND_LABELS = {LEDGER: "Ledger account", TAX: "Tax rate"}
_LINE_COLUMNS = {LEDGER: InvoiceLine.account_code, TAX: InvoiceLine.tax_code}


class SageLookupsUnavailable(Exception):
    """Sage's ledger accounts and tax rates could not be read; the message says why in plain words."""


class MappingRefused(Exception):
    """A submitted choice is not one Sage offered (or names a code the branch does not use)."""


@dataclass
class Option:
    id: str
    label: str


@dataclass
class MappingRow:
    """One local code, the Sage choices for it, and which one is selected."""

    kind: str
    code: str
    options: list[Option]
    selected: str
    saved: SageAccountMapping | None
    # Why the selection is the portal's own default (None once a person chose it).
    default_reason: str | None = None

    @property
    def needs_choice(self) -> bool:
        """No confident default exists and nothing was saved: a person must choose."""
        return not self.selected

    @property
    def field(self) -> str:
        return field_name(self.kind, self.code)

    @property
    def saved_is_gone(self) -> bool:
        """The saved Sage id is no longer listed by Sage (deleted or hidden there)."""
        return self.saved is not None and all(o.id != self.saved.sage_id for o in self.options)


def field_name(kind: str, code: str) -> str:
    """The form field that carries the choice for one code, e.g. `ledger_account:sales`."""
    return f"{kind}:{code}"


def saved_mappings(connection: Connection) -> dict[tuple[str, str], SageAccountMapping]:
    """The branch's saved rows for its current Sage business, keyed by (kind, code)."""
    rows = db.session.scalars(db.select(SageAccountMapping).where(
        SageAccountMapping.branch_id == connection.branch_id,
        SageAccountMapping.sage_business_id == connection.sage_business_id,
    ))
    return {(row.kind, row.code): row for row in rows}


def codes_in_use(branch_id: int) -> dict[str, list[str]]:
    """The account and tax codes on the lines of the branch's invoices (deleted invoices left out)."""
    codes: dict[str, list[str]] = {}
    for kind, column in _LINE_COLUMNS.items():
        codes[kind] = list(db.session.scalars(
            db.select(column).distinct().join(Invoice, InvoiceLine.invoice_id == Invoice.id)
            .where(Invoice.branch_id == branch_id, Invoice.deleted_at.is_(None)).order_by(column)
        ))
    return codes


def sage_lookups(connection: Connection) -> dict[str, list[dict]]:
    """Sage's ledger accounts (visible in sales) and tax rates; raises SageLookupsUnavailable."""
    client = sync.page_client_for(connection)
    try:
        return {LEDGER: client.ledger_accounts(), TAX: client.tax_rates()}
    except SageBusy:
        raise SageLookupsUnavailable("Sage is busy with this business's other requests right now (a sync is "
                                     "using its request limit), so its ledger accounts and tax rates can't be "
                                     "listed this minute. The mapping below is what the next sync uses; try "
                                     "again in a minute to change it.") from None
    except SageAuthError:
        raise SageLookupsUnavailable("Sage no longer accepts this branch's sign-in, so its ledger accounts "
                                     "and tax rates can't be listed. Reconnect to Sage.") from None
    except SageRateLimited:
        raise SageLookupsUnavailable("Sage is limiting requests for this business right now. "
                                     "Try again in a minute.") from None
    except SageError:
        raise SageLookupsUnavailable("Sage can't be reached right now, so its ledger accounts and tax rates "
                                     "can't be listed. Try again in a few minutes.") from None


def rows(connection: Connection, lookups: dict[str, list[dict]]) -> list[MappingRow]:
    """Every code the branch uses (or has a saved choice for), with Sage's options and the selection.

    The selection is the saved choice while Sage still lists it, else the default the sync would pick.
    """
    saved = saved_mappings(connection)
    in_use = codes_in_use(connection.branch_id)
    result = []
    for kind in (LEDGER, TAX):
        items = lookups[kind]
        options = [Option(item["id"], sync.label_of(item)) for item in items]
        codes = sorted(set(in_use[kind]) | {code for (k, code) in saved if k == kind})
        for code in codes:
            row = saved.get((kind, code))
            listed = {o.id for o in options}
            if row is not None and row.sage_id in listed:
                selected, reason = row.sage_id, row.default_reason
            elif items:
                choice = sync.default_choice(kind, code, items)
                selected, reason = (choice.item["id"] if choice.item else ""), choice.reason
            else:
                selected, reason = "", None
            result.append(MappingRow(kind, code, options, selected, row, reason))
    return result


def save(connection: Connection, form: dict[str, str], lookups: dict[str, list[dict]], *, by: str = "") -> list[dict]:
    """Validate every submitted choice against Sage's lists, then store them all; returns the changes.

    Nothing is stored when any choice is refused (MappingRefused says which). Records
    `sage.mapping_changed` when something changed (`by` is appended to its summary); commits.
    """
    current = rows(connection, lookups)
    by_field = {row.field: row for row in current}
    submitted = {name: (value or "").strip() for name, value in form.items()
                 if name.startswith((LEDGER + ":", TAX + ":"))}
    if not submitted:
        raise MappingRefused("Choose a Sage ledger account or tax rate for at least one code.")
    chosen: list[tuple[MappingRow, Option]] = []
    for name, value in submitted.items():
        row = by_field.get(name)
        if row is None:
            kind, _, code = name.partition(":")
            raise MappingRefused(f"“{code}” is not a {KIND_LABELS[kind].lower()} code used by this branch's invoices.")
        if not value and row.needs_choice:
            continue  # left unchosen: its invoices keep waiting
        option = next((o for o in row.options if o.id == value), None)
        if option is None:
            raise MappingRefused(f"The {KIND_LABELS[row.kind].lower()} chosen for “{row.code}” is not one Sage "
                                 "lists for this business. Pick one from the list.")
        chosen.append((row, option))

    changes = []
    for row, option in chosen:
        saved = row.saved
        if saved is not None and saved.sage_id == option.id and saved.sage_name == option.label:
            if saved.default_reason:
                saved.default_reason = None  # a person confirmed the portal's default
            continue
        changes.append({"kind": row.kind, "code": row.code, "from": saved.sage_id if saved else None,
                        "from_name": saved.sage_name if saved else None, "to": option.id, "to_name": option.label})
        if saved is None:
            saved = SageAccountMapping(branch_id=connection.branch_id, sage_business_id=connection.sage_business_id,
                                       kind=row.kind, code=row.code)
            db.session.add(saved)
        saved.sage_id, saved.sage_name, saved.default_reason = option.id, option.label, None
    if changes:
        described = "; ".join(f"{c['kind'].replace('_', ' ')} “{c['code']}” → {c['to_name']}" for c in changes)
        audit.record("sage.mapping_changed", f"Sage mapping changed for {connection.branch.name}{by}: {described}",
                     branch=connection.branch,
                     details={"sage_business_id": connection.sage_business_id, "changes": changes})
    db.session.commit()
    return changes
