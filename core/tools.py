"""Tools the voice agents call, each defined once and exported for every platform.

A tool is a name, a description, a list of parameters (from which both the pydantic validation model and
every platform's JSON schema are derived) and a handler. Platform envelopes (ElevenLabs, Vapi, Retell,
OpenAI, MCP) are the adapters' business (``tools/dialects``); here a call is a name, arguments and a
``ToolCall`` context. Each platform's envelope and tool format: ``tools.dialects``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from core.clock import Clock
from core.config import Settings
from core.errors import Forbidden, InvalidRequest, NotFound, ProviderError, invalid_from_validation
from core.gallery import Gallery
from core.generation import GenerationRequest, GenerationService, JobView
from core.library import Library, UseRecorder
from core.viewers import check_conversation_id

TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


class UnknownTool(NotFound):
    code = "unknown_tool"


@dataclass(frozen=True)
class Param:
    name: str
    type: str  # "string" | "integer" | "number" | "boolean"
    description: str
    required: bool = False
    enum: tuple[str, ...] | None = None
    minimum: int | None = None
    maximum: int | None = None
    max_length: int | None = None
    dynamic_variable: str | None = None  # ElevenLabs: filled by the platform, not the LLM


@dataclass(frozen=True)
class ToolCall:
    """Who calls and from where. ``call_id`` is the platform's id for this call (de-duplication);
    ``conversation_id`` the call/conversation whose viewers see the result."""

    account_id: int
    scopes: tuple[str, ...]
    dialect: str
    call_id: str | None = None
    conversation_id: str | None = None


@dataclass(frozen=True)
class ToolResult:
    """What the agent gets back: ``data`` (small JSON, no image bytes) and ``message`` (one line to say)."""

    data: dict[str, Any]
    message: str
    image_url: str | None = None
    mime: str | None = None
    title: str | None = None


Handler = Callable[[ToolCall, BaseModel], Awaitable[ToolResult]]

_PYTHON_TYPES: dict[str, type] = {"string": str, "integer": int, "number": float, "boolean": bool}


def _field(param: Param) -> tuple[Any, Any]:
    """The pydantic field of a parameter: its type (a ``Literal`` of its ``enum``), bounds and length; a
    required string must not be empty."""
    annotation: Any = Literal[param.enum] if param.enum else _PYTHON_TYPES[param.type]  # type: ignore[valid-type]
    min_length = 1 if param.required and param.type == "string" else None
    info = Field(
        default=... if param.required else None,
        ge=param.minimum,
        le=param.maximum,
        max_length=param.max_length,
        min_length=min_length,
    )
    return (annotation if param.required else annotation | None), info


@dataclass
class Tool:
    name: str
    title: str
    description: str
    params: list[Param]
    handler: Handler
    scope: str = "tools"
    model: type[BaseModel] = field(init=False)

    def __post_init__(self) -> None:
        if not TOOL_NAME.fullmatch(self.name):
            raise ValueError(f"tool name {self.name!r} does not match {TOOL_NAME.pattern}")
        fields = {p.name: _field(p) for p in self.params}
        self.model = create_model(  # type: ignore[call-overload]
            f"{self.name}_arguments", __config__=ConfigDict(extra="ignore", str_strip_whitespace=True), **fields
        )

    def parse(self, arguments: Any) -> BaseModel:
        """Validate ``arguments`` (object, or a JSON string as OpenAI sends); raises ``InvalidRequest`` naming
        the field."""
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError as err:
                raise InvalidRequest(f"arguments are not valid JSON: {err.msg}", field="arguments") from err
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise InvalidRequest("arguments must be a JSON object", field="arguments")
        try:
            return self.model.model_validate(arguments)
        except ValidationError as err:
            raise invalid_from_validation(err) from err

    # -- schemas -------------------------------------------------------------------------------------

    def json_schema(self, *, strict: bool = False, llm_only: bool = False) -> dict[str, Any]:
        """The arguments as JSON Schema. ``strict``: OpenAI strict mode (every property required, optional
        ones nullable, no additional properties). ``llm_only``: leave out platform-filled parameters."""
        properties: dict[str, Any] = {}
        required: list[str] = []
        for p in self.params:
            if llm_only and p.dynamic_variable:
                continue
            prop: dict[str, Any] = {"type": p.type, "description": p.description}
            if p.enum:
                prop["enum"] = list(p.enum)
            if p.minimum is not None:
                prop["minimum"] = p.minimum
            if p.maximum is not None:
                prop["maximum"] = p.maximum
            if strict and not p.required:
                prop["type"] = [p.type, "null"]
                if p.enum:
                    prop["enum"] = [*p.enum, None]
            properties[p.name] = prop
            if p.required or strict:
                required.append(p.name)
        schema: dict[str, Any] = {"type": "object", "properties": properties, "required": required}
        if strict:
            schema["additionalProperties"] = False
        return schema


CONVERSATION_ID = Param(
    "conversation_id",
    "string",
    "Id of the current call or conversation, so the image shows on that call's screen.",
    dynamic_variable="system__conversation_id",
)


def generate_image_tool(settings: Settings, handler: Handler) -> Tool:
    """``generate_image``: a new picture on the caller's screen."""
    return Tool(
        name="generate_image",
        title="Generate image",
        description=(
            "Create a new picture and show it on the caller's screen right away. Use it whenever the caller "
            "asks to see something or you offer to show something that is not a specific catalog product. "
            "Describe the subject concretely (materials, colors, setting). The answer says whether the image "
            "is already on screen or still being made; either way tell the caller it is coming."
        ),
        params=[
            Param(
                "prompt",
                "string",
                "What to show, e.g. 'black galaxy granite countertops in a modern white kitchen'.",
                required=True,
                max_length=settings.prompts.max_length,
            ),
            Param("style", "string", "Optional look of the picture.", enum=tuple(settings.styles)),
            Param(
                "aspect_ratio",
                "string",
                "Optional shape: 16:9 wide, 9:16 tall, 1:1 square, 4:3.",
                enum=tuple(settings.aspect_ratios),
            ),
            Param(
                "model",
                "string",
                "Optional image model; leave empty for the default.",
                enum=tuple(settings.models),
            ),
            Param(
                "num_outputs",
                "integer",
                "How many variations to show (1-4, each costs credits).",
                minimum=1,
                maximum=4,
            ),
            CONVERSATION_ID,
        ],
        handler=handler,
    )


def show_product_image_tool(handler: Handler) -> Tool:
    """``show_product_image``: the best match from the business's media library."""
    return Tool(
        name="show_product_image",
        title="Show product image",
        description=(
            "Show the caller a photo of one of the business's own products from its media library "
            "(for example a granite color, a cabinet finish, a model of sofa). Use it before generating "
            "when the caller names a specific product. Answers with the product shown, or that nothing "
            "matched."
        ),
        params=[
            Param(
                "query",
                "string",
                "Product name or description to look for, e.g. 'black galaxy granite'.",
                required=True,
                max_length=500,
            ),
            CONVERSATION_ID,
        ],
        handler=handler,
    )


class ToolRegistry:
    """``generate_image`` and ``show_product_image``, and their export for every platform."""

    def __init__(
        self,
        settings: Settings,
        generation: GenerationService,
        library: Library,
        gallery: Gallery,
        uses: UseRecorder,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.generation = generation
        self.library = library
        self.gallery = gallery
        self.uses = uses
        self.clock = clock
        self.tools: dict[str, Tool] = {
            tool.name: tool
            for tool in (
                generate_image_tool(settings, self._generate_image),
                show_product_image_tool(self._show_product_image),
            )
        }

    def get(self, name: str) -> Tool:
        """The tool called ``name``; raises ``UnknownTool``."""
        tool = self.tools.get(name)
        if tool is None:
            raise UnknownTool(f"unknown tool {name!r}; tools are {', '.join(self.tools)}")
        return tool

    async def call(self, name: str, arguments: Any, context: ToolCall) -> ToolResult:
        """Validate and run one tool call. Raises ``UnknownTool``, ``Forbidden``, ``InvalidRequest``
        (naming the field) and the handler's core errors."""
        tool = self.get(name)
        if tool.scope not in context.scopes:
            raise Forbidden(f"this API key may not call tools (needs the {tool.scope!r} scope)")
        parsed = tool.parse(arguments)
        conversation_id = getattr(parsed, "conversation_id", None) or context.conversation_id
        if conversation_id:
            check_conversation_id(conversation_id)
        return await tool.handler(
            ToolCall(context.account_id, context.scopes, context.dialect, context.call_id, conversation_id), parsed
        )

    # -- handlers ------------------------------------------------------------------------------------

    async def _generate_image(self, call: ToolCall, args: Any) -> ToolResult:
        key = None
        if call.call_id:
            key = f"tool:{call.dialect}:{call.call_id}"
            if len(key) > 255:
                key = "tool:" + hashlib.sha256(key.encode()).hexdigest()
        request = GenerationRequest(
            prompt=args.prompt,
            style=args.style,
            aspect_ratio=args.aspect_ratio,
            model=args.model or self.settings.tools.default_model,
            num_outputs=args.num_outputs or 1,
            conversation_id=call.conversation_id,
            source=f"tool:{call.dialect}",
            idempotency_key=key,
        )
        job = await self.generation.submit(call.account_id, request)
        if not job.done:
            job = await self.generation.wait(job.id, timeout=self.settings.tools.max_wait_seconds)
        return self._job_result(job)

    def _job_result(self, job: JobView) -> ToolResult:
        if job.status == "succeeded":
            urls = [a.url for a in job.assets]
            shown = " on the caller's screen" if job.conversation_id else ""
            return ToolResult(
                data={
                    "status": "ready",
                    "job_id": job.id,
                    "image_url": urls[0],
                    "image_urls": urls,
                    "prompt": job.prompt,
                    "credits_charged": job.charged,
                    "message": f"The image is ready{shown}.",
                },
                message=f"The image of {job.prompt} is ready{shown}.",
                image_url=urls[0],
                mime=job.assets[0].mime,
                title=job.prompt[:80],
            )
        if job.status in ("queued", "running"):
            return ToolResult(
                data={
                    "status": "generating",
                    "job_id": job.id,
                    "prompt": job.prompt,
                    "message": "The image is being created and will appear on the screen in a few seconds.",
                },
                message="The image is being created and will appear on the screen in a few seconds.",
            )
        error = ProviderError(f"the image could not be made: {job.error}; nothing was charged")
        error.code = job.error_code or error.code
        raise error

    async def _show_product_image(self, call: ToolCall, args: Any) -> ToolResult:
        hits = await self.library.search(call.account_id, args.query, limit=1)
        if not hits:
            return ToolResult(
                data={
                    "status": "not_found",
                    "query": args.query,
                    "message": f"Nothing in the library matches '{args.query}'.",
                },
                message=f"Nothing in the library matches '{args.query}'.",
            )
        asset = hits[0].asset
        shown = 0
        if call.conversation_id:
            shown = self.gallery.show_asset(call.account_id, call.conversation_id, asset, args.query, self.clock.now())
        self.uses.add(call.account_id, asset.id, "agent", actor=call.dialect, conversation_id=call.conversation_id)
        where = " on the caller's screen" if call.conversation_id else ""
        return ToolResult(
            data={
                "status": "shown",
                "asset_id": asset.id,
                "name": asset.name,
                "description": asset.description,
                "image_url": asset.url,
                "viewers": shown,
                "message": f"Showing {asset.name}{where}.",
            },
            message=f"Showing {asset.name}{where}.",
            image_url=asset.url,
            mime=asset.mime,
            title=asset.name,
        )
