"""Credits: grants by unit, an append-only ledger, and holds that settle or release exactly once.

Model (a bucketed, append-only ledger with holds):

* A **credit grant** is a bucket of one unit (``credit``, ``image``, ``video``) with ``amount``, ``remaining``,
  ``priority``, optional ``expires_at`` and a unique ``source_ref`` (``starter:<account>``, ``order:<id>``).
* The **ledger** records every change to a grant: ``grant`` (delta 0), ``hold`` (−n), ``settle`` (0: the hold
  becomes a spend), ``release`` (+n), ``expire`` (−n), ``refund`` (−n). For every grant
  ``remaining == amount + Σ delta``; entries are unique per (operation, grant, kind).
* A job's charge is held with the job row in one transaction and moves ``held → settled | released`` once
  (``storage.repositories.jobs``); the database enforces both.

This module holds the rules (which unit pays, priorities, validation, sentences of errors); the SQL is
``storage.repositories.credits``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from core.clock import Clock
from core.config import CreditSettings
from core.errors import InsufficientCredits, InvalidRequest
from storage.errors import AccountMissing, NotEnoughUnits
from storage.repositories.credits import GrantSpec
from storage.repositories.grants import CreditRepository

UNITS: tuple[str, ...] = ("credit", "image", "video")
CATEGORIES: tuple[str, ...] = ("starter", "paid", "session", "admin")


@dataclass(frozen=True)
class GrantResult:
    """``grant_id`` of the grant for a ``source_ref``; ``created`` False when it existed already."""

    grant_id: int
    created: bool


@dataclass(frozen=True)
class Charge:
    """What a job costs: ``amount`` of ``unit``."""

    unit: str
    amount: int


@dataclass(frozen=True)
class Quota:
    """Active session quota of one unit: ``remaining`` units; ``seconds_left`` and ``minutes_left`` (rounded
    up) until the soonest expiry."""

    unit: str
    remaining: int
    expires_at: datetime | None
    seconds_left: int | None
    minutes_left: int | None = None


@dataclass(frozen=True)
class Balance:
    """Credits available now and the active session quotas (``image``, ``video``)."""

    account_id: int
    credits: int
    quotas: list[Quota]


@dataclass(frozen=True)
class LedgerLine:
    """One ledger entry; ``delta`` is its change to the grant's ``remaining`` (units)."""

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


def insufficient(err: NotEnoughUnits) -> InsufficientCredits:
    """The core error for a hold the account's grants did not cover."""
    noun = "credits" if err.unit == "credit" else f"{err.unit} quota"
    return InsufficientCredits(
        f"not enough {noun}: this needs {err.needed}, the account has {err.available}",
        needed=err.needed,
        available=err.available,
        unit=err.unit,
    )


def missing_account(err: AccountMissing) -> InvalidRequest:
    """The core error for a write that named an account that does not exist."""
    return InvalidRequest(f"account {err.account_id} does not exist", field="account")


class CreditService:
    """Grants, balances and the ledger of every account. Times come from ``clock`` (UTC)."""

    def __init__(self, repository: CreditRepository, settings: CreditSettings, clock: Clock) -> None:
        self.repository = repository
        self.settings = settings
        self.clock = clock

    def grant_spec(
        self,
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
    ) -> GrantSpec:
        """A grant of ``amount`` ``unit``s to create once per ``source_ref``; ``priority`` defaults from the
        category (lower burns first).

        Raises:
            InvalidRequest: a non-positive amount (field ``amount``), an unknown unit or category.
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
        return GrantSpec(
            account_id=account_id,
            amount=amount,
            source_ref=source_ref,
            unit=unit,
            category=category,
            priority=priority,
            expires_at=expires_at,
            eligible_models=eligible_models,
            note=note,
        )

    def starter_spec(self, account_id: int) -> GrantSpec | None:
        """The configured starter credits of a new account (``starter:<id>``); None when disabled."""
        if self.settings.starter_credits <= 0:
            return None
        return self.grant_spec(
            account_id=account_id,
            amount=self.settings.starter_credits,
            source_ref=f"starter:{account_id}",
            category="starter",
            note="starter credits",
        )

    async def grant(self, **spec: object) -> GrantResult:
        """Create a grant (the arguments of ``grant_spec``) once per ``source_ref``, in its own transaction.

        Raises:
            InvalidRequest: as ``grant_spec``, or the account does not exist (field ``account``).
        """
        try:
            grant_id, created = await self.repository.grant(self.grant_spec(**spec), self.clock.now())  # type: ignore[arg-type]
        except AccountMissing as err:
            raise missing_account(err) from err
        return GrantResult(grant_id, created)

    async def grant_starter(self, account_id: int) -> GrantResult | None:
        """Grant the starter credits once per account; None when disabled."""
        spec = self.starter_spec(account_id)
        if spec is None:
            return None
        grant_id, created = await self.repository.grant(spec, self.clock.now())
        return GrantResult(grant_id, created)

    @staticmethod
    def charge_options(outputs: int, credits_per_output: int, quota_unit: str = "image") -> list[Charge]:
        """How a job of ``outputs`` outputs may be paid, in order of preference: an active session quota of
        ``quota_unit`` (``image`` or ``video``) that covers every output (and admits the model), else
        ``outputs × credits_per_output`` credits."""
        return [Charge(quota_unit, outputs), Charge("credit", outputs * credits_per_output)]

    async def expire_due(self, account_id: int | None = None) -> int:
        """Zero every expired grant that still has units left (an ``expire`` entry each).

        ``account_id`` None sweeps every account, one transaction per account. A grant that regains units
        after its expiry (a hold released late) is expired again by the next sweep. Returns the number of
        grants expired.
        """
        now = self.clock.now()
        expired = 0
        for account in await self.repository.accounts_with_due_grants(now, account_id):
            expired += await self.repository.expire(account, now)
        return expired

    async def balance(self, account_id: int) -> Balance:
        """Credits available now and the session quotas still running (also those used up: ``remaining`` 0),
        after writing off expired grants."""
        await self.expire_due(account_id)
        now = self.clock.now()
        grants = await self.repository.current_grants(account_id, now)
        quotas: list[Quota] = []
        for unit in ("image", "video"):
            mine = [g for g in grants if g.unit == unit]
            if not mine:
                continue
            soonest = min((g.expires_at for g in mine if g.expires_at is not None), default=None)
            seconds = max(0, int((soonest - now).total_seconds())) if soonest else None
            quotas.append(
                Quota(
                    unit=unit,
                    remaining=sum(g.remaining for g in mine),
                    expires_at=soonest,
                    seconds_left=seconds,
                    minutes_left=-(-seconds // 60) if seconds is not None else None,
                )
            )
        credits = sum(g.remaining for g in grants if g.unit == "credit")
        return Balance(account_id=account_id, credits=credits, quotas=quotas)

    async def ledger(self, account_id: int, limit: int = 100) -> list[LedgerLine]:
        """The account's newest ledger entries first (at most ``limit``), after writing off expired grants."""
        await self.expire_due(account_id)
        return [
            LedgerLine(
                id=e.id, grant_id=e.grant_id, job_id=e.job_id, kind=e.kind, unit=e.unit, amount=e.amount,
                delta=e.delta, op_key=e.op_key, note=e.note, created_at=e.created_at,
            )
            for e in await self.repository.ledger(account_id, limit)
        ]  # fmt: skip

    async def invariant_violations(self, account_id: int | None = None) -> list[tuple[int, int, int]]:
        """Grants where ``remaining != amount + Σ delta``: ``[(grant_id, remaining, expected), …]``."""
        return await self.repository.invariant_violations(account_id)
