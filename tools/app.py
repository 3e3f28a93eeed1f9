"""The aiohttp application: ``create_app(settings)`` builds every service once and owns its lifecycle.

Each resource is one module-level ``cleanup_ctx`` entry whose teardown mirrors its setup (STYLE.md §1):
the services (database, providers, job runner), the asset-use writer, the maintenance loop, each bot.
Handlers reach services through typed ``web.AppKey``s, never module globals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from core.clock import Clock
from core.config import Secrets, Settings, load_secrets
from core.errors import ShowmeError
from core.providers import ImageProvider
from core.viewers import load_or_create_secret
from tools.http import SERVICES, SETTINGS, TELEGRAM_BOT, error_response
from tools.limits import rate_limit_middleware
from tools.metrics import METRICS, Metrics
from tools.routes import OPENAPI_BODY, OPERATIONS
from tools.services import chat_service, open_services
from tools.viewers import VIEWER_SOCKETS, SocketSet

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: What ``create_app`` was given to replace the defaults (tests): a clock, an image provider, secrets.
OVERRIDES = web.AppKey("overrides", dict)


class AccessLogger(AbstractAccessLogger):
    """One line per request, without the query string: viewer links carry their token there."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %d %s %.1f ms',
            request.remote, request.method, request.path, response.status, response.body_length, time * 1000,
        )  # fmt: skip


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Translate core errors and aiohttp HTTP errors into the JSON error shape; never leak a traceback."""
    try:
        return await handler(request)
    except ShowmeError as err:
        return error_response(err.status, err.code, err.message, err.field,
                              retry_after=getattr(err, "retry_after_seconds", None))  # fmt: skip
    except web.HTTPException as err:
        if err.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(err.status, "http_error")
        return error_response(err.status, code, err.reason)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "something went wrong on our side; it has been logged")


async def services_ctx(app: web.Application) -> AsyncIterator[None]:
    """Every service, opened at startup and closed at shutdown (``tools.services.open_services``)."""
    async with open_services(app[SETTINGS], **app[OVERRIDES]) as services:
        app[SERVICES] = services
        services.generation.subscribe(app[METRICS].on_job)
        yield


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def uses_ctx(app: web.Application) -> AsyncIterator[None]:
    """The asset-use writer: counted uses written every second, and what is pending at shutdown."""
    uses = app[SERVICES].uses
    task = asyncio.create_task(uses.run(), name="asset-use-writer")
    yield
    await _cancel(task)
    await uses.flush()


async def _maintain(app: web.Application) -> None:
    """Take over jobs whose runner stopped, write off expired grants and remove deleted assets' files, every
    ``lease_seconds``."""
    services = app[SERVICES]
    while True:
        try:
            resumed, failed = await services.generation.resume_unfinished()
            if resumed or failed:
                log.info("took over %d unfinished job(s), failed %d", len(resumed), len(failed))
        except Exception:
            log.exception("resuming unfinished jobs failed")
        try:
            if expired := await services.credits.expire_due():
                log.info("wrote off %d expired grant(s)", expired)
        except Exception:
            log.exception("expiring grants failed")
        try:
            if purged := await services.manager.purge():
                log.info("deleted %d file(s) of deleted assets", purged)
        except Exception:
            log.exception("purging deleted assets failed")
        await asyncio.sleep(app[SETTINGS].generation.lease_seconds)


async def maintenance_ctx(app: web.Application) -> AsyncIterator[None]:
    """The helper processes (writer, thumbnails) started now rather than on the first request that needs
    them, and the maintenance loop."""
    app[SERVICES].db.start_writer()
    app[SERVICES].generation.start_thumbnail_worker()
    task = asyncio.create_task(_maintain(app), name="maintenance")
    yield
    await _cancel(task)


async def telegram_ctx(app: web.Application) -> AsyncIterator[None]:
    """The Telegram bot, when TELEGRAM_BOT_TOKEN is set and ``telegram.enabled``."""
    services = app[SERVICES]
    token = services.secrets.telegram_bot_token
    if token is None or not services.settings.telegram.enabled:
        yield
        return
    from bot.telegram.app import TelegramBot

    secret = services.secrets.telegram_webhook_secret
    chat = chat_service(services, "telegram", services.settings.telegram.max_queued_per_user)
    bot = TelegramBot(chat, token.get_secret_value(), secret.get_secret_value() if secret else None)
    await bot.start()
    app[TELEGRAM_BOT].append(bot)
    yield
    app[TELEGRAM_BOT].clear()
    await bot.stop()


async def discord_ctx(app: web.Application) -> AsyncIterator[None]:
    """The Discord bot, when DISCORD_BOT_TOKEN is set and ``discord.enabled``."""
    services = app[SERVICES]
    token = services.secrets.discord_bot_token
    if token is None or not services.settings.discord.enabled:
        yield
        return
    from bot.discord.client import DiscordBot

    bot = DiscordBot(chat_service(services, "discord", services.settings.discord.max_queued_per_user))
    await bot.start(token.get_secret_value())
    yield
    await bot.stop()


async def close_viewers(app: web.Application) -> None:
    """Close viewer sockets, which would otherwise hold graceful shutdown open until their heartbeat ends."""
    for ws in list(app[VIEWER_SOCKETS]):
        await ws.close(code=1001, message=b"server shutting down")


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    provider: ImageProvider | None = None,
    secrets: Secrets | None = None,
) -> web.Application:
    """Build the aiohttp application for ``settings``. ``clock``, ``provider`` and ``secrets`` replace the
    defaults (system clock, Replicate with ``REPLICATE_API_TOKEN``) in tests."""
    app = web.Application(
        middlewares=[error_middleware, rate_limit_middleware], client_max_size=settings.tools.upload_max_bytes + 65536
    )
    app[SETTINGS] = settings
    app[OVERRIDES] = {"clock": clock, "provider": provider, "secrets": secrets}
    app[METRICS] = Metrics()
    app[VIEWER_SOCKETS] = SocketSet()
    app[TELEGRAM_BOT] = []
    app[OPENAPI_BODY] = []
    app.cleanup_ctx.extend([services_ctx, uses_ctx, maintenance_ctx, telegram_ctx, discord_ctx])
    app.on_shutdown.append(close_viewers)
    add_routes(app)
    if settings.webapp.enabled:
        from tools.webapp import create_webapp

        loaded = secrets or load_secrets()
        explicit = loaded.secret_key.get_secret_value() if loaded.secret_key else None
        signing_key = load_or_create_secret(explicit, settings.server.secret_key_file)
        app.add_subapp("/app", create_webapp(settings, signing_key))
    return app


def add_routes(app: web.Application) -> None:
    """Every route of the server (``tools.routes.OPERATIONS``; ARCHITECTURE.md "Public interface")."""
    for operation in OPERATIONS:
        operation.register(app.router)
