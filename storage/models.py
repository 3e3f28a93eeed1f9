"""SQLAlchemy table definitions (the data model of ARCHITECTURE.md).

Every timestamp is stored as naive UTC and read back as an aware UTC ``datetime``.
Money rules live in constraints here, not only in Python: a grant never goes below zero, a ledger entry is
unique per (operation, grant, kind), a job's idempotency key is unique per account, a purchase or starter
bonus grants once (unique ``source_ref``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes stored as naive UTC (portable across SQLite and PostgreSQL)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """An aware datetime as naive UTC for the database; refuses a naive one."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware UTC datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """A stored naive UTC datetime as an aware one."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    """Now, an aware UTC ``datetime``."""
    return datetime.now(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20), default="business")
    preferences: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Identity(Base):
    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("platform", "external_id", name="uq_identities_platform_external"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    platform: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(String(255), default="")
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class CreditGrant(Base):
    __tablename__ = "credit_grants"
    __table_args__ = (
        CheckConstraint("amount >= 0", name="amount_non_negative"),
        CheckConstraint("remaining >= 0", name="remaining_non_negative"),
        Index("ix_credit_grants_account_unit", "account_id", "unit"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    unit: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(Integer)
    remaining: Mapped[int] = mapped_column(Integer)
    category: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(Integer, default=100)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    source_ref: Mapped[str] = mapped_column(String(255), unique=True)
    eligible_models: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Units a refund was owed but could not take back because a running job held them; the job's release
    # pays them first (``storage.repositories.credits``).
    refund_owed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class LedgerEntry(Base):
    __tablename__ = "credit_ledger"
    __table_args__ = (
        UniqueConstraint("op_key", "grant_id", "kind", name="uq_credit_ledger_op_grant_kind"),
        CheckConstraint("amount >= 0", name="amount_non_negative"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    grant_id: Mapped[int] = mapped_column(ForeignKey("credit_grants.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    kind: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(Integer)
    delta: Mapped[int] = mapped_column(Integer)
    op_key: Mapped[str] = mapped_column(String(255))
    note: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("account_id", "idempotency_key", name="uq_jobs_account_idempotency"),
        Index("ix_jobs_status", "status"),
        Index("ix_jobs_conversation", "account_id", "conversation_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32), default="image")  # a catalog model kind
    model: Mapped[str] = mapped_column(String(64))
    prompt: Mapped[str] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    num_outputs: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    prediction_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    unit: Mapped[str] = mapped_column(String(16), default="credit")
    cost: Mapped[int] = mapped_column(Integer, default=0)
    charged: Mapped[int] = mapped_column(Integer, default=0)
    charge_state: Mapped[str] = mapped_column(String(16), default="none")
    source: Mapped[str] = mapped_column(String(32), default="api")
    conversation_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    idempotency_key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The provider that made the outputs (None: the model's first), why earlier ones were passed over, and what
    # the job cost us in micro-dollars (None: unknown).
    provider: Mapped[str | None] = mapped_column(String(32), nullable=True)
    provider_switches: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    cost_microusd: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class Asset(Base):
    __tablename__ = "assets"
    __table_args__ = (
        UniqueConstraint("job_id", "output_index", name="uq_assets_job_output"),
        Index("ix_assets_account_created", "account_id", "created_at"),
        Index("ix_assets_account_kind", "account_id", "kind", "created_at"),
        Index("ix_assets_account_folder", "account_id", "folder_id", "created_at"),
        Index("ix_assets_account_category", "account_id", "category", "created_at"),
        Index("ix_assets_account_favorite", "account_id", "favorite", "created_at"),
        Index("ix_assets_account_uses", "account_id", "use_count"),
        Index("ix_assets_account_name", "account_id", "name"),
        Index("ix_assets_blob", "blob_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), nullable=True)
    output_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    kind: Mapped[str] = mapped_column(String(16), default="image")
    blob_key: Mapped[str] = mapped_column(String(255))
    thumb_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    mime: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    duration_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)  # videos
    sha256: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str | None] = mapped_column(String(100), nullable=True)
    folder_id: Mapped[int | None] = mapped_column(ForeignKey("folders.id", ondelete="SET NULL"), nullable=True)
    folder_ref: Mapped[Folder | None] = relationship(lazy="joined")
    favorite: Mapped[bool] = mapped_column(Boolean, default=False)
    alt_text: Mapped[str] = mapped_column(Text, default="", server_default="")
    keywords: Mapped[str] = mapped_column(Text, default="", server_default="")
    prompt: Mapped[str | None] = mapped_column(Text, nullable=True)
    model: Mapped[str | None] = mapped_column(String(64), nullable=True)
    use_count: Mapped[int] = mapped_column(Integer, default=0)
    view_count: Mapped[int] = mapped_column(Integer, default=0)
    download_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # Set when deleted: hidden from every read at once; the row and its blob go later (``Library.purge``).
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    @property
    def folder(self) -> str | None:
        """The name of the asset's folder, or None."""
        return self.folder_ref.name if self.folder_ref is not None else None


class Folder(Base):
    """A library folder; ``parent_key`` is the parent's id or 0 at the top, so names are unique per parent."""

    __tablename__ = "folders"
    __table_args__ = (UniqueConstraint("account_id", "parent_key", "name", name="uq_folders_account_parent_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("folders.id", ondelete="RESTRICT"), nullable=True)
    parent_key: Mapped[int] = mapped_column(Integer, default=0)
    name: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AssetTag(Base):
    """One tag of one asset, for filtering by tag through an index (``assets.tags`` keeps them for display and
    full-text search). ``created_at`` repeats the asset's, so the newest assets of a tag are read in index order,
    whether the tag is on ten assets or on half of them."""

    __tablename__ = "asset_tags"
    __table_args__ = (Index("ix_asset_tags_account_tag", "account_id", "tag", "created_at", "asset_id"),)

    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AssetUse(Base):
    __tablename__ = "asset_uses"
    __table_args__ = (Index("ix_asset_uses_account_created", "account_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str | None] = mapped_column(String(255), nullable=True)
    conversation_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    agent_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    agent_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    platform: Mapped[str | None] = mapped_column(String(64), nullable=True)
    post_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Uses recorded together (same asset, conversation, kind and actor in one write batch) share a row.
    count: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


class Order(Base):
    """One purchase of a credit pack or an hourly plan, from checkout to fulfilment (or failure, refund).

    ``status``: ``open`` (checkout created) → ``processing`` (completed, delayed payment pending) →
    ``fulfilled`` | ``payment_failed`` | ``expired``; a fulfilled order may become ``refunded``. A paid purchase
    is fulfilled exactly once: the move to ``fulfilled`` is a conditional update and the grant or code it
    creates is unique per order.
    """

    __tablename__ = "orders"
    __table_args__ = (Index("ix_orders_account_created", "account_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"), nullable=True)
    product: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    credits: Mapped[int] = mapped_column(Integer, default=0)
    amount: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), default="open")
    source: Mapped[str] = mapped_column(String(32), default="api")
    checkout_session_id: Mapped[str | None] = mapped_column(String(255), unique=True, nullable=True)
    checkout_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    payment_intent_id: Mapped[str | None] = mapped_column(String(255), unique=True, nullable=True)
    refunded_amount: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    fulfilled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ProcessedEvent(Base):
    """A webhook event or chat update handled once (Stripe ``evt_…`` ids, ``telegram:<bot>:<update_id>``);
    inserted in the transaction that acts on it, or before the update is handled."""

    __tablename__ = "processed_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    type: Mapped[str] = mapped_column(String(100))
    order_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CustomModel(Base):
    """A model an account trained (a FLUX LoRA version on Replicate), used by ``name`` by that account only."""

    __tablename__ = "custom_models"
    __table_args__ = (UniqueConstraint("account_id", "name", name="uq_custom_models_account_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(40))
    base_model: Mapped[str] = mapped_column(String(64))
    trigger_word: Mapped[str] = mapped_column(String(32))
    ref: Mapped[str] = mapped_column(String(255))
    job_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PendingRefund(Base):
    """A ``charge.refunded`` whose PaymentIntent matched no order yet; applied when the order learns it."""

    __tablename__ = "pending_refunds"

    payment_intent_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    charge_id: Mapped[str] = mapped_column(String(255))
    amount: Mapped[int] = mapped_column(Integer)
    amount_refunded: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class RedemptionCode(Base):
    """A code that activates one hourly plan once (bought anonymously, or created by an operator)."""

    __tablename__ = "redemption_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    plan: Mapped[str] = mapped_column(String(32))
    order_id: Mapped[str | None] = mapped_column(
        ForeignKey("orders.id", ondelete="SET NULL"), unique=True, nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    redeemed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    redeemed_by: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"), nullable=True)
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


# Teams (members, login links, shares) live in their own module; imported here so ``Base.metadata`` holds them.
from storage.team_models import LoginToken, Member, Share  # noqa: E402, F401
