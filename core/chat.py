"""What the chat adapters (Telegram, Discord) share: accounts per chat user, their preferences, turning a message
into a generation request, one running job per user with a visible queue, and the sentences people read.

Adapters render these in their own markup; nothing here knows a chat platform's API.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from core import chat_text
from core.accounts import AccountService, AccountView
from core.billing import Billing
from core.chat_text import UserBusy
from core.config import Settings
from core.credits import CreditService
from core.errors import (
    InvalidRequest,
    ShowmeError,
)
from core.generation import GenerationRequest, GenerationService, JobView
from core.library import Library
from core.prompts import extract_image_request
from storage.blobs import BlobStore
from storage.repositories.events import EventRepository

__all__ = ["ChatEvent", "ChatPreferences", "ChatService", "JobQueue", "UserBusy"]


@dataclass(frozen=True)
class ChatPreferences:
    """A chat user's defaults (``None``: the server's default model / no style / 1:1)."""

    model: str | None = None
    style: str | None = None
    aspect_ratio: str | None = None


PREFERENCE_KEYS = ("model", "style", "aspect_ratio")


@dataclass(frozen=True)
class ChatEvent:
    """One step of a chat request, for the adapter to render: ``kind`` is ``queued`` (behind the user's other
    pictures), ``started``, ``progress`` (every ``progress_seconds``), ``succeeded``, ``failed`` (the job
    failed; nothing charged) or ``refused`` (nothing was started: ``error`` says why). ``text`` is the
    sentence a person reads."""

    kind: str
    text: str
    job: JobView | None = None
    error: ShowmeError | None = None


class JobQueue:
    """One running generation per user; later requests wait their turn in order, at most ``max_queued``."""

    def __init__(self, max_queued: int = 3) -> None:
        self.max_queued = max_queued
        self._locks: dict[str, asyncio.Lock] = {}
        self._waiting: dict[str, int] = {}

    def position(self, user: str) -> int:
        """How many requests of ``user`` are running or waiting."""
        lock = self._locks.get(user)
        return self._waiting.get(user, 0) + (1 if lock is not None and lock.locked() else 0)

    def enter(self, user: str) -> int:
        """Join the user's line; the place taken (0: runs now). Call ``wait_turn`` next, then ``leave``.

        Raises:
            UserBusy: ``max_queued`` requests already wait.
        """
        lock = self._locks.setdefault(user, asyncio.Lock())
        if not lock.locked():
            return 0
        waiting = self._waiting.get(user, 0)
        if waiting >= self.max_queued:
            raise UserBusy(f"you already have {waiting + 1} pictures in progress; wait for one to finish first")
        self._waiting[user] = waiting + 1
        return waiting + 1

    async def wait_turn(self, user: str, place: int) -> None:
        """Wait until the user's earlier requests are done (``place`` from ``enter``)."""
        try:
            await self._locks[user].acquire()
        finally:
            if place:
                self._waiting[user] -= 1

    def leave(self, user: str, *, had_turn: bool = True) -> None:
        """Give the turn to the user's next request."""
        lock = self._locks.get(user)
        if lock is None:
            return
        if had_turn:
            lock.release()
        if not lock.locked() and not self._waiting.get(user):
            self._locks.pop(user, None)
            self._waiting.pop(user, None)


MODEL_OPTION = re.compile(r"(?:^|\s)model:([A-Za-z0-9_-]{2,64})(?=\s|$)")


def model_option(text: str) -> tuple[str, str | None]:
    """``("a sofa in a loft", "acme-sofa")`` from ``"a sofa in a loft model:acme-sofa"``; the text unchanged
    and None without a ``model:`` option."""
    match = MODEL_OPTION.search(text)
    if match is None:
        return text, None
    return " ".join((text[: match.start()] + " " + text[match.end() :]).split()), match.group(1).lower()


class ChatService:
    """What a chat adapter on ``platform`` (``telegram``, ``discord``) calls: its users' accounts, preferences,
    requests and their progress (``imagine``), and the services behind them (``credits``, ``billing``,
    ``library``, ``blobs``)."""

    def __init__(
        self,
        *,
        platform: str,
        settings: Settings,
        accounts: AccountService,
        generation: GenerationService,
        billing: Billing,
        credits: CreditService,
        library: Library,
        blobs: BlobStore,
        events: EventRepository,
        max_queued: int = 3,
    ) -> None:
        self.platform = platform
        self.events = events
        self.credits = credits
        self.library = library
        self.blobs = blobs
        self.settings = settings
        self.accounts = accounts
        self.generation = generation
        self.billing = billing
        self.queue = JobQueue(max_queued)

    async def account(self, user_id: int | str, name: str) -> tuple[AccountView, bool]:
        """The account of a chat user (identity ``<platform>:<user id>``), created with starter credits on first
        contact. Returns ``(account, created)``."""
        return await self.accounts.for_identity(self.platform, str(user_id), name=name or f"{self.platform} user")

    async def first_delivery(self, update_id: str) -> bool:
        """True the first time the platform delivers the update ``update_id`` (unique per bot), False for a
        redelivery (the platform retried after a lost answer): a redelivered update must not be acted on."""
        key = f"{self.platform}:{update_id}"
        return await self.events.first_delivery(key, self.platform, "update", self.credits.clock.now())

    async def preferences(self, account_id: int) -> ChatPreferences:
        """The chat user's defaults. Raises ``NotFound`` for an unknown account."""
        stored = await self.accounts.preferences(account_id, "chat")
        return ChatPreferences(**{k: stored.get(k) for k in PREFERENCE_KEYS})

    async def set_preference(self, account_id: int, key: str, value: str | None) -> ChatPreferences:
        """Set one of ``model``, ``style``, ``aspect_ratio`` (None resets it).

        Raises:
            InvalidRequest: an unknown key or value (names the field).
        """
        choices = self.choices()
        if key not in choices:
            raise InvalidRequest(f"{key} is not a setting; settings are {', '.join(PREFERENCE_KEYS)}", field=key)
        if value is not None and value not in choices[key]:
            raise InvalidRequest(f"{key} must be one of {', '.join(choices[key])}", field=key)
        await self.accounts.update_preferences(account_id, "chat", {key: value})
        return await self.preferences(account_id)

    def choices(self) -> dict[str, list[str]]:
        """Allowed values per preference (the model: image models only)."""
        return {
            "model": [name for name, spec in self.settings.models.items() if spec.kind == "image"],
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
        """A request when ``text`` asks for a picture ("draw a red fox", "show me a kitchen in modern style") or
        a video ("make a short video of waves"), else None. Style and aspect hints in the text win over the
        preferences. "animate this" needs the user's last picture: ``request_for_text`` answers it."""
        found = extract_image_request(text, styles=self.settings.styles)
        if found is None or found.kind == "animate":
            return None
        if found.kind == "video":
            request = self.video_request(found.prompt, preferences, idempotency_key=idempotency_key)
            ratios = self.settings.models[str(request.model)].aspect_ratios
            if found.aspect_ratio in ratios:
                request = dataclasses.replace(request, aspect_ratio=found.aspect_ratio)
            return request
        return self.request(
            found.prompt,
            preferences,
            idempotency_key=idempotency_key,
            style=found.style,
            aspect_ratio=found.aspect_ratio,
        )

    async def request_for_text(
        self, account_id: int, text: str, *, idempotency_key: str | None, literal: bool
    ) -> GenerationRequest | None:
        """The request a chat message makes with the user's preferences: a picture or video request found in
        ``text`` ("draw a red fox, 16:9"), "animate this" (the user's newest picture), else, when ``literal``,
        ``text`` itself as the prompt; None otherwise.

        Raises:
            InvalidRequest: "animate this" when the user has no picture yet.
        """
        preferences = await self.preferences(account_id)
        text, model = model_option(text)
        if model is not None:  # "/imagine a sofa in a loft model:acme-sofa": the user's trained model
            return self.request(text, preferences, idempotency_key=idempotency_key, model=model) if text else None
        found = extract_image_request(text, styles=self.settings.styles)
        if found is not None and found.kind == "animate":
            picture = await self.library.latest_image(account_id)
            if picture is None:
                raise InvalidRequest("there is no picture of yours to animate yet: make one first", field="prompt")
            return GenerationRequest(
                prompt=found.prompt, model=self.settings.generation.operations["animate"], input_asset_id=picture.id,
                source=self.platform, idempotency_key=idempotency_key,
            )  # fmt: skip
        request = self.request_from_message(text, preferences, idempotency_key=idempotency_key)
        if request is None and literal:
            return self.request(text, preferences, idempotency_key=idempotency_key)
        return request

    async def again(
        self, account_id: int, job: JobView, *, style: str | None = None, idempotency_key: str | None = None
    ) -> GenerationRequest:
        """The request for "another one like this": the job's prompt, model, style (or ``style``), aspect ratio
        and input picture, with a new seed."""
        request = self.request(
            job.prompt, await self.preferences(account_id), model=job.model, style=style or job.style,
            aspect_ratio=job.aspect_ratio, new_seed=True, idempotency_key=idempotency_key,
        )  # fmt: skip
        if job.input_asset_id is not None:  # an edit or animation again: same picture; its prompt was a label
            prompt = job.styled_prompt if job.kind == "image_to_video" else ""
            return dataclasses.replace(request, prompt=prompt, input_asset_id=job.input_asset_id, style=None)
        return request

    def video_request(
        self, prompt: str, preferences: ChatPreferences, *, idempotency_key: str | None = None
    ) -> GenerationRequest:
        """A text-to-video request for ``prompt`` (the default video model; the user's aspect ratio when the
        video model takes it)."""
        model = self.settings.generation.default_video_model
        ratios = self.settings.models[model].aspect_ratios
        ratio = preferences.aspect_ratio if preferences.aspect_ratio in ratios else None
        return GenerationRequest(
            prompt=prompt, model=model, aspect_ratio=ratio, source=self.platform, idempotency_key=idempotency_key
        )

    def edit_request(self, job: JobView, operation: str, *, idempotency_key: str | None = None) -> GenerationRequest:
        """An edit (``upscale``, ``remove_background``, ``restore_face``, ``animate``) of the job's first
        picture.

        Raises:
            InvalidRequest: an unknown operation, or the job has no picture (a video, or it failed).
        """
        if operation not in self.settings.generation.operations:
            raise InvalidRequest(f"unknown edit {operation!r}", field="operation")
        picture = next((a for a in job.assets if a.kind == "image"), None)
        if picture is None:
            raise InvalidRequest("there is no picture here to edit", field="job")
        prompt = job.prompt if operation == "animate" and job.kind == "image" else ""
        return GenerationRequest(
            prompt=prompt, model=self.settings.generation.operations[operation], input_asset_id=picture.id,
            source=self.platform, idempotency_key=idempotency_key,
        )  # fmt: skip

    async def imagine(
        self, user: str, account_id: int, request: GenerationRequest, *, progress_seconds: float
    ) -> AsyncIterator[ChatEvent]:
        """Run one chat request in the user's line: ``queued`` (when behind another), then ``started``,
        ``progress`` every ``progress_seconds``, and ``succeeded`` or ``failed``; or ``refused`` when nothing
        was started (a full line, no credits, a refused prompt…)."""
        try:
            place = self.queue.enter(user)
        except UserBusy as err:
            yield ChatEvent("refused", self.error_text(err), error=err)
            return
        had_turn = False
        try:
            if place:
                yield ChatEvent("queued", f"⏳ Queued: your picture is number {place} in line.")
            await self.queue.wait_turn(user, place)
            had_turn = True
            async for event in self._follow(account_id, request, progress_seconds):
                yield event
        finally:
            self.queue.leave(user, had_turn=had_turn)

    async def _follow(
        self, account_id: int, request: GenerationRequest, progress_seconds: float
    ) -> AsyncIterator[ChatEvent]:
        try:
            job = await self.generation.submit(account_id, request)
        except ShowmeError as err:
            yield ChatEvent("refused", self.error_text(err), error=err)
            return
        yield ChatEvent("started", chat_text.working_text(job), job)
        started = asyncio.get_running_loop().time()
        while not job.done:
            job = await self.generation.wait(job.id, timeout=progress_seconds)
            if not job.done:
                seconds = int(asyncio.get_running_loop().time() - started)
                yield ChatEvent("progress", f"{chat_text.working_text(job)} {seconds} s", job)
        if job.status == "succeeded" and job.assets:
            yield ChatEvent("succeeded", job.prompt, job)
        else:
            yield ChatEvent("failed", self.job_failed_text(job), job)

    def model_price(self, model: str | None) -> int:
        """Credits per image of ``model`` (default: the default model; a trained model: its price)."""
        spec = self.settings.models.get(model or self.settings.generation.default_model)
        return spec.price if spec is not None else self.settings.training.generation_price

    # -- sentences (core.chat_text) ---------------------------------------------------------------------------

    balance_text = staticmethod(chat_text.balance_text)
    product_label = staticmethod(chat_text.product_label)
    job_failed_text = staticmethod(chat_text.job_failed_text)
    error_text = staticmethod(chat_text.error_text)

    def prices_text(self) -> str:
        """Each model's price in credits, pictures then videos and edits, in two lines."""
        return chat_text.prices_text(self.settings.models)
