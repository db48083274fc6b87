"""The support console's search text: one narrow row per business, kept current on every flush.

A console search matches any part of a business name, its branch names, its customer users'
emails, and the Sage business / Sage One company names of its connections. A substring match
cannot use a b-tree index, so rather than scanning five wide tables per keystroke, the console
scans this one narrow table: `haystack` holds those texts lowercased, one per line, and the rows
are stored in the order the console lists customers (business name, then id), so a broad search
stops as soon as it has enough matches.

The rows are rewritten by an `after_flush` hook whenever a flush adds, deletes or changes one of
those fields, so every ORM write path keeps them current by construction. Bulk Core inserts
bypass the ORM (the benchmark's seeding does): call `rebuild_all()` after them.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import Connection as DBConnection
from sqlalchemy import (
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    delete,
    event,
    insert,
    inspect,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from portal.extensions import db
from portal.models.accounts import Branch, Business, Role, User
from portal.models.connections import Connection

# Between the texts of one business, so that a query never matches across two of them.
SEPARATOR = "\n"
_CHUNK = 500

# The fields the haystack is made of, per model: a change to any of them re-indexes the business.
_WATCHED = {
    Business: ("name",),
    Branch: ("name", "business_id"),
    User: ("email", "role", "business_id"),
    Connection: ("sage_business_name", "sage_one_company_name", "branch_id"),
}


class CustomerSearch(db.Model):
    """The searchable text of one business (derived data: rebuilt from the source tables)."""

    __tablename__ = "customer_search"
    # Clustered on the listing order (SQLite keeps a WITHOUT ROWID table in primary-key order), so
    # `WHERE haystack LIKE … ORDER BY name, business_id LIMIT n` reads rows in order and stops early.
    __table_args__ = (
        Index("ix_customer_search_business_id", "business_id", unique=True),
        {"sqlite_with_rowid": False},
    )

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    business_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("businesses.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    haystack: Mapped[str] = mapped_column(Text)

    def __repr__(self) -> str:
        return f"<CustomerSearch {self.business_id} {self.name!r}>"


def searchable(text: str) -> str:
    """How a text (or a query) is normalised for matching: lowercased, any case matches."""
    return text.lower()


def haystack(texts: Iterable[str]) -> str:
    """The searchable text of a business: its texts normalised, each once, one per line."""
    return SEPARATOR.join(dict.fromkeys(searchable(text) for text in texts))


def reindex(conn: DBConnection, business_ids: Iterable[int]) -> None:
    """Rewrite the search rows of these businesses from the source tables (missing ones are dropped)."""
    ids = sorted(set(business_ids))
    for start in range(0, len(ids), _CHUNK):
        _reindex_chunk(conn, ids[start:start + _CHUNK])


def rebuild_all(conn: DBConnection) -> None:
    """Rewrite every search row (after bulk inserts that bypass the ORM)."""
    conn.execute(delete(CustomerSearch))
    last = 0
    while ids := conn.scalars(
        select(Business.id).where(Business.id > last).order_by(Business.id).limit(_CHUNK)
    ).all():
        _reindex_chunk(conn, ids)
        last = ids[-1]


def _reindex_chunk(conn: DBConnection, ids: list[int]) -> None:
    texts: dict[int, list[str]] = defaultdict(list)
    for business_id, name in conn.execute(select(Branch.business_id, Branch.name).where(Branch.business_id.in_(ids))):
        texts[business_id].append(name)
    for business_id, email in conn.execute(
        select(User.business_id, User.email).where(User.business_id.in_(ids), User.role == Role.CUSTOMER)
    ):
        texts[business_id].append(email)
    for business_id, sage_name, sage_one_name in conn.execute(
        select(Branch.business_id, Connection.sage_business_name, Connection.sage_one_company_name)
        .join(Connection, Connection.branch_id == Branch.id)
        .where(Branch.business_id.in_(ids))
    ):
        texts[business_id].extend(n for n in (sage_name, sage_one_name) if n)
    rows = [
        {"business_id": business_id, "name": name,
         "haystack": haystack([name, *texts[business_id]])}
        for business_id, name in conn.execute(select(Business.id, Business.name).where(Business.id.in_(ids)))
    ]
    conn.execute(delete(CustomerSearch).where(CustomerSearch.business_id.in_(ids)))
    if rows:
        conn.execute(insert(CustomerSearch), rows)


def _touched(session: Session) -> tuple[set[int], set[int]]:
    """Business ids and branch ids whose searchable text this flush may have changed."""
    business_ids: set[int] = set()
    branch_ids: set[int] = set()
    for obj in (*session.new, *session.dirty, *session.deleted):
        fields = _WATCHED.get(type(obj))
        if fields is None:
            continue
        # What the row belongs to: a business itself, the business of a branch or user, the
        # branch of a connection.
        key = "id" if isinstance(obj, Business) else fields[-1]
        state = inspect(obj)
        links = set()
        if obj in session.dirty:
            histories = [state.attrs[f].history for f in fields]
            if not any(h.has_changes() for h in histories):
                continue
            links.add(getattr(obj, key))
            if key != "id":
                links.update(state.attrs[key].history.deleted)  # the business or branch it left
        else:
            # New rows have their keys after the flush; a deleted row is never reloaded.
            links.add(state.dict.get(key))
        links.discard(None)
        (branch_ids if isinstance(obj, Connection) else business_ids).update(links)
    return business_ids, branch_ids


@event.listens_for(Session, "after_flush")
def _reindex_after_flush(session: Session, flush_context) -> None:
    business_ids, branch_ids = _touched(session)
    if not business_ids and not branch_ids:
        return
    conn = session.connection()
    if branch_ids:
        business_ids.update(conn.scalars(select(Branch.business_id).where(Branch.id.in_(sorted(branch_ids)))))
    reindex(conn, business_ids)
