"""A small Replicate-compatible HTTP server for tests (wire format: Replicate's HTTP API reference).

Speaks ``POST /v1/models/{owner}/{name}/predictions``, ``POST /v1/predictions`` (with ``version``),
``GET /v1/predictions/{id}``, ``POST /v1/predictions/{id}/cancel``, the files API (``POST /v1/files``
multipart, ``GET /v1/files/{id}``) and serves output files under ``/files/``. The video and edit models work on
what they are given: Seedance returns a real H.264 MP4 (from the input image when there is one), Real-ESRGAN and
CodeFormer the input scaled, rembg the input as an RGBA PNG.
Honours ``Prefer: wait[=N]``, bearer auth, problem-JSON errors (401/402/422/429) and per-prompt behaviour:

* ``duration``: seconds a prediction takes (default 0: done at once)
* a prompt containing ``FAILME`` fails with ``model_error``; ``SLOWME`` never finishes (timeouts)
* ``create_errors``: queued (status, problem JSON) answers for the next creates
* ``download_failures``: the next N output downloads answer 500; ``broken_outputs``: output indexes that always do
* ``plain_http_outputs``: outputs served over plain http (the client returns them as ``str``)
* ``model_durations``: seconds a prediction of that model takes (instead of ``duration``)
* ``failing_models``: models whose predictions fail with a model error
* ``video_bytes``: the MP4 every video prediction returns (default: a small one made for it)
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import json
import ssl
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from PIL import Image

from tests.fakes import media

OFFICIAL_MODELS = {
    "black-forest-labs/flux-schnell",
    "black-forest-labs/flux-dev",
    "black-forest-labs/flux-1.1-pro",
    "bytedance/seedance-1-lite",
    "ideogram-ai/ideogram-v2-turbo",
}
SDXL_VERSION = "7762fd07cf82c948538e41f63f77d685e02b063e37e496e96eefd46c929f9bdc"
VERSIONS = {
    SDXL_VERSION: "stability-ai/sdxl",
    "f121d640bd286e1fdc67f9799164c1d5be36ff74576ee11c803ae5b665dd46aa": "nightmareai/real-esrgan",
    "fb8af171cfa1616ddcf1242c093f9c46bcada5ad4cf6f2fbe8b81b330ec5c003": "cjwbw/rembg",
    "7de2ea26c616d5bf2245ad0d5e24f0ff9a6204578a5c876db53142edd9d2cd56": "sczhou/codeformer",
    "5599ed30703defd1d160a25a63321b4dec97101d98b4674bcc56e41f62f35637": "bytedance/sdxl-lightning-4step",
    "a45f82a1382bed5c7aeb861dac7c7d191b0fdf74d8d57c4a0e6ed7d4d0bf7d24": "playgroundai/playground-v2.5-1024px-aesthetic",
}
TRAINER = ("ostris/flux-dev-lora-trainer", "b6af14222e6bd9be257cbc1ea4afda3cd0503e1133083b9d1de0364d8568e6ef")
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"fake replicate webhook signing key").decode()


def sign_webhook(body: bytes, webhook_id: str, timestamp: int, secret: str = WEBHOOK_SECRET) -> str:
    """``webhook-signature`` of a Replicate webhook: ``v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>``
    with the base64-decoded part of the ``whsec_…`` secret as the key."""
    key = base64.b64decode(secret.split("_", 1)[1])
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return f"v1,{base64.b64encode(digest).decode()}"


IMAGE_IN = {"nightmareai/real-esrgan", "cjwbw/rembg", "sczhou/codeformer"}
ASPECTS = {"1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21"}


_POOL: dict[tuple[str, tuple[int, int]], list[bytes]] = {}


def pooled_image(prompt: str, index: int, fmt: str, size: tuple[int, int]) -> bytes:
    """Large images come from a small pre-encoded pool: encoding them is the real provider's work, not ours,
    and must not compete for this machine's CPU when a burst completes."""
    if size[0] <= 64:
        return make_image(prompt, index, fmt, size)
    key = (fmt, size)
    if key not in _POOL:
        _POOL[key] = [make_image(f"pool {i}", i, fmt, size) for i in range(8)]
    pool = _POOL[key]
    return pool[hashlib.sha256(f"{prompt}|{index}".encode()).digest()[0] % len(pool)]


def make_image(prompt: str, index: int, fmt: str = "webp", size: tuple[int, int] = (64, 48)) -> bytes:
    digest = hashlib.sha256(f"{prompt}|{index}".encode()).digest()
    img = Image.new("RGB", size, tuple(digest[:3]))
    if size[0] > 64:  # a gradient, so large images cost what real ones do to decode
        img = Image.linear_gradient("L").resize(size).convert("RGB")
        img.paste(tuple(digest[:3]), (0, 0, size[0] // 4, size[1] // 4))
    out = io.BytesIO()
    img.save(out, format={"jpg": "JPEG", "png": "PNG"}.get(fmt, "WEBP"))
    return out.getvalue()


@dataclass
class FakePrediction:
    id: str
    model: str
    version: str
    input: dict[str, Any]
    created: float
    duration: float
    status: str = "starting"
    created_wall: float = 0.0
    succeeded_wall: float | None = None
    output: Any = None
    error: str | None = None
    canceled: bool = False

    def advance(self, fake: FakeReplicate) -> None:
        if self.status in ("succeeded", "failed", "canceled"):
            return
        prompt = str(self.input.get("prompt", ""))
        elapsed = time.monotonic() - self.created
        if "SLOWME" in prompt or elapsed < self.duration:
            self.status = "processing" if elapsed > 0.05 else "starting"
            return
        if "FAILME" in prompt or self.model in fake.failing_models:
            self.status, self.error = "failed", "CUDA out of memory (fake model error)"
            return
        if self.model in IMAGE_IN or self.model == "bytedance/seedance-1-lite":
            self._edit_output(fake)
            return
        count = int(self.input.get("num_outputs", 1))
        fmt = str(self.input.get("output_format", "webp"))
        urls = []
        for i in range(count):
            name = f"{self.id}-{i}.{fmt}"
            fake.files[name] = pooled_image(prompt, i, fmt, fake.image_size)
            urls.append(f"{fake.output_base}/files/{name}")
        self.status = "succeeded"
        self.succeeded_wall = self.created_wall + self.duration
        self.output = urls[0] if self.model.endswith(("flux-1.1-pro", "ideogram-v2-turbo")) else urls

    def _edit_output(self, fake: FakeReplicate) -> None:
        """One output file (a URL string, as these models return): the edited image or the video."""
        source = fake.input_file(self.input.get("image"))
        if self.model == "bytedance/seedance-1-lite":
            name = f"{self.id}-0.mp4"
            first = Image.open(io.BytesIO(source)) if source is not None else None
            fake.files[name] = fake.video_bytes or media.make_video(str(self.input.get("prompt")), first=first)
        elif self.model == "cjwbw/rembg":
            name = f"{self.id}-0.png"
            fake.files[name] = media.remove_background(source or b"")
        else:
            name = f"{self.id}-0.png"
            factor = float(self.input.get("scale", self.input.get("upscale", 2)))
            fake.files[name] = media.scale_image(source or b"", factor)
        self.status = "succeeded"
        self.succeeded_wall = self.created_wall + self.duration
        self.output = f"{fake.output_base}/files/{name}"

    def to_json(self, base: str) -> dict[str, Any]:
        now = datetime.now(UTC).isoformat()
        return {
            "id": self.id,
            "model": self.model,
            "version": self.version,
            "input": self.input,
            "output": self.output,
            "error": self.error,
            "logs": "",
            "status": self.status,
            "created_at": now,
            "started_at": now,
            "completed_at": now if self.status in ("succeeded", "failed", "canceled") else None,
            "urls": {
                "get": f"{base}/v1/predictions/{self.id}",
                "cancel": f"{base}/v1/predictions/{self.id}/cancel",
                "web": f"https://replicate.com/p/{self.id}",
            },
            "metrics": {"predict_time": self.duration} if self.status == "succeeded" else {},
        }


@dataclass
class FakeReplicate:
    token: str = "r8_test_token"
    duration: float = 0.0
    create_errors: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    download_failures: int = 0
    broken_outputs: set[int] = field(default_factory=set)
    plain_http_outputs: bool = False
    image_size: tuple[int, int] = (64, 48)
    model_durations: dict[str, float] = field(default_factory=dict)
    failing_models: set[str] = field(default_factory=set)
    video_bytes: bytes | None = None
    predictions: dict[str, FakePrediction] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    uploads: dict[str, tuple[bytes, str, str]] = field(default_factory=dict)  # id → (bytes, name, content type)
    creates: list[dict[str, Any]] = field(default_factory=list)
    prefer_headers: list[str | None] = field(default_factory=list)
    gets: int = 0
    cancels: list[str] = field(default_factory=list)
    downloads: int = 0
    training_duration: float = 0.5
    trainings: dict[str, dict[str, Any]] = field(default_factory=dict)
    models_created: list[dict[str, Any]] = field(default_factory=list)
    trained_versions: dict[str, str] = field(default_factory=dict)  # version id → owner/name
    base_url: str = ""
    http_url: str = ""
    send_webhooks: bool = True
    webhooks_sent: list[tuple[str, str, int]] = field(default_factory=list)  # (url, prediction id, HTTP status)
    webhook_tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def output_base(self) -> str:
        return self.http_url if self.plain_http_outputs else self.base_url

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/models/{owner}/{name}/predictions", self._create_official)
        app.router.add_post("/v1/predictions", self._create_version)
        app.router.add_get("/v1/predictions/{id}", self._get)
        app.router.add_post("/v1/predictions/{id}/cancel", self._cancel)
        app.router.add_get("/files/{name}", self._file)
        app.router.add_post("/v1/files", self._upload)
        app.router.add_get("/v1/files/{id}", self._get_upload)
        app.router.add_get("/v1/files/{id}/download", self._download_upload)
        app.router.add_get("/v1/account", self._account)
        app.router.add_get("/v1/webhooks/default/secret", self._webhook_secret)
        app.router.add_post("/v1/models", self._create_model)
        app.router.add_post("/v1/models/{owner}/{name}/versions/{version}/trainings", self._create_training)
        app.router.add_get("/v1/trainings/{id}", self._get_training)
        app.router.add_post("/v1/trainings/{id}/cancel", self._cancel_training)
        return app

    # -- trainings (replicate.com/docs/reference/http#trainings.create) ------------------------------------

    async def _create_model(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._problem(401, "Unauthenticated", "You did not pass a valid authentication token")
        body = await request.json()
        if any(m["owner"] == body["owner"] and m["name"] == body["name"] for m in self.models_created):
            return self._problem(409, "Conflict", "A model with that name and owner already exists")
        model = {"url": f"https://replicate.com/{body['owner']}/{body['name']}", "owner": body["owner"],
                 "name": body["name"], "description": body.get("description"), "visibility": body["visibility"],
                 "github_url": None, "paper_url": None, "license_url": None, "run_count": 0, "cover_image_url": None,
                 "default_example": None, "latest_version": None}  # fmt: skip
        self.models_created.append({**model, "hardware": body.get("hardware")})
        return web.json_response(model, status=201)

    async def _create_training(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._problem(401, "Unauthenticated", "You did not pass a valid authentication token")
        owner, name, version = (request.match_info[k] for k in ("owner", "name", "version"))
        if (f"{owner}/{name}", version) != TRAINER:
            return self._problem(404, "Not found", f"{owner}/{name}:{version} is not a trainer")
        body = await request.json()
        destination = str(body.get("destination", ""))
        if not any(f"{m['owner']}/{m['name']}" == destination for m in self.models_created):
            return self._problem(404, "Not found", f"The destination model {destination} does not exist")
        data = body.get("input") or {}
        images = self.input_file(data.get("input_images"))
        if images is None or not data.get("trigger_word"):
            return self._problem(422, "Input validation failed", "input_images and trigger_word are required")
        training_id = uuid.uuid4().hex[:20]
        self.trainings[training_id] = {
            "id": training_id, "model": f"{owner}/{name}", "version": version, "input": data,
            "destination": destination, "status": "starting", "created": time.monotonic(),
            "images": images, "error": None, "output": None,
        }  # fmt: skip
        return web.json_response(self._training_json(training_id), status=201)

    def _training_json(self, training_id: str) -> dict[str, Any]:
        t = self.trainings[training_id]
        if t["status"] in ("starting", "processing"):
            if time.monotonic() - t["created"] >= self.training_duration:
                version = uuid.uuid4().hex + uuid.uuid4().hex
                self.trained_versions[version] = t["destination"]
                t["status"] = "succeeded"
                t["output"] = {"version": f"{t['destination']}:{version}",
                               "weights": f"{self.base_url}/files/{training_id}-0.tar"}  # fmt: skip
            else:
                t["status"] = "processing"
        now = datetime.now(UTC).isoformat()
        return {
            "id": t["id"], "model": t["model"], "version": t["version"], "input": t["input"], "status": t["status"],
            "output": t["output"], "error": t["error"], "logs": "", "created_at": now, "started_at": now,
            "completed_at": now if t["status"] in ("succeeded", "failed", "canceled") else None,
            "urls": {"get": f"{self.base_url}/v1/trainings/{t['id']}",
                     "cancel": f"{self.base_url}/v1/trainings/{t['id']}/cancel"},
        }  # fmt: skip

    async def _get_training(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._problem(401, "Unauthenticated", "You did not pass a valid authentication token")
        if request.match_info["id"] not in self.trainings:
            return self._problem(404, "Not found", "Training not found")
        return web.json_response(self._training_json(request.match_info["id"]))

    async def _cancel_training(self, request: web.Request) -> web.Response:
        training = self.trainings.get(request.match_info["id"])
        if training is None:
            return self._problem(404, "Not found", "Training not found")
        if training["status"] not in ("succeeded", "failed"):
            training["status"] = "canceled"
        return web.json_response(self._training_json(training["id"]))

    async def _webhook_secret(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._problem(401, "Unauthenticated", "You did not pass a valid authentication token")
        return web.json_response({"key": WEBHOOK_SECRET})

    async def _send_webhook(self, prediction: FakePrediction, url: str) -> None:
        """POST the prediction, signed, to ``url`` once it is terminal (Replicate's ``completed`` event)."""
        import aiohttp

        while prediction.status not in ("succeeded", "failed", "canceled"):
            prediction.advance(self)
            await asyncio.sleep(0.02)
        body = json.dumps(prediction.to_json(self.base_url)).encode()
        webhook_id = f"msg_{uuid.uuid4().hex}"
        timestamp = int(time.time())
        headers = {"webhook-id": webhook_id, "webhook-timestamp": str(timestamp),
                   "webhook-signature": sign_webhook(body, webhook_id, timestamp), "Content-Type": "application/json"}
        try:
            async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as response:
                self.webhooks_sent.append((url, prediction.id, response.status))
        except aiohttp.ClientError:
            self.webhooks_sent.append((url, prediction.id, 0))

    async def _account(self, request: web.Request) -> web.Response:
        """``GET /v1/account``: the token's owner (replicate.com/docs/reference/http#account.get)."""
        if not self._authorized(request):
            return self._problem(401, "Unauthenticated", "You did not pass a valid authentication token")
        return web.json_response({"type": "organization", "username": "acme", "name": "Acme Granite",
                                  "github_url": None})  # fmt: skip

    def input_file(self, url: Any) -> bytes | None:
        """The bytes of an input given as one of our file URLs (or a data URI), None when absent."""
        if not isinstance(url, str):
            return None
        if url.startswith("data:"):
            return base64.b64decode(url.split(",", 1)[1])
        file_id = url.rstrip("/").removesuffix("/download").rsplit("/", 1)[-1]
        return self.uploads[file_id][0] if file_id in self.uploads else None

    def _file_json(self, file_id: str) -> dict[str, Any]:
        data, name, content_type = self.uploads[file_id]
        now = datetime.now(UTC).isoformat()
        return {
            "id": file_id, "name": name, "content_type": content_type, "size": len(data),
            "etag": hashlib.md5(data).hexdigest(), "checksums": {"sha256": hashlib.sha256(data).hexdigest()},
            "metadata": {}, "created_at": now, "expires_at": None,
            "urls": {"get": f"{self.base_url}/v1/files/{file_id}/download"},
        }  # fmt: skip

    async def _upload(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._problem(401, "Unauthenticated", "You did not pass a valid authentication token")
        form = await request.post()
        content = form.get("content")
        if not isinstance(content, web.FileField):
            return self._problem(422, "Invalid input", "content: a file is required")
        file_id = uuid.uuid4().hex[:16]
        self.uploads[file_id] = (content.file.read(), content.filename, content.content_type)
        return web.json_response(self._file_json(file_id), status=201)

    async def _get_upload(self, request: web.Request) -> web.Response:
        if request.match_info["id"] not in self.uploads:
            return self._problem(404, "Not found", "File not found")
        return web.json_response(self._file_json(request.match_info["id"]))

    async def _download_upload(self, request: web.Request) -> web.Response:
        upload = self.uploads.get(request.match_info["id"])
        if upload is None:
            return self._problem(404, "Not found", "File not found")
        return web.Response(body=upload[0], content_type=upload[2])

    def _problem(self, status: int, title: str, detail: str, **extra: Any) -> web.Response:
        return web.json_response(
            {"title": title, "detail": detail, "status": status, **extra},
            status=status,
            content_type="application/problem+json",
        )

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    async def _create_official(self, request: web.Request) -> web.Response:
        model = f"{request.match_info['owner']}/{request.match_info['name']}"
        if model not in OFFICIAL_MODELS:
            return self._problem(404, "Not found", f"Model {model} not found")
        return await self._create(request, model, "hidden")

    async def _create_version(self, request: web.Request) -> web.Response:
        body = await request.json()
        model = VERSIONS.get(str(body.get("version"))) or self.trained_versions.get(str(body.get("version")))
        if model is None:
            return self._problem(422, "Invalid version", "The specified version does not exist")
        return await self._create(request, model, str(body["version"]), body)

    async def _create(
        self, request: web.Request, model: str, version: str, body: dict[str, Any] | None = None
    ) -> web.Response:
        if not self._authorized(request):
            return self._problem(401, "Unauthenticated", "You did not pass a valid authentication token")
        body = body if body is not None else await request.json()
        self.creates.append(body)
        self.prefer_headers.append(request.headers.get("Prefer"))
        if self.create_errors:
            status, problem = self.create_errors.pop(0)
            return web.json_response({"status": status, **problem}, status=status)
        data = body.get("input") or {}
        invalid = []
        if "aspect_ratio" in data and data["aspect_ratio"] not in ASPECTS:
            invalid.append(
                {
                    "type": "enum",
                    "field": "input.aspect_ratio",
                    "description": f"aspect_ratio must be one of {sorted(ASPECTS)}",
                }
            )
        if (model in IMAGE_IN or "image" in data) and self.input_file(data.get("image")) is None:
            invalid.append({"type": "required", "field": "input.image", "description": "image is required"})
        if not 1 <= int(data.get("num_outputs", 1)) <= 4:
            invalid.append(
                {"type": "number_le", "field": "input.num_outputs", "description": "Must be less than or equal to 4"}
            )
        if invalid:
            detail = "; ".join(f"- {i['field']}: {i['description']}" for i in invalid)
            return self._problem(422, "Input validation failed", detail, invalid_fields=invalid)
        prediction = FakePrediction(
            id=uuid.uuid4().hex[:20],
            model=model,
            version=version,
            input=data,
            created=time.monotonic(),
            duration=self.model_durations.get(model, self.duration),
            created_wall=time.time(),
        )
        self.predictions[prediction.id] = prediction
        if body.get("webhook") and self.send_webhooks and "completed" in body.get("webhook_events_filter", []):
            task = asyncio.create_task(self._send_webhook(prediction, str(body["webhook"])))
            self.webhook_tasks.add(task)
            task.add_done_callback(self.webhook_tasks.discard)
        prefer = request.headers.get("Prefer", "")
        if prefer.startswith("wait"):
            limit = float(prefer.split("=", 1)[1]) if "=" in prefer else 60.0
            deadline = time.monotonic() + limit
            while True:
                prediction.advance(self)
                now = time.monotonic()
                if prediction.status in ("succeeded", "failed", "canceled") or now >= deadline:
                    break
                if request.transport is None or request.transport.is_closing():
                    break  # the client went away (for example, it was killed)
                # Wake exactly when the prediction finishes (or the wait ends), checking the client now and then.
                await asyncio.sleep(max(0.0, min(prediction.created + prediction.duration, deadline, now + 0.25) - now))
        else:
            prediction.advance(self)
        return web.json_response(prediction.to_json(self.base_url), status=201)

    async def _get(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._problem(401, "Unauthenticated", "You did not pass a valid authentication token")
        self.gets += 1
        prediction = self.predictions.get(request.match_info["id"])
        if prediction is None:
            return self._problem(404, "Not found", "Prediction not found")
        prediction.advance(self)
        return web.json_response(prediction.to_json(self.base_url))

    async def _cancel(self, request: web.Request) -> web.Response:
        prediction = self.predictions.get(request.match_info["id"])
        if prediction is None:
            return self._problem(404, "Not found", "Prediction not found")
        self.cancels.append(prediction.id)
        if prediction.status not in ("succeeded", "failed"):
            prediction.status = "canceled"
        return web.json_response(prediction.to_json(self.base_url))

    async def _file(self, request: web.Request) -> web.Response:
        self.downloads += 1
        index = int(request.match_info["name"].rsplit(".", 1)[0].rsplit("-", 1)[1])
        if self.download_failures > 0 or index in self.broken_outputs:
            self.download_failures = max(0, self.download_failures - 1)
            return web.Response(status=500, text="temporary storage error")
        data = self.files.get(request.match_info["name"])
        if data is None:
            return web.Response(status=404)
        ext = request.match_info["name"].rsplit(".", 1)[-1]
        return web.Response(body=data, content_type={"jpg": "image/jpeg", "mp4": "video/mp4"}.get(ext, f"image/{ext}"))


class RunningFake:
    """Start ``fake`` on 127.0.0.1 with https (``ssl_context``) plus a plain-http listener for outputs."""

    def __init__(self, fake: FakeReplicate, ssl_context: ssl.SSLContext) -> None:
        self.fake = fake
        self.ssl_context = ssl_context
        self.runner: web.AppRunner | None = None

    async def __aenter__(self) -> FakeReplicate:
        self.runner = web.AppRunner(self.fake.app(), access_log=None, shutdown_timeout=1.0)
        await self.runner.setup()
        secure = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        plain = web.TCPSite(self.runner, "127.0.0.1", 0)
        await secure.start()
        await plain.start()
        self.fake.base_url = f"https://127.0.0.1:{secure._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        self.fake.http_url = f"http://127.0.0.1:{plain._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        return self.fake

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        for task in list(self.fake.webhook_tasks):
            task.cancel()
        await asyncio.gather(*self.fake.webhook_tasks, return_exceptions=True)
        await self.runner.cleanup()
