"""REST for integrators (``/api/v1/...``) and tool definitions (``GET /tools``)."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import InvalidRequest, PayloadTooLarge, invalid_from_validation
from core.generation import GenerationRequest, JobView
from tools.dialects import export_tools
from tools.http import SERVICES, SETTINGS, authenticate, plain, read_json
from tools.remote import fetch_image
from tools.schemas import ReportQuery, ToolsQuery


def _name_from_filename(filename: str) -> str:
    """An asset name from a file name: ``black-galaxy_granite.jpg`` → ``black galaxy granite``."""
    return filename.rsplit(".", 1)[0].replace("-", " ").replace("_", " ").strip()


def job_json(job: JobView) -> dict[str, Any]:
    data = plain(job)
    for asset in data["assets"]:
        asset.pop("file_path", None)
    return data


class GenerationBody(BaseModel):
    """``POST /api/v1/generations``: ``model`` of any kind (or ``operation``, which names the configured edit
    model); an edit or animation's image as ``input_asset_id``, ``input_job_id`` (that job's first output) or
    ``input_url`` (https, public addresses only), at most one of them."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    prompt: str = Field(default="", max_length=10_000)
    style: str | None = None
    aspect_ratio: str | None = None
    model: str | None = None
    operation: Literal["upscale", "remove_background", "restore_face", "animate"] | None = None
    input_asset_id: int | None = Field(default=None, ge=1)
    input_job_id: str | None = Field(default=None, max_length=64)
    input_url: str | None = Field(default=None, max_length=2048)
    num_outputs: int = Field(default=1, ge=1, le=4)
    seed: int | None = None
    conversation_id: str | None = None
    wait_seconds: float | None = Field(default=None, ge=0, le=60)


def _validated(model: type[BaseModel], data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise invalid_from_validation(err) from err


async def create_generation(request: web.Request) -> web.Response:
    """``POST /api/v1/generations`` (``Idempotency-Key`` header honoured): 200 with the finished job when it
    finishes within ``wait_seconds`` (default ``tools.max_wait_seconds``), else 202 with the running job."""
    caller = await authenticate(request, "generate")
    body = _validated(GenerationBody, await read_json(request))
    services = request.app[SERVICES]
    model = body.model
    if body.operation is not None:
        if model is not None:
            raise InvalidRequest("give model or operation, not both", field="operation")
        model = request.app[SETTINGS].generation.operations[body.operation]
    job = await services.generation.submit(
        caller.account_id,
        GenerationRequest(
            prompt=body.prompt,
            style=body.style,
            aspect_ratio=body.aspect_ratio,
            model=model,
            num_outputs=body.num_outputs,
            seed=body.seed,
            conversation_id=body.conversation_id,
            source="api",
            idempotency_key=request.headers.get("Idempotency-Key"),
            input_asset_id=await _input_asset(request, caller.account_id, body),
        ),
    )
    wait = request.app[SETTINGS].tools.max_wait_seconds if body.wait_seconds is None else body.wait_seconds
    if not job.done and wait > 0:
        job = await services.generation.wait(job.id, timeout=wait)
    return web.json_response({"job": job_json(job)}, status=200 if job.done else 202)


async def _input_asset(request: web.Request, account_id: int, body: GenerationBody) -> int | None:
    """The library asset id of the request's input image: given, a job's output, or downloaded from a URL
    into the library (as an upload)."""
    given = [name for name in ("input_asset_id", "input_job_id", "input_url") if getattr(body, name) is not None]
    if len(given) > 1:
        raise InvalidRequest(f"give one of {', '.join(given)}", field=given[1])
    services, settings = request.app[SERVICES], request.app[SETTINGS]
    if body.input_job_id is not None:
        return await services.generation.output_asset_id(account_id, body.input_job_id)
    if body.input_url is not None:
        data = await fetch_image(
            body.input_url, settings.tools.upload_max_bytes, allow_private=settings.media.allow_private_input_urls
        )
        name = _name_from_filename(urlsplit(body.input_url).path.rsplit("/", 1)[-1]) or "image from a URL"
        try:
            asset, _ = await services.library.import_image(account_id, data, name=name, description=body.input_url)
        except InvalidRequest as err:
            raise InvalidRequest(f"input_url is not an image: {err.message}", field="input_url") from err
        return asset.id
    return body.input_asset_id


async def get_generation(request: web.Request) -> web.Response:
    """``GET /api/v1/generations/{job_id}``: a job of the calling account, with its outputs once succeeded."""
    caller = await authenticate(request)
    job = await request.app[SERVICES].generation.get(request.match_info["job_id"], caller.account_id)
    return web.json_response({"job": job_json(job)})


async def get_credits(request: web.Request) -> web.Response:
    """``GET /api/v1/credits``: credits available now and the active session quotas."""
    caller = await authenticate(request)
    balance = await request.app[SERVICES].credits.balance(caller.account_id)
    return web.json_response(plain(balance))


async def upload_asset(request: web.Request) -> web.Response:
    """``POST /api/v1/library``: multipart with ``file`` (image) and optional ``name``, ``description``,
    ``tags`` (comma-separated), ``category``, ``folder`` (a path, made when missing), ``alt_text``. 201 with the
    asset (200 when already there)."""
    caller = await authenticate(request, "library")
    settings = request.app[SETTINGS]
    if not request.content_type.startswith("multipart/"):
        raise InvalidRequest("send multipart/form-data with a 'file' part", field="file")
    try:
        filename, data, fields = await _read_upload(request, settings.tools.upload_max_bytes)
    except (ValueError, HttpProcessingError) as err:
        raise InvalidRequest(f"the multipart body is malformed: {err}", field="file") from None
    if not data:
        raise InvalidRequest("file is required", field="file")
    name = fields.get("name") or _name_from_filename(filename)
    asset, created = await request.app[SERVICES].library.import_image(
        caller.account_id,
        data,
        name=name,
        description=fields.get("description", ""),
        tags=fields.get("tags"),
        category=fields.get("category") or None,
        folder=fields.get("folder") or None,
        alt_text=fields.get("alt_text", ""),
        thumbnail_pixels=settings.media.thumbnail_pixels,
    )
    payload = plain(asset)
    payload.pop("file_path", None)
    return web.json_response({"asset": payload, "created": created}, status=201 if created else 200)


async def _read_upload(request: web.Request, max_bytes: int) -> tuple[str, bytes | None, dict[str, str]]:
    """The upload's file name, file bytes (None when there is no ``file`` part) and text fields. Raises
    ``PayloadTooLarge``; aiohttp raises ``ValueError`` or ``HttpProcessingError`` for a malformed body."""
    fields: dict[str, str] = {}
    data: bytes | None = None
    filename = ""
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "file":
            filename = part.filename or ""
            data = await _read_part(part, max_bytes)
        elif part.name in ("name", "description", "tags", "category", "folder", "alt_text"):
            fields[part.name] = (await part.text())[:2000]
    return filename, data, fields


async def start_training(request: web.Request) -> web.Response:
    """``POST /api/v1/models/trainings``: multipart with ``images`` (10-50 photos, or zips of them, as one or
    more parts), ``name``, ``trigger_word`` and optional ``base_model``. 202 with the training job; its price
    is held now and charged when the trained model is ready (``GET /api/v1/generations/{job_id}``)."""
    caller = await authenticate(request, "generate")
    settings = request.app[SETTINGS]
    if not request.content_type.startswith("multipart/"):
        raise InvalidRequest("send multipart/form-data with 'images' parts", field="images")
    limit = settings.tools.upload_max_bytes
    files: list[tuple[str, bytes]] = []
    fields: dict[str, str] = {}
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "images":
                if len(files) >= settings.training.max_images:
                    raise InvalidRequest(f"images: at most {settings.training.max_images} files", field="images")
                files.append((part.filename or f"photo-{len(files)}", await _read_part(part, limit)))
            elif part.name in ("name", "trigger_word", "base_model"):
                fields[part.name] = (await part.text())[:200]
    except (ValueError, HttpProcessingError) as err:
        raise InvalidRequest(f"the multipart body is malformed: {err}", field="images") from None
    for required in ("name", "trigger_word"):
        if not fields.get(required):
            raise InvalidRequest(f"{required} is required", field=required)
    job = await request.app[SERVICES].training.start(
        caller.account_id, name=fields["name"], trigger_word=fields["trigger_word"], files=files,
        base_model=fields.get("base_model") or "flux_dev", source="api",
        idempotency_key=request.headers.get("Idempotency-Key"),
    )  # fmt: skip
    return web.json_response({"job": job_json(job)}, status=202)


async def _read_part(part: BodyPartReader, limit: int) -> bytes:
    """A multipart part's bytes, at most ``limit``; raises ``PayloadTooLarge``."""
    chunks, size = [], 0
    while chunk := await part.read_chunk(65536):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"{part.filename or 'a file'} is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def list_models(request: web.Request) -> web.Response:
    """``GET /api/v1/models``: the catalog's models and the calling account's trained ones."""
    caller = await authenticate(request)
    services = request.app[SERVICES]
    custom = await services.models.custom(caller.account_id)
    return web.json_response({
        "catalog": services.billing.pricing()["models"],
        "custom": [{**plain(m), "credits": services.settings.training.generation_price} for m in custom],
    })  # fmt: skip


async def admin_report(request: web.Request) -> web.Response:
    """``GET /api/v1/admin/report?since=YYYY-MM-DD[&until=…]``: jobs, failures, credits charged, revenue,
    provider cost and margin per model and day, over every account (a key with the ``operator`` scope)."""
    from core.reports import report_json

    await authenticate(request, "operator")
    query = _validated(ReportQuery, dict(request.query))
    report = await request.app[SERVICES].reports.report(query.since, query.until)
    return web.json_response(report_json(report))


async def tool_definitions(request: web.Request) -> web.Response:
    """``GET /tools?format=openai|openai-responses|elevenlabs|vapi|retell|mcp``: every tool's definition in
    that platform's format, pointing at this server."""
    fmt = _validated(ToolsQuery, dict(request.query)).format
    return web.json_response(export_tools(request.app[SERVICES].tools, fmt, request.app[SETTINGS].server.public_url))


ELEVENLABS_INSTRUCTIONS = (
    "\n\nYou can show pictures on the caller's screen while you talk. When the caller names one of our products, "
    "call show_product_image with the product name. When they want to see something else (a room, a combination, "
    "an idea), call generate_image with a concrete description. When they want a video, call generate_video; "
    "to sharpen, cut out, fix the faces in or animate a picture they have seen, call edit_image. Tell the "
    "caller the picture is on their screen; if the tool says it is still being made, say it will appear in a "
    "moment (a video takes a minute or two) and keep talking."
)


async def elevenlabs_agent_config(request: web.Request) -> web.Response:
    """``POST /api/v1/agents/elevenlabs/config``: an ElevenLabs agent config in, the same config out with our
    webhook tools (URL, the caller's key as secret header) added and image instructions appended to its
    prompt (``conversation_config.agent.prompt``)."""
    from tools.http import api_key_from

    await authenticate(request, "tools")
    config = await read_json(request)
    conversation = config.setdefault("conversation_config", {})
    agent = conversation.setdefault("agent", {}) if isinstance(conversation, dict) else None
    prompt = agent.setdefault("prompt", {}) if isinstance(agent, dict) else None
    if not isinstance(prompt, dict):
        raise InvalidRequest("conversation_config.agent.prompt must be an object", field="conversation_config")
    ours = export_tools(
        request.app[SERVICES].tools,
        "elevenlabs",
        request.app[SETTINGS].server.public_url,
        api_key=api_key_from(request),
    )
    names = {t["name"] for t in ours}
    existing = [t for t in prompt.get("tools") or [] if isinstance(t, dict) and t.get("name") not in names]
    prompt["tools"] = existing + ours
    text = str(prompt.get("prompt") or "")
    if ELEVENLABS_INSTRUCTIONS.strip() not in text:
        prompt["prompt"] = text + ELEVENLABS_INSTRUCTIONS
    return web.json_response(config)
