"""Viewer tokens and sockets, tool exports, REST, ElevenLabs extras, metrics."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time
from typing import Any

import pytest
from aiohttp import WSMsgType

from core.clock import ManualClock
from core.events import LocalEventHub
from tests.tools.conftest import Server
from tools.dialects import export_tools

TOOL_ORDER = ["generate_image", "show_product_image", "generate_video", "edit_image"]
TOOL_NAMES = set(TOOL_ORDER)


async def test_bad_viewer_tokens_get_a_clear_error_and_no_events(server: Server, clock: ManualClock) -> None:
    good, _ = server.services.viewer_tokens.mint(server.account_id, "conv_a")
    other, _ = server.services.viewer_tokens.mint(server.account_id, "conv_b")
    forged = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    for token, words in [(forged, "not valid"), (other, "another conversation"), ("", "no valid token")]:
        page = await server.client.get(f"/calls/conv_a?token={token}")
        assert page.status == 403 and words in await page.text()
        ws = await server.client.ws_connect(f"/ws/calls/conv_a?token={token}")
        message = await ws.receive_json(timeout=5)
        assert message["type"] == "error" and message["error"]["code"] == "invalid_token"
        closing = await ws.receive(timeout=5)
        assert closing.type in (WSMsgType.CLOSE, WSMsgType.CLOSED) and ws.close_code == 4403
    clock.advance(hours=13)
    page = await server.client.get(f"/calls/conv_a?token={good}")
    assert page.status == 403 and "expired" in await page.text()


async def test_gallery_page_and_minted_link(server: Server) -> None:
    response = await server.client.post("/api/v1/conversations/conv_9/viewer-token", headers=server.auth)
    assert response.status == 201
    body = await response.json()
    assert body["url"].startswith("http://127.0.0.1:8080/calls/conv_9?token=")
    page = await server.client.get(body["url"].replace("http://127.0.0.1:8080", ""))
    text = await page.text()
    assert page.status == 200 and 'const conversationId = "conv_9";' in text and 'const serverProblem = "";' in text
    nasty = await server.client.get("/calls/%3C%2Fscript%3E?token=x")
    assert "</script><" not in (await nasty.text()).split("<script>", 1)[1].split("</script>")[0]


async def test_original_voice_images_protocol(server: Server) -> None:
    ws = await server.client.ws_connect("/ws/voice-images")
    await ws.send_json({"type": "authenticate", "token": server.key})
    assert (await ws.receive_json(timeout=5))["type"] == "authenticated"
    await ws.send_json({"type": "join_conversation", "conversationId": "conv_old"})
    assert (await ws.receive_json(timeout=5))["type"] == "joined"
    assert (await ws.receive_json(timeout=5))["type"] == "history"
    await server.client.post(
        "/tools/generate_image", headers=server.auth, json={"prompt": "a tile", "conversation_id": "conv_old"}
    )
    kinds = [(await ws.receive_json(timeout=5))["type"] for _ in range(2)]
    assert kinds == ["generation_started", "image_generated"]
    await ws.close()
    bad = await server.client.ws_connect("/ws/voice-images")
    await bad.send_json({"type": "authenticate", "token": "sm_nope"})
    assert (await bad.receive_json(timeout=5))["type"] == "error"


async def test_many_viewers_and_a_slow_one_does_not_stall_others() -> None:
    hub = LocalEventHub(queue_size=8)
    fast = [hub.subscribe("1:c") for _ in range(50)]
    slow = hub.subscribe("1:c")
    for i in range(20):
        hub.publish("1:c", {"type": "image_generated", "n": i})
        for sub in fast:
            assert json.loads(await sub.get())["n"] == i
    assert slow.overflowed and hub.viewers("1:c") == 50
    assert await slow.get() == ""  # told to close


async def test_tool_exports_follow_each_platforms_rules(server: Server) -> None:
    tools = server.services.tools
    for fmt in ("openai", "openai-responses", "elevenlabs", "vapi", "retell"):
        for tool in export_tools(tools, fmt, "https://showme.example"):
            name = tool.get("name") or tool["function"]["name"]
            assert re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", name)
    for tool in export_tools(tools, "openai", "https://x"):
        params = tool["function"]["parameters"]
        assert tool["function"]["strict"] is True and params["additionalProperties"] is False
        assert sorted(params["required"]) == sorted(params["properties"])
        for prop in params["properties"].values():
            if "enum" in prop and "null" in prop["type"]:
                assert None in prop["enum"]
    eleven = {t["name"]: t for t in export_tools(tools, "elevenlabs", "https://x", api_key="sm_k")}
    schema = eleven["generate_image"]["api_schema"]
    assert schema["url"] == "https://x/tools/generate_image" and schema["method"] == "POST"
    assert schema["request_headers"]["Authorization"] == "Bearer sm_k"
    conversation = schema["request_body_schema"]["properties"]["conversation_id"]
    assert conversation == {"type": "string", "dynamic_variable": "system__conversation_id"}
    for prop in schema["request_body_schema"]["properties"].values():
        assert sum(k in prop for k in ("description", "dynamic_variable", "constant_value")) == 1
    vapi = export_tools(tools, "vapi", "https://x")
    assert vapi[0]["server"]["url"] == "https://x/tools/vapi"
    assert "conversation_id" not in vapi[0]["function"]["parameters"]["properties"]
    response = await server.client.get("/tools?format=mcp")
    assert {t["name"] for t in (await response.json())["tools"]} == TOOL_NAMES
    bad = await server.client.get("/tools?format=soap")
    assert bad.status == 400 and (await bad.json())["error"]["code"] == "invalid_request"


async def test_rest_generations_credits_and_idempotency(server: Server) -> None:
    headers = {**server.auth, "Idempotency-Key": "order-1"}
    first = await server.client.post("/api/v1/generations", headers=headers, json={"prompt": "a barn"})
    assert first.status == 200
    job = (await first.json())["job"]
    assert job["status"] == "succeeded" and "file_path" not in job["assets"][0]
    again = await server.client.post("/api/v1/generations", headers=headers, json={"prompt": "a barn"})
    assert (await again.json())["job"]["id"] == job["id"]
    credits = await (await server.client.get("/api/v1/credits", headers=server.auth)).json()
    assert credits["credits"] == 9
    unknown = await server.client.post("/api/v1/generations", headers=server.auth, json={"prompt": "x", "colour": 1})
    assert unknown.status == 400 and "colour" in (await unknown.json())["error"]["message"]
    server.fake.duration = 1.0
    queued = await server.client.post(
        "/api/v1/generations", headers=server.auth, json={"prompt": "a mill", "wait_seconds": 0}
    )
    assert queued.status == 202
    other = await server.services.accounts.create("Other")
    key = await server.services.accounts.create_api_key(other.id)
    hidden = await server.client.get(f"/api/v1/generations/{job['id']}", headers={"Authorization": f"Bearer {key.key}"})
    assert hidden.status == 404
    await server.services.generation.drain()


async def test_elevenlabs_agent_config_adds_tools_and_instructions(server: Server) -> None:
    config = {
        "name": "Granite helper",
        "conversation_config": {
            "agent": {
                "prompt": {
                    "prompt": "You help people pick countertops.",
                    "tools": [{"type": "system", "name": "end_call"}],
                }
            }
        },
    }
    response = await server.client.post("/api/v1/agents/elevenlabs/config", headers=server.auth, json=config)
    body = await response.json()
    prompt = body["conversation_config"]["agent"]["prompt"]
    assert [t["name"] for t in prompt["tools"]] == ["end_call", *TOOL_ORDER]
    assert prompt["prompt"].startswith("You help people pick countertops.") and "show_product_image" in prompt["prompt"]
    assert prompt["tools"][1]["api_schema"]["request_headers"]["Authorization"] == f"Bearer {server.key}"
    twice = await server.client.post("/api/v1/agents/elevenlabs/config", headers=server.auth, json=body)
    assert (await twice.json()) == body


def _sign(body: bytes, secret: str = "wsec_test", at: int | None = None) -> str:
    at = int(time.time()) if at is None else at
    return f"t={at},v0={hmac.new(secret.encode(), f'{at}.'.encode() + body, hashlib.sha256).hexdigest()}"


async def test_elevenlabs_post_call_webhook_generates_unshown_promises(server: Server, clock: ManualClock) -> None:
    server.services.settings.elevenlabs.generate_from_transcripts = True
    clock._now = clock.now().fromtimestamp(time.time(), clock.now().tzinfo)
    await server.client.post(
        "/tools/generate_image",
        headers=server.auth,
        json={"prompt": "black galaxy granite countertops", "conversation_id": "conv_el"},
    )
    event = {
        "type": "post_call_transcription",
        "event_timestamp": int(time.time()),
        "data": {
            "agent_id": "agent_1",
            "conversation_id": "conv_el",
            "status": "done",
            "transcript": [
                {"role": "user", "message": "Can I see a darker stone?", "time_in_call_secs": 3},
                {
                    "role": "agent",
                    "message": "Let me show you black galaxy granite countertops.",
                    "time_in_call_secs": 5,
                },
                {
                    "role": "agent",
                    "message": "I'll show you a waterfall edge island in white quartz.",
                    "time_in_call_secs": 40,
                },
                {"role": "agent", "message": "What time works for a visit?", "time_in_call_secs": 60},
            ],
        },
    }
    body = json.dumps(event).encode()
    headers = {"Content-Type": "application/json"}
    response = await server.client.post(
        "/webhooks/elevenlabs", data=body, headers={**headers, "ElevenLabs-Signature": _sign(body)}
    )
    result = await response.json()
    assert response.status == 200 and len(result["generated"]) == 1
    assert result["promised"] == ["black galaxy granite countertops", "a waterfall edge island in white quartz"]
    await server.services.generation.drain()

    async def pieces() -> Any:  # a long transcript reaches us in several segments; the signature covers them all
        for start in range(0, len(body), 128):
            yield body[start : start + 128]
            await asyncio.sleep(0)

    repeat = await server.client.post(
        "/webhooks/elevenlabs", data=pieces(), headers={**headers, "ElevenLabs-Signature": _sign(body)}
    )
    assert repeat.status == 200, await repeat.text()
    assert (await repeat.json())["generated"] == []  # a repeated delivery generates nothing more
    assert await server.balance() == 8
    for signature in (_sign(body, "wrong"), _sign(body, at=int(time.time()) - 3600), ""):
        bad = await server.client.post(
            "/webhooks/elevenlabs", data=body, headers={**headers, "ElevenLabs-Signature": signature}
        )
        assert bad.status == 401


async def test_metrics_and_health(server: Server) -> None:
    await server.client.post("/tools/generate_image", headers=server.auth, json={"prompt": "a sofa"})
    await server.client.post("/tools/generate_image", headers=server.auth, json={})
    text = await (await server.client.get("/metrics")).text()
    assert 'showme_tool_calls_total{dialect="elevenlabs",outcome="ready",tool="generate_image"} 1.0' in text
    assert 'outcome="invalid_request"' in text
    assert 'showme_credits_spent_total{unit="credit"} 1.0' in text
    assert "showme_job_duration_seconds_bucket" in text and "showme_viewers_connected" in text


@pytest.mark.parametrize("count", [90])  # the test client pools 100 connections; 1,000 viewers: bench/
async def test_viewer_socket_fan_out(server: Server, count: int) -> None:
    sockets: list[Any] = [await server.viewer("conv_many") for _ in range(count)]
    await server.client.post(
        "/tools/show_product_image", headers=server.auth, json={"query": "anything", "conversation_id": "conv_many"}
    )
    from tests.tools.conftest import form, png

    await server.client.post("/api/v1/library", headers=server.auth, data=form(png(), name="Oak Flooring"))
    await server.client.post(
        "/tools/show_product_image", headers=server.auth, json={"query": "oak", "conversation_id": "conv_many"}
    )
    received = await asyncio.gather(*(ws.receive_json(timeout=5) for ws in sockets))
    assert {r["type"] for r in received} == {"image_from_library"}
    await asyncio.gather(*(ws.close() for ws in sockets))
