"""Sage One AUS answers as live Sage sends them: numbers as strings or numbers (read as Decimals),
ids as strings, a nested Customer; and answers the portal can't use (HTML where JSON was expected,
an unknown shape, a number that does not parse) stop the record or run with a clear message and
change nothing else."""
from __future__ import annotations

from decimal import Decimal

import pytest

from portal.extensions import db
from portal.integrations.sage_one_aus import credentials, shapes
from portal.integrations.sage_one_aus import sync as sage_one_sync
from portal.integrations.sage_one_aus.errors import SageOneUnusableAnswer
from portal.models import (
    AuditEvent,
    Connection,
    Invoice,
    InvoiceStatus,
    Job,
    JobStatus,
    SyncState,
)
from tests import factories
from tests.integrations.sage_one_aus.conftest import (
    USERNAME,
    company,
    connect,
    sync,
    void,
)


def _connection(branch) -> Connection | None:
    return db.session.scalar(db.select(Connection).where(Connection.branch_id == branch.id))


def _last_job(kind: str = sage_one_sync.SYNC_KIND) -> Job:
    return db.session.scalars(db.select(Job).where(Job.kind == kind).order_by(Job.created_at.desc())).first()


@pytest.fixture
def connected(world, client, auth, sandbox):
    auth.login(world.owner)
    assert connect(client, world.branch).status_code == 302
    return world


@pytest.fixture
def synced_invoice(connected, client, sandbox, drain_jobs):
    contact = factories.contacts(connected.branch, 1)[0]
    invoice = factories.invoice(connected.branch, contact, amount="110.00")
    sync(client, connected.branch)
    drain_jobs()
    return db.session.get(Invoice, invoice.id)


# --- numbers in either form -----------------------------------------------------------------------


@pytest.mark.parametrize("raw, expected", [
    (110, Decimal("110")), (110.5, Decimal("110.5")), ("110.00", Decimal("110.00")), (" 10 ", Decimal("10")),
    ("0.0", Decimal("0.0")), (Decimal("1.1"), Decimal("1.1")), ("-430035.84", Decimal("-430035.84")),
])
def test_every_number_reads_as_a_decimal_whether_string_or_number(raw, expected):
    assert shapes.decimal(raw, "the credit note", "Total") == expected
    assert isinstance(shapes.decimal(raw, "the credit note", "Total"), Decimal)


@pytest.mark.parametrize("raw", ["ten", "", "NaN", "Infinity", "110,00", None, True, [], {}])
def test_a_number_that_does_not_parse_is_an_unusable_answer(raw):
    with pytest.raises(SageOneUnusableAnswer, match="can't read"):
        shapes.decimal(raw, "the credit note", "Total")


def test_ids_read_as_integers_from_strings_and_a_nested_customer_counts():
    assert shapes.integer("100001", "x", "ID") == 100001 and shapes.integer(100001.0, "x", "ID") == 100001
    with pytest.raises(SageOneUnusableAnswer):
        shapes.integer("100001.5", "x", "ID")
    nested = {"ID": 7, "Customer": {"ID": "100042", "Name": "Ava"}}  # includeCustomerDetails=true
    assert shapes.customer_id(nested, "the tax invoice") == 100042
    assert shapes.customer_id({"CustomerId": "100043", "Customer": None}, "the tax invoice") == 100043


def test_a_void_reads_the_invoice_lines_numbers_sent_as_strings(connected, synced_invoice, client, sandbox,
                                                                drain_jobs):
    stored = company(sandbox).invoices[int(synced_invoice.sage_id)]
    for line in stored["Lines"]:  # as live Sage may send them
        line.update(Quantity="1", UnitPriceInclusive=f"{line['UnitPriceInclusive']:.2f}", LineType="1",
                    SelectionId=str(line["SelectionId"]), TaxTypeId=str(line["TaxTypeId"]))

    void(client, connected.branch, synced_invoice)
    drain_jobs()

    job = _last_job(sage_one_sync.VOID_KIND)
    assert job.status == JobStatus.FINISHED, job.error
    note = next(iter(company(sandbox).credit_notes.values()))
    assert note["Total"] == Decimal("110.00")
    assert "for 110.00" in job.result["summary"]


def test_a_void_stops_on_a_number_it_cannot_read_and_changes_nothing(connected, synced_invoice, client, sandbox,
                                                                    drain_jobs):
    stored = company(sandbox).invoices[int(synced_invoice.sage_id)]
    stored["Lines"][0]["UnitPriceInclusive"] = "one hundred and ten"

    void(client, connected.branch, synced_invoice)
    drain_jobs()

    job = _last_job(sage_one_sync.VOID_KIND)
    assert job.status == JobStatus.FAILED
    assert "can't read" in job.error and "UnitPriceInclusive is not a number" in job.error
    assert not company(sandbox).credit_notes
    assert db.session.get(Invoice, synced_invoice.id).status == InvoiceStatus.ISSUED
    assert not db.session.scalars(db.select(AuditEvent).where(AuditEvent.kind == "sage_one_aus.void")).all()


def test_lookups_with_string_ids_and_percentages_still_sync(connected, client, sandbox, drain_jobs):
    sage = company(sandbox)
    for tax_type in sage.tax_types.values():
        tax_type["Percentage"] = f"{tax_type['Percentage']}"
    contact = factories.contacts(connected.branch, 1)[0]
    factories.invoice(connected.branch, contact, amount="55.00")

    sync(client, connected.branch)
    drain_jobs()

    assert _last_job().status == JobStatus.FINISHED, _last_job().error
    assert len(sage.invoices) == 1


def test_a_tax_type_percentage_that_does_not_parse_stops_the_run_before_any_invoice(
        connected, client, sandbox, drain_jobs):
    sage = company(sandbox)
    next(iter(sage.tax_types.values()))["Percentage"] = "ten per cent"
    contacts = factories.contacts(connected.branch, 2)
    invoice = factories.invoice(connected.branch, contacts[0])

    sync(client, connected.branch)
    drain_jobs()

    job = _last_job()
    assert job.status == JobStatus.FAILED
    assert "can't read" in job.error and "Percentage is not a number" in job.error
    assert len(sage.customers) == 2 and not sage.invoices  # the customers sent before stay sent
    assert db.session.get(Invoice, invoice.id).sync_state == SyncState.PENDING


# --- answers that are not Sage's data -------------------------------------------------------------


def _point_at(app, sandbox, path: str) -> None:
    """Point the portal's Sage One base URL at `path` in the sandbox (read afresh by every request)."""
    app.config["SAGE_ONE_API_URL"] = f"{sandbox.url}{path}"


def test_html_where_json_was_expected_stops_the_connect_with_a_clear_message(app, world, client, auth, sandbox):
    _point_at(app, sandbox, "/_sandbox/?answer=")  # the sandbox's HTML overview, 200 whatever follows
    auth.login(world.owner)
    response = connect(client, world.branch)

    body = response.get_data(as_text=True)
    assert response.status_code == 502
    assert "answered Company/Get in a form the portal can" in body and "text/html" in body
    assert "Traceback" not in body
    assert _connection(world.branch) is None
    assert credentials.attempts_left(USERNAME) == credentials.LOGIN_FAILURES_BEFORE_LOCK


def test_an_unknown_shape_stops_the_connect_with_a_clear_message(app, world, client, auth, sandbox):
    _point_at(app, sandbox, "/_sandbox/state?answer=")  # JSON, but not a list of companies
    auth.login(world.owner)
    response = connect(client, world.branch)

    assert response.status_code == 502
    assert "not a list of results" in response.get_data(as_text=True)
    assert _connection(world.branch) is None


def test_a_base_url_ending_in_a_slash_still_connects(app, world, client, auth, sandbox):
    _point_at(app, sandbox, "/api/2.0.0/")
    auth.login(world.owner)
    assert connect(client, world.branch).status_code == 302
