"""Fulfilment: paid orders become credit grants or a redemption code, exactly once; refunds take them back.

Exactly once, enforced by the database inside one transaction (``storage.repositories.orders``):

* a webhook event is acted on once: its id is inserted into ``processed_events`` in the transaction that acts;
* a purchase is fulfilled once: ``orders.status`` moves to ``fulfilled`` by a conditional update, and what it
  creates is unique per order (grant ``source_ref`` ``order:<id>…``, ``redemption_codes.order_id``);
  ``checkout.session.completed``, ``…async_payment_succeeded`` and the success page all end here, in any order;
* a refund takes credits back once per (charge, refunded amount): the ledger's unique (op_key, grant, kind);
  units a running job holds are owed (``credit_grants.refund_owed``) and taken when the job releases them;
* a refund that arrives before its order is fulfilled is kept (``pending_refunds``) and applied by the
  transaction that fulfils the order.

Stripe's side: Checkout Session objects and the ``checkout.session.*`` and ``charge.refunded`` events
(docs.stripe.com/api/checkout/sessions, docs.stripe.com/api/events/types).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from core.billing.catalog import Catalog
from core.billing.codes import Activation, activate, new_code
from core.clock import Clock
from core.credits import CreditService
from core.errors import Forbidden, InvalidRequest, NotFound, PaymentNotCompleted
from core.providers.payments import CheckoutSession, PaymentProvider, WebhookEvent
from storage.records import OrderRecord
from storage.repositories.orders import BillingTransaction, OrderRepository

log = logging.getLogger(__name__)

FULFILLABLE = ("open", "processing", "payment_failed", "checkout_failed", "expired")


@dataclass(frozen=True)
class Fulfilment:
    """An order after a fulfilment attempt. ``granted`` is True only for the call that granted (every later
    call sees False and the same ``status``); ``code`` is set for anonymous plan purchases."""

    order_id: str
    account_id: int | None
    product: str
    source: str
    status: str
    granted: bool
    credits: int = 0
    code: str | None = None
    activation: Activation | None = None


@dataclass(frozen=True)
class EventOutcome:
    """What a webhook event did: ``handled`` | ``duplicate`` | ``ignored`` | ``awaiting_payment`` …"""

    outcome: str
    order_id: str | None = None
    fulfilment: Fulfilment | None = None


FulfilmentListener = Callable[[Fulfilment], Awaitable[None]]


class Fulfilments:
    """Acts on payment events, the success page and PaymentIntent purchases."""

    def __init__(
        self, orders: OrderRepository, catalog: Catalog, credits: CreditService, payments: PaymentProvider, clock: Clock
    ) -> None:
        self.orders = orders
        self.catalog = catalog
        self.credits = credits
        self.payments = payments
        self.clock = clock
        self._listeners: list[FulfilmentListener] = []

    def subscribe(self, listener: FulfilmentListener) -> None:
        """Call ``listener`` after each order fulfilled for the first time (after commit; errors are logged)."""
        self._listeners.append(listener)

    async def _notify(self, fulfilment: Fulfilment | None) -> None:
        if fulfilment is None or not fulfilment.granted or fulfilment.status != "fulfilled":
            return
        for listener in self._listeners:
            try:
                await listener(fulfilment)
            except Exception:
                log.exception("fulfilment listener failed for order %s", fulfilment.order_id)

    async def handle_event(self, event: WebhookEvent) -> EventOutcome:
        """Act on one verified webhook event once (its id is recorded in the same transaction).

        Handles ``checkout.session.completed`` / ``…async_payment_succeeded`` (fulfil when paid),
        ``…async_payment_failed``, ``…expired`` and ``charge.refunded``; anything else is ``ignored``.
        """
        async with self.orders.transaction() as tx:
            if not await tx.record_event(event.id, self.payments.name, event.type, self.clock.now()):
                return EventOutcome("duplicate")
            outcome = await self._act(tx, event)
            if outcome.order_id:
                await tx.link_event(event.id, outcome.order_id)
        await self._notify(outcome.fulfilment)
        return outcome

    async def _act(self, tx: BillingTransaction, event: WebhookEvent) -> EventOutcome:
        if event.type == "charge.refunded":
            return await self._refund(tx, event.object)
        if not event.type.startswith("checkout.session."):
            return EventOutcome("ignored")
        checkout = CheckoutSession.from_json(event.object)
        order = await self._order_for_session(tx, checkout)
        if order is None:
            return EventOutcome("ignored")
        kind = event.type.removeprefix("checkout.session.")
        now = self.clock.now()
        if kind in ("completed", "async_payment_succeeded"):
            if checkout.paid:
                fulfilment = await self._fulfil(tx, order, checkout.payment_intent)
                return EventOutcome("fulfilled" if fulfilment.granted else "already_fulfilled", order.id, fulfilment)
            intent = order.payment_intent_id or checkout.payment_intent
            await tx.move(order.id, ("open",), {"status": "processing", "payment_intent_id": intent, "updated_at": now})
            return EventOutcome("awaiting_payment", order.id)
        if kind == "async_payment_failed":
            await tx.move(order.id, ("open", "processing"), {"status": "payment_failed", "updated_at": now})
            return EventOutcome("payment_failed", order.id)
        if kind == "expired":
            await tx.move(order.id, ("open",), {"status": "expired", "updated_at": now})
            return EventOutcome("expired", order.id)
        return EventOutcome("ignored", order.id)

    async def fulfil_checkout_session(self, session_id: str) -> Fulfilment:
        """The success page: retrieve the checkout session and fulfil it when paid (idempotent with the webhook).

        Raises:
            NotFound: the session is unknown here or at the provider.
        """
        checkout = await self.payments.retrieve_checkout_session(session_id)
        async with self.orders.transaction() as tx:
            order = await self._order_for_session(tx, checkout)
            if order is None:
                raise NotFound("no order belongs to this checkout session")
            if checkout.paid:
                fulfilment = await self._fulfil(tx, order, checkout.payment_intent)
            else:
                fulfilment = await self._state(tx, order.id)
        await self._notify(fulfilment)
        return fulfilment

    async def purchase_with_payment_intent(self, account_id: int, credits: int, payment_intent_id: str) -> Fulfilment:
        """The original purchase API: grant the pack of ``credits`` paid by a succeeded PaymentIntent, once.

        Raises:
            InvalidRequest: no such pack, or the payment does not match its price (field ``amount``).
            Forbidden: the PaymentIntent's ``metadata.account_id`` is another account.
            PaymentNotCompleted: its status is not ``succeeded``.
            NotFound: an unknown PaymentIntent.
        """
        packs = [p for p in self.catalog.packs() if p.credits == credits]
        if not packs:
            sizes = ", ".join(str(p.credits) for p in self.catalog.packs())
            raise InvalidRequest(f"amount: no credit pack has {credits} credits (packs: {sizes})", field="amount")
        intent = await self.payments.retrieve_payment_intent(payment_intent_id)
        if intent.metadata.get("account_id") != str(account_id):
            raise Forbidden("this payment does not belong to your account")
        if intent.status != "succeeded":
            raise PaymentNotCompleted(f"the payment has not succeeded (status {intent.status})")
        pack = next((p for p in packs if p.unit_amount == intent.amount and p.currency == intent.currency), None)
        if pack is None:
            raise InvalidRequest(
                f"amount: the payment ({intent.amount} {intent.currency}) does not match the price of the "
                f"{credits}-credit pack",
                field="amount",
            )
        now = self.clock.now()
        async with self.orders.transaction() as tx:
            order = await tx.order(intent.metadata["order_id"]) if intent.metadata.get("order_id") else None
            if order is not None and (order.account_id != account_id or order.product != pack.id):
                raise InvalidRequest("this payment was for another product", field="paymentIntentId")
            if order is None:
                order = await tx.order_where(payment_intent_id=intent.id)
            if order is None:
                await tx.insert_order({
                    "id": f"ord_{secrets.token_hex(12)}", "account_id": account_id, "product": pack.id,
                    "kind": "pack", "credits": pack.credits, "amount": pack.unit_amount, "currency": pack.currency,
                    "status": "open", "source": "payment_intent", "payment_intent_id": intent.id,
                    "refunded_amount": 0, "created_at": now, "updated_at": now,
                })  # fmt: skip
                order = await tx.order_where(payment_intent_id=intent.id)
                assert order is not None
            fulfilment = await self._fulfil(tx, order, intent.id)
        await self._notify(fulfilment)
        return fulfilment

    async def _order_for_session(self, tx: BillingTransaction, checkout: CheckoutSession) -> OrderRecord | None:
        order_id = checkout.metadata.get("order_id")
        order = await tx.order(order_id) if order_id else None
        if order is None:
            order = await tx.order_where(checkout_session_id=checkout.id)
        if order is None:
            return None
        if order.checkout_session_id not in (None, checkout.id):
            log.warning("checkout session %s names order %s of another session", checkout.id, order.id)
            return None
        if checkout.amount_total is not None and (
            checkout.amount_total != order.amount or (checkout.currency or "").lower() != order.currency
        ):
            log.error(
                "checkout session %s paid %s %s for order %s priced %s %s: not fulfilled",
                checkout.id, checkout.amount_total, checkout.currency, order.id, order.amount, order.currency,
            )  # fmt: skip
            return None
        return order

    async def _fulfil(self, tx: BillingTransaction, order: OrderRecord, payment_intent_id: str | None) -> Fulfilment:
        """Inside a purchase transaction: move ``order`` to ``fulfilled`` once and create what it bought."""
        now = self.clock.now()
        values: dict[str, Any] = {"status": "fulfilled", "fulfilled_at": now, "updated_at": now}
        if payment_intent_id and order.payment_intent_id is None:
            values["payment_intent_id"] = payment_intent_id
        if not await tx.move(order.id, FULFILLABLE, values):
            return await self._state(tx, order.id)
        product = self.catalog.product(order.product)
        code: str | None = None
        activation: Activation | None = None
        if order.account_id is not None:
            await tx.lock_account(order.account_id)
        if product.kind == "pack":
            if order.account_id is None:
                raise RuntimeError(f"pack order {order.id} has no account")
            spec = self.credits.grant_spec(
                account_id=order.account_id, amount=order.credits, source_ref=f"order:{order.id}", category="paid",
                note=f"{product.name} pack, order {order.id}",
            )  # fmt: skip
            await tx.grant(spec, now)
        elif order.account_id is not None:
            activation = await activate(tx, self.credits, order.account_id, product, f"order:{order.id}", now)
        else:
            code = new_code()
            await tx.add_code(code, product.key, order.id, now)
        log.info("order %s fulfilled (%s)", order.id, product.id)
        status = "fulfilled"
        intent = payment_intent_id or order.payment_intent_id
        pending = await tx.take_pending_refund(intent, now) if intent else None
        if pending is not None:
            charge_id, paid, refunded = pending
            if await self._take_back(tx, order, charge_id, (refunded, paid)):
                status, code = "refunded", None
        return Fulfilment(
            order_id=order.id, account_id=order.account_id, product=order.product, source=order.source,
            status=status, granted=True, credits=order.credits, code=code, activation=activation,
        )  # fmt: skip

    async def _state(self, tx: BillingTransaction, order_id: str) -> Fulfilment:
        order = await tx.order(order_id)
        assert order is not None
        code = await tx.code(order_id=order_id)
        return Fulfilment(
            order_id=order.id, account_id=order.account_id, product=order.product, source=order.source,
            status=order.status, granted=False, credits=order.credits, code=code.code if code else None,
        )  # fmt: skip

    async def _refund(self, tx: BillingTransaction, charge: dict[str, Any]) -> EventOutcome:
        """``charge.refunded``: take back the refunded share of what the order granted. A refund whose order
        is not known or not fulfilled yet is kept (``refund_pending``) and applied when the order is fulfilled."""
        intent = charge.get("payment_intent")
        if isinstance(intent, dict):
            intent = intent.get("id")
        if not intent:
            return EventOutcome("ignored")
        order = await tx.order_where(payment_intent_id=str(intent))
        paid = int(charge.get("amount") or (order.amount if order else 0)) or 1
        refunded = min(int(charge.get("amount_refunded") or 0), paid)
        if order is None or order.status not in ("fulfilled", "refunded"):
            await tx.add_pending_refund(str(intent), str(charge.get("id")), (paid, refunded), self.clock.now())
            log.warning("refund of %s before its order was fulfilled: kept until it is", intent)
            return EventOutcome("refund_pending", order.id if order else None)
        await self._take_back(tx, order, str(charge.get("id")), (refunded, paid))
        return EventOutcome("refunded", order.id)

    async def _take_back(self, tx: BillingTransaction, order: OrderRecord, charge_id: str,
                         share: tuple[int, int]) -> bool:  # fmt: skip
        """Take back ``share`` (refunded, paid) of what ``order`` granted (what is left of it, the rest owed
        by running jobs' holds); a full refund voids the grants and an unredeemed code. True when full."""
        refunded, paid = share
        full = refunded >= paid
        now = self.clock.now()
        if order.account_id is not None:
            await tx.lock_account(order.account_id)
        code = await tx.code(order_id=order.id)
        refs = [f"order:{order.id}", f"order:{order.id}:image", f"order:{order.id}:video"]
        if code is not None:
            refs += [f"code:{code.id}:image", f"code:{code.id}:video"]
            if full:
                await tx.void_unredeemed_code(code.id, now)
        op_key = f"refund:{charge_id}:{refunded}"
        await tx.take_back(refs, (refunded, paid), op_key, f"refund of order {order.id}", now)
        await tx.set_refunded(order.id, refunded, full, now)
        return full
