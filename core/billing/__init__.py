"""Selling credits: the catalog (packs, hourly plans), checkout, fulfilment, redemption codes, refunds.

Flow (ARCHITECTURE.md "Money"): ``Checkout.checkout`` records an order and creates a checkout session at the
payment provider → the buyer pays → ``Fulfilments.handle_event`` (webhook) or ``fulfil_checkout_session``
(success page) fulfils the order → credit grants, or a redemption code for an anonymous plan purchase →
``Codes.redeem`` from any adapter.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.billing.catalog import Catalog, Product
from core.billing.checkout import Checkout, CheckoutResult
from core.billing.codes import Activation, CodeAlreadyRedeemed, Codes, UnknownCode, normalize_code
from core.billing.fulfilment import EventOutcome, Fulfilment, FulfilmentListener, Fulfilments
from core.clock import Clock
from core.config import Settings
from core.credits import CreditService
from core.providers.payments import PaymentProvider, WebhookEvent
from storage.repositories.orders import OrderRepository

__all__ = [
    "Activation", "Billing", "Catalog", "Checkout", "CheckoutResult", "CodeAlreadyRedeemed", "Codes", "EventOutcome",
    "Fulfilment", "Fulfilments", "OrderView", "Product", "UnknownCode", "normalize_code",
]  # fmt: skip


@dataclass(frozen=True)
class OrderView:
    """An order; ``amount`` and ``refunded_amount`` in the currency's smallest unit."""

    id: str
    account_id: int | None
    product: str
    amount: int
    currency: str
    status: str
    source: str
    checkout_session_id: str | None
    payment_intent_id: str | None
    refunded_amount: int
    code: str | None
    created_at: datetime
    fulfilled_at: datetime | None


class Billing:
    """The money side as the adapters use it: ``catalog``, ``checkouts``, ``fulfilments`` and ``codes``,
    with their common calls delegated here."""

    def __init__(
        self,
        orders: OrderRepository,
        settings: Settings,
        credits: CreditService,
        payments: PaymentProvider,
        clock: Clock,
        link_secret: bytes = b"",
    ) -> None:
        self.orders_repository = orders
        self.payments = payments
        self.catalog = Catalog(settings)
        self.checkouts = Checkout(orders, self.catalog, payments, clock, link_secret)
        self.fulfilments = Fulfilments(orders, self.catalog, credits, payments, clock)
        self.codes = Codes(orders, self.catalog, credits, clock)

    def packs(self) -> list[Product]:
        """``Catalog.packs``."""
        return self.catalog.packs()

    def plans(self) -> list[Product]:
        """``Catalog.plans``."""
        return self.catalog.plans()

    def product(self, product_id: str) -> Product:
        """``Catalog.product``."""
        return self.catalog.product(product_id)

    def pricing(self) -> dict[str, Any]:
        """``Catalog.pricing``."""
        return self.catalog.pricing()

    async def checkout(self, product_id: str, account_id: int | None, source: str = "api") -> CheckoutResult:
        """``Checkout.checkout``."""
        return await self.checkouts.checkout(product_id, account_id, source)

    def checkout_link(self, account_id: int, product_id: str, source: str, ttl_seconds: int = 3600) -> str:
        """``Checkout.link``."""
        return self.checkouts.link(account_id, product_id, source, ttl_seconds)

    async def open_checkout_link(self, token: str) -> CheckoutResult:
        """``Checkout.open_link``."""
        return await self.checkouts.open_link(token)

    def subscribe(self, listener: FulfilmentListener) -> None:
        """``Fulfilments.subscribe``."""
        self.fulfilments.subscribe(listener)

    async def handle_event(self, event: WebhookEvent) -> EventOutcome:
        """``Fulfilments.handle_event``."""
        return await self.fulfilments.handle_event(event)

    async def fulfil_checkout_session(self, session_id: str) -> Fulfilment:
        """``Fulfilments.fulfil_checkout_session``."""
        return await self.fulfilments.fulfil_checkout_session(session_id)

    async def purchase_with_payment_intent(self, account_id: int, credits: int, payment_intent_id: str) -> Fulfilment:
        """``Fulfilments.purchase_with_payment_intent``."""
        return await self.fulfilments.purchase_with_payment_intent(account_id, credits, payment_intent_id)

    async def create_codes(self, plan: str, count: int = 1) -> list[str]:
        """``Codes.create``."""
        return await self.codes.create(plan, count)

    async def redeem(self, code: str, account_id: int) -> Activation:
        """``Codes.redeem``."""
        return await self.codes.redeem(code, account_id)

    async def orders(self, *, account_id: int | None = None, status: str | None = None, limit: int = 50
                     ) -> list[OrderView]:  # fmt: skip
        """Newest orders first (at most ``limit``), optionally of one account or status."""
        rows = await self.orders_repository.list(account_id=account_id, status=status, limit=limit)
        return [
            OrderView(
                id=o.id, account_id=o.account_id, product=o.product, amount=o.amount, currency=o.currency,
                status=o.status, source=o.source, checkout_session_id=o.checkout_session_id,
                payment_intent_id=o.payment_intent_id, refunded_amount=o.refunded_amount, code=o.code,
                created_at=o.created_at, fulfilled_at=o.fulfilled_at,
            )
            for o in rows
        ]  # fmt: skip
