"""A branch's connection to its accounting provider (Sage or Sage One AUS).

One row per branch (PRODUCT: a branch is connected to at most one provider at a time). Health
filters in the support console read the indexed state columns here, never the tokens.
"""
from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, String, Text
from sqlalchemy import false as sa_false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.base import UTCDateTime, utcnow, value_enum


class Provider(str, enum.Enum):
    SAGE = "sage"
    SAGE_ONE_AUS = "sage_one_aus"

    @property
    def label(self) -> str:
        return {"sage": "Sage", "sage_one_aus": "Sage One AUS"}[self.value]


class ConnectionState(str, enum.Enum):
    CONNECTED = "connected"
    # Sage refused the refresh token (invalid_grant) or the customer's key was reset.
    NEEDS_REAUTH = "needs_reauth"
    # Sage One AUS answered 401 to the stored login: re-enter the password.
    CREDENTIALS_REJECTED = "credentials_rejected"
    DISCONNECTED = "disconnected"

    @property
    def label(self) -> str:
        return {
            "connected": "Connected",
            "needs_reauth": "Needs re-authentication",
            "credentials_rejected": "Credentials rejected",
            "disconnected": "Disconnected",
        }[self.value]


class SyncOutcome(str, enum.Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"



class Connection(db.Model):
    """The accounting connection of one branch, with everything its health is made of."""

    __tablename__ = "connections"

    id: Mapped[int] = mapped_column(primary_key=True)
    branch_id: Mapped[int] = mapped_column(ForeignKey("branches.id"), unique=True)
    provider: Mapped[Provider] = mapped_column(value_enum(Provider, 30), index=True)
    state: Mapped[ConnectionState] = mapped_column(value_enum(ConnectionState, 30), index=True)
    # Plain words shown to the customer for the current state ("re-enter your password" …).
    state_reason: Mapped[str | None] = mapped_column(Text)
    connected_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # Indexed for the console's "stale" filter (never synced since connecting N hours ago).
    connected_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    disconnected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    # --- Sage (v3.1, OAuth2). Tokens are encrypted at rest (portal.keys.encrypt_at_rest).
    sage_business_id: Mapped[str | None] = mapped_column(String(64), index=True)
    sage_business_name: Mapped[str | None] = mapped_column(String(200), index=True)
    # The Sage user the branch signed in as ("Sam Lee <sam@harbour-auto.test>"), read from /user at connect.
    sage_user: Mapped[str | None] = mapped_column(String(254))
    # The Sage business that the Sage ids on this branch's rows belong to; kept across disconnects.
    ids_sage_business_id: Mapped[str | None] = mapped_column(String(64))
    access_token_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    refresh_token_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    # PRODUCT rule 1: when the current token pair was issued (first at connect, then per refresh).
    token_issued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    access_token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    refresh_token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    first_authorized_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # --- Sage One AUS (2.0.0, Basic). The password is encrypted under its owner's private key.
    sage_one_username: Mapped[str | None] = mapped_column(String(254))
    sage_one_company_id: Mapped[int | None] = mapped_column()
    sage_one_company_name: Mapped[str | None] = mapped_column(String(200), index=True)
    sage_one_password_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    # The customer whose private key opens the stored password, and which key generation.
    credentials_owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    credentials_key_generation: Mapped[int | None] = mapped_column()
    login_failures: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # --- Health shared by both providers.
    rate_limited_until: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    last_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_sync_outcome: Mapped[SyncOutcome | None] = mapped_column(value_enum(SyncOutcome, 30), index=True)
    last_successful_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    # Set while a mass re-sync (PRODUCT rule 3) is flagged and not yet finished.
    mass_resync_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    mass_resync_total: Mapped[int | None] = mapped_column()

    # --- Scheduled syncs (Sage): how often, when the schedule last ran, and what it did then.
    sync_every: Mapped[str] = mapped_column(String(10), default="15m", server_default="15m")
    last_scheduled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    schedule_note: Mapped[str | None] = mapped_column(Text)
    # When the portal last asked Sage what was deleted or changed there (drift, once a day).
    drift_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Sage One AUS: send what is waiting each time the credentials' owner signs in (rule 8: never unattended).
    sync_on_sign_in: Mapped[bool] = mapped_column(default=False, server_default=sa_false())

    branch = relationship("Branch", back_populates="connection")
    connected_by = relationship("User", foreign_keys=[connected_by_id])
    credentials_owner = relationship("User", foreign_keys=[credentials_owner_id])

    @property
    def is_active(self) -> bool:
        return self.state != ConnectionState.DISCONNECTED

    def is_rate_limited(self, now: datetime | None = None) -> bool:
        return self.rate_limited_until is not None and self.rate_limited_until > (now or utcnow())

    def __repr__(self) -> str:
        return f"<Connection branch={self.branch_id} {self.provider.value} {self.state.value}>"
