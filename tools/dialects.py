"""Tool-call dialects: each platform's envelope in, one ``ToolRegistry.call`` per call, its envelope out.

Sources: each platform's documentation (ElevenLabs server tools, Vapi tool-calls, Retell custom functions, OpenAI
function calls, MCP over Streamable HTTP with plain JSON responses).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

from aiohttp import web

from core.errors import InvalidRequest, ShowmeError, Unauthorized
from core.tools import Tool, ToolCall, ToolRegistry, ToolResult, UnknownTool
from tools.http import SERVICES, SETTINGS, Caller, authenticate, parse_json, read_body, read_json
from tools.metrics import METRICS

FORMATS = ("openai", "openai-responses", "elevenlabs", "vapi", "retell", "mcp")
MCP_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")


def _args_digest(arguments: Any) -> str:
    if isinstance(arguments, str):
        with contextlib.suppress(json.JSONDecodeError):
            arguments = json.loads(arguments)
    return hashlib.sha256(json.dumps(arguments, sort_keys=True, default=str).encode()).hexdigest()[:16]


async def _call(
    request: web.Request,
    name: str,
    arguments: Any,
    caller: Caller,
    dialect: str,
    call_id: str | None,
    conversation_id: str | None,
) -> ToolResult:
    """Run one call and count it (``showme_tool_calls_total{tool,dialect,outcome}``)."""
    metrics = request.app[METRICS]
    try:
        result = await request.app[SERVICES].tools.call(
            name,
            arguments,
            ToolCall(
                caller.account_id,
                caller.scopes,
                dialect,
                call_id=call_id,
                conversation_id=str(conversation_id) if conversation_id else None,
            ),
        )
    except ShowmeError as err:
        metrics.count_tool_call(name if not isinstance(err, UnknownTool) else "unknown", dialect, err.code)
        raise
    metrics.count_tool_call(name, dialect, str(result.data.get("status", "ok")))
    return result


def _one_line(text: str) -> str:
    return " ".join(text.split())


# -- ElevenLabs server tools and plain HTTP --------------------------------------------------------------


async def plain_tool(request: web.Request) -> web.Response:
    """``POST /tools/{tool_name}``: the JSON body is the arguments (ElevenLabs ``request_body_schema``), or the
    wrapped form ``{"tool_call_id", "tool_name", "parameters": {...}, "conversation_id"}``. Answers the tool's
    JSON with 200, or ``{"error": {...}}`` with a fitting status."""
    body = await read_json(request)
    caller = await authenticate(request)
    name = request.match_info["tool_name"]
    arguments: dict[str, Any] = body
    call_id = request.headers.get("X-Tool-Call-Id")
    conversation_id = body.get("conversation_id")
    if isinstance(body.get("parameters"), dict) and ("tool_name" in body or "tool_call_id" in body):
        arguments = dict(body["parameters"])
        call_id = body.get("tool_call_id") or call_id
        conversation_id = arguments.get("conversation_id") or conversation_id
    result = await _call(request, name, arguments, caller, "elevenlabs", call_id, conversation_id)
    return web.json_response(result.data)


# -- Vapi ---------------------------------------------------------------------------------------------------


def vapi_calls(message: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """``[(tool call id, name, arguments), …]`` from a Vapi ``tool-calls`` message, whichever of the
    documented places the sender used."""
    found: dict[str, tuple[str, str, Any]] = {}

    def add(call_id: Any, name: Any, arguments: Any) -> None:
        key = str(call_id or f"anon-{len(found)}")
        if name and key not in found:
            found[key] = (key, str(name), arguments if arguments is not None else {})

    for item in message.get("toolCallList") or message.get("toolCalls") or []:
        if not isinstance(item, dict):
            continue
        function = item.get("function") if isinstance(item.get("function"), dict) else {}
        arguments = function.get("arguments", item.get("arguments", item.get("parameters", function.get("parameters"))))
        add(item.get("id"), function.get("name") or item.get("name"), arguments)
    for item in message.get("toolWithToolCallList") or []:
        if not isinstance(item, dict):
            continue
        tool_call = item.get("toolCall") if isinstance(item.get("toolCall"), dict) else {}
        function = tool_call.get("function") if isinstance(tool_call.get("function"), dict) else {}
        arguments = function.get("arguments", function.get("parameters", tool_call.get("arguments")))
        name = function.get("name") or item.get("name") or (item.get("function") or {}).get("name")
        add(tool_call.get("id"), name, arguments)
    return list(found.values())


def _verify_vapi(request: web.Request, body: bytes) -> None:
    secret = request.app[SERVICES].secrets.vapi_webhook_secret
    if secret is None:
        raise Unauthorized("Vapi signature checking is on but VAPI_WEBHOOK_SECRET is not set")
    timestamp = request.headers.get("x-timestamp", "")
    signature = request.headers.get("x-signature", "")
    expected = hmac.new(secret.get_secret_value().encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    if not signature or not hmac.compare_digest(signature.removeprefix("sha256="), expected):
        raise Unauthorized("bad Vapi signature")


async def vapi_tool_calls(request: web.Request) -> web.Response:
    """``POST /tools/vapi``: always HTTP 200 with ``{"results": [{"name", "toolCallId", "result"|"error"}]}``."""
    raw = await read_body(request, request.app[SETTINGS].tools.max_body_bytes)
    body = parse_json(raw)
    message = body.get("message") if isinstance(body.get("message"), dict) else body
    calls = vapi_calls(message)
    if not calls:
        raise InvalidRequest("no tool calls in message.toolCallList", field="message.toolCallList")
    call = message.get("call") if isinstance(message.get("call"), dict) else {}
    conversation_id = call.get("id")
    try:
        if request.app[SETTINGS].tools.verify_vapi_signature:
            _verify_vapi(request, raw)
        caller = await authenticate(request)
    except ShowmeError as err:
        error = _one_line(f"{err.code}: {err.message}")
        return web.json_response({"results": [{"name": n, "toolCallId": i, "error": error} for i, n, _ in calls]})

    async def one(call_id: str, name: str, arguments: Any) -> dict[str, Any]:
        try:
            result = await _call(request, name, arguments, caller, "vapi", call_id, conversation_id)
        except ShowmeError as err:
            return {"name": name, "toolCallId": call_id, "error": _one_line(f"{err.code}: {err.message}")}
        return {"name": name, "toolCallId": call_id, "result": json.dumps(result.data, separators=(",", ":"))}

    results = await asyncio.gather(*(one(*c) for c in calls))
    return web.json_response({"results": results})


# -- Retell -------------------------------------------------------------------------------------------------


def _verify_retell(request: web.Request, body: bytes) -> None:
    key = request.app[SERVICES].secrets.retell_api_key
    if key is None:
        raise Unauthorized("Retell signature checking is on but RETELL_API_KEY is not set")
    header = request.headers.get("X-Retell-Signature", "")
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts.get("v", ""))
    except ValueError:
        raise Unauthorized("missing or malformed X-Retell-Signature") from None
    if abs(time.time() * 1000 - timestamp) > 5 * 60 * 1000:
        raise Unauthorized("stale X-Retell-Signature (more than 5 minutes off)")
    expected = hmac.new(key.get_secret_value().encode(), body + str(timestamp).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(parts.get("d", ""), expected):
        raise Unauthorized("bad X-Retell-Signature")


async def retell_function(request: web.Request) -> web.Response:
    """``POST /tools/retell``: ``{"name", "call": {"call_id"}, "args": {...}}`` (or the arguments at the root).

    Retell retries failed calls up to twice, so a call is de-duplicated on call id + name + arguments, and
    errors a retry cannot fix are answered 200 with ``{"status": "error", "error": {...}}`` for the agent."""
    raw = await read_body(request, request.app[SETTINGS].tools.max_body_bytes)
    body = parse_json(raw)
    if request.app[SETTINGS].tools.verify_retell_signature:
        _verify_retell(request, raw)
    caller = await authenticate(request)
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("name is required", field="name")
    call = body.get("call") if isinstance(body.get("call"), dict) else {}
    arguments = (
        body.get("args")
        if isinstance(body.get("args"), dict)
        else {k: v for k, v in body.items() if k not in ("name", "call")}
    )
    retell_call_id = call.get("call_id")
    call_id = f"{retell_call_id}:{name}:{_args_digest(arguments)}" if retell_call_id else None
    try:
        result = await _call(request, name, arguments, caller, "retell", call_id, retell_call_id)
    except (Unauthorized, UnknownTool):
        raise
    except ShowmeError as err:
        return web.json_response({"status": "error", "error": {"code": err.code, "message": err.message}})
    return web.json_response(result.data)


# -- OpenAI function calls ----------------------------------------------------------------------------------


def _openai_items(body: dict[str, Any]) -> tuple[str, list[tuple[str, str, Any]]]:
    """``(style, [(call id, name, arguments), …])``: ``responses`` for function_call items, ``chat`` for
    Chat Completions tool_calls."""
    if body.get("type") == "function_call":
        return "responses", [(str(body.get("call_id")), str(body.get("name")), body.get("arguments"))]
    for key in ("output", "input", "items"):
        if isinstance(body.get(key), list):
            items = [i for i in body[key] if isinstance(i, dict) and i.get("type") == "function_call"]
            return "responses", [(str(i.get("call_id")), str(i.get("name")), i.get("arguments")) for i in items]
    message = body
    if isinstance(body.get("choices"), list) and body["choices"]:
        message = body["choices"][0].get("message") or {}
    elif isinstance(body.get("message"), dict):
        message = body["message"]
    calls = []
    for item in message.get("tool_calls") or []:
        function = item.get("function") if isinstance(item, dict) else None
        if isinstance(function, dict):
            calls.append((str(item.get("id")), str(function.get("name")), function.get("arguments")))
    return "chat", calls


async def openai_function_calls(request: web.Request) -> web.Response:
    """``POST /tools/openai``: function_call items in, function_call_output items out (Responses API and
    Realtime), or Chat Completions ``tool_calls`` in, ``role: tool`` messages out."""
    body = await read_json(request)
    caller = await authenticate(request)
    style, calls = _openai_items(body)
    if not calls:
        raise InvalidRequest("no function calls found (expected function_call items or tool_calls)", field="body")
    conversation_id = body.get("conversation_id") or request.headers.get("X-Conversation-Id")

    async def one(call_id: str, name: str, arguments: Any) -> str:
        try:
            result = await _call(request, name, arguments, caller, "openai", call_id, conversation_id)
        except ShowmeError as err:
            return json.dumps({"status": "error", "error": {"code": err.code, "message": err.message}})
        return json.dumps(result.data, separators=(",", ":"))

    outputs = await asyncio.gather(*(one(*c) for c in calls))
    pairs = list(zip(calls, outputs, strict=True))
    if style == "chat":
        return web.json_response({"messages": [{"role": "tool", "tool_call_id": c[0], "content": o} for c, o in pairs]})
    return web.json_response(
        {"output": [{"type": "function_call_output", "call_id": c[0], "output": o} for c, o in pairs]}
    )


# -- MCP ----------------------------------------------------------------------------------------------------


def _rpc_error(request_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


async def _mcp_one(request: web.Request, caller: Caller, message: Any) -> dict[str, Any] | None:
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0" or not isinstance(message.get("method"), str):
        return _rpc_error(message.get("id") if isinstance(message, dict) else None, -32600, "invalid request")
    method, request_id = message["method"], message.get("id")
    params = message.get("params") if isinstance(message.get("params"), dict) else {}
    if "id" not in message:  # a notification (notifications/initialized, …): nothing to answer
        return None
    services = request.app[SERVICES]
    if method == "initialize":
        asked = params.get("protocolVersion")
        return {
            "jsonrpc": "2.0",
            "id": request_id,
            "result": {
                "protocolVersion": asked if asked in MCP_VERSIONS else MCP_VERSIONS[0],
                "capabilities": {"tools": {"listChanged": False}},
                "serverInfo": {"name": "showme", "title": "showme", "version": "0.1.0"},
                "instructions": MCP_INSTRUCTIONS,
            },
        }
    if method == "ping":
        return {"jsonrpc": "2.0", "id": request_id, "result": {}}
    if method == "tools/list":
        return {
            "jsonrpc": "2.0",
            "id": request_id,
            "result": export_tools(services.tools, "mcp", request.app[SETTINGS].server.public_url),
        }
    if method == "tools/call":
        name = params.get("name")
        if not isinstance(name, str) or name not in services.tools.tools:
            return _rpc_error(request_id, -32602, f"unknown tool: {name}")
        arguments = params.get("arguments") or {}
        call_header = request.headers.get("X-Call-Id")
        call_id = f"{call_header}:{name}:{_args_digest(arguments)}" if call_header else None
        try:
            result = await _call(request, name, arguments, caller, "mcp", call_id, call_header)
        except ShowmeError as err:
            return {
                "jsonrpc": "2.0",
                "id": request_id,
                "result": {"content": [{"type": "text", "text": f"{err.code}: {err.message}"}], "isError": True},
            }
        content: list[dict[str, Any]] = [{"type": "text", "text": json.dumps(result.data)}]
        if result.image_url:
            content.append(
                {
                    "type": "resource_link",
                    "uri": result.image_url,
                    "name": result.title or name,
                    "mimeType": result.mime or "image/webp",
                }
            )
        return {
            "jsonrpc": "2.0",
            "id": request_id,
            "result": {"content": content, "structuredContent": result.data, "isError": False},
        }
    return _rpc_error(request_id, -32601, f"method not found: {method}")


async def mcp_endpoint(request: web.Request) -> web.Response:
    """``POST /mcp``: JSON-RPC 2.0 (single or batch), answered as plain JSON (Streamable HTTP allows it)."""
    raw = await read_body(request, request.app[SETTINGS].tools.max_body_bytes)
    try:
        message = json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return web.json_response(_rpc_error(None, -32700, "parse error: body is not valid JSON"), status=400)
    try:
        caller = await authenticate(request)
    except ShowmeError as err:
        return web.json_response(
            _rpc_error(message.get("id") if isinstance(message, dict) else None, -32001, err.message),
            status=err.status,
            headers={"WWW-Authenticate": "Bearer"} if err.status == 401 else None,
        )
    headers = {"Mcp-Session-Id": request.headers.get("Mcp-Session-Id") or uuid.uuid4().hex}
    if isinstance(message, list):
        answers = [a for a in await asyncio.gather(*(_mcp_one(request, caller, m) for m in message)) if a]
        return web.json_response(answers, headers=headers) if answers else web.Response(status=202, headers=headers)
    answer = await _mcp_one(request, caller, message)
    if answer is None:
        return web.Response(status=202, headers=headers)
    return web.json_response(answer, headers=headers)


# -- tool definitions for each platform ---------------------------------------------------------------


SAY_WHILE_WAITING = "One moment, I'm putting that on your screen."


def _openai(tool: Tool, base: str, auth: str) -> dict[str, Any]:
    function = {"name": tool.name, "description": tool.description, "parameters": tool.json_schema(strict=True)}
    return {"type": "function", "function": {**function, "strict": True}}


def _openai_responses(tool: Tool, base: str, auth: str) -> dict[str, Any]:
    schema = tool.json_schema(strict=True)
    return {"type": "function", "name": tool.name, "description": tool.description, "parameters": schema,
            "strict": True}  # fmt: skip


def _vapi(tool: Tool, base: str, auth: str) -> dict[str, Any]:
    function = {"name": tool.name, "description": tool.description, "parameters": tool.json_schema(llm_only=True)}
    return {
        "type": "function",
        "function": function,
        "server": {"url": f"{base}/tools/vapi", "headers": {"Authorization": auth}, "timeoutSeconds": 20},
        "messages": [{"type": "request-start", "content": SAY_WHILE_WAITING}],
    }


def _retell(tool: Tool, base: str, auth: str) -> dict[str, Any]:
    return {
        "type": "custom", "name": tool.name, "description": tool.description, "url": f"{base}/tools/retell",
        "headers": {"Authorization": auth}, "parameters": tool.json_schema(llm_only=True),
        "speak_during_execution": True, "speak_after_execution": True,
        "execution_message_description": SAY_WHILE_WAITING, "timeout_ms": 20000,
    }  # fmt: skip


def _mcp(tool: Tool, base: str, auth: str) -> dict[str, Any]:
    return {"name": tool.name, "title": tool.title, "description": tool.description, "inputSchema": tool.json_schema()}


MCP_INSTRUCTIONS = (
    "Call show_product_image for the business's own products and generate_image for anything else the caller "
    "should see; generate_video for a short clip; edit_image to upscale, cut out, restore or animate a picture "
    "already shown. Everything appears on the caller's screen."
)


def export_tools(registry: ToolRegistry, fmt: str, base_url: str, api_key: str | None = None) -> Any:
    """Tool definitions for platform ``fmt`` (one of ``FORMATS``), pointing at ``base_url``, in each platform's
    own tool format (as each platform documents it); MCP's is ``{"tools": [...]}``, the others a list.

    ``api_key`` is written into the auth headers; without it a placeholder stands there.

    Raises:
        InvalidRequest: an unknown format (field ``format``).
    """
    shapes = {"openai": _openai, "openai-responses": _openai_responses, "elevenlabs": _elevenlabs, "vapi": _vapi,
              "retell": _retell, "mcp": _mcp}  # fmt: skip
    shape = shapes.get(fmt)
    if shape is None:
        raise InvalidRequest(f"format must be one of {', '.join(FORMATS)}", field="format")
    base, auth = base_url.rstrip("/"), f"Bearer {api_key or '<SHOWME_API_KEY>'}"
    definitions = [shape(t, base, auth) for t in registry.tools.values()]
    return {"tools": definitions} if fmt == "mcp" else definitions


def _elevenlabs(tool: Tool, base: str, auth: str) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for p in tool.params:
        prop: dict[str, Any] = {"type": p.type}
        if p.dynamic_variable:
            prop["dynamic_variable"] = p.dynamic_variable
        else:
            prop["description"] = p.description
            if p.enum:
                prop["enum"] = list(p.enum)
        properties[p.name] = prop
    return {
        "type": "webhook",
        "name": tool.name,
        "description": tool.description,
        "response_timeout_secs": 20,
        "api_schema": {
            "url": f"{base}/tools/{tool.name}",
            "method": "POST",
            "request_headers": {"Authorization": auth},
            "request_body_schema": {
                "type": "object",
                "properties": properties,
                "required": [p.name for p in tool.params if p.required],
            },
        },
    }
