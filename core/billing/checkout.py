"""Checkout: an order recorded, then a checkout session at the payment provider; signed checkout links."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

from core.billing.catalog import Catalog
from core.clock import Clock
from core.errors import InvalidRequest, Unauthorized
from core.providers.payments import CheckoutRequest, PaymentProvider
from storage.repositories.orders import OrderRepository


@dataclass(frozen=True)
class CheckoutResult:
    """The order and the checkout session's ``url`` to send the buyer to."""

    order_id: str
    product: str
    url: str
    checkout_session_id: str


class Checkout:
    """Creates orders and their checkout sessions; ``link_secret`` signs checkout links."""

    def __init__(
        self, orders: OrderRepository, catalog: Catalog, payments: PaymentProvider, clock: Clock, link_secret: bytes
    ) -> None:
        self.orders = orders
        self.catalog = catalog
        self.payments = payments
        self.clock = clock
        self._link_secret = b"showme-checkout-link:" + link_secret

    async def checkout(self, product_id: str, account_id: int | None, source: str = "api") -> CheckoutResult:
        """Record an order and create its checkout session.

        ``account_id`` None is a public purchase: plans only (the buyer receives a redemption code).

        Raises:
            InvalidRequest: an unknown product.
            Unauthorized: a pack without an account.
            PaymentsNotConfigured: no payment provider key.
            PaymentProviderError: the provider failed (the order is marked ``checkout_failed``).
        """
        product = self.catalog.product(product_id)
        if account_id is None and product.kind == "pack":
            raise Unauthorized("buying a credit pack needs an account: send your API key")
        self.payments.check_ready()
        order_id = f"ord_{secrets.token_hex(12)}"
        now = self.clock.now()
        await self.orders.add({
            "id": order_id, "account_id": account_id, "product": product.id, "kind": product.kind,
            "credits": product.credits, "amount": product.unit_amount, "currency": product.currency,
            "status": "open", "source": source, "created_at": now, "updated_at": now,
        })  # fmt: skip
        settings = self.catalog.settings
        public = settings.server.public_url
        metadata = {"order_id": order_id, "product": product.id}
        if account_id is not None:
            metadata["account_id"] = str(account_id)
        request = CheckoutRequest(
            order_id=order_id,
            name=f"showme {product.name}",
            description=product.description,
            unit_amount=product.unit_amount,
            currency=product.currency,
            success_url=settings.stripe.success_url or f"{public}/checkout/success?session_id={{CHECKOUT_SESSION_ID}}",
            cancel_url=settings.stripe.cancel_url or f"{public}/checkout/cancel",
            metadata=metadata,
        )
        try:
            created = await self.payments.create_checkout_session(request)
        except Exception:
            await self.orders.update(order_id, {"status": "checkout_failed", "updated_at": self.clock.now()})
            raise
        values = {"checkout_session_id": created.id, "checkout_url": created.url, "updated_at": self.clock.now()}
        await self.orders.update(order_id, values)
        return CheckoutResult(order_id, product.id, created.url or "", created.id)

    def link(self, account_id: int, product_id: str, source: str, ttl_seconds: int = 3600) -> str:
        """A signed ``/checkout/start`` URL, valid ``ttl_seconds``, that creates the checkout session when
        opened (chat buttons link here, so a menu of products does not create a session per product)."""
        self.catalog.product(product_id)
        expires = int(self.clock.now().timestamp()) + ttl_seconds
        body = json.dumps({"a": account_id, "p": product_id, "s": source, "e": expires}, separators=(",", ":"))
        payload = base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")
        signature = hmac.new(self._link_secret, payload.encode(), hashlib.sha256).hexdigest()[:32]
        return f"{self.catalog.settings.server.public_url}/checkout/start?t={payload}.{signature}"

    async def open_link(self, token: str) -> CheckoutResult:
        """Verify a ``link`` token and create its checkout session.

        Raises:
            InvalidRequest: a forged or expired link (field ``t``); and whatever ``checkout`` raises.
        """
        payload, _, signature = token.partition(".")
        expected = hmac.new(self._link_secret, payload.encode(), hashlib.sha256).hexdigest()[:32]
        if not payload or not hmac.compare_digest(signature, expected):
            raise InvalidRequest("this payment link is not valid; ask the bot for a new one", field="t")
        try:
            data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            account_id, product_id, source, expires = int(data["a"]), str(data["p"]), str(data["s"]), int(data["e"])
        except (ValueError, KeyError, TypeError) as err:
            raise InvalidRequest("this payment link is not valid; ask the bot for a new one", field="t") from err
        if expires <= self.clock.now().timestamp():
            raise InvalidRequest("this payment link has expired; ask the bot for a new one", field="t")
        return await self.checkout(product_id, account_id, source=source)
