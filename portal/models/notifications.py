"""Messages the portal sent a customer about a problem only they can fix."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.base import UTCDateTime, utcnow


class Notification(db.Model):
    """One message to one customer user about one problem of one branch (at most one a day each)."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_user_problem", "user_id", "branch_id", "problem", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    business_id: Mapped[int] = mapped_column(ForeignKey("businesses.id"), index=True)
    branch_id: Mapped[int] = mapped_column(ForeignKey("branches.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    problem: Mapped[str] = mapped_column(String(60))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)

    user = relationship("User")
    branch = relationship("Branch")

    @property
    def state(self) -> str:
        return "sent" if self.sent_at else ("not sent yet" if not self.error else "retrying")
