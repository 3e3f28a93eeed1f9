"""A fake Hugging Face Inference Providers router: ``POST /<provider>/models/<owner>/<name>`` with
``{"inputs", "parameters"}`` and ``Authorization: Bearer <token>``, answered with the image's bytes, as
huggingface.co/docs/inference-providers/tasks/text-to-image describes; driven by ``huggingface_hub``'s client.

* ``fail_status``: answer every request with this status and an ``{"error": …}`` body (None: work);
* ``requests``: every request's path and JSON body, for assertions.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image

TOKEN = "hf_test_showme_token"


@dataclass
class FakeHuggingFace:
    fail_status: int | None = None
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    base_url: str = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{provider}/models/{owner}/{name}", self.text_to_image)
        return app

    async def text_to_image(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append((request.path, body))
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"error": "Invalid credentials in Authorization header"}, status=401)
        if self.fail_status is not None:
            return web.json_response({"error": "Model is overloaded"}, status=self.fail_status)
        if not isinstance(body.get("inputs"), str) or not body["inputs"]:
            return web.json_response({"error": "inputs must be a non-empty string"}, status=400)
        params = body.get("parameters") or {}
        # A small picture in the requested shape (the real one is width × height).
        width, height = int(params.get("width", 1024)) // 16, int(params.get("height", 1024)) // 16
        shade = sum(body["inputs"].encode()) % 200
        out = io.BytesIO()
        Image.new("RGB", (width, height), (shade, 120, 200 - shade)).save(out, format="JPEG")
        return web.Response(body=out.getvalue(), content_type="image/jpeg")
