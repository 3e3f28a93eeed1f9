"""Redemption codes for hourly plans, and activating a plan on an account."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.billing.catalog import Catalog, Product
from core.clock import Clock
from core.credits import CreditService, missing_account
from core.errors import Conflict, InvalidRequest, NotFound
from storage.errors import AccountMissing
from storage.repositories.orders import BillingTransaction, OrderRepository

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: codes are read aloud and typed
CODE_LENGTH = 12


class UnknownCode(NotFound):
    code = "unknown_code"


class CodeAlreadyRedeemed(Conflict):
    code = "code_already_redeemed"


@dataclass(frozen=True)
class Activation:
    """An hourly plan made active on an account: quotas usable until ``expires_at``."""

    plan: str
    name: str
    images: int
    videos: int
    expires_at: datetime
    models: tuple[str, ...]


def normalize_code(text: str) -> str | None:
    """``"abcd efgh-jkmn"`` → ``"ABCD-EFGH-JKMN"``; None when it cannot be one of our codes."""
    raw = re.sub(r"[^A-Za-z0-9]", "", text).upper()
    if len(raw) != CODE_LENGTH or any(c not in CODE_ALPHABET for c in raw):
        return None
    return "-".join(raw[i : i + 4] for i in range(0, CODE_LENGTH, 4))


def new_code() -> str:
    """A random code, ``XXXX-XXXX-XXXX`` of ``CODE_ALPHABET``."""
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    return "-".join(raw[i : i + 4] for i in range(0, CODE_LENGTH, 4))


async def activate(
    tx: BillingTransaction, credits: CreditService, account_id: int, plan: Product, ref: str, now: datetime
) -> Activation:
    """Inside a purchase transaction: grant the plan's image and video quotas (``<ref>:image``,
    ``<ref>:video``, once each) until ``duration_minutes`` from ``now``: images on the plan's ``models``,
    videos on its ``video_models`` (every video model when it names none)."""
    expires_at = now + timedelta(minutes=plan.duration_minutes)
    video_models = list(plan.video_models) if plan.video_models is not None else None
    for unit, amount, models in (("image", plan.images, list(plan.models)), ("video", plan.videos, video_models)):
        if amount > 0:
            spec = credits.grant_spec(
                account_id=account_id, amount=amount, unit=unit, source_ref=f"{ref}:{unit}", category="session",
                expires_at=expires_at, eligible_models=models, note=f"{plan.name} session ({ref})",
            )  # fmt: skip
            await tx.grant(spec, now)
    return Activation(plan.key, plan.name, plan.images, plan.videos, expires_at, plan.models)


class Codes:
    """Operator-made codes and redemption from any adapter."""

    def __init__(self, orders: OrderRepository, catalog: Catalog, credits: CreditService, clock: Clock) -> None:
        self.orders = orders
        self.catalog = catalog
        self.credits = credits
        self.clock = clock

    async def create(self, plan: str, count: int = 1) -> list[str]:
        """Create ``count`` (1-1000) redemption codes for ``plan``.

        Raises:
            InvalidRequest: an unknown plan (field ``plan``) or count (field ``count``).
        """
        product = self.catalog.plan(plan)
        if not 1 <= count <= 1000:
            raise InvalidRequest("count must be between 1 and 1000", field="count")
        codes = [new_code() for _ in range(count)]
        await self.orders.add_codes(codes, product.key, self.clock.now())
        return codes

    async def redeem(self, code: str, account_id: int) -> Activation:
        """Activate the plan of ``code`` on ``account_id`` now.

        Raises:
            UnknownCode: not a code of ours (404).
            CodeAlreadyRedeemed: redeemed before, or cancelled by a refund (409).
            InvalidRequest: the code's plan is no longer sold.
        """
        normalized = normalize_code(code)
        if normalized is None:
            raise UnknownCode("that is not a valid code (codes look like ABCD-EFGH-JKMN)", field="code")
        now = self.clock.now()
        async with self.orders.transaction() as tx:
            try:
                await tx.lock_account(account_id)
            except AccountMissing as err:
                raise missing_account(err) from err
            redeemed = await tx.redeem_code(normalized, account_id, now)
            if redeemed is None:
                raise await self._refusal(tx, normalized)
            code_id, plan = redeemed
            if plan not in self.catalog.settings.plans:
                raise InvalidRequest(f"code {normalized} is for plan {plan!r}, which is no longer sold", field="code")
            return await activate(tx, self.credits, account_id, self.catalog.plan(plan), f"code:{code_id}", now)

    @staticmethod
    async def _refusal(tx: BillingTransaction, normalized: str) -> Exception:
        existing = await tx.code(code=normalized)
        if existing is None:
            return UnknownCode(f"code {normalized} does not exist", field="code")
        if existing.voided_at is not None:
            return CodeAlreadyRedeemed(f"code {normalized} was cancelled (its purchase was refunded)")
        when = existing.redeemed_at.strftime("%Y-%m-%d %H:%M UTC") if existing.redeemed_at else "earlier"
        return CodeAlreadyRedeemed(f"code {normalized} was already redeemed ({when})")
