"""Viewers: the call gallery page and its WebSocket feeds (protocol: ``core.events``)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from core.errors import InvalidViewerToken
from core.events import CLOSED, PROTOCOL_VERSION, Subscription, channel
from core.viewers import ViewerGrant
from tools.http import SERVICES, SETTINGS, authenticate
from tools.metrics import METRICS

log = logging.getLogger(__name__)


class SocketSet(set[web.WebSocketResponse]):
    """Open viewer sockets, closed at shutdown."""


VIEWER_SOCKETS = web.AppKey("viewer_sockets", SocketSet)
PAGE = Path(__file__).parent / "static" / "gallery.html"


def _event(kind: str, **fields: Any) -> str:
    return json.dumps({"v": PROTOCOL_VERSION, "type": kind, **fields}, separators=(",", ":"))


def _js(value: str) -> str:
    """A JS string literal safe inside <script> (no ``</script>``, no HTML parsing surprises)."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


async def gallery_page(request: web.Request) -> web.Response:
    """``GET /calls/{conversation_id}?token=…``: the live gallery; a bad or expired token gets a clear page."""
    conversation_id = request.match_info["conversation_id"]
    services = request.app[SERVICES]
    page = await asyncio.to_thread(PAGE.read_text, "utf-8")
    try:
        services.viewer_tokens.verify(request.query.get("token"), conversation_id)
        problem = ""
        status = 200
    except InvalidViewerToken as err:
        problem, status = err.message, 403
    body = page.replace("{{CONVERSATION_ID_JSON}}", _js(conversation_id)).replace("{{PROBLEM_JSON}}", _js(problem))
    return web.Response(
        text=body,
        status=status,
        content_type="text/html",
        headers={
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


@functools.lru_cache(maxsize=256)  # one event's text is the same string for every viewer: parsed once
def _library_asset(data: str) -> int | None:
    """The asset id of an ``image_from_library`` event's text, else None."""
    if "image_from_library" not in data:
        return None
    try:
        event = json.loads(data)
        return int(event["asset_id"]) if event.get("type") == "image_from_library" else None
    except (ValueError, TypeError, KeyError):
        return None


async def _pump(ws: web.WebSocketResponse, sub: Subscription, timeout: float, viewed: Callable[[int], None]) -> None:
    """Forward the subscription to the socket; a viewer that cannot keep up is closed (it reconnects). Each
    library asset delivered counts one view (``viewed``)."""
    while True:
        data = await sub.get()
        if data == CLOSED:
            await ws.close(code=1008, message=b"viewer too slow")
            return
        try:
            # asyncio.timeout, not wait_for: wait_for wraps every send in a new task, a thousand per event
            # on a busy conversation.
            async with asyncio.timeout(timeout):
                await ws.send_str(data)
        except (TimeoutError, ConnectionError, RuntimeError):
            await ws.close(code=1008, message=b"viewer too slow")
            return
        if (asset_id := _library_asset(data)) is not None:
            viewed(asset_id)


async def _serve_viewer(request: web.Request, ws: web.WebSocketResponse, grant: ViewerGrant, inbox: Any = None) -> None:
    services = request.app[SERVICES]
    settings = request.app[SETTINGS].viewers
    metrics = request.app[METRICS]
    try:
        sub = await services.hub.open(channel(grant.account_id, grant.conversation_id))
    except Exception:  # the shared bus (Redis) cannot be reached: the viewer reconnects later
        log.exception("could not subscribe a viewer to %s", grant.conversation_id)
        await ws.send_str(_event("error", error={"code": "unavailable", "message": "live updates are unavailable"}))
        await ws.close(code=1011, message=b"events unavailable")
        return
    metrics.viewers.inc()
    request.app[VIEWER_SOCKETS].add(ws)
    pump: asyncio.Task[None] | None = None
    try:
        items = await services.gallery.history(grant.account_id, grant.conversation_id, settings.history_limit)
        await ws.send_str(_event("history", conversation_id=grant.conversation_id, items=items))

        def viewed(asset_id: int) -> None:  # counted in memory, written in batches (core.library.uses)
            account, conversation = grant.account_id, grant.conversation_id
            services.uses.add(account, asset_id, "view", actor="gallery", conversation_id=conversation)

        for item in items:
            if item.get("type") == "image_from_library" and item.get("asset_id"):
                viewed(int(item["asset_id"]))
        pump = asyncio.create_task(_pump(ws, sub, settings.send_timeout_seconds, viewed))
        async for msg in inbox if inbox is not None else ws:
            if msg.type == WSMsgType.TEXT and msg.data.strip() == '{"type":"ping"}':
                await ws.send_str(_event("pong"))
            elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                break
    finally:
        services.hub.unsubscribe(sub)
        metrics.viewers.dec()
        request.app[VIEWER_SOCKETS].discard(ws)
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump


async def call_socket(request: web.Request) -> web.WebSocketResponse:
    """``GET /ws/calls/{conversation_id}?token=…``: ``history`` first, then live events. A bad token gets one
    ``{"type": "error"}`` message and the socket is closed with code 4403; it never receives events."""
    services = request.app[SERVICES]
    settings = request.app[SETTINGS].viewers
    ws = web.WebSocketResponse(heartbeat=settings.heartbeat_seconds, compress=False)
    await ws.prepare(request)
    try:
        grant = services.viewer_tokens.verify(request.query.get("token"), request.match_info["conversation_id"])
    except InvalidViewerToken as err:
        await ws.send_str(_event("error", error={"code": err.code, "message": err.message}))
        await ws.close(code=4403, message=b"invalid token")
        return ws
    await _serve_viewer(request, ws, grant)
    return ws


async def voice_images_socket(request: web.Request) -> web.WebSocketResponse:
    """``GET /ws/voice-images``: the original protocol. The client sends ``{"type": "authenticate", "token"}``
    (a viewer token or an API key), then ``{"type": "join_conversation", "conversationId"}``; then it gets
    ``history`` and live events like ``/ws/calls``."""
    services = request.app[SERVICES]
    ws = web.WebSocketResponse(heartbeat=request.app[SETTINGS].viewers.heartbeat_seconds, compress=False)
    await ws.prepare(request)
    account_id: int | None = None
    viewer_conversation: str | None = None
    async for msg in ws:
        if msg.type != WSMsgType.TEXT:
            break
        try:
            data = json.loads(msg.data)
        except json.JSONDecodeError:
            await ws.send_str(_event("error", error={"code": "invalid_request", "message": "messages are JSON"}))
            continue
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "authenticate":
            token = str(data.get("token") or "")
            try:
                grant = services.viewer_tokens.verify(token)
                account_id, viewer_conversation = grant.account_id, grant.conversation_id
            except InvalidViewerToken:
                found = await services.accounts.authenticate(token)
                if found is None:
                    await ws.send_str(_event("error", error={"code": "invalid_token", "message": "token is not valid"}))
                    await ws.close(code=4403, message=b"invalid token")
                    return ws
                account_id, viewer_conversation = found[0], None
            await ws.send_str(_event("authenticated"))
        elif kind == "join_conversation":
            conversation_id = str(data.get("conversationId") or data.get("conversation_id") or "")
            if account_id is None:
                await ws.send_str(_event("error", error={"code": "unauthorized", "message": "authenticate first"}))
                continue
            if not conversation_id or viewer_conversation not in (None, conversation_id):
                await ws.send_str(
                    _event(
                        "error", error={"code": "invalid_token", "message": "this token is for another conversation"}
                    )
                )
                continue
            await ws.send_str(_event("joined", conversationId=conversation_id))
            grant = ViewerGrant(account_id, conversation_id, services.clock.now())
            await _serve_viewer(request, ws, grant, inbox=ws)
            break
        elif kind == "ping":
            await ws.send_str(_event("pong"))
    return ws


async def mint_viewer_token(request: web.Request) -> web.Response:
    """``POST /api/v1/conversations/{conversation_id}/viewer-token`` → ``{"token", "url", "expires_at"}``."""
    caller = await authenticate(request)
    services = request.app[SERVICES]
    conversation_id = request.match_info["conversation_id"]
    token, expires = services.viewer_tokens.mint(caller.account_id, conversation_id)
    url = viewer_url(request.app[SETTINGS].server.public_url, conversation_id, token)
    return web.json_response(
        {"token": token, "url": url, "expires_at": expires.isoformat(), "conversation_id": conversation_id}, status=201
    )


def viewer_url(public_url: str, conversation_id: str, token: str) -> str:
    from urllib.parse import quote

    return f"{public_url}/calls/{quote(conversation_id, safe='')}?token={token}"
