"""Tools the voice agents call, each defined once and exported for every platform.

A tool is a name, a description, a list of parameters (from which both the pydantic validation model and
every platform's JSON schema are derived) and a handler. Platform envelopes (ElevenLabs, Vapi, Retell,
OpenAI, MCP) are the adapters' business (``tools/dialects``); here a call is a name, arguments and a
``ToolCall`` context. Each platform's envelope and tool format: ``tools.dialects``.
"""

from __future__ import annotations

import hashlib
from typing import Any

from core.catalog_settings import VIDEO_KINDS
from core.clock import Clock
from core.config import Settings
from core.errors import Forbidden, InvalidRequest, ProviderError
from core.gallery import Gallery
from core.generation import GenerationRequest, GenerationService, JobView
from core.library import Library, UseRecorder
from core.tool_model import Handler, Param, Tool, ToolCall, ToolResult, UnknownTool
from core.viewers import check_conversation_id

__all__ = ["Handler", "Param", "Tool", "ToolCall", "ToolRegistry", "ToolResult", "UnknownTool"]

#: What the agent hears while a video is made (they take a minute or two).
VIDEO_COMING = "The video is being made and will play on the caller's screen in a minute or two."

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
                "Optional image model; leave empty for the default. One of "
                f"{', '.join(n for n, m in settings.models.items() if m.kind == 'image')}, or the name of a model "
                "the business trained on its own photos.",
                max_length=64,
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


def generate_video_tool(settings: Settings, handler: Handler) -> Tool:
    """``generate_video``: a short video from a description, playing on the caller's screen when ready."""
    videos = [name for name, spec in settings.models.items() if spec.kind == "video"]
    ratios = settings.models[settings.generation.default_video_model].aspect_ratios
    return Tool(
        name="generate_video",
        title="Generate video",
        description=(
            "Make a short video clip (about 5 seconds) and play it on the caller's screen when it is ready, "
            "which takes a minute or two. Use it when the caller asks for a video or to see something move. "
            "The answer says it is being made: tell the caller, and keep talking meanwhile."
        ),
        params=[
            Param(
                "prompt", "string", "What the video shows, e.g. 'a slow pan across a white kitchen with black "
                "galaxy granite countertops'.", required=True, max_length=settings.prompts.max_length,
            ),
            Param("aspect_ratio", "string", "Optional shape: 16:9 wide (default), 9:16 tall, 1:1.", enum=tuple(ratios)),
            Param("model", "string", "Optional video model; leave empty for the default.", enum=tuple(videos)),
            CONVERSATION_ID,
        ],
        handler=handler,
    )  # fmt: skip


def edit_image_tool(settings: Settings, handler: Handler) -> Tool:
    """``edit_image``: upscale, remove the background of, restore the faces in, or animate a picture."""
    return Tool(
        name="edit_image",
        title="Edit image",
        description=(
            "Change a picture the caller has seen: 'upscale' makes it sharper and larger, 'remove_background' "
            "cuts the subject out, 'restore_face' fixes faces, 'animate' turns it into a short video (a minute or "
            "two). Without asset_id it works on the last picture shown in this call."
        ),
        params=[
            Param("operation", "string", "What to do with the picture.", required=True,
                  enum=tuple(settings.generation.operations)),
            Param("asset_id", "integer", "Optional library asset id of the picture; leave empty for the last "
                  "picture shown in this call.", minimum=1),
            Param("prompt", "string", "Optional, for animate: how the picture should move, e.g. 'steam rises, "
                  "slow zoom in'.", max_length=settings.prompts.max_length),
            CONVERSATION_ID,
        ],
        handler=handler,
    )  # fmt: skip


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
    """``generate_image``, ``show_product_image``, ``generate_video`` and ``edit_image``, and their handlers."""

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
                generate_video_tool(settings, self._generate_video),
                edit_image_tool(settings, self._edit_image),
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

    @staticmethod
    def _idempotency_key(call: ToolCall) -> str | None:
        """The job's idempotency key for a platform's call id: a retried tool call finds the first job."""
        if not call.call_id:
            return None
        key = f"tool:{call.dialect}:{call.call_id}"
        return key if len(key) <= 255 else "tool:" + hashlib.sha256(key.encode()).hexdigest()

    async def _run(self, call: ToolCall, request: GenerationRequest) -> ToolResult:
        """Submit the job and wait up to ``tools.max_wait_seconds`` for it; the agent's answer either way."""
        job = await self.generation.submit(call.account_id, request)
        if not job.done:
            job = await self.generation.wait(job.id, timeout=self.settings.tools.max_wait_seconds)
        return self._job_result(job)

    async def _generate_video(self, call: ToolCall, args: Any) -> ToolResult:
        return await self._run(call, GenerationRequest(
            prompt=args.prompt, aspect_ratio=args.aspect_ratio,
            model=args.model or self.settings.generation.default_video_model, conversation_id=call.conversation_id,
            source=f"tool:{call.dialect}", idempotency_key=self._idempotency_key(call),
        ))  # fmt: skip

    async def _edit_image(self, call: ToolCall, args: Any) -> ToolResult:
        asset_id = args.asset_id
        if asset_id is None:
            if not call.conversation_id:
                raise InvalidRequest("give asset_id, or call from a conversation that has shown a picture",
                                     field="asset_id")  # fmt: skip
            asset_id = await self.gallery.last_image_id(call.account_id, call.conversation_id)
            if asset_id is None:
                raise InvalidRequest("no picture has been shown in this call yet: give asset_id", field="asset_id")
        return await self._run(call, GenerationRequest(
            prompt=args.prompt or "", model=self.settings.generation.operations[args.operation],
            input_asset_id=asset_id, conversation_id=call.conversation_id, source=f"tool:{call.dialect}",
            idempotency_key=self._idempotency_key(call),
        ))  # fmt: skip

    async def _generate_image(self, call: ToolCall, args: Any) -> ToolResult:
        key = self._idempotency_key(call)
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
        return await self._run(call, request)

    def _job_result(self, job: JobView) -> ToolResult:
        """The agent's answer for a job: ready (with the URLs), still being made, or raise its failure."""
        noun = "video" if job.kind in VIDEO_KINDS else "image"
        if job.status == "succeeded":
            urls = [a.url for a in job.assets]
            shown = " on the caller's screen" if job.conversation_id else ""
            return ToolResult(
                data={
                    "status": "ready", "kind": job.kind, "job_id": job.id, f"{noun}_url": urls[0],
                    f"{noun}_urls": urls, "asset_ids": [a.id for a in job.assets], "prompt": job.prompt,
                    "credits_charged": job.charged, "charged_unit": job.unit, "message": f"The {noun} is ready{shown}.",
                },
                message=f"The {noun} of {job.prompt} is ready{shown}.",
                image_url=urls[0],
                mime=job.assets[0].mime,
                title=job.prompt[:80],
            )  # fmt: skip
        if job.status in ("queued", "running"):
            message = (
                VIDEO_COMING if noun == "video"
                else "The image is being created and will appear on the screen in a few seconds."
            )  # fmt: skip
            return ToolResult(
                data={"status": "generating", "kind": job.kind, "job_id": job.id, "prompt": job.prompt,
                      "message": message},
                message=message,
            )  # fmt: skip
        error = ProviderError(f"the {noun} could not be made: {job.error}; nothing was charged")
        error.code = job.error_code or error.code
        error.status = next((c.status for c in ProviderError.__subclasses__() if c.code == error.code), error.status)
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
        shown: int | None = 0
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
