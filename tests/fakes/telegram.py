"""A small fake Telegram Bot API server on loopback for python-telegram-bot.

Speaks ``POST /bot<token>/<method>`` with urlencoded or multipart parameters (complex values such as
``reply_markup`` arrive JSON-encoded, files as multipart parts) and answers ``{"ok": true, "result": …}`` or
``{"ok": false, "error_code", "description"}`` (https://core.telegram.org/bots/api#making-requests).
Every call is recorded for assertions; ``updates`` builds real Update JSON for the webhook.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

TOKEN = "123456:TEST-showme-token"
BOT = {
    "id": 123456,
    "is_bot": True,
    "first_name": "showme",
    "username": "showme_test_bot",
    "can_join_groups": True,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)


class FakeTelegram:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.base_url = ""
        self._message_ids = itertools.count(1000)
        self._update_ids = itertools.count(5000)
        self.changed = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=60 * 1024 * 1024)
        app.router.add_post("/bot{token}/{method}", self.handle)
        return app

    # -- server ------------------------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != TOKEN:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        method = request.match_info["method"]
        params: dict[str, Any] = {}
        files: dict[str, bytes] = {}
        if request.content_type == "application/json":
            params = await request.json()
        else:
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    files[key] = value.file.read()
                    continue
                try:
                    params[key] = json.loads(value)  # type: ignore[arg-type]
                except (ValueError, TypeError):
                    params[key] = value
        self.calls.append(Call(method, params, files))
        self.changed.set()
        if method == "getUpdates":
            await asyncio.sleep(min(float(params.get("timeout", 0) or 0), 0.5))
            return self.ok([])
        return self.ok(self.result(method, params, files))

    @staticmethod
    def ok(result: Any) -> web.Response:
        return web.json_response({"ok": True, "result": result})

    def message(self, chat_id: Any, **extra: Any) -> dict[str, Any]:
        chat_id = int(chat_id)
        chat = {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"}
        if chat_id < 0:
            chat["title"] = "Showroom"
        return {"message_id": next(self._message_ids), "date": int(time.time()), "chat": chat, "from": BOT, **extra}

    def result(self, method: str, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        if method == "getMe":
            return BOT
        chat_id = params.get("chat_id", 1)
        if method in ("sendMessage", "editMessageText"):
            extra = {"text": params.get("text", "")}
            if "reply_markup" in params:
                extra["reply_markup"] = params["reply_markup"]
            if method == "editMessageText" and "message_id" in params:
                return {**self.message(chat_id, **extra), "message_id": int(params["message_id"])}
            return self.message(chat_id, **extra)
        if method == "sendPhoto":
            photo = [{"file_id": f"photo{len(self.calls)}", "file_unique_id": f"u{len(self.calls)}", "width": 64,
                      "height": 48, "file_size": len(files.get("photo", b""))}]  # fmt: skip
            return self.message(chat_id, photo=photo, caption=params.get("caption", ""))
        if method == "sendVideo":
            video = {"file_id": f"video{len(self.calls)}", "file_unique_id": f"v{len(self.calls)}",
                     "width": int(params.get("width", 0)), "height": int(params.get("height", 0)),
                     "duration": int(params.get("duration", 0))}  # fmt: skip
            return self.message(chat_id, video=video, caption=params.get("caption", ""))
        if method == "sendDocument":
            document = {"file_id": f"doc{len(self.calls)}", "file_unique_id": f"d{len(self.calls)}"}
            return self.message(chat_id, document=document)
        if method == "sendMediaGroup":
            return [self.message(chat_id, photo=[{"file_id": "p", "file_unique_id": "p", "width": 1, "height": 1}])
                    for _ in params.get("media", [])]  # fmt: skip
        return True  # setWebhook, setMyCommands, sendChatAction, answerCallbackQuery, deleteMessage, …

    # -- assertions ------------------------------------------------------------------------------------------

    def of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    async def wait_for_text(self, text: str, timeout: float = 10) -> Call:
        """Wait for a ``sendMessage`` whose text contains ``text``; returns the newest such call."""
        deadline = time.monotonic() + timeout
        while True:
            found = [c for c in self.of("sendMessage") if text in str(c.params.get("text", ""))]
            if found:
                return found[-1]
            await self._wait_change(deadline, f"a message containing {text!r}")

    async def _wait_change(self, deadline: float, what: str) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"expected {what}; calls so far: {[c.method for c in self.calls]}")
        self.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.changed.wait(), remaining)

    async def wait_for(self, method: str, count: int = 1, timeout: float = 10) -> list[Call]:
        """Wait until ``count`` calls of ``method`` arrived; returns them."""
        deadline = time.monotonic() + timeout
        while len(self.of(method)) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = [c.method for c in self.calls]
                raise AssertionError(f"expected {count} {method} call(s); calls so far: {seen}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)
        return self.of(method)

    # -- updates as Telegram sends them ------------------------------------------------------------------------

    def user(self, user_id: int = 42, first_name: str = "Priya") -> dict[str, Any]:
        return {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": "en"}

    def text_update(
        self,
        text: str,
        *,
        user_id: int = 42,
        chat_id: int | None = None,
        reply_to: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        chat_id = user_id if chat_id is None else chat_id
        chat = (
            {"id": chat_id, "type": "private", "first_name": "Priya"}
            if chat_id > 0
            else {"id": chat_id, "type": "supergroup", "title": "Showroom"}
        )
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "from": self.user(user_id),
            "chat": chat,
            "date": int(time.time()),
            "text": text,
        }
        if text.startswith("/"):
            command = text.split()[0]
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        if reply_to is not None:
            message["reply_to_message"] = reply_to
        return {"update_id": next(self._update_ids), "message": message}

    def callback_update(self, data: str, message: dict[str, Any], *, user_id: int = 42) -> dict[str, Any]:
        return {
            "update_id": next(self._update_ids),
            "callback_query": {
                "id": str(next(self._update_ids)),
                "from": self.user(user_id),
                "message": message,
                "chat_instance": "-1",
                "data": data,
            },
        }

    def sent_message(self, call: Call) -> dict[str, Any]:
        """The Message JSON the bot's call produced (for callback updates on it)."""
        chat_id = int(call.params["chat_id"])
        chat = {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"}
        message: dict[str, Any] = {"message_id": 999, "date": int(time.time()), "chat": chat, "from": BOT}
        if "reply_markup" in call.params:
            message["reply_markup"] = call.params["reply_markup"]
        if call.method == "sendPhoto":
            message["photo"] = [{"file_id": "x", "file_unique_id": "x", "width": 64, "height": 48}]
        else:
            message["text"] = call.params.get("text", "")
        return message
