"""Failover to the second provider: the real replicate and huggingface_hub clients against their fakes, through
the voice tool endpoint; the circuit breaker seen in /metrics and /readyz."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from core.clock import ManualClock
from core.config import Secrets, Settings
from storage.models import Job
from tests.fakes.huggingface import TOKEN as HF_TOKEN
from tests.fakes.huggingface import FakeHuggingFace
from tests.fakes.replicate import FakeReplicate
from tests.tools.conftest import Server, start_server

UNAVAILABLE = (503, {"title": "Service Unavailable", "detail": "Replicate is down for maintenance"})


@pytest.fixture
async def two(
    settings: Settings,
    replicate_fake: FakeReplicate,
    huggingface_fake: FakeHuggingFace,
    clock: ManualClock,
    aiohttp_client: Any,
) -> AsyncIterator[Server]:
    settings.tools.max_wait_seconds = 8
    settings.models["flux_schnell"].providers = {
        "replicate": "black-forest-labs/flux-schnell",
        "hf": "black-forest-labs/FLUX.1-schnell",
    }
    settings.huggingface.base_url = huggingface_fake.base_url
    settings.failover.failure_threshold = 5
    settings.failover.open_seconds = 1.0
    secrets = Secrets(REPLICATE_API_TOKEN=replicate_fake.token, HF_TOKEN=HF_TOKEN, SHOWME_SECRET_KEY="k")
    yield await start_server(settings, secrets, clock, aiohttp_client, replicate_fake)


async def tool(server: Server, prompt: str, conversation_id: str = "call_failover") -> tuple[int, Any]:
    response = await server.client.post(
        "/tools/generate_image",
        headers=server.auth,
        json={"prompt": prompt, "aspect_ratio": "16:9", "conversation_id": conversation_id},
    )
    return response.status, await response.json()


async def job_row(server: Server, job_id: str) -> Job:
    async with server.services.db.read() as session:
        return (await session.execute(select(Job).where(Job.id == job_id))).scalar_one()


async def metric(server: Server, name: str) -> str:
    text = await (await server.client.get("/metrics")).text()
    return "\n".join(line for line in text.splitlines() if line.startswith(name))


async def test_replicate_down_the_picture_comes_from_the_second_provider_charged_once(
    two: Server, huggingface_fake: FakeHuggingFace
) -> None:
    two.fake.create_errors = [UNAVAILABLE] * 20
    viewer = await two.viewer("call_failover")
    status, answer = await tool(two, "black galaxy granite in a modern kitchen")
    assert status == 200 and answer["status"] == "ready", answer
    event = await viewer.receive_json(timeout=10)
    while event["type"] != "image_generated":
        event = await viewer.receive_json(timeout=10)
    assert event["url"] == answer["image_url"]
    [(path, body)] = huggingface_fake.requests
    assert path == "/hf-inference/models/black-forest-labs/FLUX.1-schnell"
    assert body["inputs"].startswith("black galaxy granite")
    assert body["parameters"]["width"] > body["parameters"]["height"]  # 16:9
    job = await job_row(two, answer["job_id"])
    assert (job.provider, job.status, job.charged) == ("hf", "succeeded", 1)
    assert job.provider_switches is not None and "replicate: Replicate is unavailable (503)" in job.provider_switches
    assert job.prediction_id is not None and job.prediction_id.startswith("hf:hf-")
    assert await two.balance() == 9  # one hold, one charge
    kinds = sorted(e.kind for e in await two.services.credits.ledger(two.account_id))
    assert kinds == ["grant", "hold", "settle"]
    media = await two.client.get("/media/" + answer["image_url"].split("/media/", 1)[1])
    assert media.status == 200 and media.content_type == "image/webp"
    assert 'showme_provider_failovers_total{from_provider="replicate",to_provider="hf"} 1.0' in await metric(
        two, "showme_provider_failovers_total"
    )


async def test_both_providers_down_is_a_clear_answer_and_costs_nothing(
    two: Server, huggingface_fake: FakeHuggingFace
) -> None:
    two.fake.create_errors = [UNAVAILABLE] * 20
    huggingface_fake.fail_status = 503
    status, answer = await tool(two, "white quartz island")
    assert status == 503, answer
    assert answer["error"]["code"] == "provider_unavailable"
    message = answer["error"]["message"]
    assert "image service is unavailable" in message and "nothing was charged" in message
    assert await two.balance() == 10
    kinds = sorted(e.kind for e in await two.services.credits.ledger(two.account_id))
    assert kinds == ["grant", "hold", "release"]


async def test_the_breaker_opens_after_five_failures_then_one_probe_closes_it(
    two: Server, huggingface_fake: FakeHuggingFace
) -> None:
    two.fake.create_errors = [UNAVAILABLE] * 100
    for i in range(5):
        status, answer = await tool(two, f"kitchen {i}")
        assert status == 200 and answer["status"] == "ready"
    creates = len(two.fake.creates)
    assert creates >= 5
    ready = await (await two.client.get("/readyz")).json()
    assert ready["status"] == "degraded" and ready["providers"]["replicate"]["circuit"] == "open"
    assert 'showme_provider_circuit_state{provider="replicate"} 2.0' in await metric(two, "showme_provider_circuit")
    # Open: Replicate is not called at all; the pictures come from Hugging Face straight away.
    for i in range(3):
        status, answer = await tool(two, f"bathroom {i}")
        assert status == 200 and (await job_row(two, answer["job_id"])).provider == "hf"
    assert len(two.fake.creates) == creates
    # After open_seconds, Replicate is back: one probe goes to it and closes the breaker.
    two.fake.create_errors = []
    await asyncio.sleep(1.1)
    assert (await (await two.client.get("/readyz")).json())["providers"]["replicate"]["circuit"] == "half_open"
    status, answer = await tool(two, "a probe picture")
    assert status == 200 and (await job_row(two, answer["job_id"])).provider == "replicate"
    assert len(two.fake.creates) == creates + 1
    ready = await (await two.client.get("/readyz")).json()
    assert ready["status"] == "ready" and ready["providers"]["replicate"]["circuit"] == "closed"
    assert 'showme_provider_circuit_state{provider="replicate"} 0.0' in await metric(two, "showme_provider_circuit")
    assert 'showme_provider_circuit_opened_total{provider="replicate"} 1.0' in await metric(
        two, "showme_provider_circuit_opened"
    )
    assert len(huggingface_fake.requests) == 8
