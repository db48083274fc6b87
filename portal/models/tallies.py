"""Counts of each branch's contacts and invoices, kept by the database as the rows change.

The pages show how many records wait, failed or are in Sage, and the most common failure reason,
for branches of tens of thousands of records. Counting them on every view read the whole of a
branch's index each time (several milliseconds a page under load); these two tables hold the same
figures, kept exact by row triggers on `contacts` and `invoices`, so every writer is counted: the
portal's jobs and pages, bulk updates and the job-management product writing the same tables.

- `record_tallies`: per branch, record type, category (a contact's kind, an invoice's status), sync
  state, deleted or not and in Sage (a Sage id) or not: how many rows.
- `failure_tallies`: per branch, record type, category and reason, how many failed rows that are not
  deleted have it (no reason is stored as ""); a reason nobody has any more is removed.

`trigger_ddl(dialect)` is what migration 0019 created; tests/test_record_tallies.py checks the tables
against counts of the rows after every kind of change.
"""
from __future__ import annotations

from sqlalchemy import Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from portal.extensions import db
from portal.models.ledger import REASON_LIMIT

# table → (the record type the tallies name, the column that is its category)
TALLIED = {"contacts": ("contact", "kind"), "invoices": ("invoice", "status")}
# Columns a change of which moves a row from one tally to another.
WATCHED = ("branch_id", "sync_state", "sync_error", "deleted_at", "sage_id")


class RecordTally(db.Model):
    __tablename__ = "record_tallies"

    branch_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    record: Mapped[str] = mapped_column(String(10), primary_key=True)
    category: Mapped[str] = mapped_column(String(20), primary_key=True)
    sync_state: Mapped[str] = mapped_column(String(20), primary_key=True)
    deleted: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    in_sage: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    n: Mapped[int] = mapped_column(Integer, default=0)


class FailureTally(db.Model):
    __tablename__ = "failure_tallies"

    branch_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    record: Mapped[str] = mapped_column(String(10), primary_key=True)
    category: Mapped[str] = mapped_column(String(20), primary_key=True)
    reason: Mapped[str] = mapped_column(Text, primary_key=True)
    n: Mapped[int] = mapped_column(Integer, default=0)


def reason_of(row: str = "") -> str:
    """A row's reason as tallied: its error cut to the stored length, "" for none."""
    column = f"{row}.sync_error" if row else "sync_error"
    return f"substr(coalesce({column}, ''), 1, {REASON_LIMIT})"


def _sql(table: str, row: str) -> dict[str, str]:
    """The statements that add a row (NEW) to its tallies or take one (OLD) from them."""
    record, category = TALLIED[table]
    key = (f"branch_id = {row}.branch_id AND record = '{record}' AND category = {row}.{category}")
    failed = f"{row}.sync_state = 'failed' AND {row}.deleted_at IS NULL"
    return {
        "add": (
            "INSERT INTO record_tallies (branch_id, record, category, sync_state, deleted, in_sage, n) "
            f"VALUES ({row}.branch_id, '{record}', {row}.{category}, {row}.sync_state, "
            f"{row}.deleted_at IS NOT NULL, {row}.sage_id IS NOT NULL, 1) "
            "ON CONFLICT (branch_id, record, category, sync_state, deleted, in_sage) DO UPDATE SET n = "
            "record_tallies.n + 1"),
        "add_failure": (
            "INSERT INTO failure_tallies (branch_id, record, category, reason, n) "
            f"SELECT {row}.branch_id, '{record}', {row}.{category}, {reason_of(row)}, 1 "
            f"WHERE {failed} "
            "ON CONFLICT (branch_id, record, category, reason) DO UPDATE SET n = failure_tallies.n + 1"),
        "take": (
            f"UPDATE record_tallies SET n = n - 1 WHERE {key} AND sync_state = {row}.sync_state "
            f"AND deleted = ({row}.deleted_at IS NOT NULL) AND in_sage = ({row}.sage_id IS NOT NULL)"),
        "take_failure": (
            f"UPDATE failure_tallies SET n = n - 1 WHERE {failed} AND {key} "
            f"AND reason = {reason_of(row)}"),
        "forget_failure": (
            f"DELETE FROM failure_tallies WHERE n <= 0 AND {key} AND reason = {reason_of(row)}"),
    }


def _changed(category: str) -> str:
    """The UPDATE triggers' condition: a watched column changed in a way a tally sees."""
    return " OR ".join([
        "OLD.branch_id <> NEW.branch_id", f"OLD.{category} <> NEW.{category}", "OLD.sync_state <> NEW.sync_state",
        f"{reason_of('OLD')} <> {reason_of('NEW')}",
        "(OLD.deleted_at IS NULL) <> (NEW.deleted_at IS NULL)", "(OLD.sage_id IS NULL) <> (NEW.sage_id IS NULL)",
    ])


def trigger_ddl(dialect: str) -> list[str]:
    """CREATE statements of the triggers (and, on PostgreSQL, their functions) for both tables."""
    statements = []
    for table, (_, category) in TALLIED.items():
        new, old = _sql(table, "NEW"), _sql(table, "OLD")
        columns = ", ".join(("branch_id", category, *WATCHED[1:]))
        if dialect == "sqlite":
            adds = f"{new['add']}; {new['add_failure']};"
            takes = f"{old['take']}; {old['take_failure']}; {old['forget_failure']};"
            statements += [
                f"CREATE TRIGGER {table}_tally_insert AFTER INSERT ON {table} BEGIN {adds} END",
                f"CREATE TRIGGER {table}_tally_delete AFTER DELETE ON {table} BEGIN {takes} END",
                f"CREATE TRIGGER {table}_tally_update AFTER UPDATE OF {columns} ON {table} "
                f"WHEN {_changed(category)} BEGIN {takes} {adds} END",
            ]
        elif dialect == "postgresql":
            statements += [
                f"""CREATE FUNCTION {table}_tally() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        {old['take']};
        {old['take_failure']};
        {old['forget_failure']};
    END IF;
    IF TG_OP <> 'DELETE' THEN
        {new['add']};
        {new['add_failure']};
    END IF;
    RETURN NULL;
END $$""",
                f"CREATE TRIGGER {table}_tally AFTER INSERT OR DELETE ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION {table}_tally()",
                f"CREATE TRIGGER {table}_tally_update AFTER UPDATE OF {columns} ON {table} "
                f"FOR EACH ROW WHEN ({_changed(category)}) EXECUTE FUNCTION {table}_tally()",
            ]
        else:
            raise ValueError(f"no record tallies for the {dialect} dialect")
    return statements


def drop_ddl(dialect: str) -> list[str]:
    """DROP statements for what trigger_ddl created."""
    if dialect == "postgresql":
        return [f"DROP FUNCTION IF EXISTS {table}_tally() CASCADE" for table in TALLIED]
    return [f"DROP TRIGGER IF EXISTS {table}_tally_{when}" for table in TALLIED
            for when in ("insert", "delete", "update")]


def backfill_sql() -> list[str]:
    """Statements that fill empty tallies from the rows there are (after trigger_ddl, in one transaction)."""
    statements = []
    for table, (record, category) in TALLIED.items():
        statements += [
            "INSERT INTO record_tallies (branch_id, record, category, sync_state, deleted, in_sage, n) "
            f"SELECT branch_id, '{record}', {category}, sync_state, deleted_at IS NOT NULL, sage_id IS NOT NULL, "
            f"count(*) FROM {table} GROUP BY branch_id, {category}, sync_state, deleted_at IS NOT NULL, "
            "sage_id IS NOT NULL",
            "INSERT INTO failure_tallies (branch_id, record, category, reason, n) "
            f"SELECT branch_id, '{record}', {category}, {reason_of()}, count(*) FROM {table} "
            f"WHERE sync_state = 'failed' AND deleted_at IS NULL GROUP BY branch_id, {category}, "
            f"{reason_of()}",
        ]
    return statements
