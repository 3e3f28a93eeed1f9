"""Credits: grants by unit, an append-only ledger, and holds that settle or release exactly once.

Model (see ../shared/research/payments-and-ledgers.md §2.7, §3):

* A **credit grant** is a bucket of one unit (``credit``, ``image``, ``video``) with ``amount``, ``remaining``,
  ``priority``, optional ``expires_at`` and a unique ``source_ref`` (``starter:<account>``, ``stripe:cs_…``).
* The **ledger** records every change to a grant: ``grant`` (delta 0, the amount is the grant's own),
  ``hold`` (−n), ``settle`` (0: the hold becomes a spend), ``release`` (+n), ``expire`` (−n), ``refund`` (−n: a
  refunded purchase taken back).
  Invariant, for every grant: ``remaining == amount + Σ delta``. Entries are unique per
  (``op_key``, grant, kind), so an operation cannot be written twice.
* **Burn-down order**: matching unit, active (not expired, not voided, ``remaining > 0``), then priority
  ascending, soonest expiry first, never-expiring last, oldest first.
* A job's charge moves ``none → held → settled | released`` by conditional updates on the job row; only the
  transaction that wins the transition writes ledger entries.

All mutating functions take an open write transaction (``Database.write()``) so a hold is committed together
with the job that needs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, and_, bindparam, func, insert, nulls_last, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import Clock
from core.config import CreditSettings
from core.errors import InsufficientCredits, InvalidRequest
from storage.db import TRANSACTION_CACHE, Database
from storage.models import Account, CreditGrant, Job, LedgerEntry

Unit = Literal["credit", "image", "video"]
UNITS: tuple[str, ...] = ("credit", "image", "video")
CATEGORIES: tuple[str, ...] = ("starter", "paid", "session", "admin")


@dataclass(frozen=True)
class GrantResult:
    grant_id: int
    created: bool


@dataclass(frozen=True)
class Quota:
    """Active session quota of one unit: ``remaining`` units, ``seconds_left`` until the soonest expiry."""

    unit: str
    remaining: int
    expires_at: datetime | None
    seconds_left: int | None
    minutes_left: int | None = None


@dataclass(frozen=True)
class Balance:
    account_id: int
    credits: int
    quotas: list[Quota]


@dataclass(frozen=True)
class Charge:
    """What a job will cost: ``amount`` of ``unit``."""

    unit: str
    amount: int


@dataclass
class _GrantState:
    """An active grant as the current transaction sees it: ``hold`` lowers ``remaining`` as it takes."""

    id: int
    unit: str
    remaining: int
    eligible_models: list[str] | None
    expires_at: datetime | None


@dataclass(frozen=True)
class LedgerLine:
    id: int
    grant_id: int
    job_id: str | None
    kind: str
    unit: str
    amount: int
    delta: int
    op_key: str
    note: str | None
    created_at: datetime


def _insert(session: AsyncSession) -> Any:
    """The dialect's ``insert`` (both offer ``on_conflict_do_nothing``)."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


# The hot statements, built once: building a statement costs more than running it on SQLite.
_LOCK_ACCOUNT = select(Account.id).where(Account.id == bindparam("account")).with_for_update(key_share=True)
_ACTIVE_ANY = and_(
    CreditGrant.account_id == bindparam("account"),
    CreditGrant.remaining > 0,
    CreditGrant.voided_at.is_(None),
    or_(CreditGrant.expires_at.is_(None), CreditGrant.expires_at > bindparam("now")),
)
_BURN_DOWN = (CreditGrant.priority, nulls_last(CreditGrant.expires_at), CreditGrant.created_at, CreditGrant.id)
_GRANT_COLUMNS = (
    CreditGrant.id,
    CreditGrant.unit,
    CreditGrant.remaining,
    CreditGrant.eligible_models,
    CreditGrant.expires_at,
)
_ELIGIBLE_ANY = select(*_GRANT_COLUMNS).where(_ACTIVE_ANY).order_by(*_BURN_DOWN)
_ELIGIBLE = select(*_GRANT_COLUMNS).where(_ACTIVE_ANY, CreditGrant.unit == bindparam("unit")).order_by(*_BURN_DOWN)
_TAKE = (
    update(CreditGrant)
    .where(CreditGrant.id == bindparam("grant"), CreditGrant.remaining >= bindparam("take"))
    .values(remaining=CreditGrant.remaining - bindparam("take"))
)
_GIVE_BACK = (
    update(CreditGrant)
    .where(CreditGrant.id == bindparam("grant"))
    .values(remaining=CreditGrant.remaining + bindparam("give"))
)
_WIN_CHARGE = (
    update(Job)
    .where(Job.id == bindparam("job"), Job.charge_state == "held")
    .values(charge_state=bindparam("state"), charged=bindparam("charged"))
)
_HOLDS = (
    select(LedgerEntry.account_id, LedgerEntry.grant_id, LedgerEntry.job_id, LedgerEntry.amount, LedgerEntry.op_key)
    .where(LedgerEntry.op_key == bindparam("op_key"), LedgerEntry.kind == "hold")
    .order_by(LedgerEntry.id)
)
# PostgreSQL runs both in one round trip: the update in a data-modifying CTE, the hold entries joined to its one
# row (or to none when the charge had already left ``held``; a won charge without holds gives a row of NULLs).
_WON = _WIN_CHARGE.returning(Job.id).cte("won")
_WIN_CHARGE_WITH_HOLDS = (
    select(_WON.c.id.label("won"), *_HOLDS.selected_columns)
    .select_from(
        _WON.outerjoin(LedgerEntry, and_(LedgerEntry.op_key == bindparam("op_key"), LedgerEntry.kind == "hold"))
    )
    .order_by(LedgerEntry.id)
)


class CreditService:
    """Grants, holds and balances. Times come from ``clock`` (UTC)."""

    def __init__(self, db: Database, settings: CreditSettings, clock: Clock) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock

    def __getstate__(self) -> dict[str, Any]:
        """Pickled into write operations (``Database.run_write`` runs them in the writer process): the
        settings and the clock travel, the database handle stays here. Only the methods taking a
        ``Connection`` work on the copy."""
        return {"settings": self.settings, "clock": self.clock, "db": None}

    def lock(self, conn: Connection, account_id: int, *, verify: bool = True) -> None:
        """Serialise credit writes of one account: ``FOR NO KEY UPDATE`` on PostgreSQL (it does not block the
        ``KEY SHARE`` locks that foreign-key checks take), while SQLite's ``BEGIN IMMEDIATE`` already holds the
        database write lock. Every credit-writing transaction takes this lock first, so locks are always
        acquired account → job → grants and cannot deadlock. Raises ``InvalidRequest`` (field ``account``)
        when the account does not exist; with ``verify`` False (the caller knows it exists) SQLite runs no
        statement at all. In a batch transaction of the writer process (``storage.db.TRANSACTION_CACHE``) an
        account is locked and verified once: the other operations of the batch run no statement for it."""
        if not verify and conn.dialect.name == "sqlite":
            return
        cache = conn.info.get(TRANSACTION_CACHE)
        locked: set[int] | None = None if cache is None else cache.setdefault("locked_accounts", set())
        if locked is not None and account_id in locked:
            return
        found = conn.execute(_LOCK_ACCOUNT, {"account": account_id}).scalar()
        if found is None:
            raise InvalidRequest(f"account {account_id} does not exist", field="account")
        if locked is not None:
            locked.add(account_id)

    async def lock_account(self, session: AsyncSession, account_id: int) -> None:
        """``lock`` inside an ORM session's transaction."""
        await session.run_sync(lambda sync: self.lock(sync.connection(), account_id))

    async def grant(
        self,
        session: AsyncSession,
        *,
        account_id: int,
        amount: int,
        source_ref: str,
        unit: str = "credit",
        category: str = "admin",
        priority: int | None = None,
        expires_at: datetime | None = None,
        eligible_models: list[str] | None = None,
        note: str | None = None,
    ) -> GrantResult:
        """Create a grant of ``amount`` ``unit``s once per ``source_ref``.

        A second call with the same ``source_ref`` returns the existing grant with ``created=False``
        (the unique constraint decides, inside this transaction). Raises ``InvalidRequest`` for a
        non-positive amount or an unknown unit or category.
        """
        if amount <= 0:
            raise InvalidRequest("amount must be a positive whole number", field="amount")
        if unit not in UNITS:
            raise InvalidRequest(f"unit must be one of {', '.join(UNITS)}", field="unit")
        if category not in CATEGORIES:
            raise InvalidRequest(f"category must be one of {', '.join(CATEGORIES)}", field="category")
        if priority is None:
            priority = {
                "starter": self.settings.starter_priority,
                "paid": self.settings.paid_priority,
                "session": self.settings.session_priority,
            }.get(category, self.settings.admin_priority)
        now = self.clock.now()
        stmt = (
            _insert(session)(CreditGrant)
            .values(
                account_id=account_id,
                unit=unit,
                amount=amount,
                remaining=amount,
                category=category,
                priority=priority,
                expires_at=expires_at,
                source_ref=source_ref,
                eligible_models=eligible_models,
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["source_ref"])
            .returning(CreditGrant.id)
        )
        grant_id = await session.scalar(stmt)
        if grant_id is None:
            existing = await session.scalar(select(CreditGrant.id).where(CreditGrant.source_ref == source_ref))
            assert existing is not None
            return GrantResult(existing, created=False)
        session.add(
            LedgerEntry(
                account_id=account_id,
                grant_id=grant_id,
                kind="grant",
                amount=amount,
                delta=0,
                op_key=source_ref,
                note=note or category,
                created_at=now,
            )
        )
        await session.flush()
        return GrantResult(grant_id, created=True)

    async def grant_starter(self, session: AsyncSession, account_id: int) -> GrantResult | None:
        """Grant the configured starter credits once per account (``starter:<id>``); None when disabled."""
        if self.settings.starter_credits <= 0:
            return None
        return await self.grant(
            session,
            account_id=account_id,
            amount=self.settings.starter_credits,
            source_ref=f"starter:{account_id}",
            category="starter",
            note="starter credits",
        )

    def _eligible_grants(
        self, conn: Connection, account_id: int, unit: str | None, model: str | None
    ) -> list[_GrantState]:
        """Active grants in burn-down order (``_GrantState``s); ``unit`` None means every unit (one query for
        ``choose_charge``)."""
        now = self.clock.now()
        if unit is None:
            grants = self._active_grants(conn, account_id, now)
        else:
            rows = conn.execute(_ELIGIBLE, {"account": account_id, "unit": unit, "now": now})
            grants = [_GrantState(r.id, r.unit, r.remaining, r.eligible_models, r.expires_at) for r in rows]
        return [g for g in grants if not g.eligible_models or (model is not None and model in g.eligible_models)]

    def _active_grants(self, conn: Connection, account_id: int, now: datetime) -> list[_GrantState]:
        """Every unit's active grants of the account, in burn-down order. In a batch transaction that holds the
        account's lock (``lock``; ``storage.db.TRANSACTION_CACHE``) they are read once: nobody else can change
        them before it commits, ``hold`` keeps their ``remaining`` up to date, and any other change to them in
        the transaction (``_give_back``) drops them. They are read again once the soonest expiry has passed."""
        cache = conn.info.get(TRANSACTION_CACHE)
        kept: dict[int, tuple[datetime | None, list[_GrantState]]] | None = None
        if cache is not None and account_id in cache.get("locked_accounts", ()):
            kept = cache.setdefault("grants", {})
            known = kept.get(account_id)
            if known is not None and (known[0] is None or now < known[0]):
                return [g for g in known[1] if g.remaining > 0]
        rows = conn.execute(_ELIGIBLE_ANY, {"account": account_id, "now": now})
        grants = [_GrantState(r.id, r.unit, r.remaining, r.eligible_models, r.expires_at) for r in rows]
        if kept is not None:
            kept[account_id] = (min((g.expires_at for g in grants if g.expires_at), default=None), grants)
        return grants

    def choose_charge(
        self, conn: Connection, *, account_id: int, model: str, outputs: int, credits_per_output: int
    ) -> tuple[Charge, list[Any]]:
        """How a generation of ``outputs`` images of ``model`` is paid: from an active session image quota
        that covers every output and admits the model, else ``outputs × credits_per_output`` credits.
        Returns the charge and the grants it would burn (hand both to ``hold``)."""
        grants = self._eligible_grants(conn, account_id, None, model)
        images = [g for g in grants if g.unit == "image"]
        if sum(g.remaining for g in images) >= outputs:
            return Charge("image", outputs), images
        return Charge("credit", outputs * credits_per_output), [g for g in grants if g.unit == "credit"]

    def hold(
        self,
        conn: Connection,
        *,
        account_id: int,
        job_id: str,
        charge: Charge,
        model: str | None = None,
        grants: list[Any] | None = None,
    ) -> list[tuple[int, int]]:
        """Take ``charge`` from the account's grants in burn-down order and record ``hold`` entries.

        Returns ``[(grant_id, amount), …]``. Raises ``InsufficientCredits`` (nothing written) when the
        active grants hold less than ``charge.amount``. Call ``lock`` first in the same transaction.
        """
        if charge.amount == 0:
            return []
        if grants is None:
            grants = self._eligible_grants(conn, account_id, charge.unit, model)
        available = sum(g.remaining for g in grants)
        if available < charge.amount:
            noun = "credits" if charge.unit == "credit" else f"{charge.unit} quota"
            raise InsufficientCredits(
                f"not enough {noun}: this needs {charge.amount}, the account has {available}",
                needed=charge.amount,
                available=available,
                unit=charge.unit,
            )
        left = charge.amount
        taken: list[tuple[int, int]] = []
        now = self.clock.now()
        for grant in grants:
            if left == 0:
                break
            take = min(grant.remaining, left)
            result = conn.execute(_TAKE, {"grant": grant.id, "take": take})
            if result.rowcount != 1:
                raise RuntimeError(f"grant {grant.id} changed under a locked transaction")
            grant.remaining -= take  # what this transaction now sees (see _active_grants)
            taken.append((grant.id, take))
            left -= take
        conn.execute(
            insert(LedgerEntry),
            [
                {
                    "account_id": account_id,
                    "grant_id": grant_id,
                    "job_id": job_id,
                    "kind": "hold",
                    "amount": take,
                    "delta": -take,
                    "op_key": f"job:{job_id}",
                    "note": None,
                    "created_at": now,
                }
                for grant_id, take in taken
            ],
        )
        return taken

    def _lock_job_account(self, conn: Connection, job_id: str) -> None:
        if conn.dialect.name == "sqlite":
            return  # BEGIN IMMEDIATE already excludes every other writer
        account_id = conn.execute(select(Job.account_id).where(Job.id == job_id)).scalar()
        if account_id is not None:
            self.lock(conn, account_id)

    def _give_back(self, conn: Connection, entries: list[tuple[Any, int]], note: str | None) -> None:
        """Return ``amount`` of each ``(hold entry, amount)`` to its grant, with ``release`` entries."""
        entries = [(entry, amount) for entry, amount in entries if amount]
        if not entries:
            return
        kept = (conn.info.get(TRANSACTION_CACHE) or {}).get("grants")
        if kept:  # the grants read by _active_grants no longer show what this transaction sees
            for entry, _ in entries:
                kept.pop(entry.account_id, None)
        for entry, amount in entries:
            conn.execute(_GIVE_BACK, {"grant": entry.grant_id, "give": amount})
        now = self.clock.now()
        conn.execute(
            insert(LedgerEntry),
            [
                {
                    "account_id": entry.account_id,
                    "grant_id": entry.grant_id,
                    "job_id": entry.job_id,
                    "kind": "release",
                    "amount": amount,
                    "delta": amount,
                    "op_key": entry.op_key,
                    "note": note,
                    "created_at": now,
                }
                for entry, amount in entries
            ],
        )

    def _win_charge(
        self, conn: Connection, job_id: str, state: str, charged: int, *, account_locked: bool = False
    ) -> list[Any] | None:
        """Move the job's charge from ``held`` to ``state`` (conditional update); the hold entries when this
        transaction won, None when the charge had already left ``held``."""
        if not account_locked:
            self._lock_job_account(conn, job_id)
        params = {"job": job_id, "state": state, "charged": charged, "op_key": f"job:{job_id}"}
        if conn.dialect.name == "postgresql":
            rows = conn.execute(_WIN_CHARGE_WITH_HOLDS, params).all()
            return [row for row in rows if row.grant_id is not None] if rows else None
        if conn.execute(_WIN_CHARGE, params).rowcount != 1:
            return None
        return list(conn.execute(_HOLDS, params))

    def settle(self, conn: Connection, job_id: str, used: int, *, account_locked: bool = False) -> bool:
        """Turn ``used`` units of the job's hold into a spend and release the rest, exactly once.

        Returns False (and writes nothing) when the job's charge is not ``held`` any more. ``account_locked``:
        the caller's transaction already holds the job's account lock (``lock``), so it is not taken again.
        """
        holds = self._win_charge(conn, job_id, "settled", used, account_locked=account_locked)
        if holds is None:
            return False
        left = used
        now = self.clock.now()
        spends: list[dict[str, Any]] = []
        unused: list[tuple[Any, int]] = []
        for entry in holds:
            spend = min(entry.amount, left)
            left -= spend
            if spend:
                spends.append(
                    {
                        "account_id": entry.account_id,
                        "grant_id": entry.grant_id,
                        "job_id": job_id,
                        "kind": "settle",
                        "amount": spend,
                        "delta": 0,
                        "op_key": entry.op_key,
                        "note": None,
                        "created_at": now,
                    }
                )
            unused.append((entry, entry.amount - spend))
        if spends:
            conn.execute(insert(LedgerEntry), spends)
        self._give_back(conn, unused, "unused part of hold")
        return True

    def release(self, conn: Connection, job_id: str, reason: str | None = None) -> bool:
        """Return the job's whole hold to the grants it came from, exactly once.

        Returns False (and writes nothing) when the job's charge is not ``held``.
        """
        holds = self._win_charge(conn, job_id, "released", 0)
        if holds is None:
            return False
        self._give_back(conn, [(entry, entry.amount) for entry in holds], (reason or "")[:255] or None)
        return True

    async def expire_due(self, account_id: int | None = None) -> int:
        """Zero every expired grant that still has units left and record an ``expire`` entry (−remaining).

        ``account_id`` None sweeps every account (one transaction per account, in the account → grant lock
        order). A grant that regains units later (a hold released after its expiry) is expired again by the
        next sweep. Returns the number of grants expired.
        """
        now = self.clock.now()
        due = and_(
            CreditGrant.remaining > 0,
            CreditGrant.voided_at.is_(None),
            CreditGrant.expires_at.is_not(None),
            CreditGrant.expires_at <= now,
        )
        if account_id is None:
            async with self.db.read() as session:
                accounts = list((await session.scalars(select(CreditGrant.account_id).where(due).distinct())).all())
        else:
            accounts = [account_id]
        expired = 0
        for account in accounts:
            async with self.db.read() as session:
                if (
                    await session.scalar(select(CreditGrant.id).where(due, CreditGrant.account_id == account).limit(1))
                    is None
                ):
                    continue
            async with self.db.write() as session:
                await self.lock_account(session, account)
                grants = (
                    await session.scalars(select(CreditGrant).where(due, CreditGrant.account_id == account))
                ).all()
                for grant in grants:
                    left = grant.remaining
                    won = await session.execute(
                        update(CreditGrant)
                        .where(CreditGrant.id == grant.id, CreditGrant.remaining == left)
                        .values(remaining=0)
                        .execution_options(synchronize_session=False)
                    )
                    if won.rowcount != 1:  # type: ignore[attr-defined]
                        continue
                    session.add(
                        LedgerEntry(
                            account_id=account,
                            grant_id=grant.id,
                            kind="expire",
                            amount=left,
                            delta=-left,
                            op_key=f"expire:{grant.id}:{now.isoformat()}",
                            note=f"{grant.category} {grant.unit}s expired at {grant.expires_at:%Y-%m-%d %H:%M} UTC",
                            created_at=now,
                        )
                    )
                    expired += 1
        return expired

    async def balance(self, account_id: int) -> Balance:
        """Credits available now and active per-unit session quotas (``seconds_left`` / ``minutes_left`` until
        the soonest expiry). Expired quotas are written off (``expire_due``) first, so the ledger shows them."""
        await self.expire_due(account_id)
        now = self.clock.now()
        async with self.db.read() as session:
            rows = (
                await session.execute(
                    select(CreditGrant.unit, CreditGrant.remaining, CreditGrant.expires_at).where(
                        CreditGrant.account_id == account_id,
                        CreditGrant.remaining > 0,
                        CreditGrant.voided_at.is_(None),
                        or_(CreditGrant.expires_at.is_(None), CreditGrant.expires_at > now),
                    )
                )
            ).all()
        credits = sum(r.remaining for r in rows if r.unit == "credit")
        quotas: list[Quota] = []
        for unit in ("image", "video"):
            mine = [r for r in rows if r.unit == unit]
            if not mine:
                continue
            expiries = [r.expires_at for r in mine if r.expires_at is not None]
            soonest = min(expiries) if expiries else None
            quotas.append(
                Quota(
                    unit=unit,
                    remaining=sum(r.remaining for r in mine),
                    expires_at=soonest,
                    seconds_left=max(0, int((soonest - now).total_seconds())) if soonest else None,
                    minutes_left=-(-max(0, int((soonest - now).total_seconds())) // 60) if soonest else None,
                )
            )
        return Balance(account_id=account_id, credits=credits, quotas=quotas)

    async def ledger(self, account_id: int, limit: int = 100) -> list[LedgerLine]:
        """The account's newest ledger entries first (at most ``limit``), after writing off expired grants."""
        await self.expire_due(account_id)
        async with self.db.read() as session:
            rows = (
                await session.execute(
                    select(LedgerEntry, CreditGrant.unit)
                    .join(CreditGrant, CreditGrant.id == LedgerEntry.grant_id)
                    .where(LedgerEntry.account_id == account_id)
                    .order_by(LedgerEntry.id.desc())
                    .limit(limit)
                )
            ).all()
        return [
            LedgerLine(
                id=e.id,
                grant_id=e.grant_id,
                job_id=e.job_id,
                kind=e.kind,
                unit=unit,
                amount=e.amount,
                delta=e.delta,
                op_key=e.op_key,
                note=e.note,
                created_at=e.created_at,
            )
            for e, unit in rows
        ]

    async def invariant_violations(self, account_id: int | None = None) -> list[tuple[int, int, int]]:
        """Grants where ``remaining != amount + Σ delta``: ``[(grant_id, remaining, expected), …]``."""
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
