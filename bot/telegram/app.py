"""The Telegram bot (python-telegram-bot 22): customers generate images in chat and pay with credits.

Runs inside ``showme serve`` when ``TELEGRAM_BOT_TOKEN`` is set. Webhook mode (``POST /webhooks/telegram``,
``tools.webhooks``) when ``server.public_url`` is https; long polling otherwise. Flood limits are kept by
``AIORateLimiter``. Handlers: ``bot.telegram.handlers``; rendering: ``bot.telegram.render``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from typing import Any

from telegram import BotCommand, Update
from telegram.ext import AIORateLimiter, Application, TypeHandler

from bot.telegram.handlers import Handlers
from bot.telegram.render import COMMANDS, webhook_secret
from core.chat import ChatService
from core.errors import Forbidden, InvalidRequest, NotFound

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/telegram"


class TelegramBot:
    """One bot: the PTB ``Application`` with our handlers, started and stopped by the server.

    Args:
        chat: the core the handlers call.
        token: the bot token from BotFather.
        secret: TELEGRAM_WEBHOOK_SECRET (else one derived from the token).
    """

    def __init__(self, chat: ChatService, token: str, secret: str | None = None) -> None:
        self.chat = chat
        self.settings = chat.settings
        tg = self.settings.telegram
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
        self.handlers = Handlers(self.app, chat)
        # Group -1 runs before every handler: a redelivered update stops there.
        self.app.add_handler(TypeHandler(Update, self.handlers.once), group=-1)
        self.app.add_handlers(self.handlers.handlers())
        self.app.add_error_handler(self.handlers.on_error)
        chat.billing.subscribe(self.handlers.on_fulfilment)

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
        """Stop polling, the answer tasks and the application."""
        if self.app.updater is not None and self.app.updater.running:
            await self.app.updater.stop()
        tasks = list(self.handlers.tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.app.running:
            await self.app.stop()
        await self.app.shutdown()

    def verify(self, secret_header: str) -> None:
        """Check a webhook delivery's ``X-Telegram-Bot-Api-Secret-Token`` header.

        Raises:
            NotFound: this bot polls instead.
            Forbidden: the secret does not match.
        """
        if not self.webhook:
            raise NotFound("this bot uses long polling (server.public_url is not https)")
        if not hmac.compare_digest(secret_header.encode(), self.secret.encode()):
            raise Forbidden("wrong secret token")

    async def enqueue(self, data: Any) -> None:
        """Queue one verified webhook delivery (``data``: the decoded JSON body, an Update,
        core.telegram.org/bots/api#update) for the handlers, which run in the background.

        Raises:
            InvalidRequest: the body is not an Update.
        """
        try:
            update = Update.de_json(data, self.app.bot)
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            raise InvalidRequest(f"not an Update: {err}") from err
        await self.app.update_queue.put(update)
