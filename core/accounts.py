"""Accounts (payers), their identities on chat platforms, and API keys (stored hashed, shown once)."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError

from core.clock import Clock
from core.credits import CreditService
from core.errors import InvalidRequest, NotFound
from storage.db import Database
from storage.models import Account, ApiKey, Identity

KEY_PREFIX = "sm_"
ALL_SCOPES = ("tools", "generate", "library", "credits", "admin")


def _by_identity(platform: str, external_id: str) -> Select[Any]:
    """The account a chat identity (``platform``, ``external_id``) belongs to."""
    return (
        select(Account)
        .join(Identity, Identity.account_id == Account.id)
        .where(Identity.platform == platform, Identity.external_id == external_id)
    )


@dataclass(frozen=True)
class AccountView:
    id: int
    name: str
    kind: str
    created_at: datetime


@dataclass(frozen=True)
class NewApiKey:
    """A freshly minted key: ``key`` is the clear text, shown once and never stored."""

    id: int
    account_id: int
    key: str
    prefix: str
    scopes: tuple[str, ...]


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _view(account: Account) -> AccountView:
    return AccountView(id=account.id, name=account.name, kind=account.kind, created_at=account.created_at)


class AccountService:
    def __init__(self, db: Database, credits: CreditService, clock: Clock, *, key_cache_seconds: float = 0) -> None:
        self.db = db
        self.credits = credits
        self.clock = clock
        self.key_cache_seconds = key_cache_seconds
        self._key_lookups: dict[str, asyncio.Future[tuple[int, tuple[str, ...]] | None]] = {}
        self._key_cache: dict[str, tuple[float, tuple[int, tuple[str, ...]] | None]] = {}

    async def create(self, name: str, *, kind: str = "business") -> AccountView:
        """Create an account and grant its starter credits in the same transaction.

        Raises ``InvalidRequest`` (field ``name``) for an empty or over-long name.
        """
        name = name.strip()
        if not name or len(name) > 200:
            raise InvalidRequest("name must be 1 to 200 characters", field="name")
        async with self.db.write() as session:
            account = Account(name=name, kind=kind, preferences={}, created_at=self.clock.now())
            session.add(account)
            await session.flush()
            await self.credits.grant_starter(session, account.id)
            return _view(account)

    async def get(self, account_id: int) -> AccountView:
        """The account; raises ``NotFound`` when there is none with that id."""
        async with self.db.read() as session:
            account = await session.get(Account, account_id)
        if account is None:
            raise NotFound(f"account {account_id} does not exist")
        return _view(account)

    async def for_identity(self, platform: str, external_id: str, *, name: str) -> tuple[AccountView, bool]:
        """The account behind ``platform:external_id``, created (with starter credits) on first contact.

        Returns ``(account, created)``. Concurrent first contacts create one account: the unique
        (platform, external id) constraint decides, inside one write transaction.
        """
        # Every chat message looks its sender up: a plain read first, the write transaction only on first contact.
        async with self.db.read() as session:
            found = await session.scalar(_by_identity(platform, external_id))
        if found is not None:
            return _view(found), False
        try:
            return await self._for_identity(platform, external_id, name)
        except IntegrityError:
            # Another first contact of the same person won the unique (platform, external id) race
            # (PostgreSQL; SQLite's BEGIN IMMEDIATE serialises them): this transaction rolled back, use theirs.
            return await self._for_identity(platform, external_id, name)

    async def _for_identity(self, platform: str, external_id: str, name: str) -> tuple[AccountView, bool]:
        async with self.db.write() as session:
            found = await session.scalar(_by_identity(platform, external_id))
            if found is not None:
                return _view(found), False
            account = Account(
                name=name[:200] or f"{platform}:{external_id}",
                kind="customer",
                preferences={},
                created_at=self.clock.now(),
            )
            session.add(account)
            await session.flush()
            session.add(
                Identity(account_id=account.id, platform=platform, external_id=external_id, created_at=self.clock.now())
            )
            await session.flush()
            await self.credits.grant_starter(session, account.id)
            return _view(account), True

    async def external_id(self, account_id: int, platform: str) -> str | None:
        """The account's user id on ``platform`` (``telegram``, ``discord``), None when it has none."""
        async with self.db.read() as session:
            return await session.scalar(
                select(Identity.external_id).where(Identity.account_id == account_id, Identity.platform == platform)
            )

    async def create_api_key(
        self, account_id: int, *, scopes: tuple[str, ...] = ALL_SCOPES, name: str | None = None
    ) -> NewApiKey:
        """Mint a key for the account (``sm_`` + 43 url-safe characters); only its SHA-256 is stored.

        Raises ``NotFound`` for an unknown account and ``InvalidRequest`` (field ``scopes``) for an unknown scope.
        """
        unknown = [s for s in scopes if s not in ALL_SCOPES]
        if unknown:
            raise InvalidRequest(f"unknown scope {unknown[0]!r}; scopes are {', '.join(ALL_SCOPES)}", field="scopes")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        async with self.db.write() as session:
            if await session.get(Account, account_id) is None:
                raise NotFound(f"account {account_id} does not exist")
            row = ApiKey(
                account_id=account_id,
                prefix=key[:10],
                key_hash=hash_key(key),
                scopes=" ".join(scopes),
                name=name,
                created_at=self.clock.now(),
            )
            session.add(row)
            await session.flush()
            return NewApiKey(id=row.id, account_id=account_id, key=key, prefix=row.prefix, scopes=scopes)

    async def authenticate(self, key: str) -> tuple[int, tuple[str, ...]] | None:
        """``(account_id, scopes)`` for a valid, unrevoked key; None otherwise.

        Answers (including "no such key") are cached for ``key_cache_seconds``, so the hot path of a tool
        call does not touch the database; a revoked key stops working within that time. Concurrent calls
        with a key not in the cache share one lookup (a burst of calls would otherwise all query at once)."""
        if not key.startswith(KEY_PREFIX) or len(key) > 200:
            return None
        digest = hash_key(key)
        cached = self._key_cache.get(digest)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        lookup = self._key_lookups.get(digest)
        if lookup is None:
            lookup = asyncio.ensure_future(self._look_up_key(digest))
            self._key_lookups[digest] = lookup
            lookup.add_done_callback(lambda _f: self._key_lookups.pop(digest, None))
        return await asyncio.shield(lookup)

    async def _look_up_key(self, digest: str) -> tuple[int, tuple[str, ...]] | None:
        async with self.db.read() as session:
            row = await session.scalar(select(ApiKey).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None)))
        result = (row.account_id, tuple(row.scopes.split())) if row is not None else None
        if self.key_cache_seconds > 0:
            if len(self._key_cache) > 10_000:
                self._key_cache.clear()
            self._key_cache[digest] = (time.monotonic() + self.key_cache_seconds, result)
        return result
