"""What the chat adapters (Telegram, Discord) share: accounts per chat user, their preferences, turning a message
into a generation request, one running job per user with a visible queue, and the sentences people read.

Adapters render these in their own markup; nothing here knows a chat platform's API.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import update

from core.accounts import AccountService, AccountView
from core.billing import Billing, Product
from core.config import Settings
from core.credits import Balance
from core.errors import (
    Conflict,
    InsufficientCredits,
    InvalidRequest,
    NotFound,
    PaymentProviderError,
    PaymentsNotConfigured,
    PromptRefused,
    ProviderError,
    ShowmeError,
)
from core.generation import GenerationRequest, GenerationService, JobView
from core.prompts import extract_image_request
from storage.db import Database
from storage.models import Account

if TYPE_CHECKING:
    from core.services import Services

T = TypeVar("T")


@dataclass(frozen=True)
class ChatPreferences:
    """A chat user's defaults (``None``: the server's default model / no style / 1:1)."""

    model: str | None = None
    style: str | None = None
    aspect_ratio: str | None = None


PREFERENCE_KEYS = ("model", "style", "aspect_ratio")


class UserBusy(ShowmeError):
    """The user's queue is full (one running job plus ``max_queued`` waiting)."""

    code = "queue_full"
    status = 429


class JobQueue:
    """One running generation per user; later requests wait their turn in order.

    ``run(user, work, on_queued)`` calls ``on_queued(position)`` (1 = next) when the user already has a job
    running, then waits, then runs ``work()``. Raises ``UserBusy`` when ``max_queued`` requests already wait.
    """

    def __init__(self, max_queued: int = 3) -> None:
        self.max_queued = max_queued
        self._locks: dict[str, asyncio.Lock] = {}
        self._waiting: dict[str, int] = {}

    def position(self, user: str) -> int:
        """How many requests of ``user`` are running or waiting."""
        lock = self._locks.get(user)
        return self._waiting.get(user, 0) + (1 if lock is not None and lock.locked() else 0)

    async def run(
        self, user: str, work: Callable[[], Awaitable[T]], on_queued: Callable[[int], Awaitable[Any]] | None = None
    ) -> T:
        lock = self._locks.setdefault(user, asyncio.Lock())
        if lock.locked():
            waiting = self._waiting.get(user, 0)
            if waiting >= self.max_queued:
                raise UserBusy(f"you already have {waiting + 1} pictures in progress; wait for one to finish first")
            self._waiting[user] = waiting + 1
            try:
                if on_queued is not None:
                    await on_queued(waiting + 1)
                await lock.acquire()
            finally:
                self._waiting[user] -= 1
        else:
            await lock.acquire()
        try:
            return await work()
        finally:
            lock.release()
            if not lock.locked() and not self._waiting.get(user):
                self._locks.pop(user, None)
                self._waiting.pop(user, None)


class ChatService:
    """Accounts, preferences and requests of chat users on ``platform`` (``telegram``, ``discord``)."""

    def __init__(
        self,
        *,
        platform: str,
        db: Database,
        settings: Settings,
        accounts: AccountService,
        generation: GenerationService,
        billing: Billing,
        max_queued: int = 3,
    ) -> None:
        self.platform = platform
        self.db = db
        self.settings = settings
        self.accounts = accounts
        self.generation = generation
        self.billing = billing
        self.queue = JobQueue(max_queued)

    @classmethod
    def for_platform(cls, services: Services, platform: str, max_queued: int) -> ChatService:
        """The chat service of one adapter (``telegram``, ``discord``), built from the process's services."""
        return cls(
            platform=platform,
            db=services.db,
            settings=services.settings,
            accounts=services.accounts,
            generation=services.generation,
            billing=services.billing,
            max_queued=max_queued,
        )

    async def account(self, user_id: int | str, name: str) -> tuple[AccountView, bool]:
        """The account of a chat user (identity ``<platform>:<user id>``), created with starter credits on first
        contact. Returns ``(account, created)``."""
        return await self.accounts.for_identity(self.platform, str(user_id), name=name or f"{self.platform} user")

    async def preferences(self, account_id: int) -> ChatPreferences:
        async with self.db.read() as session:
            account = await session.get(Account, account_id)
        if account is None:
            raise NotFound(f"account {account_id} does not exist")
        stored = (account.preferences or {}).get("chat", {})
        return ChatPreferences(**{k: stored.get(k) for k in PREFERENCE_KEYS})

    async def set_preference(self, account_id: int, key: str, value: str | None) -> ChatPreferences:
        """Set one of ``model``, ``style``, ``aspect_ratio`` (None resets it). Raises ``InvalidRequest`` naming
        the field for an unknown key or value."""
        choices = self.choices()
        if key not in choices:
            raise InvalidRequest(f"{key} is not a setting; settings are {', '.join(PREFERENCE_KEYS)}", field=key)
        if value is not None and value not in choices[key]:
            raise InvalidRequest(f"{key} must be one of {', '.join(choices[key])}", field=key)
        async with self.db.write() as session:
            # Row lock: two settings tapped at once must not overwrite each other's change (read-modify-write).
            account = await session.get(Account, account_id, with_for_update=True)
            if account is None:
                raise NotFound(f"account {account_id} does not exist")
            preferences = dict(account.preferences or {})
            chat = dict(preferences.get("chat", {}))
            chat[key] = value
            preferences["chat"] = chat
            await session.execute(update(Account).where(Account.id == account_id).values(preferences=preferences))
        return await self.preferences(account_id)

    def choices(self) -> dict[str, list[str]]:
        """Allowed values per preference."""
        return {
            "model": list(self.settings.models),
            "style": list(self.settings.styles),
            "aspect_ratio": list(self.settings.aspect_ratios),
        }

    def request(
        self,
        prompt: str,
        preferences: ChatPreferences,
        *,
        idempotency_key: str | None = None,
        style: str | None = None,
        aspect_ratio: str | None = None,
        model: str | None = None,
        new_seed: bool = False,
    ) -> GenerationRequest:
        """A generation request for ``prompt`` with the user's preferences; explicit arguments win."""
        return GenerationRequest(
            prompt=prompt,
            model=model or preferences.model,
            style=style or preferences.style,
            aspect_ratio=aspect_ratio or preferences.aspect_ratio,
            seed=random.randint(1, 2**31 - 1) if new_seed else None,
            source=self.platform,
            idempotency_key=idempotency_key,
        )

    def request_from_message(
        self, text: str, preferences: ChatPreferences, *, idempotency_key: str | None = None
    ) -> GenerationRequest | None:
        """A request when ``text`` asks for a picture ("draw a red fox", "show me a kitchen in modern style"),
        else None. Style and aspect hints in the text win over the preferences."""
        found = extract_image_request(text, styles=self.settings.styles)
        if found is None:
            return None
        return self.request(
            found.prompt,
            preferences,
            idempotency_key=idempotency_key,
            style=found.style,
            aspect_ratio=found.aspect_ratio,
        )

    def model_price(self, model: str | None) -> int:
        return self.settings.models[model or self.settings.generation.default_model].price

    # -- sentences -------------------------------------------------------------------------------------------

    @staticmethod
    def balance_text(balance: Balance) -> str:
        lines = [f"You have {balance.credits} credit{'s' if balance.credits != 1 else ''}."]
        for quota in balance.quotas:
            unit = f"{quota.unit}{'s' if quota.remaining != 1 else ''}"
            left = f" ({quota.minutes_left} min left)" if quota.minutes_left is not None else ""
            lines.append(f"Session: {quota.remaining} {unit}{left}.")
        return "\n".join(lines)

    def prices_text(self) -> str:
        models = ", ".join(f"{name} {spec.price}" for name, spec in self.settings.models.items())
        return f"Credits per image: {models}."

    @staticmethod
    def product_label(product: Product) -> str:
        price = f"{product.price:,} {product.currency.upper()}"
        if product.kind == "pack":
            return f"{product.name}: {product.credits} credits · {price}"
        videos = f" + {product.videos} videos" if product.videos else ""
        return f"{product.name} hour: {product.images} images{videos} · {price}"

    @staticmethod
    def job_failed_text(job: JobView) -> str:
        reason = job.error or "the image service did not return a picture"
        return f"Sorry, that picture failed: {reason}. You were not charged."

    @staticmethod
    def error_text(err: Exception) -> str:
        """The sentence a chat user reads for an error (never a traceback)."""
        if isinstance(err, InsufficientCredits):
            if err.unit == "credit":
                return (
                    f"Not enough credits: this picture costs {err.needed} and you have {err.available}. "
                    "Buy credits or an hourly session below."
                )
            return err.message
        if isinstance(err, PromptRefused):
            return f"I can't make that picture: {err.message}. Try describing something else."
        if isinstance(err, ProviderError):
            return (
                "The image service is unavailable right now, so nothing was made and you were not charged. "
                "Please try again in a minute."
            )
        if isinstance(err, PaymentsNotConfigured):
            return "Buying is not available on this server yet."
        if isinstance(err, PaymentProviderError):
            return "The payment service is not answering right now; please try again in a minute."
        if isinstance(err, InvalidRequest | NotFound | Conflict | UserBusy):
            return err.message[:1].upper() + err.message[1:]
        if isinstance(err, ShowmeError):
            return f"Something went wrong: {err.message}"
        return "Something went wrong on our side. It has been logged; please try again."
