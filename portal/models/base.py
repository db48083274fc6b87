"""Shared column helpers and the soft-delete scope.

Soft-deleted rows (``deleted_at`` set) are hidden from every ORM query by a global criteria.
A query that must see them — the single void, and nothing else in normal use — asks explicitly
with ``.execution_options(include_deleted=True)`` (see ``unscoped``).
"""
from __future__ import annotations

import weakref
from datetime import UTC, datetime

from sqlalchemy import DateTime, Enum, event, select
from sqlalchemy.orm import Mapped, ORMExecuteState, Session, mapped_column, with_loader_criteria
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """A timestamp stored as UTC and always returned timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use utcnow()")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def value_enum(cls, length: int | None = None) -> Enum:
    """A Python enum stored as its values in a plain string column (portable, readable in SQL)."""
    options = {"length": length} if length else {}
    return Enum(cls, native_enum=False, values_callable=lambda e: [m.value for m in e], **options)


class SoftDeleteMixin:
    """Rows are never removed by the product, only marked deleted."""

    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None, index=True)

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    def soft_delete(self) -> None:
        self.deleted_at = utcnow()


def unscoped(model):
    """A select() that includes soft-deleted rows; use only where a rule says so."""
    return select(model).execution_options(include_deleted=True)


# Each statement with the soft-delete criteria added, kept while the statement lives: a statement
# built once and run at every request (a page's prebuilt query) is wrapped once, so SQLAlchemy's
# cache key, memoised on the wrapped statement, is not worked out again at every execution.
_SCOPED = weakref.WeakKeyDictionary()


def _scoped(statement):
    wrapped = _SCOPED.get(statement)
    if wrapped is None:
        wrapped = _SCOPED[statement] = statement.options(
            with_loader_criteria(SoftDeleteMixin, lambda cls: cls.deleted_at.is_(None), include_aliases=True)
        )
    return wrapped


@event.listens_for(Session, "do_orm_execute")
def _hide_soft_deleted(state: ORMExecuteState) -> None:
    if (
        state.is_select
        and not state.is_column_load
        and not state.is_relationship_load
        and not state.execution_options.get("include_deleted", False)
    ):
        state.statement = _scoped(state.statement)
