"""Find customers: by business, branch, user email or Sage business / Sage One company name.

A page of results costs a fixed number of queries whatever the data size: one page of business ids
(with a count), then the names, branches with their connections, and users of just that page,
loading only the columns the page shows.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

from sqlalchemy import Connection as DBConnection
from sqlalchemy import Row, bindparam, func, select

from portal import like
from portal.extensions import db
from portal.models import Branch, Business, Connection, CustomerSearch, Role, User
from portal.models.customer_search import SEPARATOR, searchable
from portal.support import health

PER_PAGE = 20
MAX_QUERY_LENGTH = 100
MAX_MATCHES = 200


_PAGE_IDS = bindparam("business_ids", expanding=True)
# One row per branch of the listed businesses: the branch's columns, what a result shows of its
# connection (never the wide rest: tokens, keys, bookkeeping) and its health flags, evaluated by
# the database with the same predicates as the filters. Built once, run as plain Core statements:
# only the ids and the moment change from request to request.
_BRANCHES = (
    select(
        Branch.business_id, Branch.name, Branch.is_head_office, Connection.id.label("connection_id"),
        Connection.provider, Connection.state, Connection.sage_business_name, Connection.sage_one_company_name,
        *health.flag_columns(),  # last: health.flags_of reads them from the end of the row
    )
    .outerjoin(Connection, Connection.branch_id == Branch.id)
    .where(Branch.business_id.in_(_PAGE_IDS))
    .order_by(Branch.id)
)
_CUSTOMER_EMAILS = (
    select(User.business_id, User.email)
    .where(User.business_id.in_(_PAGE_IDS), User.role == Role.CUSTOMER)
    .order_by(User.email)
)


@dataclass(frozen=True)
class BusinessSummary:
    id: int
    name: str


@dataclass
class BranchResult:
    """A branch as the console lists it: a _BRANCHES row here, ORM objects on the customer page."""

    branch: Row | Branch  # name, is_head_office
    connection: Row | Connection | None  # provider, state, names; None when not connected
    flags: list[health.HealthFilter]

    @functools.cached_property
    def badges(self) -> tuple[health.Badge, ...]:
        return health.badges(self.connection.state if self.connection is not None else None, self.flags)


@dataclass
class CustomerResult:
    business: BusinessSummary
    branches: list[BranchResult]
    emails: list[str] = field(default_factory=list)


@dataclass
class SearchPage:
    query: str
    health_filter: health.HealthFilter | None
    ctx: health.HealthContext
    page: int
    total: int
    results: list[CustomerResult]
    capped: bool = False  # more than MAX_MATCHES matched; `total` counts only the first ones

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // PER_PAGE))

    @property
    def has_previous(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages

    @property
    def first_index(self) -> int:
        return (self.page - 1) * PER_PAGE + 1 if self.results else 0

    @property
    def last_index(self) -> int:
        return (self.page - 1) * PER_PAGE + len(self.results)


@functools.cache
def _matching(text: bool, health_key: str | None):
    """A select of (id, name) of the matching businesses in listing order, for one shape of search.

    Built once per shape (text or not, which health filter) and run with only the parameters
    changing: the `pattern`, the moment (`health.moment_parameters`) and, for the unfiltered
    listing, `limit` and `offset`.
    """
    if text:
        # One narrow row of lowercased text per business (portal.models.customer_search), scanned
        # in listing order: a broad query stops after the first matches it needs.
        business_id = CustomerSearch.business_id
        stmt = (
            select(business_id, CustomerSearch.name)
            .where(CustomerSearch.haystack.like(bindparam("pattern"), escape=like.ESCAPE))
            .order_by(CustomerSearch.name, business_id)
        )
    else:
        business_id = Business.id
        stmt = select(business_id, Business.name).order_by(Business.name, business_id)
    if health_key is not None:
        stmt = stmt.where(
            business_id.in_(
                select(Branch.business_id)
                .join(Connection, Connection.branch_id == Branch.id)
                .where(health.sql_for_any_moment(health.BY_KEY[health_key]))
            )
        )
    if text or health_key is not None:
        return stmt.limit(MAX_MATCHES + 1)
    return stmt.limit(bindparam("limit")).offset(bindparam("offset"))


_EVERYONE = select(func.count()).select_from(Business)


def search(query: str = "", health_key: str | None = None, page: int = 1,
           ctx: health.HealthContext | None = None) -> SearchPage:
    """One page of customers matching `query` (any part of a name or email) and a health filter."""
    query = (query or "").strip()[:MAX_QUERY_LENGTH]
    ctx = ctx or health.context()
    health_filter = health.get_filter(health_key)
    # Plain Core statements on the session's connection: they read no soft-deletable rows, so the
    # ORM's per-statement work (loader criteria, entity compilation) would buy nothing here.
    if SEPARATOR in query:
        # No single name or email spans two lines of the search text.
        return SearchPage(query, health_filter, ctx, 1, 0, [])
    conn = db.session.connection()
    if query or health_filter is not None:
        # A substring match reads every search row once: do it in one query that returns the
        # ordered ids, then count and slice them here, rather than matching twice (count, then page).
        # Capped: a query typed one letter at a time matches most customers at first, and nobody
        # pages through thousands of results; the page says to keep typing instead.
        parameters = {"pattern": like.contains(searchable(query))} if query else {}
        if health_filter is not None:
            parameters.update(health.moment_parameters(ctx))
        matches = conn.execute(
            _matching(bool(query), health_filter.key if health_filter else None), parameters
        ).all()
        capped = len(matches) > MAX_MATCHES
        matches = matches[:MAX_MATCHES]
        total = len(matches)
        page = max(1, min(page, max(1, -(-total // PER_PAGE))))
        listed = matches[(page - 1) * PER_PAGE: page * PER_PAGE]
    else:
        capped = False
        # Everyone, alphabetically: the name index gives the order, so only one page is read.
        # COUNT(*), not COUNT(id): SQLite answers it without reading each row.
        total = conn.scalar(_EVERYONE)
        page = max(1, min(page, max(1, -(-total // PER_PAGE))))
        listed = conn.execute(
            _matching(False, None), {"limit": PER_PAGE, "offset": (page - 1) * PER_PAGE}
        ).all()
    return SearchPage(query, health_filter, ctx, page, total, _results(conn, listed, ctx), capped)


def _results(conn: DBConnection, listed: list[Row], ctx: health.HealthContext) -> list[CustomerResult]:
    """The listed (id, name) businesses with their branches, connections and customer emails."""
    if not listed:
        return []
    ids = {"business_ids": [business_id for business_id, _ in listed]}
    branches: dict[int, list[BranchResult]] = {}
    for row in conn.execute(_BRANCHES, {**ids, **health.moment_parameters(ctx)}):
        connection = row if row.connection_id is not None else None
        branches.setdefault(row.business_id, []).append(BranchResult(row, connection, health.flags_of(row)))
    emails: dict[int, list[str]] = {}
    for business_id, email in conn.execute(_CUSTOMER_EMAILS, ids):
        emails.setdefault(business_id, []).append(email)
    return [
        CustomerResult(BusinessSummary(business_id, name), branches.get(business_id, []), emails.get(business_id, []))
        for business_id, name in listed
    ]
