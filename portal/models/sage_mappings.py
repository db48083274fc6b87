"""How a branch's invoice line codes map to its Sage business's ledger accounts and tax rates."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from portal.extensions import db
from portal.models.base import UTCDateTime, utcnow


class SageAccountMapping(db.Model):
    """One local code (an InvoiceLine.account_code or tax_code) and the Sage id it is sent as.

    `kind` is "ledger_account" or "tax_rate". Rows belong to the Sage business they were chosen
    in. A row the invoice sync made by itself (a confident default from Sage's lookups, the first
    time a code is met) carries `default_reason`, which says why it was chosen; a row a person
    saved has none.
    """

    __tablename__ = "sage_account_mappings"
    __table_args__ = (UniqueConstraint("branch_id", "sage_business_id", "kind", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    branch_id: Mapped[int] = mapped_column(ForeignKey("branches.id"), index=True)
    sage_business_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(20))
    code: Mapped[str] = mapped_column(String(20))
    sage_id: Mapped[str] = mapped_column(String(64))
    sage_name: Mapped[str] = mapped_column(String(200), default="")
    default_reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:
        return f"<SageAccountMapping {self.kind} {self.code}->{self.sage_id}>"
