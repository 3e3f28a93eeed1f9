"""Small helpers shared by the HTTP handlers: typed app keys, bounded JSON bodies, API-key authentication."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, is_dataclass
from datetime import datetime
from typing import Any

from aiohttp import web

from core.config import Settings
from core.errors import Forbidden, InvalidRequest, PayloadTooLarge, Unauthorized
from tools.services import Services

SETTINGS = web.AppKey("settings", Settings)
SERVICES = web.AppKey("services", Services)
#: The running Telegram bot (``bot.telegram.app.TelegramBot``), when TELEGRAM_BOT_TOKEN is set; else empty.
TELEGRAM_BOT = web.AppKey("telegram_bot", list)


@dataclass(frozen=True)
class Caller:
    account_id: int
    scopes: tuple[str, ...]


def plain(value: Any) -> Any:
    """Dataclasses, dicts, lists and datetimes as JSON-ready values (ISO 8601 times)."""
    if is_dataclass(value) and not isinstance(value, type):
        return {k: plain(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole raw body, at most ``limit`` bytes; raises ``PayloadTooLarge``. Reads until the end of the
    body (it may arrive in several TCP segments or HTTP chunks), stopping as soon as it passes ``limit``."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.readany():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def parse_json(body: bytes) -> dict[str, Any]:
    """A JSON object from ``body``; raises ``InvalidRequest`` for malformed JSON or a non-object."""
    try:
        data = json.loads(body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InvalidRequest(f"body is not valid JSON: {getattr(err, 'msg', err)}", field="body") from err
    if not isinstance(data, dict):
        raise InvalidRequest("body must be a JSON object", field="body")
    return data


async def read_json(request: web.Request) -> dict[str, Any]:
    return parse_json(await read_body(request, request.config_dict[SETTINGS].tools.max_body_bytes))


def api_key_from(request: web.Request) -> str | None:
    """The API key from ``Authorization: Bearer``, ``X-Api-Key`` or Vapi's ``X-Vapi-Secret``."""
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.headers.get("X-Api-Key") or request.headers.get("X-Vapi-Secret")


async def authenticate(request: web.Request, scope: str | None = None) -> Caller:
    """The calling account, its request counted against the account's rate limit (tool calls, or other API
    requests); raises ``Unauthorized`` (401), ``Forbidden`` (403) or ``RateLimited`` (429)."""
    key = api_key_from(request)
    if not key:
        raise Unauthorized("missing API key: send Authorization: Bearer <key> (or X-Api-Key)")
    found = await request.app[SERVICES].accounts.authenticate(key)
    if found is None:
        raise Unauthorized("unknown or revoked API key")
    account_id, scopes = found
    if scope is not None and scope not in scopes:
        raise Forbidden(f"this API key lacks the {scope!r} scope")
    limits = request.app[SERVICES].rate_limits
    if limits.enabled:
        bucket = "tool_calls_per_account" if request.path.startswith(("/tools", "/mcp")) else "api_per_account"
        if limits.shared:
            await limits.check(bucket, f"account:{account_id}")
        else:
            limits.count(bucket, f"account:{account_id}")
    return Caller(account_id, scopes)


def error_response(
    status: int, code: str, message: str, field: str | None = None, *, retry_after: int | None = None
) -> web.Response:
    """The one error shape of the HTTP API: ``{"error": {"code", "message"}}``, plus ``field`` when one request
    field is at fault; ``retry_after`` (seconds) adds ``Retry-After`` and ``retry_after_seconds``."""
    error: dict[str, Any] = {"code": code, "message": message, **({"field": field} if field else {})}
    if retry_after is None:
        return web.json_response({"error": error}, status=status)
    error["retry_after_seconds"] = retry_after
    return web.json_response({"error": error}, status=status, headers={"Retry-After": str(retry_after)})
