"""Accounts (payers), their identities on chat platforms, and API keys (stored hashed, shown once)."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cachetools import TTLCache

from core.clock import Clock
from core.credits import CreditService
from core.errors import InvalidRequest, NotFound
from core.events import Broadcast, LocalBroadcast
from storage.records import AccountRecord
from storage.repositories.accounts import AccountRepository

KEY_PREFIX = "sm_"
ALL_SCOPES = ("tools", "generate", "library", "credits", "admin")
#: Scopes a key gets only when asked for by name: ``operator`` reads every account's figures (the cost and margin
#: report), so it is for the people running the server, never a customer's default.
OPERATOR_SCOPES = ("operator",)
KEY_CACHE_SIZE = 10_000

KeyOwner = tuple[int, tuple[str, ...]] | None  # (account id, scopes) of a key, or None


@dataclass(frozen=True)
class AccountView:
    """An account: ``kind`` is ``business`` (voice agents, REST) or ``customer`` (a chat user)."""

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
    """The stored form of an API key: its SHA-256 hex digest."""
    return hashlib.sha256(key.encode()).hexdigest()


def _view(account: AccountRecord) -> AccountView:
    return AccountView(account.id, account.name, account.kind, account.created_at)


class AccountService:
    """Accounts, identities and keys.

    Args:
        repository: the accounts' storage.
        credits: grants the starter credits of each new account, in the account's transaction.
        clock: time source.
        key_cache_seconds: how long an ``authenticate`` answer (also "no such key") is kept. A key revoked
            here stops working at once in this process and, through ``broadcast`` (Redis), in the others;
            without a shared broadcast, other processes keep accepting it up to that long. 0 asks the
            database every time.
        broadcast: tells other processes which key was revoked.
    """

    def __init__(
        self,
        repository: AccountRepository,
        credits: CreditService,
        clock: Clock,
        *,
        key_cache_seconds: float = 0,
        broadcast: Broadcast | None = None,
    ) -> None:
        self.repository = repository
        self.credits = credits
        self.clock = clock
        # Answers (also "no such key") kept ``key_cache_seconds``; concurrent misses share one lookup.
        self._keys: TTLCache[str, KeyOwner] | None = (
            TTLCache(KEY_CACHE_SIZE, ttl=key_cache_seconds) if key_cache_seconds > 0 else None
        )
        self._lookups: dict[str, asyncio.Future[KeyOwner]] = {}
        self.broadcast = broadcast or LocalBroadcast()
        self.broadcast.on("api_key_revoked", lambda payload: self._forget(str(payload.get("key_hash"))))

    async def create(self, name: str, *, kind: str = "business") -> AccountView:
        """Create an account and grant its starter credits in the same transaction.

        Raises:
            InvalidRequest: an empty or over 200 characters ``name``.
        """
        name = name.strip()
        if not name or len(name) > 200:
            raise InvalidRequest("name must be 1 to 200 characters", field="name")
        return _view(await self.repository.create(name, kind, self.clock.now(), self.credits.starter_spec))

    async def get(self, account_id: int) -> AccountView:
        """The account.

        Raises:
            NotFound: no account has that id.
        """
        account = await self.repository.get(account_id)
        if account is None:
            raise NotFound(f"account {account_id} does not exist")
        return _view(account)

    async def for_identity(self, platform: str, external_id: str, *, name: str) -> tuple[AccountView, bool]:
        """The account behind ``platform:external_id``, created (with starter credits) on first contact.

        Returns ``(account, created)``; concurrent first contacts create one account.
        """
        display = name[:200] or f"{platform}:{external_id}"
        account, created = await self.repository.create_for_identity(
            platform, external_id, display, self.clock.now(), self.credits.starter_spec
        )
        return _view(account), created

    async def external_id(self, account_id: int, platform: str) -> str | None:
        """The account's user id on ``platform`` (``telegram``, ``discord``), None when it has none."""
        return await self.repository.external_id(account_id, platform)

    async def create_api_key(
        self, account_id: int, *, scopes: tuple[str, ...] = ALL_SCOPES, name: str | None = None
    ) -> NewApiKey:
        """Mint a key for the account (``sm_`` + 43 url-safe characters); only its SHA-256 is stored.

        Raises:
            NotFound: no such account.
            InvalidRequest: an unknown scope (field ``scopes``).
        """
        known = ALL_SCOPES + OPERATOR_SCOPES
        unknown = [s for s in scopes if s not in known]
        if unknown:
            raise InvalidRequest(f"unknown scope {unknown[0]!r}; scopes are {', '.join(known)}", field="scopes")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        values = {"prefix": key[:10], "key_hash": hash_key(key), "scopes": " ".join(scopes), "name": name}
        key_id = await self.repository.add_api_key(account_id, values, self.clock.now())
        if key_id is None:
            raise NotFound(f"account {account_id} does not exist")
        return NewApiKey(id=key_id, account_id=account_id, key=key, prefix=key[:10], scopes=scopes)

    async def api_keys(self, account_id: int) -> list[dict[str, Any]]:
        """The account's keys (never their text), newest first: ``id``, ``prefix`` (the key's first 10
        characters), ``name``, ``scopes``, ``created_at``, ``revoked_at``."""
        return await self.repository.api_keys(account_id)

    async def revoke_api_key(self, account_id: int, key_id: int) -> None:
        """Revoke the account's key ``key_id``: refused from now on, here and in every process told by the
        broadcast.

        Raises:
            NotFound: the account has no such key, or it is revoked already.
        """
        digest = await self.repository.revoke_api_key(account_id, key_id, self.clock.now())
        if digest is None:
            raise NotFound(f"account {account_id} has no unrevoked API key {key_id}")
        self._forget(digest)
        self.broadcast.send("api_key_revoked", {"key_hash": digest})

    def _forget(self, digest: str) -> None:
        if self._keys is not None:
            self._keys.pop(digest, None)

    async def authenticate(self, key: str) -> tuple[int, tuple[str, ...]] | None:
        """``(account_id, scopes)`` for a valid, unrevoked key; None otherwise. Concurrent calls with a key not
        in the cache share one lookup."""
        if not key.startswith(KEY_PREFIX) or len(key) > 200:
            return None
        digest = hash_key(key)
        if self._keys is None:
            return await self.repository.key_owner(digest)
        try:
            return self._keys[digest]  # the hot path of every tool call: no await, no database
        except KeyError:
            pass
        lookup = self._lookups.get(digest)
        if lookup is None:
            lookup = self._lookups[digest] = asyncio.ensure_future(self._look_up(digest))
            lookup.add_done_callback(lambda _done: self._lookups.pop(digest, None))
        return await asyncio.shield(lookup)

    async def _look_up(self, digest: str) -> KeyOwner:
        owner = await self.repository.key_owner(digest)
        if self._keys is not None:
            self._keys[digest] = owner
        return owner

    async def preferences(self, account_id: int, section: str) -> dict[str, Any]:
        """The account's preferences under ``section`` (``{}`` when none are set).

        Raises:
            NotFound: no such account.
        """
        account = await self.repository.get(account_id)
        if account is None:
            raise NotFound(f"account {account_id} does not exist")
        return dict((account.preferences or {}).get(section) or {})

    async def update_preferences(self, account_id: int, section: str, values: dict[str, Any]) -> None:
        """Merge ``values`` into the account's preferences under ``section`` (other sections untouched).

        Raises:
            NotFound: no such account.
        """

        def change(current: dict[str, Any]) -> dict[str, Any]:
            """The preferences with ``values`` merged into ``section``."""
            return {**current, section: {**dict(current.get(section) or {}), **values}}

        if not await self.repository.update_preferences(account_id, change):
            raise NotFound(f"account {account_id} does not exist")
