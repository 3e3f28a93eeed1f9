"""Accounts, their chat identities, API keys (stored as SHA-256 digests) and preferences."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from storage.db import Database
from storage.models import Account, ApiKey, Identity
from storage.records import AccountRecord, record
from storage.repositories import credits, in_session

StarterGrant = Callable[[int], "credits.GrantSpec | None"]


class AccountRepository:
    """Accounts and what hangs off them (identities, keys, preferences)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self, name: str, kind: str, now: datetime, starter: StarterGrant, identity: tuple[str, str] | None = None
    ) -> AccountRecord:
        """Insert an account (and its ``(platform, external id)`` identity) and grant ``starter(account id)``
        in the same transaction.

        Raises:
            sqlalchemy.exc.IntegrityError: the identity is taken (a concurrent first contact won).
        """
        async with self.db.write() as session:
            account = Account(name=name, kind=kind, preferences={}, created_at=now)
            session.add(account)
            await session.flush()
            if identity is not None:
                session.add(Identity(account_id=account.id, platform=identity[0], external_id=identity[1],
                                     created_at=now))  # fmt: skip
                await session.flush()
            spec = starter(account.id)
            if spec is not None:
                await in_session(session, credits.grant, spec, now)
            return record(AccountRecord, account)

    async def get(self, account_id: int) -> AccountRecord | None:
        """The account, or None."""
        async with self.db.read() as session:
            account = await session.get(Account, account_id)
        return None if account is None else record(AccountRecord, account)

    async def by_identity(self, platform: str, external_id: str) -> AccountRecord | None:
        """The account the chat identity belongs to, or None."""
        stmt = (
            select(Account)
            .join(Identity, Identity.account_id == Account.id)
            .where(Identity.platform == platform, Identity.external_id == external_id)
        )
        async with self.db.read() as session:
            account = await session.scalar(stmt)
        return None if account is None else record(AccountRecord, account)

    async def create_for_identity(
        self, platform: str, external_id: str, name: str, now: datetime, starter: StarterGrant
    ) -> tuple[AccountRecord, bool]:
        """The identity's account, created (``kind`` customer, with ``starter``) when it has none; concurrent
        first contacts create one account (the unique identity decides). Returns ``(account, created)``."""
        found = await self.by_identity(platform, external_id)
        if found is not None:
            return found, False
        try:
            return await self.create(name, "customer", now, starter, identity=(platform, external_id)), True
        except IntegrityError:  # another first contact of the same person won the unique identity
            found = await self.by_identity(platform, external_id)
            if found is None:
                raise
            return found, False

    async def external_id(self, account_id: int, platform: str) -> str | None:
        """The account's user id on ``platform``, or None."""
        stmt = select(Identity.external_id).where(Identity.account_id == account_id, Identity.platform == platform)
        async with self.db.read() as session:
            return await session.scalar(stmt)

    async def add_api_key(self, account_id: int, values: dict[str, Any], now: datetime) -> int | None:
        """Store an API key (``prefix``, ``key_hash``, ``scopes``, ``name``); its id, or None without such an
        account."""
        async with self.db.write() as session:
            if await session.get(Account, account_id) is None:
                return None
            row = ApiKey(account_id=account_id, created_at=now, **values)
            session.add(row)
            await session.flush()
            return row.id

    async def revoke_api_key(self, account_id: int, key_id: int, now: datetime) -> str | None:
        """Mark the account's key revoked (one conditional update); its SHA-256 hex digest, or None when the
        account has no such unrevoked key."""
        stmt = (
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.account_id == account_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=now)
            .returning(ApiKey.key_hash)
        )
        async with self.db.write() as session:
            return (await session.execute(stmt)).scalar_one_or_none()

    async def api_keys(self, account_id: int) -> list[dict[str, Any]]:
        """The account's keys, newest first: ``id``, ``prefix``, ``name``, ``scopes`` (a list), ``created_at``,
        ``revoked_at``."""
        stmt = select(ApiKey).where(ApiKey.account_id == account_id).order_by(ApiKey.id.desc())
        async with self.db.read() as session:
            keys = (await session.scalars(stmt)).all()
        return [{"id": k.id, "prefix": k.prefix, "name": k.name, "scopes": k.scopes.split(),
                 "created_at": k.created_at, "revoked_at": k.revoked_at} for k in keys]  # fmt: skip

    async def key_owner(self, key_hash: str) -> tuple[int, tuple[str, ...]] | None:
        """``(account id, scopes)`` of the unrevoked key with this SHA-256 hex digest, or None."""
        stmt = select(ApiKey.account_id, ApiKey.scopes).where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
        async with self.db.read() as session:
            row = (await session.execute(stmt)).first()
        return None if row is None else (row.account_id, tuple(row.scopes.split()))

    async def update_preferences(self, account_id: int, change: Callable[[dict[str, Any]], dict[str, Any]]) -> bool:
        """Replace the account's preferences with ``change(current)`` under the row's lock (two changes at
        once do not overwrite each other); False without such an account."""
        async with self.db.write() as session:
            account = await session.get(Account, account_id, with_for_update=True)
            if account is None:
                return False
            preferences = change(dict(account.preferences or {}))
            await session.execute(update(Account).where(Account.id == account_id).values(preferences=preferences))
            return True
