"""Plain records the repositories return: one frozen dataclass per table row, built from the row's columns.

They carry no session or connection, so they cross the writer process's socket (they pickle) and outlive the
transaction that read them. Times are aware UTC ``datetime``s (``storage.models.UTCDateTime``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, TypeVar

R = TypeVar("R")


def record(cls: type[R], row: Any) -> R:
    """``cls`` built from the columns of ``row`` (a Core ``Row``, an ORM object or a mapping) that it names;
    a field with a default may be missing from ``row``."""
    mapping = getattr(row, "_mapping", None)
    if mapping is None and isinstance(row, dict):
        mapping = row
    values: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if mapping is not None:
            if f.name in mapping:
                values[f.name] = mapping[f.name]
        elif hasattr(row, f.name):
            values[f.name] = getattr(row, f.name)
    return cls(**values)


@dataclass(frozen=True)
class AccountRecord:
    id: int
    name: str
    kind: str
    preferences: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class JobRecord:
    """A ``jobs`` row. ``params`` holds ``style``, ``aspect_ratio``, ``seed`` and ``styled_prompt``."""

    id: str
    account_id: int
    kind: str
    model: str
    prompt: str
    params: dict[str, Any]
    num_outputs: int
    status: str
    prediction_id: str | None
    error_code: str | None
    error: str | None
    unit: str
    cost: int
    charged: int
    charge_state: str
    source: str
    conversation_id: str | None
    idempotency_key: str
    request_hash: str
    lease_owner: str | None
    lease_expires_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    provider: str | None = None
    provider_switches: str | None = None
    cost_microusd: int | None = None


@dataclass(frozen=True)
class AssetRecord:
    """An ``assets`` row: ``tags`` is the stored comma-separated string, sizes in bytes and pixels,
    ``duration_seconds`` a video's length."""

    id: int
    account_id: int
    job_id: str | None
    output_index: int | None
    kind: str
    blob_key: str
    thumb_key: str | None
    mime: str
    size_bytes: int
    width: int | None
    height: int | None
    sha256: str
    name: str
    description: str
    tags: str
    category: str | None
    favorite: bool
    prompt: str | None
    model: str | None
    use_count: int
    view_count: int
    created_at: datetime
    updated_at: datetime
    duration_seconds: float | None = None
    folder_id: int | None = None
    folder: str | None = None  # the folder's name
    alt_text: str = ""
    keywords: str = ""
    download_count: int = 0
    deleted_at: datetime | None = None


@dataclass(frozen=True)
class GrantRecord:
    """A ``credit_grants`` row: a bucket of ``amount`` units of ``unit`` with ``remaining`` left."""

    id: int
    account_id: int
    unit: str
    amount: int
    remaining: int
    category: str
    priority: int
    expires_at: datetime | None
    source_ref: str
    eligible_models: list[str] | None
    created_at: datetime
    voided_at: datetime | None


@dataclass(frozen=True)
class LedgerRecord:
    """A ``credit_ledger`` entry with its grant's ``unit``."""

    id: int
    account_id: int
    grant_id: int
    job_id: str | None
    kind: str
    amount: int
    delta: int
    op_key: str
    note: str | None
    created_at: datetime
    unit: str


@dataclass(frozen=True)
class OrderRecord:
    """An ``orders`` row; ``amount`` in the currency's smallest unit. ``code`` is its redemption code, if any."""

    id: str
    account_id: int | None
    product: str
    kind: str
    credits: int
    amount: int
    currency: str
    status: str
    source: str
    checkout_session_id: str | None
    checkout_url: str | None
    payment_intent_id: str | None
    refunded_amount: int
    created_at: datetime
    fulfilled_at: datetime | None
    updated_at: datetime
    code: str | None = None


@dataclass(frozen=True)
class CodeRecord:
    """A ``redemption_codes`` row."""

    id: int
    code: str
    plan: str
    order_id: str | None
    created_at: datetime
    redeemed_at: datetime | None
    redeemed_by: int | None
    voided_at: datetime | None


@dataclass(frozen=True)
class UseRecord:
    """An ``asset_uses`` row joined to nothing: ``count`` uses of one kind, the latest at ``created_at``."""

    asset_id: int
    account_id: int
    kind: str
    actor: str | None
    conversation_id: str | None
    created_at: datetime
    count: int
