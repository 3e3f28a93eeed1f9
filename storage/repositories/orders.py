"""Purchases' SQL: orders, processed webhook events, redemption codes.

Exactly-once rules live in constraints and conditional updates: an event id is inserted once
(``processed_events`` primary key), an order moves to ``fulfilled`` by a conditional update, a code is
redeemed by an update on ``redeemed_at IS NULL``, what an order creates is unique per order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import Database
from storage.models import Order, PendingRefund, ProcessedEvent, RedemptionCode
from storage.records import CodeRecord, OrderRecord, record
from storage.repositories import credits, dialect_insert, grants, in_session


class BillingTransaction:
    """The steps of one purchase transaction (``OrderRepository.transaction``), committed together."""

    def __init__(self, session: AsyncSession, is_sqlite: bool) -> None:
        self._session = session
        self._is_sqlite = is_sqlite

    async def record_event(self, event_id: str, provider: str, event_type: str, now: datetime) -> bool:
        """Insert the webhook event's id; False when it was processed before (nothing written)."""
        inserted = await self._session.scalar(
            dialect_insert(self._session)(ProcessedEvent)
            .values(id=event_id, provider=provider, type=event_type, created_at=now)
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(ProcessedEvent.id)
        )
        return inserted is not None

    async def link_event(self, event_id: str, order_id: str) -> None:
        """Note which order a processed event concerned."""
        await self._session.execute(
            update(ProcessedEvent).where(ProcessedEvent.id == event_id).values(order_id=order_id)
        )

    async def order(self, order_id: str) -> OrderRecord | None:
        """The order as this transaction sees it now, or None."""
        row = await self._session.get(Order, order_id, populate_existing=True)
        return None if row is None else record(OrderRecord, row)

    async def order_where(self, *, checkout_session_id: str | None = None, payment_intent_id: str | None = None
                          ) -> OrderRecord | None:  # fmt: skip
        """The order of a checkout session or of a PaymentIntent, or None."""
        column, value = (
            (Order.checkout_session_id, checkout_session_id) if checkout_session_id else
            (Order.payment_intent_id, payment_intent_id)
        )  # fmt: skip
        row = await self._session.scalar(select(Order).where(column == value)) if value else None
        return None if row is None else record(OrderRecord, row)

    async def insert_order(self, values: dict[str, Any]) -> None:
        """Insert an order unless one already has its ``payment_intent_id``."""
        await self._session.execute(
            dialect_insert(self._session)(Order)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["payment_intent_id"])
        )

    async def move(self, order_id: str, statuses: Sequence[str], values: dict[str, Any]) -> bool:
        """Set ``values`` on the order if its status is one of ``statuses``; True when it was."""
        result = await self._session.execute(
            update(Order)
            .where(Order.id == order_id, Order.status.in_(statuses))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def set_refunded(self, order_id: str, refunded: int, full: bool, now: datetime) -> None:
        """Raise the order's ``refunded_amount`` to ``refunded`` (never lower it); ``refunded`` when ``full``."""
        greatest = func.max if self._is_sqlite else func.greatest
        await self._session.execute(
            update(Order)
            .where(Order.id == order_id)
            .values(
                refunded_amount=greatest(Order.refunded_amount, refunded),
                status="refunded" if full else Order.status,
                updated_at=now,
            )
        )

    async def add_pending_refund(self, payment_intent_id: str, charge_id: str, amounts: tuple[int, int],
                                 now: datetime) -> None:  # fmt: skip
        """Keep a refund (``amounts``: paid, refunded so far) whose order is not known or not fulfilled yet; a
        later refund of the same PaymentIntent raises the refunded amount (never lowers it)."""
        paid, refunded = amounts
        insert = dialect_insert(self._session)(PendingRefund).values(
            payment_intent_id=payment_intent_id, charge_id=charge_id, amount=paid, amount_refunded=refunded,
            created_at=now,
        )  # fmt: skip
        greatest = func.max if self._is_sqlite else func.greatest
        keep = {
            "amount_refunded": greatest(PendingRefund.amount_refunded, insert.excluded.amount_refunded),
            "charge_id": insert.excluded.charge_id,
            "applied_at": None,
        }
        await self._session.execute(insert.on_conflict_do_update(index_elements=["payment_intent_id"], set_=keep))

    async def take_pending_refund(self, payment_intent_id: str, now: datetime) -> tuple[str, int, int] | None:
        """Mark the PaymentIntent's unapplied pending refund applied; ``(charge id, paid, refunded)``, or None."""
        row = (
            await self._session.execute(
                update(PendingRefund)
                .where(PendingRefund.payment_intent_id == payment_intent_id, PendingRefund.applied_at.is_(None))
                .values(applied_at=now)
                .returning(PendingRefund.charge_id, PendingRefund.amount, PendingRefund.amount_refunded)
            )
        ).first()
        return None if row is None else (row.charge_id, row.amount, row.amount_refunded)

    async def lock_account(self, account_id: int) -> None:
        """Take the account's credit lock (``credits.lock_account``)."""
        await in_session(self._session, credits.lock_account, account_id)

    async def grant(self, spec: credits.GrantSpec, now: datetime) -> tuple[int, bool]:
        """``credits.grant`` inside this transaction."""
        return await in_session(self._session, credits.grant, spec, now)

    async def take_back(self, source_refs: list[str], share: tuple[int, int], op_key: str, note: str,
                        now: datetime) -> None:  # fmt: skip
        """``grants.take_back`` inside this transaction."""
        await in_session(self._session, grants.take_back, source_refs=source_refs, share=share, op_key=op_key,
                         note=note, now=now)  # fmt: skip

    async def add_code(self, code: str, plan: str, order_id: str | None, now: datetime) -> None:
        """Insert a redemption code (one per order at most)."""
        self._session.add(RedemptionCode(code=code, plan=plan, order_id=order_id, created_at=now))
        await self._session.flush()

    async def code(self, *, code: str | None = None, order_id: str | None = None) -> CodeRecord | None:
        """A redemption code by its text or by its order, or None."""
        column, value = (RedemptionCode.code, code) if code is not None else (RedemptionCode.order_id, order_id)
        row = await self._session.scalar(select(RedemptionCode).where(column == value))
        return None if row is None else record(CodeRecord, row)

    async def void_unredeemed_code(self, code_id: int, now: datetime) -> None:
        """Cancel a code that has not been redeemed."""
        await self._session.execute(
            update(RedemptionCode)
            .where(RedemptionCode.id == code_id, RedemptionCode.redeemed_at.is_(None))
            .values(voided_at=now)
        )

    async def redeem_code(self, code: str, account_id: int, now: datetime) -> tuple[int, str] | None:
        """Mark an unredeemed, unvoided code redeemed by the account; ``(code id, plan)``, or None."""
        row = (
            await self._session.execute(
                update(RedemptionCode)
                .where(RedemptionCode.code == code, RedemptionCode.redeemed_at.is_(None),
                       RedemptionCode.voided_at.is_(None))
                .values(redeemed_at=now, redeemed_by=account_id)
                .returning(RedemptionCode.id, RedemptionCode.plan)
            )
        ).first()  # fmt: skip
        return None if row is None else (row.id, row.plan)


class OrderRepository:
    """Orders and codes; a purchase's steps run in one ``transaction()``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[BillingTransaction]:
        """One write transaction, committed on exit and rolled back on an exception."""
        async with self.db.write() as session:
            yield BillingTransaction(session, self.db.is_sqlite)

    async def add(self, values: dict[str, Any]) -> None:
        """Insert an order (``values``: its columns)."""
        async with self.db.write() as session:
            session.add(Order(**values))

    async def update(self, order_id: str, values: dict[str, Any]) -> None:
        """Set ``values`` on the order."""
        async with self.db.write() as session:
            await session.execute(update(Order).where(Order.id == order_id).values(**values))

    async def add_codes(self, codes: list[str], plan: str, now: datetime) -> None:
        """Insert operator-made redemption codes for ``plan``."""
        async with self.db.write() as session:
            session.add_all([RedemptionCode(code=c, plan=plan, created_at=now) for c in codes])

    async def list(self, *, account_id: int | None, status: str | None, limit: int) -> list[OrderRecord]:
        """Newest orders first (at most ``limit``), optionally of one account or status, with their codes."""
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
        return [OrderRecord(**{**record(OrderRecord, order).__dict__, "code": code}) for order, code in rows]
