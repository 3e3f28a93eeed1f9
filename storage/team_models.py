"""Team tables: an account's members (email identities with a role), one-time login and invite links, and
assets or folders shared with a person by email."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, UTCDateTime, utcnow


class Member(Base):
    """A person (``email``, lower-case) in an account with a ``role``: owner, admin or member."""

    __tablename__ = "members"
    __table_args__ = (
        UniqueConstraint("account_id", "email", name="uq_members_account_email"),
        CheckConstraint("role IN ('owner', 'admin', 'member')", name="role_known"),
        Index("ix_members_email", "email"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(254))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LoginToken(Base):
    """A one-time link: ``purpose`` login (sign ``email`` in) or invite (make ``email`` a member of
    ``account_id`` with ``role``, then sign in). Only the token's SHA-256 is kept; ``used_at`` is set by one
    conditional update, so a link works once."""

    __tablename__ = "login_tokens"
    __table_args__ = (CheckConstraint("purpose IN ('login', 'invite')", name="purpose_known"),)

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16))
    email: Mapped[str] = mapped_column(String(254))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), nullable=True)
    role: Mapped[str | None] = mapped_column(String(16), nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(254), nullable=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Share(Base):
    """An asset or a folder (exactly one) of ``account_id`` shared with ``email`` with a ``permission``: view,
    use (view, download, record uses) or edit (use, and change its details)."""

    __tablename__ = "shares"
    __table_args__ = (
        UniqueConstraint("asset_id", "email", name="uq_shares_asset_email"),
        UniqueConstraint("folder_id", "email", name="uq_shares_folder_email"),
        CheckConstraint("permission IN ('view', 'use', 'edit')", name="permission_known"),
        CheckConstraint("(asset_id IS NULL) <> (folder_id IS NULL)", name="one_target"),
        Index("ix_shares_email", "email"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    asset_id: Mapped[int | None] = mapped_column(ForeignKey("assets.id", ondelete="CASCADE"), nullable=True)
    folder_id: Mapped[int | None] = mapped_column(ForeignKey("folders.id", ondelete="CASCADE"), nullable=True)
    email: Mapped[str] = mapped_column(String(254))
    permission: Mapped[str] = mapped_column(String(8))
    created_by: Mapped[str | None] = mapped_column(String(254), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
