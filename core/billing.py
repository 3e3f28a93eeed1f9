"""Selling credits: the catalog (packs, hourly plans), checkout, fulfilment, redemption codes, refunds.

Flow (ARCHITECTURE.md "Money"): ``checkout`` records an order and creates a checkout session at the payment
provider → the buyer pays → ``handle_event`` (webhook) or ``fulfil_checkout_session`` (success page) fulfils the
order → credit grants, or a redemption code for an anonymous plan purchase → ``redeem`` from any adapter.

Exactly once, enforced by the database inside one transaction:

* a webhook event is acted on once: its id is inserted into ``processed_events`` in the transaction that acts;
* a purchase is fulfilled once: ``orders.status`` moves to ``fulfilled`` by a conditional update, and what it
  creates is unique per order (grant ``source_ref`` ``order:<id>…``, ``redemption_codes.order_id``);
  ``checkout.session.completed``, ``…async_payment_succeeded`` and the success page all end here, in any order;
* a code is redeemed once: a conditional update on ``redeemed_at IS NULL``;
* a refund takes credits back once per (charge, refunded amount): the ledger's unique (op_key, grant, kind).

Facts about Stripe used here: ../shared/research/payments-and-ledgers.md §1.3-1.5.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import Clock
from core.config import PackSpec, PlanSpec, Settings
from core.credits import CreditService, _insert
from core.errors import Conflict, Forbidden, InvalidRequest, NotFound, PaymentNotCompleted, Unauthorized
from core.providers.payments import CheckoutRequest, CheckoutSession, PaymentProvider, WebhookEvent
from storage.db import Database
from storage.models import CreditGrant, LedgerEntry, Order, ProcessedEvent, RedemptionCode

log = logging.getLogger(__name__)

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: codes are read aloud and typed
CODE_LENGTH = 12
FULFILLABLE = ("open", "processing", "payment_failed", "checkout_failed", "expired")


class UnknownCode(NotFound):
    code = "unknown_code"


class CodeAlreadyRedeemed(Conflict):
    code = "code_already_redeemed"


@dataclass(frozen=True)
class Product:
    """A pack (``pack:<key>``: ``credits``) or an hourly plan (``plan:<key>``: ``images``, ``videos`` for
    ``duration_minutes`` on ``models``). ``unit_amount`` is the price in the currency's smallest unit."""

    id: str
    kind: str
    key: str
    name: str
    price: Decimal
    currency: str
    unit_amount: int
    credits: int = 0
    images: int = 0
    videos: int = 0
    duration_minutes: int = 0
    models: tuple[str, ...] = ()

    @property
    def description(self) -> str:
        if self.kind == "pack":
            return f"{self.credits} showme credits (never expire)"
        parts = [f"{self.images} images"] + ([f"{self.videos} videos"] if self.videos else [])
        return f"{' + '.join(parts)} for {self.duration_minutes} minutes after activation"

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "price": str(self.price),
            "currency": self.currency,
            "unit_amount": self.unit_amount,
            "description": self.description,
        }
        if self.kind == "pack":
            data["credits"] = self.credits
        else:
            data.update(
                images=self.images, videos=self.videos, duration_minutes=self.duration_minutes, models=list(self.models)
            )
        return data


@dataclass(frozen=True)
class CheckoutResult:
    order_id: str
    product: str
    url: str
    checkout_session_id: str


@dataclass(frozen=True)
class Activation:
    """An hourly plan made active on an account: quotas usable until ``expires_at``."""

    plan: str
    name: str
    images: int
    videos: int
    expires_at: datetime
    models: tuple[str, ...]


@dataclass(frozen=True)
class Fulfilment:
    """The state of an order after a fulfilment attempt. ``granted`` is True only for the call that granted
    (every later call sees False and the same ``status``). ``code`` is set for anonymous plan purchases."""

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
class OrderView:
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


@dataclass
class EventOutcome:
    """What a webhook event did: ``handled`` | ``duplicate`` | ``ignored`` | ``awaiting_payment`` …"""

    outcome: str
    order_id: str | None = None
    fulfilment: Fulfilment | None = field(default=None)


def normalize_code(text: str) -> str | None:
    """``"abcd efgh-jkmn"`` → ``"ABCD-EFGH-JKMN"``; None when it cannot be one of our codes."""
    raw = re.sub(r"[^A-Za-z0-9]", "", text).upper()
    if len(raw) != CODE_LENGTH or any(c not in CODE_ALPHABET for c in raw):
        return None
    return "-".join(raw[i : i + 4] for i in range(0, CODE_LENGTH, 4))


def new_code() -> str:
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    return "-".join(raw[i : i + 4] for i in range(0, CODE_LENGTH, 4))


FulfilmentListener = Callable[[Fulfilment], Awaitable[None]]


class Billing:
    """Catalog, orders and fulfilment. ``payments`` is the provider (Stripe); times come from ``clock``."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        credits: CreditService,
        payments: PaymentProvider,
        clock: Clock,
        link_secret: bytes = b"",
    ) -> None:
        self._link_secret = b"showme-checkout-link:" + link_secret
        self.db = db
        self.settings = settings
        self.credits = credits
        self.payments = payments
        self.clock = clock
        self._listeners: list[FulfilmentListener] = []

    # -- catalog ---------------------------------------------------------------------------------------------

    @staticmethod
    def _pack(key: str, spec: PackSpec) -> Product:
        return Product(
            id=f"pack:{key}",
            kind="pack",
            key=key,
            name=spec.name,
            price=spec.price,
            currency=spec.currency,
            unit_amount=spec.unit_amount,
            credits=spec.credits,
        )

    @staticmethod
    def _plan(key: str, spec: PlanSpec) -> Product:
        return Product(
            id=f"plan:{key}",
            kind="plan",
            key=key,
            name=spec.name,
            price=spec.price,
            currency=spec.currency,
            unit_amount=spec.unit_amount,
            images=spec.images,
            videos=spec.videos,
            duration_minutes=spec.duration_minutes,
            models=tuple(spec.models),
        )

    def packs(self) -> list[Product]:
        return [self._pack(k, v) for k, v in self.settings.packs.items()]

    def plans(self) -> list[Product]:
        return [self._plan(k, v) for k, v in self.settings.plans.items()]

    def product(self, product_id: str) -> Product:
        """``pack:<key>`` or ``plan:<key>``; raises ``InvalidRequest`` (field ``product``) listing the choices."""
        for product in self.packs() + self.plans():
            if product.id == product_id:
                return product
        choices = ", ".join(p.id for p in self.packs() + self.plans())
        raise InvalidRequest(f"product {product_id!r} does not exist; choose one of {choices}", field="product")

    def plan(self, name: str) -> Product:
        """A plan by its key (``flash``) or id (``plan:flash``); raises ``InvalidRequest`` (field ``plan``)."""
        key = name.removeprefix("plan:")
        if key not in self.settings.plans:
            raise InvalidRequest(
                f"plan {name!r} does not exist; choose one of {', '.join(self.settings.plans)}", field="plan"
            )
        return self._plan(key, self.settings.plans[key])

    def pricing(self) -> dict[str, Any]:
        """The public price list: packs, plans, each model's price in credits per image, starter credits."""
        return {
            "packs": [p.as_json() for p in self.packs()],
            "plans": [p.as_json() for p in self.plans()],
            "models": [
                {"id": name, "credits_per_image": spec.price, "description": spec.description}
                for name, spec in self.settings.models.items()
            ],
            "starter_credits": self.settings.credits.starter_credits,
        }

    def subscribe(self, listener: FulfilmentListener) -> None:
        """Call ``listener`` after each order fulfilled for the first time (after commit; errors are logged)."""
        self._listeners.append(listener)

    async def _notify(self, fulfilment: Fulfilment | None) -> None:
        if fulfilment is None or not fulfilment.granted:
            return
        for listener in self._listeners:
            try:
                await listener(fulfilment)
            except Exception:
                log.exception("fulfilment listener failed for order %s", fulfilment.order_id)

    # -- checkout --------------------------------------------------------------------------------------------

    async def checkout(self, product_id: str, account_id: int | None, source: str = "api") -> CheckoutResult:
        """Record an order and create its checkout session; returns the URL to send the buyer to.

        ``account_id`` None is a public purchase: allowed for plans only (the buyer receives a redemption code).
        Raises ``InvalidRequest`` (unknown product), ``Unauthorized`` (a pack without an account),
        ``PaymentsNotConfigured`` or ``PaymentProviderError``.
        """
        product = self.product(product_id)
        if account_id is None and product.kind == "pack":
            raise Unauthorized("buying a credit pack needs an account: send your API key")
        self.payments.check_ready()
        order_id = f"ord_{secrets.token_hex(12)}"
        now = self.clock.now()
        async with self.db.write() as session:
            session.add(
                Order(
                    id=order_id,
                    account_id=account_id,
                    product=product.id,
                    kind=product.kind,
                    credits=product.credits,
                    amount=product.unit_amount,
                    currency=product.currency,
                    status="open",
                    source=source,
                    created_at=now,
                    updated_at=now,
                )
            )
        public = self.settings.server.public_url
        metadata = {"order_id": order_id, "product": product.id}
        if account_id is not None:
            metadata["account_id"] = str(account_id)
        try:
            created = await self.payments.create_checkout_session(
                CheckoutRequest(
                    order_id=order_id,
                    name=f"showme {product.name}",
                    description=product.description,
                    unit_amount=product.unit_amount,
                    currency=product.currency,
                    success_url=self.settings.stripe.success_url
                    or f"{public}/checkout/success?session_id={{CHECKOUT_SESSION_ID}}",
                    cancel_url=self.settings.stripe.cancel_url or f"{public}/checkout/cancel",
                    metadata=metadata,
                )
            )
        except Exception:
            async with self.db.write() as session:
                await session.execute(
                    update(Order)
                    .where(Order.id == order_id)
                    .values(status="checkout_failed", updated_at=self.clock.now())
                )
            raise
        async with self.db.write() as session:
            await session.execute(
                update(Order)
                .where(Order.id == order_id)
                .values(checkout_session_id=created.id, checkout_url=created.url, updated_at=self.clock.now())
            )
        return CheckoutResult(
            order_id=order_id, product=product.id, url=created.url or "", checkout_session_id=created.id
        )

    def checkout_link(self, account_id: int, product_id: str, source: str, ttl_seconds: int = 3600) -> str:
        """A signed ``/checkout/start`` URL that creates the checkout session when opened (chat buttons link here,
        so a menu of products does not create a session per product). Valid ``ttl_seconds``."""
        self.product(product_id)
        expires = int(self.clock.now().timestamp()) + ttl_seconds
        payload = (
            base64.urlsafe_b64encode(
                json.dumps(
                    {"a": account_id, "p": product_id, "s": source, "e": expires}, separators=(",", ":")
                ).encode()
            )
            .decode()
            .rstrip("=")
        )
        signature = hmac.new(self._link_secret, payload.encode(), hashlib.sha256).hexdigest()[:32]
        return f"{self.settings.server.public_url}/checkout/start?t={payload}.{signature}"

    async def open_checkout_link(self, token: str) -> CheckoutResult:
        """Verify a ``checkout_link`` token and create its checkout session. Raises ``InvalidRequest`` (field
        ``t``) for a forged or expired link, and whatever ``checkout`` raises."""
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

    # -- fulfilment ------------------------------------------------------------------------------------------

    async def _order_for_session(self, session: AsyncSession, checkout: CheckoutSession) -> Order | None:
        order_id = checkout.metadata.get("order_id")
        order = await session.get(Order, order_id) if order_id else None
        if order is None:
            order = await session.scalar(select(Order).where(Order.checkout_session_id == checkout.id))
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

    async def _activate(self, session: AsyncSession, account_id: int, plan: Product, ref: str) -> Activation:
        now = self.clock.now()
        expires_at = now + timedelta(minutes=plan.duration_minutes)
        for unit, amount in (("image", plan.images), ("video", plan.videos)):
            if amount > 0:
                await self.credits.grant(
                    session,
                    account_id=account_id,
                    amount=amount,
                    unit=unit,
                    source_ref=f"{ref}:{unit}",
                    category="session",
                    expires_at=expires_at,
                    eligible_models=list(plan.models),
                    note=f"{plan.name} session ({ref})",
                )
        return Activation(plan.key, plan.name, plan.images, plan.videos, expires_at, plan.models)

    async def _fulfil(self, session: AsyncSession, order: Order, payment_intent_id: str | None) -> Fulfilment:
        """Inside a write transaction: move ``order`` to ``fulfilled`` once and create what it bought."""
        now = self.clock.now()
        values: dict[str, Any] = {"status": "fulfilled", "fulfilled_at": now, "updated_at": now}
        if payment_intent_id and order.payment_intent_id is None:
            values["payment_intent_id"] = payment_intent_id
        won = await session.execute(
            update(Order)
            .where(Order.id == order.id, Order.status.in_(FULFILLABLE))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if won.rowcount != 1:  # type: ignore[attr-defined]
            return await self._state(session, order.id, granted=False)
        product = self.product(order.product)
        code: str | None = None
        activation: Activation | None = None
        if order.account_id is not None:
            await self.credits.lock_account(session, order.account_id)
        if product.kind == "pack":
            if order.account_id is None:
                raise RuntimeError(f"pack order {order.id} has no account")
            await self.credits.grant(
                session,
                account_id=order.account_id,
                amount=order.credits,
                source_ref=f"order:{order.id}",
                category="paid",
                note=f"{product.name} pack, order {order.id}",
            )
        elif order.account_id is not None:
            activation = await self._activate(session, order.account_id, product, f"order:{order.id}")
        else:
            code = new_code()
            session.add(RedemptionCode(code=code, plan=product.key, order_id=order.id, created_at=now))
        await session.flush()
        log.info("order %s fulfilled (%s)", order.id, product.id)
        return Fulfilment(
            order_id=order.id,
            account_id=order.account_id,
            product=order.product,
            source=order.source,
            status="fulfilled",
            granted=True,
            credits=order.credits,
            code=code,
            activation=activation,
        )

    async def _state(self, session: AsyncSession, order_id: str, *, granted: bool) -> Fulfilment:
        order = await session.get(Order, order_id, populate_existing=True)
        assert order is not None
        code = await session.scalar(select(RedemptionCode.code).where(RedemptionCode.order_id == order_id))
        return Fulfilment(
            order_id=order.id,
            account_id=order.account_id,
            product=order.product,
            source=order.source,
            status=order.status,
            granted=granted,
            credits=order.credits,
            code=code,
        )

    async def handle_event(self, event: WebhookEvent) -> EventOutcome:
        """Act on one verified webhook event once (its id is recorded in the same transaction).

        Handles ``checkout.session.completed`` / ``…async_payment_succeeded`` (fulfil when paid),
        ``…async_payment_failed``, ``…expired`` and ``charge.refunded``; anything else is ``ignored``.
        """
        outcome = EventOutcome("ignored")
        async with self.db.write() as session:
            inserted = await session.scalar(
                _insert(session)(ProcessedEvent)
                .values(id=event.id, provider=self.payments.name, type=event.type, created_at=self.clock.now())
                .on_conflict_do_nothing(index_elements=["id"])
                .returning(ProcessedEvent.id)
            )
            if inserted is None:
                return EventOutcome("duplicate")
            outcome = await self._act(session, event)
            if outcome.order_id:
                await session.execute(
                    update(ProcessedEvent).where(ProcessedEvent.id == event.id).values(order_id=outcome.order_id)
                )
        await self._notify(outcome.fulfilment)
        return outcome

    async def _act(self, session: AsyncSession, event: WebhookEvent) -> EventOutcome:
        if event.type == "charge.refunded":
            return await self._refund(session, event.object)
        if not event.type.startswith("checkout.session."):
            return EventOutcome("ignored")
        checkout = CheckoutSession.from_json(event.object)
        order = await self._order_for_session(session, checkout)
        if order is None:
            return EventOutcome("ignored")
        kind = event.type.removeprefix("checkout.session.")
        now = self.clock.now()
        if kind in ("completed", "async_payment_succeeded"):
            if checkout.paid:
                fulfilment = await self._fulfil(session, order, checkout.payment_intent)
                return EventOutcome("fulfilled" if fulfilment.granted else "already_fulfilled", order.id, fulfilment)
            await session.execute(
                update(Order)
                .where(Order.id == order.id, Order.status == "open")
                .values(status="processing", payment_intent_id=order.payment_intent_id or checkout.payment_intent,
                        updated_at=now)
            )  # fmt: skip
            return EventOutcome("awaiting_payment", order.id)
        if kind == "async_payment_failed":
            await session.execute(
                update(Order)
                .where(Order.id == order.id, Order.status.in_(("open", "processing")))
                .values(status="payment_failed", updated_at=now)
            )
            return EventOutcome("payment_failed", order.id)
        if kind == "expired":
            await session.execute(
                update(Order)
                .where(Order.id == order.id, Order.status == "open")
                .values(status="expired", updated_at=now)
            )
            return EventOutcome("expired", order.id)
        return EventOutcome("ignored", order.id)

    async def fulfil_checkout_session(self, session_id: str) -> Fulfilment:
        """The success page: retrieve the checkout session and fulfil it when paid (idempotent with the webhook).

        Raises ``NotFound`` when the session is unknown here or at the provider.
        """
        checkout = await self.payments.retrieve_checkout_session(session_id)
        async with self.db.write() as session:
            order = await self._order_for_session(session, checkout)
            if order is None:
                raise NotFound("no order belongs to this checkout session")
            if checkout.paid:
                fulfilment = await self._fulfil(session, order, checkout.payment_intent)
            else:
                fulfilment = await self._state(session, order.id, granted=False)
        await self._notify(fulfilment)
        return fulfilment

    async def purchase_with_payment_intent(self, account_id: int, credits: int, payment_intent_id: str) -> Fulfilment:
        """The original purchase API: grant the pack of ``credits`` paid by a succeeded PaymentIntent, once.

        Raises ``InvalidRequest`` (field ``amount``: no such pack, or the payment does not match its price),
        ``Forbidden`` (the PaymentIntent's ``metadata.account_id`` is another account), ``PaymentNotCompleted``
        (status is not ``succeeded``), ``NotFound`` (unknown PaymentIntent).
        """
        packs = [p for p in self.packs() if p.credits == credits]
        if not packs:
            sizes = ", ".join(str(p.credits) for p in self.packs())
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
        async with self.db.write() as session:
            order: Order | None = None
            if intent.metadata.get("order_id"):
                order = await session.get(Order, intent.metadata["order_id"])
                if order is not None and (order.account_id != account_id or order.product != pack.id):
                    raise InvalidRequest("this payment was for another product", field="paymentIntentId")
            if order is None:
                order = await session.scalar(select(Order).where(Order.payment_intent_id == intent.id))
            if order is None:
                order_id = f"ord_{secrets.token_hex(12)}"
                await session.execute(
                    _insert(session)(Order)
                    .values(
                        id=order_id, account_id=account_id, product=pack.id, kind="pack", credits=pack.credits,
                        amount=pack.unit_amount, currency=pack.currency, status="open", source="payment_intent",
                        payment_intent_id=intent.id, refunded_amount=0, created_at=now, updated_at=now,
                    )
                    .on_conflict_do_nothing(index_elements=["payment_intent_id"])
                )  # fmt: skip
                order = await session.scalar(select(Order).where(Order.payment_intent_id == intent.id))
                assert order is not None
            fulfilment = await self._fulfil(session, order, intent.id)
        await self._notify(fulfilment)
        return fulfilment

    # -- refunds ---------------------------------------------------------------------------------------------

    async def _refund(self, session: AsyncSession, charge: dict[str, Any]) -> EventOutcome:
        """``charge.refunded``: take back the refunded share of what the order granted (what is left of it,
        never below zero); a full refund voids the grants and an unredeemed code."""
        intent = charge.get("payment_intent")
        if isinstance(intent, dict):
            intent = intent.get("id")
        order = await session.scalar(select(Order).where(Order.payment_intent_id == intent)) if intent else None
        if order is None:
            return EventOutcome("ignored")
        paid = int(charge.get("amount") or order.amount) or 1
        refunded = min(int(charge.get("amount_refunded") or 0), paid)
        full = refunded >= paid
        now = self.clock.now()
        if order.account_id is not None:
            await self.credits.lock_account(session, order.account_id)
        code = await session.scalar(select(RedemptionCode).where(RedemptionCode.order_id == order.id))
        refs = [f"order:{order.id}", f"order:{order.id}:image", f"order:{order.id}:video"]
        if code is not None:
            refs += [f"code:{code.id}:image", f"code:{code.id}:video"]
            if full and code.redeemed_at is None:
                code.voided_at = now
        grants = (await session.scalars(select(CreditGrant).where(CreditGrant.source_ref.in_(refs)))).all()
        op_key = f"refund:{charge.get('id')}:{refunded}"
        for grant in grants:
            taken = -(
                await session.scalar(
                    select(func.coalesce(func.sum(LedgerEntry.delta), 0)).where(
                        LedgerEntry.grant_id == grant.id, LedgerEntry.kind == "refund"
                    )
                )
                or 0
            )
            target = grant.amount if full else grant.amount * refunded // paid
            take = min(grant.remaining, target - taken)
            if take > 0:
                existing = await session.scalar(
                    select(LedgerEntry.id).where(
                        LedgerEntry.op_key == op_key, LedgerEntry.grant_id == grant.id, LedgerEntry.kind == "refund"
                    )
                )
                if existing is None:
                    await session.execute(
                        update(CreditGrant)
                        .where(CreditGrant.id == grant.id, CreditGrant.remaining >= take)
                        .values(remaining=CreditGrant.remaining - take)
                        .execution_options(synchronize_session=False)
                    )
                    session.add(
                        LedgerEntry(
                            account_id=grant.account_id, grant_id=grant.id, kind="refund", amount=take, delta=-take,
                            op_key=op_key, note=f"refund of order {order.id}", created_at=now,
                        )
                    )  # fmt: skip
            if full and grant.voided_at is None:
                grant.voided_at = now
        await session.execute(
            update(Order)
            .where(Order.id == order.id)
            .values(
                refunded_amount=func.max(Order.refunded_amount, refunded)
                if self.db.is_sqlite
                else func.greatest(Order.refunded_amount, refunded),
                status="refunded" if full else Order.status,
                updated_at=now,
            )
        )
        await session.flush()
        return EventOutcome("refunded", order.id)

    # -- codes -----------------------------------------------------------------------------------------------

    async def create_codes(self, plan: str, count: int = 1) -> list[str]:
        """Create ``count`` (1-1000) redemption codes for ``plan``; raises ``InvalidRequest``."""
        product = self.plan(plan)
        if not 1 <= count <= 1000:
            raise InvalidRequest("count must be between 1 and 1000", field="count")
        codes = [new_code() for _ in range(count)]
        now = self.clock.now()
        async with self.db.write() as session:
            session.add_all([RedemptionCode(code=c, plan=product.key, created_at=now) for c in codes])
        return codes

    async def redeem(self, code: str, account_id: int) -> Activation:
        """Activate the plan of ``code`` on ``account_id`` now: image and video quotas that expire after the
        plan's duration. Raises ``UnknownCode`` (404) or ``CodeAlreadyRedeemed`` (409)."""
        normalized = normalize_code(code)
        if normalized is None:
            raise UnknownCode("that is not a valid code (codes look like ABCD-EFGH-JKMN)", field="code")
        now = self.clock.now()
        async with self.db.write() as session:
            await self.credits.lock_account(session, account_id)
            row = (
                await session.execute(
                    update(RedemptionCode)
                    .where(
                        RedemptionCode.code == normalized,
                        RedemptionCode.redeemed_at.is_(None),
                        RedemptionCode.voided_at.is_(None),
                    )
                    .values(redeemed_at=now, redeemed_by=account_id)
                    .returning(RedemptionCode.id, RedemptionCode.plan)
                )
            ).first()
            if row is None:
                existing = await session.scalar(select(RedemptionCode).where(RedemptionCode.code == normalized))
                if existing is None:
                    raise UnknownCode(f"code {normalized} does not exist", field="code")
                if existing.voided_at is not None:
                    raise CodeAlreadyRedeemed(f"code {normalized} was cancelled (its purchase was refunded)")
                when = existing.redeemed_at.strftime("%Y-%m-%d %H:%M UTC") if existing.redeemed_at else "earlier"
                raise CodeAlreadyRedeemed(f"code {normalized} was already redeemed ({when})")
            if row.plan not in self.settings.plans:
                raise InvalidRequest(
                    f"code {normalized} is for plan {row.plan!r}, which is no longer sold", field="code"
                )
            return await self._activate(session, account_id, self.plan(row.plan), f"code:{row.id}")

    # -- admin -----------------------------------------------------------------------------------------------

    async def orders(
        self, *, account_id: int | None = None, status: str | None = None, limit: int = 50
    ) -> list[OrderView]:
        """Newest orders first (at most ``limit``), optionally of one account or status."""
        stmt = (
            select(Order, RedemptionCode.code)
            .outerjoin(RedemptionCode, RedemptionCode.order_id == Order.id)
            .order_by(Order.created_at.desc(), Order.id)
            .limit(limit)
        )
        if account_id is not None:
            stmt = stmt.where(Order.account_id == account_id)
        if status is not None:
            stmt = stmt.where(Order.status == status)
        async with self.db.read() as session:
            rows = (await session.execute(stmt)).all()
        return [
            OrderView(
                id=o.id, account_id=o.account_id, product=o.product, amount=o.amount, currency=o.currency,
                status=o.status, source=o.source, checkout_session_id=o.checkout_session_id,
                payment_intent_id=o.payment_intent_id, refunded_amount=o.refunded_amount, code=code,
                created_at=o.created_at, fulfilled_at=o.fulfilled_at,
            )
            for o, code in rows
        ]  # fmt: skip
