"""Grant upkeep and the ledger's reads: expiry, refunds taken back, balances, entries, invariants."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, and_, bindparam, func, insert, or_, select, update

from storage.db import Database
from storage.models import CreditGrant, LedgerEntry
from storage.records import GrantRecord, LedgerRecord, record
from storage.repositories import dialect_insert
from storage.repositories.credits import ACTIVE, BURN_DOWN, GrantSpec, grant, lock_account

_DUE = and_(
    CreditGrant.remaining > 0,
    CreditGrant.voided_at.is_(None),
    CreditGrant.expires_at.is_not(None),
    CreditGrant.expires_at <= bindparam("now"),
)


def expire_account(conn: Connection, account_id: int, now: datetime) -> int:
    """Zero each expired grant of the account that has units left, with an ``expire`` entry (−remaining).

    Returns:
        The number of grants expired.
    """
    lock_account(conn, account_id)
    due = conn.execute(select(CreditGrant).where(_DUE, CreditGrant.account_id == account_id), {"now": now}).all()
    expired = 0
    for grant_row in due:
        left = grant_row.remaining
        won = conn.execute(
            update(CreditGrant).where(CreditGrant.id == grant_row.id, CreditGrant.remaining == left).values(remaining=0)
        )
        if won.rowcount != 1:
            continue
        conn.execute(
            insert(LedgerEntry).values(
                account_id=account_id,
                grant_id=grant_row.id,
                kind="expire",
                amount=left,
                delta=-left,
                op_key=f"expire:{grant_row.id}:{now.isoformat()}",
                note=f"{grant_row.category} {grant_row.unit}s expired at {grant_row.expires_at:%Y-%m-%d %H:%M} UTC",
                created_at=now,
            )
        )
        expired += 1
    return expired


def take_back(
    conn: Connection, *, source_refs: list[str], share: tuple[int, int], op_key: str, note: str, now: datetime
) -> None:
    """Take back ``share`` (refunded, paid) of each grant named in ``source_refs``, once per ``op_key``.

    What a grant gives back is what is left of it (never below zero) up to its share of ``amount`` less what
    earlier refunds took; the rest of that share is owed (``refund_owed``) and taken from units a running job
    held when the job releases them. A full share also voids the grant.
    """
    refunded, paid = share
    full = refunded >= paid
    for grant_row in conn.execute(select(CreditGrant).where(CreditGrant.source_ref.in_(source_refs))).all():
        taken = -int(
            conn.execute(
                select(func.coalesce(func.sum(LedgerEntry.delta), 0)).where(
                    LedgerEntry.grant_id == grant_row.id, LedgerEntry.kind == "refund"
                )
            ).scalar_one()
        )
        target = grant_row.amount if full else grant_row.amount * refunded // paid
        take = max(0, min(grant_row.remaining, target - taken))
        if take > 0:
            inserted = conn.execute(
                dialect_insert(conn)(LedgerEntry)
                .values(account_id=grant_row.account_id, grant_id=grant_row.id, kind="refund", amount=take,
                        delta=-take, op_key=op_key, note=note, created_at=now)
                .on_conflict_do_nothing(index_elements=["op_key", "grant_id", "kind"])
                .returning(LedgerEntry.id)
            ).scalar()  # fmt: skip
            if inserted is not None:
                conn.execute(
                    update(CreditGrant)
                    .where(CreditGrant.id == grant_row.id, CreditGrant.remaining >= take)
                    .values(remaining=CreditGrant.remaining - take)
                )
                taken += take
        conn.execute(
            update(CreditGrant).where(CreditGrant.id == grant_row.id).values(refund_owed=max(0, target - taken))
        )
        if full and grant_row.voided_at is None:
            conn.execute(update(CreditGrant).where(CreditGrant.id == grant_row.id).values(voided_at=now))


class CreditRepository:
    """Reads of the ledger, and the ledger writes that are transactions of their own."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def grant(self, spec: GrantSpec, now: datetime) -> tuple[int, bool]:
        """``grant`` in a transaction of its own (with the account lock); ``(grant id, created)``.

        Raises:
            AccountMissing: the account does not exist.
        """
        return await self.db.run_write(_locked_grant, spec, now, account=spec.account_id)

    async def accounts_with_due_grants(self, now: datetime, account_id: int | None = None) -> list[int]:
        """Accounts (or just ``account_id``) that have a grant past its expiry with units left."""
        stmt = select(CreditGrant.account_id).where(_DUE).distinct()
        if account_id is not None:
            stmt = stmt.where(CreditGrant.account_id == account_id).limit(1)
        async with self.db.read() as session:
            return list((await session.scalars(stmt, {"now": now})).all())

    async def expire(self, account_id: int, now: datetime) -> int:
        """``expire_account`` in a transaction of its own; the number of grants expired."""
        return await self.db.run_write(expire_account, account_id, now, account=account_id)

    async def active_grants(self, account_id: int, now: datetime) -> list[GrantRecord]:
        """The account's grants with units left, not voided and not expired at ``now``, in burn-down order."""
        async with self.db.read() as session:
            rows = (await session.scalars(select(CreditGrant).where(ACTIVE).order_by(*BURN_DOWN),
                                          {"account": account_id, "now": now})).all()  # fmt: skip
        return [record(GrantRecord, row) for row in rows]

    async def current_grants(self, account_id: int, now: datetime) -> list[GrantRecord]:
        """The account's grants not voided and not expired at ``now``, used up or not, in burn-down order."""
        current = and_(
            CreditGrant.account_id == account_id,
            CreditGrant.voided_at.is_(None),
            or_(CreditGrant.expires_at.is_(None), CreditGrant.expires_at > now),
        )
        async with self.db.read() as session:
            rows = (await session.scalars(select(CreditGrant).where(current).order_by(*BURN_DOWN))).all()
        return [record(GrantRecord, row) for row in rows]

    async def ledger(self, account_id: int, limit: int) -> list[LedgerRecord]:
        """The account's newest ledger entries first, at most ``limit``."""
        stmt = (
            select(*LedgerEntry.__table__.c, CreditGrant.unit)
            .join(CreditGrant, CreditGrant.id == LedgerEntry.grant_id)
            .where(LedgerEntry.account_id == account_id)
            .order_by(LedgerEntry.id.desc())
            .limit(limit)
        )
        async with self.db.read() as session:
            return [record(LedgerRecord, row) for row in (await session.execute(stmt)).all()]

    async def invariant_violations(self, account_id: int | None = None) -> list[tuple[int, int, int]]:
        """Grants where ``remaining != amount + Σ delta``: ``[(grant id, remaining, expected), …]``."""
        sums = (
            select(LedgerEntry.grant_id, func.coalesce(func.sum(LedgerEntry.delta), 0).label("total"))
            .group_by(LedgerEntry.grant_id)
            .subquery()
        )
        stmt = select(CreditGrant.id, CreditGrant.remaining, CreditGrant.amount, sums.c.total).outerjoin(
            sums, sums.c.grant_id == CreditGrant.id
        )
        if account_id is not None:
            stmt = stmt.where(CreditGrant.account_id == account_id)
        async with self.db.read() as session:
            rows = (await session.execute(stmt)).all()
        return [
            (r.id, r.remaining, r.amount + (r.total or 0)) for r in rows if r.remaining != r.amount + (r.total or 0)
        ]


def _locked_grant(conn: Connection, spec: GrantSpec, now: datetime) -> tuple[int, bool]:
    lock_account(conn, spec.account_id)
    return grant(conn, spec, now)
