"""Find customers: by business, branch, user email or Sage business / Sage One company name.

A page of results costs a fixed number of queries whatever the data size: one count, one page of
business ids, then the branches, connections and users of just that page.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, or_, select, union
from sqlalchemy.orm import selectinload

from portal.extensions import db
from portal.models import Branch, Business, Connection, Role, User
from portal.support import health

PER_PAGE = 20
MAX_QUERY_LENGTH = 100
MAX_MATCHES = 200


@dataclass
class BranchResult:
    branch: Branch
    connection: Connection | None
    flags: list[health.HealthFilter]


@dataclass
class CustomerResult:
    business: Business
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


def _pattern(query: str) -> str:
    escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _contains(column, pattern: str):
    # SQLite's LIKE already ignores ASCII case; ILIKE's lower() on both sides would only add cost
    # to a scan that must read every row anyway. PostgreSQL needs ILIKE.
    if db.engine.dialect.name == "sqlite":
        return column.like(pattern, escape="\\")
    return column.ilike(pattern, escape="\\")


def matching_business_ids(query: str, health_filter: health.HealthFilter | None, ctx: health.HealthContext):
    """A select of the ids of businesses matching the text and the health filter."""
    stmt = select(Business.id)
    if query:
        p = _pattern(query)
        # Each name is matched on its own index (`SELECT id … WHERE name LIKE`), which the database
        # scans instead of the much wider table rows; only the matches are then looked up.
        text_matches = union(
            select(Business.id).where(_contains(Business.name, p)),
            select(Branch.business_id).where(Branch.id.in_(select(Branch.id).where(_contains(Branch.name, p)))),
            select(User.business_id).where(
                User.id.in_(select(User.id).where(_contains(User.email, p))),
                User.role == Role.CUSTOMER,
                User.business_id.is_not(None),
            ),
            select(Branch.business_id).join(Connection, Connection.branch_id == Branch.id).where(
                Connection.id.in_(union(
                    select(Connection.id).where(_contains(Connection.sage_business_name, p)),
                    select(Connection.id).where(_contains(Connection.sage_one_company_name, p)),
                ))
            ),
        )
        stmt = stmt.where(Business.id.in_(text_matches))
    if health_filter is not None:
        stmt = stmt.where(
            Business.id.in_(
                select(Branch.business_id)
                .join(Connection, Connection.branch_id == Branch.id)
                .where(health_filter.sql(ctx))
            )
        )
    return stmt


def search(query: str = "", health_key: str | None = None, page: int = 1,
           ctx: health.HealthContext | None = None) -> SearchPage:
    """One page of customers matching `query` (any part of a name or email) and a health filter."""
    query = (query or "").strip()[:MAX_QUERY_LENGTH]
    ctx = ctx or health.context()
    health_filter = health.get_filter(health_key)
    if query or health_filter is not None:
        # A substring match reads every name once: do it in one query that returns the ordered
        # ids, then count and slice them here, rather than matching twice (count, then page).
        # Capped: a query typed one letter at a time matches most customers at first, and nobody
        # pages through thousands of results; the page says to keep typing instead.
        ids = db.session.scalars(
            matching_business_ids(query, health_filter, ctx)
            .order_by(Business.name, Business.id)
            .limit(MAX_MATCHES + 1)
        ).all()
        capped = len(ids) > MAX_MATCHES
        ids = ids[:MAX_MATCHES]
        total = len(ids)
        page = max(1, min(page, max(1, -(-total // PER_PAGE))))
        page_ids = ids[(page - 1) * PER_PAGE: page * PER_PAGE]
        where = Business.id.in_(page_ids)
    else:
        capped = False
        # Everyone, alphabetically: the name index gives the order, so only one page is read.
        total = db.session.scalar(select(func.count(Business.id)))
        page = max(1, min(page, max(1, -(-total // PER_PAGE))))
        page_ids = db.session.scalars(
            select(Business.id).order_by(Business.name, Business.id).limit(PER_PAGE).offset((page - 1) * PER_PAGE)
        ).all()
        where = Business.id.in_(page_ids)
    businesses = db.session.scalars(
        select(Business)
        .where(where)
        .order_by(Business.name, Business.id)
        .options(selectinload(Business.branches).selectinload(Branch.connection))
    ).all() if page_ids else []
    emails: dict[int, list[str]] = {}
    if businesses:
        for business_id, email in db.session.execute(
            select(User.business_id, User.email)
            .where(User.business_id.in_(page_ids), User.role == Role.CUSTOMER)
            .order_by(User.email)
        ):
            emails.setdefault(business_id, []).append(email)
    results = [
        CustomerResult(
            business=b,
            branches=[BranchResult(br, br.connection, health.flags(br.connection, ctx)) for br in b.branches],
            emails=emails.get(b.id, []),
        )
        for b in businesses
    ]
    return SearchPage(query, health_filter, ctx, page, total, results, capped)
