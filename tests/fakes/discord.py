"""A small fake of Discord's gateway and REST API on loopback, for discord.py.

Gateway (https://discord.com/developers/docs/events/gateway): on connect HELLO (op 10); IDENTIFY (op 2) is
answered with a READY dispatch; heartbeats (op 1) with HEARTBEAT_ACK (op 11); ``dispatch`` pushes any event
(``INTERACTION_CREATE``) as an op 0 text frame. REST under ``/api/v10``: the calls discord.py makes to log in,
sync commands, and answer interactions (callback, edit/delete the original response, followups), recorded with
their JSON payloads and uploaded files (multipart ``payload_json`` + ``files[n]``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

TOKEN = "MTIz.fake.discord-token"
APP_ID = "1100000000000000001"
BOT_USER = {"id": APP_ID, "username": "showme", "discriminator": "0", "global_name": "showme", "avatar": None,
            "bot": True}  # fmt: skip


def _json(data: Any, status: int = 200) -> web.Response:
    # Discord answers "Content-Type: application/json" exactly (no charset); discord.py compares the whole header.
    return web.Response(body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"})


@dataclass
class Request:
    method: str
    path: str
    json: Any
    files: dict[str, bytes] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)


class FakeDiscord:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.base_url = ""
        self.sockets: list[web.WebSocketResponse] = []
        self.identified = asyncio.Event()
        self.changed = asyncio.Event()
        self._ids = itertools.count(1200000000000000000)
        self._seq = itertools.count(2)
        self.commands: list[dict[str, Any]] = []

    def snowflake(self) -> str:
        return str(next(self._ids))

    def app(self) -> web.Application:
        app = web.Application(client_max_size=50 * 1024 * 1024)
        app.router.add_get("/gateway", self.gateway)
        app.router.add_route("*", "/api/v10/{path:.*}", self.rest)
        return app

    # -- gateway -----------------------------------------------------------------------------------------------

    async def gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.append(ws)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}, "s": None, "t": None}))
        async for message in ws:
            data = json.loads(message.data)
            if data["op"] == 2:
                ready = {
                    "v": 10,
                    "user": BOT_USER,
                    "guilds": [],
                    "session_id": "fake-session",
                    "resume_gateway_url": f"{self.base_url.replace('http', 'ws')}/gateway",
                    "application": {"id": APP_ID, "flags": 0},
                    "shard": [0, 1],
                }
                await ws.send_str(json.dumps({"op": 0, "s": 1, "t": "READY", "d": ready}))
                self.identified.set()
            elif data["op"] == 1:
                await ws.send_str(json.dumps({"op": 11, "d": None, "s": None, "t": None}))
        self.sockets.remove(ws)
        return ws

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        await asyncio.wait_for(self.identified.wait(), 10)
        frame = json.dumps({"op": 0, "s": next(self._seq), "t": event, "d": data})
        for ws in list(self.sockets):
            await ws.send_str(frame)

    # -- REST --------------------------------------------------------------------------------------------------

    async def rest(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["path"]
        payload: Any = None
        files: dict[str, bytes] = {}
        if request.content_type == "multipart/form-data":
            reader = await request.multipart()
            async for part in reader:
                if part.name == "payload_json":  # type: ignore[union-attr]
                    payload = json.loads(await part.text())  # type: ignore[union-attr]
                else:
                    files[str(part.filename)] = bytes(await part.read())  # type: ignore[union-attr]
        elif request.can_read_body:
            payload = await request.json()
        self.requests.append(Request(request.method, path, payload, files, dict(request.query)))
        self.changed.set()
        # Interaction callbacks and webhooks are authorised by the interaction token in the path.
        token_path = path.startswith(("/webhooks/", "/interactions/"))
        if request.headers.get("Authorization") != f"Bot {TOKEN}" and not token_path:
            return _json({"message": "401: Unauthorized", "code": 0}, status=401)
        return self.answer(request.method, path, payload, files)

    def message(self, content: str | None = None, payload: Any = None, files: dict[str, bytes] | None = None) -> Any:
        payload = payload or {}
        attachments = [
            {"id": self.snowflake(), "filename": name, "size": len(data), "url": f"{self.base_url}/cdn/{name}",
             "proxy_url": f"{self.base_url}/cdn/{name}"}
            for name, data in (files or {}).items()
        ]  # fmt: skip
        return {
            "id": self.snowflake(),
            "channel_id": "1300000000000000001",
            "type": 0,
            "content": payload.get("content") or content or "",
            "author": BOT_USER,
            "attachments": attachments,
            "embeds": payload.get("embeds") or [],
            "components": payload.get("components") or [],
            "mentions": [],
            "mention_roles": [],
            "mention_everyone": False,
            "pinned": False,
            "tts": False,
            "timestamp": datetime.now(UTC).isoformat(),
            "edited_timestamp": None,
            "flags": payload.get("flags", 0),
        }

    def answer(self, method: str, path: str, payload: Any, files: dict[str, bytes]) -> web.Response:
        if path == "/users/@me":
            return _json(BOT_USER)
        if path == "/oauth2/applications/@me":
            return _json(
                {"id": APP_ID, "name": "showme", "icon": None, "description": "", "bot_public": True,
                 "bot_require_code_grant": False, "owner": {**BOT_USER, "id": "1", "bot": False},
                 "verify_key": "00", "flags": 0, "team": None, "summary": ""}
            )  # fmt: skip
        if path.startswith(f"/applications/{APP_ID}/") and path.endswith("/commands") and method == "PUT":
            self.commands = [
                {**c, "id": self.snowflake(), "application_id": APP_ID, "version": "1",
                 "default_member_permissions": None, "type": c.get("type", 1)}
                for c in payload or []
            ]  # fmt: skip
            return _json(self.commands)
        if path.startswith("/interactions/") and path.endswith("/callback"):
            interaction_id = path.split("/")[2]
            kind = int(payload["type"])
            body: dict[str, Any] = {
                "interaction": {"id": interaction_id, "type": 2, "response_message_id": self.snowflake(),
                                "response_message_loading": kind == 5,
                                "response_message_ephemeral": bool((payload.get("data") or {}).get("flags", 0) & 64)},
                "resource": {"type": kind},
            }  # fmt: skip
            if kind == 4:
                body["resource"]["message"] = self.message(payload=payload.get("data"), files=files)
            return _json(body)
        if path == "/users/@me/channels" and method == "POST":
            user = {"id": str(payload["recipient_id"]), "username": "buyer", "discriminator": "0", "avatar": None}
            return _json({"id": self.snowflake(), "type": 1, "recipients": [user], "last_message_id": None})
        if path.startswith("/channels/") and path.endswith("/messages") and method == "POST":
            return _json({**self.message(payload=payload, files=files), "channel_id": path.split("/")[2]})
        if path.startswith("/webhooks/"):
            if method == "DELETE":
                return web.Response(status=204)
            return _json(self.message(payload=payload, files=files))
        return _json({"message": f"fake Discord: {method} {path} not implemented", "code": 0}, status=404)

    # -- assertions ------------------------------------------------------------------------------------------

    def of(self, method: str, contains: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and contains in r.path]

    async def wait_for(self, method: str, contains: str, count: int = 1, timeout: float = 10) -> list[Request]:
        deadline = time.monotonic() + timeout
        while len(self.of(method, contains)) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = [f"{r.method} {r.path}" for r in self.requests]
                raise AssertionError(f"expected {count}× {method} …{contains}…; requests so far: {seen}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)
        return self.of(method, contains)

    # -- interactions as Discord sends them --------------------------------------------------------------------

    def user(self, user_id: str = "4200000000000000042", name: str = "priya") -> dict[str, Any]:
        return {"id": user_id, "username": name, "discriminator": "0", "global_name": name.title(), "avatar": None}

    def _base(self, kind: int, user: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": self.snowflake(),
            "application_id": APP_ID,
            "type": kind,
            "token": f"itoken-{self.snowflake()}",
            "version": 1,
            "user": user,
            "channel_id": "1300000000000000001",
            "channel": {"id": "1300000000000000001", "type": 1, "recipients": [user]},
            "app_permissions": "0",
            "locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"1": user["id"]},
            "context": 1,
            "attachment_size_limit": 10 * 1024 * 1024,
        }

    def command(self, name: str, user: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
        """An APPLICATION_COMMAND interaction (type 2) for a chat-input command with string options."""
        command = next((c for c in self.commands if c["name"] == name), {"id": self.snowflake()})
        data = self._base(2, user or self.user())
        data["data"] = {
            "id": command["id"],
            "name": name,
            "type": 1,
            "options": [{"name": k, "type": 3, "value": v} for k, v in options.items()],
        }
        return data

    def click(self, custom_id: str, message: dict[str, Any], user: dict[str, Any] | None = None) -> dict[str, Any]:
        """A MESSAGE_COMPONENT interaction (type 3): a button press on ``message``."""
        data = self._base(3, user or self.user())
        data["data"] = {"custom_id": custom_id, "component_type": 2}
        data["message"] = message
        return data
