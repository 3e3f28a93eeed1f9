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
from core.config import Secrets, Settings
from core.errors import ShowmeError
from core.providers import ImageProvider
from storage.blobs import InvalidBlobKey
from tools import api, billing, dialects, viewers, webhooks
from tools.http import SERVICES, SETTINGS, TELEGRAM_BOT
from tools.metrics import METRICS, Metrics, metrics_handler
from tools.services import chat_service, open_services
from tools.viewers import VIEWER_SOCKETS, SocketSet

log = logging.getLogger(__name__)

MEDIA_TYPES = {
    ".webp": "image/webp", ".png": "image/png", ".jpg": "image/jpeg", ".gif": "image/gif", ".mp4": "video/mp4",
    ".webm": "video/webm",
}  # fmt: skip

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: What ``create_app`` was given to replace the defaults (tests): a clock, an image provider, secrets.
OVERRIDES = web.AppKey("overrides", dict)


def error_response(status: int, code: str, message: str, field: str | None = None) -> web.Response:
    """The one error shape of the HTTP API: ``{"error": {"code", "message"}}``, plus ``field`` when one request
    field is at fault."""
    error = {"code": code, "message": message, **({"field": field} if field else {})}
    return web.json_response({"error": error}, status=status)


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
        return error_response(err.status, err.code, err.message, err.field)
    except web.HTTPException as err:
        if err.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(err.status, "http_error")
        return error_response(err.status, code, err.reason)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "something went wrong on our side; it has been logged")


async def healthz(request: web.Request) -> web.Response:
    """200 ``{"status": "ok"}`` when the database answers, 503 otherwise."""
    try:
        await request.app[SERVICES].db.ping()
    except Exception as err:
        return error_response(503, "database_unavailable", f"database unreachable: {type(err).__name__}")
    return web.json_response({"status": "ok"})


async def media(request: web.Request) -> web.StreamResponse:
    """A stored media file by its content-addressed key (immutable, cached for a year)."""
    services = request.app[SERVICES]
    try:
        path = services.blobs.local_path(request.match_info["key"])
    except InvalidBlobKey:
        return error_response(404, "not_found", "no such media")
    if not await asyncio.to_thread(path.is_file):
        return error_response(404, "not_found", "no such media")
    return web.FileResponse(
        path,
        headers={
            "Content-Type": MEDIA_TYPES.get(path.suffix, "application/octet-stream"),
            "Cache-Control": "public, max-age=31536000, immutable",
            "X-Content-Type-Options": "nosniff",
        },
    )


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
    """Take over jobs whose runner stopped, and write off expired grants, every ``lease_seconds``."""
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
    """The Telegram bot, when TELEGRAM_BOT_TOKEN is set."""
    services = app[SERVICES]
    token = services.secrets.telegram_bot_token
    if token is None:
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
    """The Discord bot, when DISCORD_BOT_TOKEN is set."""
    services = app[SERVICES]
    token = services.secrets.discord_bot_token
    if token is None:
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
    app = web.Application(middlewares=[error_middleware], client_max_size=settings.tools.upload_max_bytes + 65536)
    app[SETTINGS] = settings
    app[OVERRIDES] = {"clock": clock, "provider": provider, "secrets": secrets}
    app[METRICS] = Metrics()
    app[VIEWER_SOCKETS] = SocketSet()
    app[TELEGRAM_BOT] = []
    app.cleanup_ctx.extend([services_ctx, uses_ctx, maintenance_ctx, telegram_ctx, discord_ctx])
    app.on_shutdown.append(close_viewers)
    add_routes(app)
    return app


def add_routes(app: web.Application) -> None:
    """Every route of the server (ARCHITECTURE.md "Public interface")."""
    r = app.router
    r.add_get("/healthz", healthz)
    r.add_get("/metrics", metrics_handler)
    r.add_get("/media/{key:.+}", media)
    # Tool dialects: the fixed names first, then ElevenLabs / plain HTTP by tool name.
    r.add_get("/tools", api.tool_definitions)
    r.add_post("/tools/vapi", dialects.vapi_tool_calls)
    r.add_post("/tools/retell", dialects.retell_function)
    r.add_post("/tools/openai", dialects.openai_function_calls)
    r.add_post("/tools/{tool_name}", dialects.plain_tool)
    r.add_post("/mcp", dialects.mcp_endpoint)
    # Viewers.
    r.add_get("/calls/{conversation_id}", viewers.gallery_page)
    r.add_get("/ws/calls/{conversation_id}", viewers.call_socket)
    r.add_get("/ws/voice-images", viewers.voice_images_socket)
    r.add_post("/api/v1/conversations/{conversation_id}/viewer-token", viewers.mint_viewer_token)
    # REST.
    r.add_post("/api/v1/generations", api.create_generation)
    r.add_get("/api/v1/generations/{job_id}", api.get_generation)
    r.add_get("/api/v1/credits", api.get_credits)
    r.add_get("/api/v1/credits/ledger", billing.ledger)
    r.add_post("/api/v1/credits/purchase", billing.purchase)
    r.add_get("/api/v1/pricing", billing.pricing)
    r.add_post("/api/v1/checkout", billing.create_checkout)
    r.add_post("/api/v1/redeem", billing.redeem)
    r.add_get("/api/v1/orders", billing.list_orders)
    r.add_post("/api/v1/library", api.upload_asset)
    r.add_get("/api/v1/library", api.search_library)
    r.add_post("/api/v1/agents/elevenlabs/config", api.elevenlabs_agent_config)
    # Webhooks.
    r.add_post("/webhooks/elevenlabs", webhooks.elevenlabs_webhook)
    r.add_post("/webhooks/stripe", billing.stripe_webhook)
    r.add_post("/webhooks/telegram", webhooks.telegram_webhook)
    # Checkout pages (Stripe sends the buyer back here).
    r.add_get("/checkout/start", billing.checkout_start)
    r.add_get("/checkout/success", billing.checkout_success)
    r.add_get("/checkout/cancel", billing.checkout_cancel)
