"""Every tool-call dialect through the real server, with the platforms' documented payloads."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.tools.conftest import Server, form, png


async def _next(ws: Any, kind: str, timeout: float = 10) -> dict[str, Any]:
    while True:
        event = await ws.receive_json(timeout=timeout)
        if event["type"] == kind:
            return event


async def test_elevenlabs_bare_body_shows_image_to_viewers_and_charges_once(server: Server) -> None:
    ws = await server.viewer("conv_01")
    response = await server.client.post(
        "/tools/generate_image",
        headers=server.auth,
        json={"prompt": "black galaxy granite kitchen", "aspect_ratio": "16:9", "conversation_id": "conv_01"},
    )
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "ready" and body["image_url"].startswith("http://127.0.0.1:8080/media/")
    started = await _next(ws, "generation_started")
    generated = await _next(ws, "image_generated")
    assert started["job_id"] == generated["job_id"] == body["job_id"] and started["v"] == 1
    assert generated["url"] == body["image_url"] and generated["prompt"] == "black galaxy granite kitchen"
    media = await server.client.get(generated["url"].replace("http://127.0.0.1:8080", ""))
    assert media.status == 200 and media.content_type == "image/webp"
    assert await server.balance() == 9
    await ws.close()


async def test_elevenlabs_wrapped_form_and_duplicate_call_id(server: Server) -> None:
    payload = {
        "tool_call_id": "toolu_123",
        "tool_name": "generate_image",
        "conversation_id": "conv_02",
        "parameters": {"prompt": "white oak cabinets"},
    }
    first, second = await asyncio.gather(
        server.client.post("/tools/generate_image", headers=server.auth, json=payload),
        server.client.post("/tools/generate_image", headers=server.auth, json=payload),
    )
    a, b = await first.json(), await second.json()
    assert a["job_id"] == b["job_id"] and a["status"] == "ready"
    assert len(server.fake.creates) == 1 and await server.balance() == 9


async def test_vapi_tool_calls_all_argument_placements(server: Server) -> None:
    ws = await server.viewer("call_vapi_1")
    message = {
        "message": {
            "type": "tool-calls",
            "call": {"id": "call_vapi_1"},
            "toolCallList": [
                {
                    "id": "tc_1",
                    "type": "function",
                    "function": {"name": "generate_image", "arguments": {"prompt": "quartz island"}},
                },
                {
                    "id": "tc_2",
                    "type": "function",
                    "function": {"name": "generate_image", "arguments": json.dumps({"prompt": "marble floor"})},
                },
            ],
            "toolWithToolCallList": [
                {
                    "name": "generate_image",
                    "toolCall": {
                        "id": "tc_3",
                        "function": {"name": "generate_image", "parameters": {"prompt": "brass handles"}},
                    },
                },
                {
                    "name": "generate_image",
                    "toolCall": {
                        "id": "tc_1",
                        "function": {"name": "generate_image", "parameters": {"prompt": "quartz island"}},
                    },
                },
            ],
        }
    }
    response = await server.client.post("/tools/vapi", headers=server.auth, json=message)
    assert response.status == 200
    results = (await response.json())["results"]
    assert [r["toolCallId"] for r in results] == ["tc_1", "tc_2", "tc_3"]
    assert all(r["name"] == "generate_image" and "\n" not in r["result"] for r in results)
    assert {json.loads(r["result"])["status"] for r in results} == {"ready"}
    seen = {(await _next(ws, "image_generated"))["prompt"] for _ in range(3)}
    assert seen == {"quartz island", "marble floor", "brass handles"}
    # Vapi retries the same toolCallId: same job, charged once.
    again = await server.client.post("/tools/vapi", headers=server.auth, json=message)
    assert [json.loads(r["result"])["job_id"] for r in (await again.json())["results"]] == [
        json.loads(r["result"])["job_id"] for r in results
    ]
    assert len(server.fake.creates) == 3 and await server.balance() == 7
    await ws.close()


async def test_vapi_errors_are_http_200_in_envelope(server: Server) -> None:
    message = {
        "message": {
            "type": "tool-calls",
            "call": {"id": "c"},
            "toolCallList": [
                {"id": "tc_9", "function": {"name": "generate_image", "arguments": {"prompt": "x y"}}},
                {"id": "tc_10", "function": {"name": "make_coffee", "arguments": {}}},
                {"id": "tc_11", "function": {"name": "generate_image", "arguments": {"style": "cubist"}}},
            ],
        }
    }
    response = await server.client.post("/tools/vapi", headers={"Authorization": "Bearer sm_wrong"}, json=message)
    assert response.status == 200
    assert all(r["error"].startswith("unauthorized") for r in (await response.json())["results"])
    response = await server.client.post("/tools/vapi", headers={"X-Vapi-Secret": server.key}, json=message)
    results = (await response.json())["results"]
    assert "result" in results[0]
    assert results[1]["error"].startswith("unknown_tool") and results[2]["error"].startswith("invalid_request")
    assert "prompt is required" in results[2]["error"]


async def test_vapi_hmac_signature_when_configured(server: Server) -> None:
    import hashlib
    import hmac

    server.services.settings.tools.verify_vapi_signature = True
    body = json.dumps(
        {
            "message": {
                "type": "tool-calls",
                "toolCallList": [
                    {"id": "s1", "function": {"name": "show_product_image", "arguments": {"query": "granite"}}}
                ],
            }
        }
    ).encode()
    signature = hmac.new(b"vapi_secret", b"1700000000." + body, hashlib.sha256).hexdigest()
    headers = {**server.auth, "Content-Type": "application/json", "x-timestamp": "1700000000"}
    good = await server.client.post("/tools/vapi", data=body, headers={**headers, "x-signature": signature})
    assert "result" in (await good.json())["results"][0]
    bad = await server.client.post("/tools/vapi", data=body, headers={**headers, "x-signature": "0" * 64})
    assert (await bad.json())["results"][0]["error"].startswith("unauthorized")


async def test_retell_custom_function_deduplicates_retries(server: Server) -> None:
    payload = {
        "name": "generate_image",
        "call": {"call_id": "call_retell_1", "agent_id": "ag"},
        "args": {"prompt": "a walnut desk", "conversation_id": "call_retell_1"},
    }
    first = await (await server.client.post("/tools/retell", headers=server.auth, json=payload)).json()
    retry = await (await server.client.post("/tools/retell", headers=server.auth, json=payload)).json()
    assert first["status"] == "ready" and retry["job_id"] == first["job_id"]
    other = {**payload, "args": {"prompt": "a maple desk"}}
    assert (await (await server.client.post("/tools/retell", headers=server.auth, json=other)).json())[
        "job_id"
    ] != first["job_id"]
    assert len(server.fake.creates) == 2 and await server.balance() == 8
    at_root = {"name": "show_product_image", "call": {"call_id": "c2"}, "query": "nothing like this"}
    body = await (await server.client.post("/tools/retell", headers=server.auth, json=at_root)).json()
    assert body["status"] == "not_found"
    bad = await server.client.post("/tools/retell", headers={"Authorization": "Bearer nope"}, json=payload)
    assert bad.status == 401 and (await bad.json())["error"]["code"] == "unauthorized"
    invalid = await server.client.post(
        "/tools/retell", headers=server.auth, json={**payload, "args": {"prompt": "x", "num_outputs": 9}}
    )
    assert invalid.status == 200 and (await invalid.json())["error"]["code"] == "invalid_request"


async def test_retell_signature_when_configured(server: Server) -> None:
    import hashlib
    import hmac
    import time

    server.services.settings.tools.verify_retell_signature = True
    body = json.dumps({"name": "show_product_image", "call": {"call_id": "c"}, "args": {"query": "x"}}).encode()
    now = int(time.time() * 1000)
    digest = hmac.new(b"retell_key", body + str(now).encode(), hashlib.sha256).hexdigest()
    headers = {**server.auth, "Content-Type": "application/json"}
    ok = await server.client.post(
        "/tools/retell", data=body, headers={**headers, "X-Retell-Signature": f"v={now},d={digest}"}
    )
    assert ok.status == 200
    stale = now - 10 * 60 * 1000
    old = hmac.new(b"retell_key", body + str(stale).encode(), hashlib.sha256).hexdigest()
    for header in (f"v={now},d={'0' * 64}", f"v={stale},d={old}", ""):
        response = await server.client.post(
            "/tools/retell", data=body, headers={**headers, "X-Retell-Signature": header}
        )
        assert response.status == 401


async def test_openai_responses_and_chat_completions(server: Server) -> None:
    item = {
        "type": "function_call",
        "call_id": "call_abc",
        "name": "generate_image",
        "arguments": json.dumps(
            {
                "prompt": "a terrazzo floor",
                "style": None,
                "aspect_ratio": None,
                "model": None,
                "num_outputs": None,
                "conversation_id": "rt_1",
            }
        ),
    }
    response = await server.client.post("/tools/openai", headers=server.auth, json={"output": [item]})
    [output] = (await response.json())["output"]
    assert output["type"] == "function_call_output" and output["call_id"] == "call_abc"
    first = json.loads(output["output"])
    assert first["status"] == "ready"
    single = await (await server.client.post("/tools/openai", headers=server.auth, json=item)).json()
    assert json.loads(single["output"][0]["output"])["job_id"] == first["job_id"]
    chat = {
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "call_chat_1",
                            "type": "function",
                            "function": {"name": "show_product_image", "arguments": '{"query": "granite"}'},
                        }
                    ],
                }
            }
        ]
    }
    messages = (await (await server.client.post("/tools/openai", headers=server.auth, json=chat)).json())["messages"]
    assert messages[0]["role"] == "tool" and messages[0]["tool_call_id"] == "call_chat_1"
    assert json.loads(messages[0]["content"])["status"] == "not_found"
    broken = {**item, "call_id": "call_bad", "arguments": "{not json"}
    out = (await (await server.client.post("/tools/openai", headers=server.auth, json=broken)).json())["output"][0]
    assert json.loads(out["output"])["error"]["code"] == "invalid_request"
    assert len(server.fake.creates) == 1 and await server.balance() == 9


async def test_mcp_initialize_list_call(server: Server) -> None:
    async def rpc(payload: Any, headers: dict[str, str] | None = None) -> Any:
        response = await server.client.post("/mcp", json=payload, headers={**server.auth, **(headers or {})})
        return response.status, (await response.json() if response.status != 202 else None)

    status, init = await rpc(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        }
    )
    assert status == 200 and init["result"]["protocolVersion"] == "2025-06-18"
    assert "tools" in init["result"]["capabilities"]
    assert (await rpc({"jsonrpc": "2.0", "method": "notifications/initialized"}))[0] == 202
    _, listing = await rpc({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    tools = {t["name"]: t for t in listing["result"]["tools"]}
    assert set(tools) == {"generate_image", "show_product_image", "generate_video", "edit_image"}
    assert tools["edit_image"]["inputSchema"]["required"] == ["operation"]
    assert tools["generate_image"]["inputSchema"]["required"] == ["prompt"]
    call = {
        "jsonrpc": "2.0",
        "id": 3,
        "method": "tools/call",
        "params": {"name": "generate_image", "arguments": {"prompt": "a copper sink"}},
    }
    _, result = await rpc(call, {"X-Call-Id": "vapi-call-7"})
    content = result["result"]["content"]
    assert result["result"]["isError"] is False and content[0]["type"] == "text"
    assert content[1]["type"] == "resource_link" and content[1]["mimeType"] == "image/webp"
    _, again = await rpc({**call, "id": 9}, {"X-Call-Id": "vapi-call-7"})  # a new session, same call
    assert again["result"]["structuredContent"]["job_id"] == result["result"]["structuredContent"]["job_id"]
    assert await server.balance() == 9
    _, unknown = await rpc({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "nope"}})
    assert unknown["error"]["code"] == -32602
    _, bad_args = await rpc(
        {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "generate_image", "arguments": {}}}
    )
    assert bad_args["result"]["isError"] is True and "prompt is required" in bad_args["result"]["content"][0]["text"]
    _, missing = await rpc({"jsonrpc": "2.0", "id": 6, "method": "resources/list"})
    assert missing["error"]["code"] == -32601
    unauthorized = await server.client.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert unauthorized.status == 401 and (await unauthorized.json())["error"]["code"] == -32001
    parse = await server.client.post("/mcp", data=b"{oops", headers=server.auth)
    assert parse.status == 400 and (await parse.json())["error"]["code"] == -32700


async def test_show_product_image_pushes_library_match(server: Server) -> None:
    granite = form(
        png((20, 20, 20)),
        name="Black Galaxy Granite",
        tags="granite, black, countertop",
        description="Polished black granite with gold flecks",
    )
    upload = await server.client.post("/api/v1/library", headers=server.auth, data=granite)
    assert upload.status == 201
    asset = (await upload.json())["asset"]
    await server.client.post(
        "/api/v1/library",
        headers=server.auth,
        data=form(png((200, 200, 200)), name="Carrara Marble", tags="marble, white"),
    )
    ws = await server.viewer("conv_lib")
    response = await server.client.post(
        "/tools/show_product_image",
        headers=server.auth,
        json={"query": "black galaxy granite", "conversation_id": "conv_lib"},
    )
    body = await response.json()
    assert body["status"] == "shown" and body["asset_id"] == asset["id"]
    assert body["viewers"] == (None if server.services.hub.shared else 1)  # replicas' viewers are not counted
    event = await _next(ws, "image_from_library")
    assert event["asset_id"] == asset["id"] and event["name"] == "Black Galaxy Granite"
    nothing = await server.client.post(
        "/tools/show_product_image",
        headers=server.auth,
        json={"query": "purple velvet sofa", "conversation_id": "conv_lib"},
    )
    assert (await nothing.json())["status"] == "not_found"
    await server.services.uses.flush()
    fresh = await server.services.library.get(server.account_id, asset["id"])
    assert fresh.id == asset["id"]
    async with server.services.db.read() as session:
        from sqlalchemy import select

        from storage.models import Asset

        assert await session.scalar(select(Asset.use_count).where(Asset.id == asset["id"])) == 1
    # A viewer connecting later gets it in the history.
    late = await server.client.ws_connect(
        f"/ws/calls/conv_lib?token={server.services.viewer_tokens.mint(server.account_id, 'conv_lib')[0]}"
    )
    history = await late.receive_json(timeout=5)
    assert [i["type"] for i in history["items"]] == ["image_from_library"]
    await ws.close()
    await late.close()


async def test_bad_input_gets_clear_errors_never_500(server: Server) -> None:
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        (
            "/tools/generate_image",
            {"data": b"{not json", "headers": {**server.auth, "Content-Type": "application/json"}},
            400,
            "invalid_request",
        ),
        ("/tools/generate_image", {"json": {"prompt": "x" * 2_000_000}, "headers": server.auth}, 413, "body_too_large"),
        (
            "/tools/generate_image",
            {"json": {"prompt": "a cat", "aspect_ratio": "5:1"}, "headers": server.auth},
            400,
            "invalid_request",
        ),
        ("/tools/generate_image", {"json": {"prompt": 5}, "headers": server.auth}, 400, "invalid_request"),
        ("/tools/generate_image", {"json": ["a", "list"], "headers": server.auth}, 400, "invalid_request"),
        ("/tools/make_coffee", {"json": {}, "headers": server.auth}, 404, "unknown_tool"),
        ("/tools/generate_image", {"json": {"prompt": "a cat"}}, 401, "unauthorized"),
        (
            "/tools/generate_image",
            {"json": {"prompt": "a cat"}, "headers": {"X-Api-Key": "sm_nope"}},
            401,
            "unauthorized",
        ),
        ("/tools/generate_image", {"json": {"prompt": "lots of gore"}, "headers": server.auth}, 422, "prompt_refused"),
        ("/tools/openai", {"json": {"nothing": 1}, "headers": server.auth}, 400, "invalid_request"),
    ]
    for path, kwargs, status, code in cases:
        response = await server.client.post(path, **kwargs)
        assert response.status == status, (path, await response.text())
        body = await response.json()
        assert body["error"]["code"] == code, body
    field = await server.client.post(
        "/tools/generate_image", json={"prompt": "a cat", "num_outputs": 7}, headers=server.auth
    )
    assert "num_outputs" in (await field.json())["error"]["message"]
    key = await server.services.accounts.create_api_key(server.account_id, scopes=("library",))
    forbidden = await server.client.post(
        "/tools/generate_image", json={"prompt": "a cat"}, headers={"Authorization": f"Bearer {key.key}"}
    )
    assert forbidden.status == 403 and (await forbidden.json())["error"]["code"] == "forbidden"
    assert await server.balance() == 10 and server.fake.creates == []


async def test_a_body_arriving_in_pieces_is_read_whole(server: Server) -> None:
    # A Vapi message carries the call's transcript so far, often tens of kilobytes: it reaches the server in
    # several TCP segments, or chunked. The whole body is parsed, and one past the limit is still refused.
    message = {
        "message": {
            "type": "tool-calls",
            "call": {"id": "call_pieces"},
            "artifact": {"messages": [{"role": "user", "message": "tell me about granite " * 40}] * 60},
            "toolCallList": [
                {
                    "id": "call_p1",
                    "type": "function",
                    "function": {"name": "show_product_image", "arguments": {"query": "granite"}},
                }
            ],
        }
    }
    raw = json.dumps(message).encode()
    assert len(raw) > 50_000

    async def pieces(data: bytes, size: int = 4096) -> Any:
        for start in range(0, len(data), size):
            yield data[start : start + size]
            await asyncio.sleep(0)

    headers = {**server.auth, "Content-Type": "application/json"}
    response = await server.client.post("/tools/vapi", headers=headers, data=pieces(raw))
    body = await response.json()
    assert response.status == 200 and body["results"][0]["toolCallId"] == "call_p1", body
    assert json.loads(body["results"][0]["result"])["status"] == "not_found"
    limit = server.services.settings.tools.max_body_bytes
    too_big = await server.client.post("/tools/generate_image", headers=headers, data=pieces(b" " * (limit + 10)))
    assert too_big.status == 413 and (await too_big.json())["error"]["code"] == "body_too_large"


async def test_past_the_latency_budget_answers_generating_and_still_delivers(server: Server) -> None:
    server.services.settings.tools.max_wait_seconds = 0.3
    server.services.settings.replicate.wait_seconds = 1
    server.fake.duration = 1.5
    ws = await server.viewer("conv_slow")
    response = await server.client.post(
        "/tools/generate_image", headers=server.auth, json={"prompt": "a slow sunset", "conversation_id": "conv_slow"}
    )
    body = await response.json()
    assert body["status"] == "generating" and "appear on the screen" in body["message"]
    event = await _next(ws, "image_generated", timeout=15)
    assert event["job_id"] == body["job_id"]
    status = await server.client.get(f"/api/v1/generations/{body['job_id']}", headers=server.auth)
    assert (await status.json())["job"]["status"] == "succeeded"
    await ws.close()


async def test_failed_generation_reaches_viewers_and_refunds(server: Server) -> None:
    ws = await server.viewer("conv_fail")
    response = await server.client.post(
        "/tools/generate_image", headers=server.auth, json={"prompt": "FAILME now", "conversation_id": "conv_fail"}
    )
    assert response.status == 502
    assert "nothing was charged" in (await response.json())["error"]["message"]
    event = await _next(ws, "generation_failed")
    assert "CUDA out of memory" in event["error"]["message"]
    assert await server.balance() == 10
    await ws.close()
