"""The Telegram bot (python-telegram-bot 22): customers generate images in chat and pay with credits.

Runs inside ``showme serve`` when ``TELEGRAM_BOT_TOKEN`` is set. Webhook mode (``POST /webhooks/telegram``, the
``X-Telegram-Bot-Api-Secret-Token`` header checked, 200 at once, the work in the background) when
``server.public_url`` is https; long polling otherwise. Formats and limits: ../shared/PROTOCOLS.md "Telegram"
(caption 1,024 characters, ``callback_data`` 64 bytes, photo upload 10 MB, flood limits kept by
``AIORateLimiter``). This module translates updates into ``core`` calls and renders the results; the rules
live in ``core.chat``, ``core.generation`` and ``core.billing``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import io
import json
import logging
from pathlib import Path
from typing import Any

from aiohttp import web
from PIL import Image
from telegram import (
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    Message,
    Update,
    User,
)
from telegram.constants import ChatAction, ChatType
from telegram.error import TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from core.billing import Fulfilment
from core.chat import ChatService
from core.errors import InsufficientCredits, PayloadTooLarge, ShowmeError
from core.generation import GenerationRequest, JobView
from core.services import Services
from tools.http import read_body

log = logging.getLogger(__name__)

CAPTION_LIMIT = 1024
PHOTO_LIMIT_BYTES = 10 * 1024 * 1024
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
WEBHOOK_PATH = "/webhooks/telegram"

COMMANDS = [
    ("imagine", "Make a picture: /imagine a cabin in the snow"),
    ("image", "Same as /imagine"),
    ("balance", "Credits and session time left"),
    ("buy", "Buy credits or an hourly session"),
    ("redeem", "Redeem a session code: /redeem ABCD-EFGH-JKMN"),
    ("library", "Find your pictures: /library kitchen"),
    ("settings", "Default model, style and aspect ratio"),
    ("help", "What I can do"),
]

EXAMPLES = (
    "Examples:\n"
    "/imagine black galaxy granite countertops in a modern kitchen\n"
    "/imagine a lighthouse at dusk in artistic style\n"
    "or just write: draw a red fox in the snow, 16:9"
)


def webhook_secret(token: str, configured: str | None) -> str:
    """The ``secret_token`` given to ``setWebhook``: TELEGRAM_WEBHOOK_SECRET, else derived from the bot token
    (1-256 of ``A-Za-z0-9_-``, as the Bot API requires)."""
    if configured:
        return configured
    return hashlib.sha256(b"showme-telegram-webhook:" + token.encode()).hexdigest()


def photo_bytes(path: Path) -> tuple[bytes, str]:
    """The stored file as Telegram takes it for ``sendPhoto``: as is when it is JPEG/PNG/WebP under 10 MB,
    else re-encoded as JPEG (at most 2,560 pixels on the longer side). Returns ``(bytes, file name)``."""
    data = path.read_bytes()
    if path.suffix.lower() in PHOTO_SUFFIXES and len(data) <= PHOTO_LIMIT_BYTES:
        return data, path.name
    with Image.open(io.BytesIO(data)) as image:
        image = image.convert("RGB")
        image.thumbnail((2560, 2560))
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=90)
    return out.getvalue(), f"{path.stem}.jpg"


def caption_for(job: JobView) -> str:
    tail = f"\n\n{job.model} · {job.aspect_ratio}" + (f" · {job.style}" if job.style else "")
    room = CAPTION_LIMIT - len(tail)
    prompt = job.prompt if len(job.prompt) <= room else job.prompt[: room - 1] + "…"
    return prompt + tail


class TelegramBot:
    """One bot: the PTB ``Application`` with our handlers, started and stopped by the aiohttp app."""

    def __init__(self, services: Services, token: str, secret: str | None = None) -> None:
        self.services = services
        self.settings = services.settings
        tg = self.settings.telegram
        self.chat = ChatService.for_platform(services, "telegram", tg.max_queued_per_user)
        self.secret = webhook_secret(token, secret)
        public = self.settings.server.public_url
        self.webhook = tg.mode == "webhook" or (tg.mode == "auto" and public.startswith("https://"))
        builder = (
            Application.builder()
            .token(token)
            .base_url(tg.api_base_url)
            .base_file_url(tg.file_base_url)
            .rate_limiter(AIORateLimiter(max_retries=2))
            .concurrent_updates(256)
        )
        if self.webhook:
            builder = builder.updater(None)
        self.app: Application[Any, Any, Any, Any, Any, Any] = builder.build()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._register()
        services.billing.subscribe(self.on_fulfilment)

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """``getMe``, ``setMyCommands``, then ``setWebhook`` (webhook mode) or long polling."""
        await self.app.initialize()
        await self.app.start()
        await self.app.bot.set_my_commands([BotCommand(name, text) for name, text in COMMANDS])
        if self.webhook:
            url = f"{self.settings.server.public_url}{WEBHOOK_PATH}"
            await self.app.bot.set_webhook(url, secret_token=self.secret, allowed_updates=Update.ALL_TYPES)
            log.info("Telegram bot @%s: webhook %s", self.app.bot.username, url)
        else:
            assert self.app.updater is not None
            await self.app.updater.start_polling(allowed_updates=Update.ALL_TYPES)
            log.info("Telegram bot @%s: polling (server.public_url is not https)", self.app.bot.username)

    async def stop(self) -> None:
        if self.app.updater is not None and self.app.updater.running:
            await self.app.updater.stop()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.app.running:
            await self.app.stop()
        await self.app.shutdown()

    async def handle_webhook(self, request: web.Request) -> web.Response:
        """``POST /webhooks/telegram``: 403 without the right secret header (nothing processed), 400 for a body
        that is not an Update, else 200 at once with the update queued for the handlers."""
        if not self.webhook:
            message = "this bot uses long polling (server.public_url is not https)"
            return web.json_response({"error": {"code": "not_found", "message": message}}, status=404)
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.secret.encode()):
            return web.json_response({"error": {"code": "forbidden", "message": "wrong secret token"}}, status=403)
        try:
            data = json.loads(await read_body(request, 1_048_576))
            update = Update.de_json(data, self.app.bot)
        except PayloadTooLarge as err:
            return web.json_response({"error": {"code": err.code, "message": err.message}}, status=413)
        except (ValueError, TypeError, KeyError) as err:
            message = f"not an Update: {err}"
            return web.json_response({"error": {"code": "invalid_request", "message": message}}, status=400)
        await self.app.update_queue.put(update)
        return web.json_response({"ok": True})

    def _register(self) -> None:
        add = self.app.add_handler
        add(CommandHandler("start", self.cmd_start))
        add(CommandHandler("help", self.cmd_help))
        add(CommandHandler(["imagine", "image"], self.cmd_imagine))
        add(CommandHandler("balance", self.cmd_balance))
        add(CommandHandler("buy", self.cmd_buy))
        add(CommandHandler("redeem", self.cmd_redeem))
        add(CommandHandler("library", self.cmd_library))
        add(CommandHandler("settings", self.cmd_settings))
        add(CallbackQueryHandler(self.on_button))
        add(MessageHandler(filters.TEXT & ~filters.COMMAND & filters.ChatType.PRIVATE, self.on_private_text))
        add(MessageHandler(filters.TEXT & ~filters.COMMAND & filters.REPLY, self.on_reply))
        self.app.add_error_handler(self.on_error)

    # -- helpers ---------------------------------------------------------------------------------------------

    async def _account_id(self, user: User) -> int:
        account, _ = await self.chat.account(user.id, user.full_name)
        return account.id

    def _buy_keyboard(self, account_id: int) -> InlineKeyboardMarkup:
        """One button per pack and plan. With an https ``server.public_url`` each is a URL button to a signed
        ``/checkout/start`` link (one tap to Stripe); otherwise (local development: Telegram refuses plain-http
        and loopback URLs) a callback button that creates the checkout session and answers with Stripe's URL."""
        billing = self.services.billing
        products = billing.packs() + billing.plans()
        if self.settings.server.public_url.startswith("https://"):
            rows = [
                [
                    InlineKeyboardButton(
                        self.chat.product_label(p), url=billing.checkout_link(account_id, p.id, "telegram")
                    )
                ]
                for p in products
            ]
        else:
            rows = [[InlineKeyboardButton(self.chat.product_label(p), callback_data=f"B:{p.id}")] for p in products]
        return InlineKeyboardMarkup(rows)

    @staticmethod
    def _result_keyboard(job_id: str) -> InlineKeyboardMarkup:
        return InlineKeyboardMarkup(
            [
                [
                    InlineKeyboardButton("🔁 Again", callback_data=f"a:{job_id}"),
                    InlineKeyboardButton("🎨 Style", callback_data=f"s:{job_id}"),
                    InlineKeyboardButton("📄 Original", callback_data=f"o:{job_id}"),
                ]
            ]
        )

    async def _say_error(self, chat_id: int, err: Exception, reply_to: int | None = None) -> None:
        markup = None
        if isinstance(err, InsufficientCredits):
            markup = InlineKeyboardMarkup([[InlineKeyboardButton("💳 Buy credits", callback_data="b")]])
        await self.app.bot.send_message(
            chat_id, self.chat.error_text(err), reply_markup=markup, reply_to_message_id=reply_to
        )

    # -- generation ------------------------------------------------------------------------------------------

    async def generate(self, chat_id: int, user: User, request: GenerationRequest, reply_to: int | None) -> None:
        """Queue behind the user's running picture (showing the position), then run this one."""
        account_id = await self._account_id(user)

        async def queued(position: int) -> None:
            await self.app.bot.send_message(
                chat_id, f"⏳ Queued: your picture is number {position} in line.", reply_to_message_id=reply_to
            )

        try:
            await self.chat.queue.run(
                str(user.id), lambda: self._run(chat_id, account_id, request, reply_to), on_queued=queued
            )
        except ShowmeError as err:
            await self._say_error(chat_id, err, reply_to)

    async def _keep_uploading(self, chat_id: int) -> None:
        # The "sending photo…" indicator lasts about 5 s; renew it until cancelled.
        while True:
            with contextlib.suppress(TelegramError):
                await self.app.bot.send_chat_action(chat_id, ChatAction.UPLOAD_PHOTO)
            await asyncio.sleep(4.5)

    async def _run(self, chat_id: int, account_id: int, request: GenerationRequest, reply_to: int | None) -> None:
        generation = self.services.generation
        try:
            job = await generation.submit(account_id, request)
        except ShowmeError as err:
            await self._say_error(chat_id, err, reply_to)
            return
        status = await self.app.bot.send_message(
            chat_id, f"🎨 Making your picture with {job.model}…", reply_to_message_id=reply_to
        )
        action = asyncio.create_task(self._keep_uploading(chat_id))
        started = asyncio.get_running_loop().time()
        try:
            while not job.done:
                job = await generation.wait(job.id, timeout=self.settings.telegram.progress_seconds)
                if not job.done:
                    seconds = int(asyncio.get_running_loop().time() - started)
                    with contextlib.suppress(TelegramError):
                        await status.edit_text(f"🎨 Making your picture with {job.model}… {seconds} s")
        finally:
            action.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await action
        if job.status != "succeeded" or not job.assets:
            await status.edit_text(self.chat.job_failed_text(job))
            return
        await self._send_result(chat_id, job, reply_to)
        with contextlib.suppress(TelegramError):
            await status.delete()

    async def _send_result(self, chat_id: int, job: JobView, reply_to: int | None) -> None:
        asset = job.assets[0]
        data, filename = await asyncio.to_thread(photo_bytes, self.services.blobs.local_path(asset.blob_key))
        await self.app.bot.send_photo(
            chat_id,
            photo=data,
            filename=filename,
            caption=caption_for(job),
            reply_markup=self._result_keyboard(job.id),
            reply_to_message_id=reply_to,
        )

    # -- commands --------------------------------------------------------------------------------------------

    async def cmd_start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message, user = update.effective_message, update.effective_user
        if message is None or user is None:
            return
        account, created = await self.chat.account(user.id, user.full_name)
        balance = await self.services.credits.balance(account.id)
        welcome = "Welcome! " if created else ""
        await message.reply_text(
            f"{welcome}I make pictures from your words with AI.\n\n{self.chat.balance_text(balance)}\n"
            f"{self.chat.prices_text()}\n\n{EXAMPLES}\n\n/buy for more credits · /settings for your defaults"
        )

    async def cmd_help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if update.effective_message is None:
            return
        lines = [f"/{name} — {text}" for name, text in COMMANDS]
        await update.effective_message.reply_text("\n".join(lines) + f"\n\n{EXAMPLES}")

    async def cmd_imagine(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message, user = update.effective_message, update.effective_user
        if message is None or user is None:
            return
        prompt = " ".join(context.args or []).strip()
        if not prompt and message.reply_to_message is not None:
            prompt = message.reply_to_message.text or message.reply_to_message.caption or ""
        if not prompt:
            await message.reply_text("What should I draw? For example: /imagine a cabin in the snow at night")
            return
        account_id = await self._account_id(user)
        preferences = await self.chat.preferences(account_id)
        request = self.chat.request_from_message(prompt, preferences, idempotency_key=self._key(message))
        if request is None:
            request = self.chat.request(prompt, preferences, idempotency_key=self._key(message))
        await self.generate(message.chat_id, user, request, message.message_id)

    @staticmethod
    def _key(message: Message) -> str:
        # A redelivered update (same chat and message) returns the first job and is charged once.
        return f"telegram:{message.chat_id}:{message.message_id}"

    async def on_private_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message, user = update.effective_message, update.effective_user
        if message is None or user is None or not message.text or not self.settings.telegram.answer_private_messages:
            return
        account_id = await self._account_id(user)
        preferences = await self.chat.preferences(account_id)
        request = self.chat.request_from_message(message.text, preferences, idempotency_key=self._key(message))
        if request is None:
            await message.reply_text(f"Tell me what to draw, or use /imagine.\n\n{EXAMPLES}")
            return
        await self.generate(message.chat_id, user, request, message.message_id)

    async def on_reply(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """In groups, a reply to one of the bot's messages is a request addressed to the bot."""
        message, user = update.effective_message, update.effective_user
        if message is None or user is None or not message.text or message.chat.type == ChatType.PRIVATE:
            return
        replied = message.reply_to_message
        if replied is None or replied.from_user is None or replied.from_user.id != self.app.bot.id:
            return
        account_id = await self._account_id(user)
        preferences = await self.chat.preferences(account_id)
        request = self.chat.request_from_message(
            message.text, preferences, idempotency_key=self._key(message)
        ) or self.chat.request(message.text, preferences, idempotency_key=self._key(message))
        await self.generate(message.chat_id, user, request, message.message_id)

    async def cmd_balance(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message, user = update.effective_message, update.effective_user
        if message is None or user is None:
            return
        balance = await self.services.credits.balance(await self._account_id(user))
        await message.reply_text(self.chat.balance_text(balance) + "\n" + self.chat.prices_text())

    async def cmd_buy(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message, user = update.effective_message, update.effective_user
        if message is None or user is None:
            return
        await message.reply_text(
            "Choose a credit pack (never expires) or an hourly session. Pay securely with Stripe; "
            "I'll message you when it's done.",
            reply_markup=self._buy_keyboard(await self._account_id(user)),
        )

    async def cmd_redeem(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message, user = update.effective_message, update.effective_user
        if message is None or user is None:
            return
        code = " ".join(context.args or []).strip()
        if not code:
            await message.reply_text("Send the code after the command: /redeem ABCD-EFGH-JKMN")
            return
        account_id = await self._account_id(user)
        try:
            activation = await self.services.billing.redeem(code, account_id)
        except ShowmeError as err:
            await message.reply_text(self.chat.error_text(err))
            return
        balance = await self.services.credits.balance(account_id)
        await message.reply_text(
            f"✅ {activation.name} session active until {activation.expires_at:%H:%M} UTC.\n"
            f"{self.chat.balance_text(balance)}"
        )

    async def cmd_library(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message, user = update.effective_message, update.effective_user
        if message is None or user is None:
            return
        query = " ".join(context.args or []).strip()
        if not query:
            await message.reply_text("What should I look for? For example: /library kitchen")
            return
        account_id = await self._account_id(user)
        hits = await self.services.library.search(account_id, query, limit=10)
        if not hits:
            await message.reply_text(f"Nothing in your pictures matches “{query}”.")
            return
        files = [
            await asyncio.to_thread(photo_bytes, self.services.blobs.local_path(hit.asset.blob_key)) for hit in hits
        ]
        if len(files) == 1:
            data, name = files[0]
            await message.reply_photo(data, filename=name, caption=(hits[0].asset.prompt or hits[0].asset.name)[:1024])
            return
        media = [
            InputMediaPhoto(data, filename=name, caption=(hit.asset.prompt or hit.asset.name)[:1024])
            for (data, name), hit in zip(files, hits, strict=True)
        ]
        await message.reply_media_group(media)

    def _settings_keyboard(self, current: dict[str, str | None]) -> InlineKeyboardMarkup:
        rows: list[list[InlineKeyboardButton]] = []
        labels = {"model": "Model", "style": "Style", "aspect_ratio": "Aspect ratio"}
        for key, values in self.chat.choices().items():
            rows.append([InlineKeyboardButton(f"— {labels[key]} —", callback_data="noop")])
            options = values + (["none"] if key == "style" else [])
            buttons = []
            for value in options:
                chosen = (current.get(key) or ("none" if key == "style" else None)) == value
                buttons.append(InlineKeyboardButton(("✓ " if chosen else "") + value, callback_data=f"p:{key}:{value}"))
            rows.extend(buttons[i : i + 3] for i in range(0, len(buttons), 3))
        return InlineKeyboardMarkup(rows)

    def _settings_text(self, current: dict[str, str | None]) -> str:
        model = current.get("model") or f"{self.settings.generation.default_model} (default)"
        return (
            f"Your defaults:\nModel: {model}\nStyle: {current.get('style') or 'none'}\n"
            f"Aspect ratio: {current.get('aspect_ratio') or '1:1'}\n\nTap to change."
        )

    async def cmd_settings(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message, user = update.effective_message, update.effective_user
        if message is None or user is None:
            return
        preferences = await self.chat.preferences(await self._account_id(user))
        current = {"model": preferences.model, "style": preferences.style, "aspect_ratio": preferences.aspect_ratio}
        await message.reply_text(self._settings_text(current), reply_markup=self._settings_keyboard(current))

    # -- buttons ---------------------------------------------------------------------------------------------

    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query, user = update.callback_query, update.effective_user
        if query is None or user is None or query.data is None:
            return
        kind, _, rest = query.data.partition(":")
        message = query.message if isinstance(query.message, Message) else None
        chat_id = message.chat_id if message is not None else user.id
        account_id = await self._account_id(user)
        try:
            if kind in ("a", "s", "S", "o"):
                job_id = rest.split(":", 1)[0]
                job = await self.services.generation.get(job_id)
                if job.account_id != account_id:
                    await query.answer(
                        "Only the person who asked for this picture can use its buttons.", show_alert=True
                    )
                    return
                if kind == "a":
                    await query.answer("Making another one…")
                    preferences = await self.chat.preferences(account_id)
                    request = self.chat.request(
                        job.prompt, preferences, model=job.model, style=job.style,
                        aspect_ratio=job.aspect_ratio, new_seed=True,
                    )  # fmt: skip
                    await self.generate(chat_id, user, request, message.message_id if message else None)
                elif kind == "s":
                    await query.answer()
                    rows = [
                        [InlineKeyboardButton(name, callback_data=f"S:{job.id}:{name}")]
                        for name in self.settings.styles
                    ]
                    await context.bot.send_message(
                        chat_id, "Which style?", reply_markup=InlineKeyboardMarkup(rows),
                        reply_to_message_id=message.message_id if message else None,
                    )  # fmt: skip
                elif kind == "S":
                    style = rest.split(":", 1)[1]
                    await query.answer(f"Making it {style}…")
                    preferences = await self.chat.preferences(account_id)
                    request = self.chat.request(
                        job.prompt, preferences, model=job.model, style=style, aspect_ratio=job.aspect_ratio,
                        new_seed=True,
                    )  # fmt: skip
                    await self.generate(chat_id, user, request, message.message_id if message else None)
                elif not job.assets:
                    await query.answer("This picture has no file.", show_alert=True)
                else:
                    await query.answer()
                    asset = job.assets[0]
                    path = self.services.blobs.local_path(asset.blob_key)
                    data = await asyncio.to_thread(path.read_bytes)
                    await context.bot.send_document(
                        chat_id, document=data, filename=f"showme-{job.id[:8]}{path.suffix}",
                        caption=f"Original, {asset.width}×{asset.height}",
                    )  # fmt: skip
            elif kind == "b":
                await query.answer()
                await context.bot.send_message(
                    chat_id,
                    "Choose a credit pack (never expires) or an hourly session. Pay securely with Stripe; "
                    "I'll message you when it's done.",
                    reply_markup=self._buy_keyboard(account_id),
                )
            elif kind == "B":
                checkout = await self.services.billing.checkout(rest, account_id, source="telegram")
                product = self.services.billing.product(rest)
                await query.answer()
                await context.bot.send_message(
                    chat_id,
                    f"{self.chat.product_label(product)}\nTap Pay now to open Stripe Checkout.",
                    reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton("💳 Pay now", url=checkout.url)]]),
                )
            elif kind == "p":
                key, _, value = rest.partition(":")
                chosen = None if (key == "style" and value == "none") else value
                preferences = await self.chat.set_preference(account_id, key, chosen)
                current = {
                    "model": preferences.model, "style": preferences.style, "aspect_ratio": preferences.aspect_ratio
                }  # fmt: skip
                await query.answer("Saved")
                if message is not None:
                    with contextlib.suppress(TelegramError):
                        await message.edit_text(
                            self._settings_text(current), reply_markup=self._settings_keyboard(current)
                        )
            else:
                await query.answer()
        except ShowmeError as err:
            await query.answer(self.chat.error_text(err)[:200], show_alert=True)

    # -- payments and errors ---------------------------------------------------------------------------------

    async def on_fulfilment(self, fulfilment: Fulfilment) -> None:
        """Tell the buyer in Telegram that the payment arrived (orders started from this bot)."""
        if fulfilment.source != "telegram" or fulfilment.account_id is None:
            return
        user_id = await self.services.accounts.external_id(fulfilment.account_id, "telegram")
        if user_id is None:
            return
        balance = await self.services.credits.balance(fulfilment.account_id)
        task = asyncio.create_task(
            self.app.bot.send_message(int(user_id), f"✅ Payment received.\n{self.chat.balance_text(balance)}")
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Never silence: log the error and tell the person something went wrong."""
        log.error("Telegram update failed", exc_info=context.error)
        if isinstance(update, Update) and update.effective_chat is not None:
            with contextlib.suppress(TelegramError):
                await self.app.bot.send_message(
                    update.effective_chat.id, self.chat.error_text(context.error or Exception())
                )
