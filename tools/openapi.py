"""The HTTP API as operations, and the OpenAPI 3.1 document generated from them (spec.openapis.org/oas/v3.1.0).

Each route is an ``Operation``: its handler plus the pydantic models that validate its body and query string
and the types its answers are built from. ``tools.routes`` lists them and registers them with aiohttp;
``document`` turns the same list into OpenAPI, with JSON Schema 2020-12 from pydantic, so the document cannot
say something the handlers do not do. WebSocket routes are outside OpenAPI and listed in its description.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, TypeAdapter

from tools.schemas import ErrorBody

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Auth = Literal["none", "api_key", "optional_api_key", "signature"]

JSON = "application/json"
HTML = "text/html"

#: Fields the JSON answers leave out of the types they are built from (a file's path on the server's disk).
INTERNAL_FIELDS: dict[str, set[str]] = {"AssetView": {"file_path"}}

ERROR_TEXT = {
    400: "The request is invalid; `error.field` names the field.",
    401: "Missing, unknown or revoked API key.",
    402: "Not enough credits or session quota; nothing was charged.",
    403: "The API key lacks the scope, or the resource belongs to another account.",
    404: "No such resource.",
    409: "The request conflicts with the current state (for example, a code redeemed already).",
    413: "The body is larger than the server accepts.",
    422: "The prompt or input was refused; nothing was charged.",
    429: "Over a rate limit (of the account or the client address); nothing was done or charged. `Retry-After` "
    "says when to try again.",
}

#: Routes no rate limit applies to (``tools.limits.EXEMPT``; webhooks are not limited either).
UNLIMITED = frozenset({"/healthz", "/readyz", "/metrics"})


@dataclass(frozen=True)
class Answer:
    """One documented response: ``body`` a pydantic model, a dataclass, a JSON Schema dict or None (no body)."""

    description: str
    body: Any = None
    media_type: str = JSON
    other_media_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class Operation:
    """One route: ``method`` and aiohttp ``path`` (``{name}`` or ``{name:regex}`` parameters), its ``handler``,
    who may call it (``auth``), the models of its body and query string, and its answers by status."""

    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    responses: Mapping[int, Answer]
    auth: Auth = "api_key"
    body: Any = None
    body_media_type: str = JSON
    query: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    websocket: bool = False

    @property
    def openapi_path(self) -> str:
        """The path with aiohttp's ``{name:regex}`` written as OpenAPI's ``{name}``."""
        return re.sub(r"\{(\w+):[^}]+\}", r"{\1}", self.path)

    def register(self, router: web.UrlDispatcher) -> None:
        """Add the route to an aiohttp router."""
        router.add_route(self.method, self.path, self.handler)


class Schemas:
    """``components.schemas``: each model, dataclass and their nested types once, referenced by name."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def of(self, body: Any, mode: Literal["validation", "serialization"]) -> dict[str, Any]:
        """A schema for ``body``: a ``$ref`` for named types, the dict itself for a raw JSON Schema."""
        if isinstance(body, dict):
            return body
        schema = TypeAdapter(body).json_schema(mode=mode, ref_template="#/components/schemas/{model}")
        for name, definition in schema.pop("$defs", {}).items():
            self._add(name, definition)
        name = getattr(body, "__name__", None)
        if name is None or schema.get("type") != "object":
            return schema
        self._add(name, schema)
        return {"$ref": f"#/components/schemas/{name}"}

    def _add(self, name: str, schema: dict[str, Any]) -> None:
        for hidden in INTERNAL_FIELDS.get(name, ()):
            schema.get("properties", {}).pop(hidden, None)
            if hidden in schema.get("required", []):
                schema["required"] = [r for r in schema["required"] if r != hidden]
        known = self.components.setdefault(name, schema)
        if known != schema:
            raise ValueError(f"two different schemas are named {name!r}")


def _parameters(op: Operation) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for name in re.findall(r"\{(\w+)", op.path)
    ]
    if op.query is not None:
        schema = op.query.model_json_schema()
        required = set(schema.get("required", []))
        for name, prop in schema.get("properties", {}).items():
            prop = {k: v for k, v in prop.items() if k != "title"}
            described = {"description": prop.pop("description")} if "description" in prop else {}
            params.append({"name": name, "in": "query", "required": name in required, "schema": prop, **described})
    for name, description in op.headers.items():
        params.append({"name": name, "in": "header", "required": False, "schema": {"type": "string"},
                       "description": description})  # fmt: skip
    return params


def _error_statuses(op: Operation) -> list[int]:
    statuses = set(op.errors)
    if op.body is not None or op.query is not None:
        statuses.add(400)
    if op.body is not None:
        statuses.add(413)
    if op.auth in ("api_key", "optional_api_key"):
        statuses.update((401, 403))
    if "{" in op.path:
        statuses.add(404)
    if op.path not in UNLIMITED and not op.path.startswith("/webhooks/"):
        statuses.add(429)
    return sorted(statuses)


def operation_object(op: Operation, schemas: Schemas) -> dict[str, Any]:
    """The OpenAPI Operation Object of ``op``."""
    responses: dict[str, Any] = {}
    for status, answer in op.responses.items():
        response: dict[str, Any] = {"description": answer.description}
        if answer.body is not None:
            response["content"] = {answer.media_type: {"schema": schemas.of(answer.body, "serialization")}}
        elif answer.media_type != JSON:
            types = (answer.media_type, *answer.other_media_types)
            response["content"] = {media_type: {"schema": {"type": "string"}} for media_type in types}
        responses[str(status)] = response
    error = schemas.of(ErrorBody, "serialization")
    for status in _error_statuses(op):
        responses.setdefault(str(status), {"description": ERROR_TEXT.get(status, "Error."),
                                           "content": {JSON: {"schema": error}}})  # fmt: skip
        if status == 429:
            responses["429"]["headers"] = {"Retry-After": {"description": "seconds", "schema": {"type": "integer"}}}
    doc = (op.handler.__doc__ or "").strip()
    result: dict[str, Any] = {
        "operationId": f"{op.method.lower()}_{re.sub(r'[^a-zA-Z0-9]+', '_', op.openapi_path).strip('_')}",
        "summary": op.summary,
        "tags": [op.tag],
        "responses": responses,
    }
    if doc:
        result["description"] = doc
    if params := _parameters(op):
        result["parameters"] = params
    if op.body is not None:
        body_schema = schemas.of(op.body, "validation")
        result["requestBody"] = {"required": True, "content": {op.body_media_type: {"schema": body_schema}}}
    if op.auth == "none" or op.auth == "signature":
        result["security"] = []
    elif op.auth == "optional_api_key":
        result["security"] = [{"bearerAuth": []}, {"apiKeyHeader": []}, {}]
    return result


def document(operations: list[Operation], *, version: str, server_url: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``operations`` (WebSocket routes are named in the description only)."""
    schemas = Schemas()
    paths: dict[str, dict[str, Any]] = {}
    sockets = [op.path for op in operations if op.websocket]
    for op in operations:
        if not op.websocket:
            paths.setdefault(op.openapi_path, {})[op.method.lower()] = operation_object(op, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "showme",
            "version": version,
            "description": (
                "AI images and videos shown mid-conversation: voice-agent tools, the live call gallery, credits "
                "and the media library. Authenticate with `Authorization: Bearer <API key>` (or `X-Api-Key`). "
                'Errors are `{"error": {"code", "message", "field"?}}`. WebSocket routes (not described '
                f"by OpenAPI): {', '.join(sockets)}."
            ),
        },
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.components.items())),
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "a showme API key"},
                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
            },
        },
        "security": [{"bearerAuth": []}, {"apiKeyHeader": []}],
    }
