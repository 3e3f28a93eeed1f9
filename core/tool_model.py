"""The shape of a voice tool: parameters, the model that validates them, their JSON Schema, and what a call
carries in and out. The tools themselves and their handlers are ``core.tools``."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from core.errors import InvalidRequest, NotFound, invalid_from_validation

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
