"""Businesses, their branches and the people who sign in."""
from __future__ import annotations

import enum
from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import BigInteger, ForeignKey, LargeBinary, String, func
from sqlalchemy import true as sa_true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.base import UTCDateTime, utcnow, value_enum


class Role(str, enum.Enum):
    CUSTOMER = "customer"
    SUPPORT = "support"


class Business(db.Model):
    """A workshop company; it owns branches and customer users."""

    __tablename__ = "businesses"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    # Where the business is: times in its pages and messages are shown in this zone (IANA name).
    time_zone: Mapped[str] = mapped_column(String(64), default="Australia/Sydney", server_default="Australia/Sydney")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    branches: Mapped[list[Branch]] = relationship(
        back_populates="business", order_by="Branch.id", cascade="all, delete-orphan"
    )
    users: Mapped[list[User]] = relationship(back_populates="business")

    def __repr__(self) -> str:
        return f"<Business {self.id} {self.name!r}>"


class Branch(db.Model):
    """One site of a business. Each branch connects to at most one accounting provider."""

    __tablename__ = "branches"

    id: Mapped[int] = mapped_column(primary_key=True)
    business_id: Mapped[int] = mapped_column(ForeignKey("businesses.id"), index=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    is_head_office: Mapped[bool] = mapped_column(default=False)
    # Branch sharing: the branch shares head-office settings and data with its siblings.
    # Never applies to accounting authentication (PRODUCT rule 2).
    shares_with_head_office: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    business: Mapped[Business] = relationship(back_populates="branches")
    connection: Mapped[Connection | None] = relationship(  # noqa: F821
        back_populates="branch", uselist=False
    )

    def __repr__(self) -> str:
        return f"<Branch {self.id} {self.name!r}>"


class User(UserMixin, db.Model):
    """A customer (belongs to one business) or a support person (belongs to none).

    Customers carry the per-user key material of PRODUCT.md: a random salt and a random private
    key that is stored only wrapped under a key derived from their password (see portal.keys).
    """

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(
        value_enum(Role), index=True
    )
    business_id: Mapped[int | None] = mapped_column(ForeignKey("businesses.id"), index=True)
    # Support leads may search and export the audit log.
    is_support_lead: Mapped[bool] = mapped_column(default=False)
    key_salt: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    wrapped_private_key: Mapped[bytes | None] = mapped_column(LargeBinary(128))
    # Bumped when a reset replaces the private key; ciphertexts made under an older key are stale.
    key_generation: Mapped[int] = mapped_column(default=1)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Mail about problems only the customer can fix (switched off by the link in each message).
    notify_by_email: Mapped[bool] = mapped_column(default=True, server_default=sa_true())
    # Support staff's second factor: the TOTP secret (encrypted at rest), when it was confirmed,
    # and the last time step accepted (a code is never accepted twice).
    totp_secret_enc: Mapped[bytes | None] = mapped_column(LargeBinary(256))
    totp_enrolled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    business: Mapped[Business | None] = relationship(back_populates="users")

    @property
    def is_support(self) -> bool:
        return self.role == Role.SUPPORT

    @property
    def is_customer(self) -> bool:
        return self.role == Role.CUSTOMER

    @property
    def display_name(self) -> str:
        return self.name or self.email

    def __repr__(self) -> str:
        return f"<User {self.id} {self.email} {self.role.value}>"


def find_user_by_email(email: str) -> User | None:
    """The user with this email (case-insensitive), or None."""
    return db.session.scalar(db.select(User).where(func.lower(User.email) == email.strip().lower()))
