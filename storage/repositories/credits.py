"""The credit ledger's SQL: grants, holds that settle or release once, expiry, refunds, balances.

Every function that writes takes a ``Connection`` inside an open write transaction and the account lock
(``lock_account``) first, so locks are always taken account → job → grants and cannot deadlock. A grant's
invariant is ``remaining == amount + Σ delta`` of its entries; entries are unique per (``op_key``, grant,
kind), so an operation cannot be written twice. Burn-down order: priority ascending, soonest expiry first,
never-expiring last, oldest first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, insert, nulls_last, or_, select, update

from storage.batch import TRANSACTION_CACHE
from storage.errors import AccountMissing, NotEnoughUnits
from storage.models import Account, CreditGrant, Job, LedgerEntry
from storage.repositories import dialect_insert


@dataclass(frozen=True)
class GrantSpec:
    """A grant to create once per ``source_ref``: ``amount`` units of ``unit`` (``credit``, ``image``,
    ``video``) for ``account_id``, burnt in ``priority`` order until ``expires_at`` (None: never)."""

    account_id: int
    amount: int
    source_ref: str
    unit: str
    category: str
    priority: int
    expires_at: datetime | None = None
    eligible_models: list[str] | None = None
    note: str | None = None


@dataclass
class _Grant:
    """An active grant as the current transaction sees it: ``_take`` lowers ``remaining``."""

    id: int
    unit: str
    remaining: int
    eligible_models: list[str] | None
    expires_at: datetime | None


_LOCK_ACCOUNT = select(Account.id).where(Account.id == bindparam("account")).with_for_update(key_share=True)
ACTIVE = and_(
    CreditGrant.account_id == bindparam("account"),
    CreditGrant.remaining > 0,
    CreditGrant.voided_at.is_(None),
    or_(CreditGrant.expires_at.is_(None), CreditGrant.expires_at > bindparam("now")),
)
BURN_DOWN = (CreditGrant.priority, nulls_last(CreditGrant.expires_at), CreditGrant.created_at, CreditGrant.id)
_ACTIVE_GRANTS = (
    select(CreditGrant.id, CreditGrant.unit, CreditGrant.remaining, CreditGrant.eligible_models, CreditGrant.expires_at)
    .where(ACTIVE)
    .order_by(*BURN_DOWN)
)
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


def _entry(entry: Any, kind: str, amount: int, delta: int, note: str | None, now: datetime) -> dict[str, Any]:
    """Column values of a ledger entry written for the hold entry ``entry`` (same account, grant, op key)."""
    return {
        "account_id": entry.account_id,
        "grant_id": entry.grant_id,
        "job_id": entry.job_id,
        "kind": kind,
        "amount": amount,
        "delta": delta,
        "op_key": entry.op_key,
        "note": note,
        "created_at": now,
    }


def lock_account(conn: Connection, account_id: int, *, verify: bool = True) -> None:
    """Serialise the credit writes of one account.

    PostgreSQL: ``FOR NO KEY UPDATE`` of the account row (it does not block the ``KEY SHARE`` locks that
    foreign-key checks take); SQLite's ``BEGIN IMMEDIATE`` already holds the database's write lock. With
    ``verify`` False (the caller knows the account exists) SQLite runs no statement. In a batch transaction of
    the writer process an account is locked once (``TRANSACTION_CACHE``).

    Raises:
        AccountMissing: the account does not exist.
    """
    if not verify and conn.dialect.name == "sqlite":
        return
    cache = conn.info.get(TRANSACTION_CACHE)
    locked: set[int] | None = None if cache is None else cache.setdefault("locked_accounts", set())
    if locked is not None and account_id in locked:
        return
    if conn.execute(_LOCK_ACCOUNT, {"account": account_id}).scalar() is None:
        raise AccountMissing(account_id)
    if locked is not None:
        locked.add(account_id)


def grant(conn: Connection, spec: GrantSpec, now: datetime) -> tuple[int, bool]:
    """Create the grant ``spec`` once per ``source_ref``, with its ``grant`` ledger entry.

    Returns:
        ``(grant id, created)``: ``created`` is False when the unique ``source_ref`` already had a grant.
    """
    stmt = (
        dialect_insert(conn)(CreditGrant)
        .values(
            account_id=spec.account_id,
            unit=spec.unit,
            amount=spec.amount,
            remaining=spec.amount,
            category=spec.category,
            priority=spec.priority,
            expires_at=spec.expires_at,
            source_ref=spec.source_ref,
            eligible_models=spec.eligible_models,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["source_ref"])
        .returning(CreditGrant.id)
    )
    grant_id = conn.execute(stmt).scalar()
    if grant_id is None:
        existing = conn.execute(select(CreditGrant.id).where(CreditGrant.source_ref == spec.source_ref)).scalar_one()
        return int(existing), False
    conn.execute(
        insert(LedgerEntry).values(
            account_id=spec.account_id,
            grant_id=grant_id,
            kind="grant",
            amount=spec.amount,
            delta=0,
            op_key=spec.source_ref,
            note=spec.note or spec.category,
            created_at=now,
        )
    )
    return int(grant_id), True


def _active_grants(conn: Connection, account_id: int, now: datetime) -> list[_Grant]:
    """Every unit's active grants of the account in burn-down order. In a batch transaction that holds the
    account's lock they are read once: nobody else can change them before it commits, ``_take`` keeps their
    ``remaining`` current and ``_give_back`` drops them. They are read again once the soonest expiry passed."""
    cache = conn.info.get(TRANSACTION_CACHE)
    kept: dict[int, tuple[datetime | None, list[_Grant]]] | None = None
    if cache is not None and account_id in cache.get("locked_accounts", ()):
        kept = cache.setdefault("grants", {})
        known = kept.get(account_id)
        if known is not None and (known[0] is None or now < known[0]):
            return [g for g in known[1] if g.remaining > 0]
    rows = conn.execute(_ACTIVE_GRANTS, {"account": account_id, "now": now})
    grants = [_Grant(r.id, r.unit, r.remaining, r.eligible_models, r.expires_at) for r in rows]
    if kept is not None:
        kept[account_id] = (min((g.expires_at for g in grants if g.expires_at), default=None), grants)
    return grants


def _take(conn: Connection, grants: list[_Grant], amount: int) -> list[tuple[int, int]]:
    left = amount
    taken: list[tuple[int, int]] = []
    for active in grants:
        if left == 0:
            break
        take = min(active.remaining, left)
        if conn.execute(_TAKE, {"grant": active.id, "take": take}).rowcount != 1:
            raise RuntimeError(f"grant {active.id} changed under a locked transaction")
        active.remaining -= take
        taken.append((active.id, take))
        left -= take
    return taken


def hold(
    conn: Connection, *, account_id: int, job_id: str, options: Sequence[tuple[str, int]], model: str, now: datetime
) -> tuple[str, int, list[tuple[int, int]]]:
    """Hold the first of ``options`` (``(unit, amount)`` pairs) that the account's active grants cover.

    A grant limited to some models (``eligible_models``) counts only for those. Writes ``hold`` entries
    (op key ``job:<job_id>``). Call ``lock_account`` first in the same transaction.

    Returns:
        ``(unit, amount, [(grant id, units taken), …])``.

    Raises:
        NotEnoughUnits: no option is covered (the figures are the last option's); nothing written.
    """
    grants = [g for g in _active_grants(conn, account_id, now) if not g.eligible_models or model in g.eligible_models]
    available, unit, amount = 0, "credit", 0
    for unit, amount in options:
        mine = [g for g in grants if g.unit == unit]
        available = sum(g.remaining for g in mine)
        if available >= amount:
            taken = _take(conn, mine, amount)
            if taken:
                rows = [
                    {"account_id": account_id, "grant_id": grant_id, "job_id": job_id, "kind": "hold", "amount": n,
                     "delta": -n, "op_key": f"job:{job_id}", "note": None, "created_at": now}
                    for grant_id, n in taken
                ]  # fmt: skip
                conn.execute(insert(LedgerEntry), rows)
            return unit, amount, taken
    raise NotEnoughUnits(unit, amount, available)


def _give_back(conn: Connection, entries: list[tuple[Any, int]], note: str | None, now: datetime) -> None:
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
    conn.execute(insert(LedgerEntry), [_entry(e, "release", n, n, note, now) for e, n in entries])
    _pay_refunds_owed(conn, entries, now)


def _pay_refunds_owed(conn: Connection, entries: list[tuple[Any, int]], now: datetime) -> None:
    """Take what a refund could not take while these units were held (``refund_owed``) out of the units just
    released, with ``refund`` entries under the hold's op key: a refunded grant never ends above its share."""
    owed = dict(
        conn.execute(
            select(CreditGrant.id, CreditGrant.refund_owed).where(
                CreditGrant.id.in_({e.grant_id for e, _ in entries}), CreditGrant.refund_owed > 0
            )
        ).all()
    )
    for entry, amount in entries:
        take = min(owed.get(entry.grant_id, 0), amount)
        if take <= 0:
            continue
        owed[entry.grant_id] -= take
        conn.execute(
            update(CreditGrant)
            .where(CreditGrant.id == entry.grant_id, CreditGrant.refund_owed >= take, CreditGrant.remaining >= take)
            .values(remaining=CreditGrant.remaining - take, refund_owed=CreditGrant.refund_owed - take)
        )
        note = "refund owed, taken on release"
        conn.execute(insert(LedgerEntry).values(_entry(entry, "refund", take, -take, note, now)))


def _win_charge(conn: Connection, job_id: str, state: str, charged: int, account_locked: bool) -> list[Any] | None:
    """Move the job's charge from ``held`` to ``state``; its hold entries when this transaction won, None when
    the charge had already left ``held``."""
    if not account_locked and conn.dialect.name != "sqlite":
        account_id = conn.execute(select(Job.account_id).where(Job.id == job_id)).scalar()
        if account_id is not None:
            lock_account(conn, account_id)
    params = {"job": job_id, "state": state, "charged": charged, "op_key": f"job:{job_id}"}
    if conn.dialect.name == "postgresql":
        rows = conn.execute(_WIN_CHARGE_WITH_HOLDS, params).all()
        return [row for row in rows if row.grant_id is not None] if rows else None
    if conn.execute(_WIN_CHARGE, params).rowcount != 1:
        return None
    return list(conn.execute(_HOLDS, params))


def settle(conn: Connection, job_id: str, used: int, now: datetime, *, account_locked: bool = False) -> bool:
    """Turn ``used`` units of the job's hold into a spend and release the rest, exactly once.

    ``account_locked``: the transaction already holds the job's account lock. Returns False (nothing written)
    when the job's charge is not ``held`` any more.
    """
    holds = _win_charge(conn, job_id, "settled", used, account_locked)
    if holds is None:
        return False
    left = used
    spends: list[dict[str, Any]] = []
    unused: list[tuple[Any, int]] = []
    for entry in holds:
        spend = min(entry.amount, left)
        left -= spend
        if spend:
            spends.append(_entry(entry, "settle", spend, 0, None, now))
        unused.append((entry, entry.amount - spend))
    if spends:
        conn.execute(insert(LedgerEntry), spends)
    _give_back(conn, unused, "unused part of hold", now)
    return True


def release(conn: Connection, job_id: str, reason: str | None, now: datetime) -> bool:
    """Return the job's whole hold to its grants, exactly once; False (nothing written) when not ``held``."""
    holds = _win_charge(conn, job_id, "released", 0, False)
    if holds is None:
        return False
    _give_back(conn, [(entry, entry.amount) for entry in holds], (reason or "")[:255] or None, now)
    return True
