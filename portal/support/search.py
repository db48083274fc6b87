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


def matching_business_ids(query: str, health_filter: health.HealthFilter | None, ctx: health.HealthContext):
    """A select of the ids of businesses matching the text and the health filter."""
    stmt = select(Business.id)
    if query:
        p = _pattern(query)
        text_matches = union(
            select(Business.id).where(Business.name.ilike(p, escape="\\")),
            select(Branch.business_id).where(Branch.name.ilike(p, escape="\\")),
            select(User.business_id).where(
                User.role == Role.CUSTOMER, User.business_id.is_not(None), User.email.ilike(p, escape="\\")
            ),
            select(Branch.business_id).join(Connection, Connection.branch_id == Branch.id).where(
                or_(
                    Connection.sage_business_name.ilike(p, escape="\\"),
                    Connection.sage_one_company_name.ilike(p, escape="\\"),
                )
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
    ids = matching_business_ids(query, health_filter, ctx)
    total = db.session.scalar(select(func.count()).select_from(ids.subquery()))
    page = max(1, min(page, max(1, -(-total // PER_PAGE))))
    businesses = db.session.scalars(
        select(Business)
        .where(Business.id.in_(ids))
        .order_by(func.lower(Business.name), Business.id)
        .limit(PER_PAGE)
        .offset((page - 1) * PER_PAGE)
        .options(selectinload(Business.branches).selectinload(Branch.connection))
    ).all()
    emails: dict[int, list[str]] = {}
    if businesses:
        for business_id, email in db.session.execute(
            select(User.business_id, User.email)
            .where(User.business_id.in_([b.id for b in businesses]), User.role == Role.CUSTOMER)
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
    return SearchPage(query, health_filter, ctx, page, total, results)
