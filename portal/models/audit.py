"""Append-only audit events (also the customer timeline) and puppet sessions."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, Text, event, text
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from portal.extensions import db
from portal.models.base import UTCDateTime, utcnow


class AuditEvent(db.Model):
    """Something that happened to a customer's account: who did it, as whom, from where.

    Rows are never updated or deleted (enforced below); the support console and the customer's
    own dashboard read them as the timeline and the access log.
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_business_time", "business_id", "occurred_at"),
        Index("ix_audit_kind_time", "kind", "occurred_at"),
        # The dashboard's changes support made while puppeting, newest first: a few among a business's
        # many events, read from this index instead of every event the business has.
        Index("ix_audit_business_puppet_time", "business_id", "occurred_at",
              sqlite_where=text("puppet_session_id IS NOT NULL"),
              postgresql_where=text("puppet_session_id IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    kind: Mapped[str] = mapped_column(String(60))
    business_id: Mapped[int | None] = mapped_column(ForeignKey("businesses.id"))
    branch_id: Mapped[int | None] = mapped_column(ForeignKey("branches.id"), index=True)
    # The person who acted (in a puppet session: the support person) …
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    # … and the customer they acted as, when different.
    subject_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    puppet_session_id: Mapped[int | None] = mapped_column(ForeignKey("puppet_sessions.id"), index=True)
    address: Mapped[str | None] = mapped_column(String(64))
    summary: Mapped[str] = mapped_column(Text)
    details: Mapped[dict] = mapped_column(JSON, default=dict)

    actor = relationship("User", foreign_keys=[actor_id])
    branch = relationship("Branch")


class PuppetSession(db.Model):
    """A support person seeing the portal as one customer, with a reason and a time limit."""

    __tablename__ = "puppet_sessions"
    __table_args__ = (
        # A business's latest sessions (the dashboard's support access log) read newest first from
        # here, stopping at the page's ten, instead of every session the business ever had sorted.
        Index("ix_puppet_sessions_business_started", "business_id", "started_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    support_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    customer_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    business_id: Mapped[int] = mapped_column(ForeignKey("businesses.id"))
    reason: Mapped[str] = mapped_column(String(500))
    address: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    # "ended by support", "expired", "support logged out" …
    end_reason: Mapped[str | None] = mapped_column(String(60))

    support_user = relationship("User", foreign_keys=[support_user_id])
    customer_user = relationship("User", foreign_keys=[customer_user_id])
    business = relationship("Business")

    def is_live(self, now: datetime | None = None) -> bool:
        return self.ended_at is None and self.expires_at > (now or utcnow())


class AuditLogIsAppendOnly(RuntimeError):
    """Raised when code tries to change or remove an audit event."""


@event.listens_for(Session, "before_flush")
def _refuse_audit_changes(session: Session, flush_context, instances) -> None:
    for obj in list(session.dirty) + list(session.deleted):
        if isinstance(obj, AuditEvent) and (obj in session.deleted or session.is_modified(obj)):
            raise AuditLogIsAppendOnly("audit events cannot be changed or deleted")
