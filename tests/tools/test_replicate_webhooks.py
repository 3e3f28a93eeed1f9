"""Replicate's webhooks: predictions created with ``webhook`` + ``webhook_events_filter: ["completed"]``, the signed
call verified, and the job finished exactly once by whichever replica gets it; polling stays as the fallback.
The fake Replicate sends the webhooks as Replicate does (``tests.fakes.replicate.sign_webhook``)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from core.config import Secrets, Settings
from core.generation import GenerationRequest
from tests.fakes.replicate import FakeReplicate, sign_webhook
from tools.app import SERVICES, create_app
from tools.services import Services


async def _until(check: Any, timeout: float = 5.0) -> None:
    """Wait until ``check()`` (a function, or a coroutine function) is true; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    for _ in range(100_000):
        result = check()
        if await result if asyncio.iscoroutine(result) else result:
            return
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.02)


@pytest.fixture
async def started(settings: Settings, replicate_fake: FakeReplicate) -> AsyncIterator[Any]:
    """``start(settings)``: the app on a real port of loopback, its public URL (and so its webhook URL) its own
    unless ``public_url`` is given; every app started is cleaned up at the end."""
    servers: list[TestServer] = []

    async def start(public_url: str | None = None, **replicate: Any) -> tuple[str, Services]:
        own = settings.model_copy(deep=True)
        own.replicate.webhooks.enabled = "on"
        for key, value in replicate.items():
            setattr(own.replicate, key, value)
        app = create_app(own, secrets=Secrets(REPLICATE_API_TOKEN=replicate_fake.token))
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        base = str(server.make_url("")).rstrip("/")
        own.server.public_url = public_url or base
        return base, app[SERVICES]

    yield start
    for server in reversed(servers):
        await server.close()


async def test_the_webhook_ends_the_wait_and_polling_is_the_fallback(
    started: Any, replicate_fake: FakeReplicate
) -> None:
    base, services = await started(wait_seconds=1)
    account = await services.accounts.create("Acme")
    replicate_fake.duration = 2.0  # longer than the sync wait: the job then waits for the webhook
    began = time.monotonic()
    job = await services.generation.generate(account.id, GenerationRequest(prompt="a marble kitchen"))
    took = time.monotonic() - began
    assert job.status == "succeeded" and 2.0 <= took < 3.5, took  # polling alone would take 1 + 5 s
    create = replicate_fake.creates[-1]
    assert create["webhook"] == f"{base}/webhooks/replicate?job={job.id}"
    assert create["webhook_events_filter"] == ["completed"]
    assert [status for _, _, status in replicate_fake.webhooks_sent] == [200]
    assert replicate_fake.gets <= 1  # the fallback polls every 5 s
    assert (await services.credits.balance(account.id)).credits == 9

    replicate_fake.send_webhooks = False  # the webhook never comes: polling finishes the job
    services.settings.replicate.webhooks.poll_interval_seconds = 0.5
    job = await services.generation.generate(account.id, GenerationRequest(prompt="a slate floor"))
    assert job.status == "succeeded" and (await services.credits.balance(account.id)).credits == 8


async def test_a_job_whose_replica_stopped_is_finished_by_the_replica_the_webhook_reaches(
    started: Any, replicate_fake: FakeReplicate
) -> None:
    """Replica A creates the prediction and stops before it finishes (its tasks cancelled, its lease left to
    run out); Replicate's webhook reaches B, which takes the job over and charges it once."""
    base_b, b = await started(wait_seconds=10)
    _, a = await started(public_url=base_b, wait_seconds=10)
    b.settings.generation.lease_seconds = a.settings.generation.lease_seconds = 3
    account = await a.accounts.create("Acme")
    replicate_fake.duration = 1.5
    view = await a.generation.submit(account.id, GenerationRequest(prompt="a quartz island"))
    await _until(lambda: bool(replicate_fake.predictions))
    await a.generation.close()  # A stops: its job task is cancelled while Replicate holds the create
    job = await a.store.jobs.get(view.id)
    assert job is not None and job.status == "queued" and job.prediction_id is None
    assert job.lease_owner == a.generation.runner_id

    async def finished() -> bool:
        found = await b.store.jobs.get(view.id)
        return found is not None and found.status == "succeeded"

    await _until(finished, timeout=10)
    done = await b.generation.get(view.id, account.id)
    assert done.status == "succeeded" and done.charge_state == "settled" and len(done.assets) == 1
    assert [status for _, _, status in replicate_fake.webhooks_sent] == [200]
    assert (await b.credits.balance(account.id)).credits == 9
    assert len(replicate_fake.creates) == 1
    resumed, failed = await b.generation.resume_unfinished()  # nothing is left to take over
    assert resumed == [] and failed == []


async def _post(base: str, body: bytes, headers: dict[str, str], job: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.post(
        f"{base}/webhooks/replicate?job={job}", data=body, headers=headers
    ) as response:
        return response.status, await response.json()


def _headers(body: bytes, *, age: int = 0, signature: str | None = None, webhook_id: str | None = None) -> dict:
    webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    timestamp = int(time.time()) - age
    return {"webhook-id": webhook_id, "webhook-timestamp": str(timestamp), "Content-Type": "application/json",
            "webhook-signature": signature or sign_webhook(body, webhook_id, timestamp)}  # fmt: skip


async def test_forged_stale_replayed_and_mismatched_webhooks_change_nothing(
    started: Any, replicate_fake: FakeReplicate
) -> None:
    base, services = await started(wait_seconds=1)
    replicate_fake.send_webhooks = False  # this test sends them itself
    services.settings.replicate.webhooks.poll_interval_seconds = 30
    account = await services.accounts.create("Acme")
    replicate_fake.duration = 1.2
    view = await services.generation.submit(account.id, GenerationRequest(prompt="a walnut table"))
    job = None

    async def bound() -> bool:
        nonlocal job
        job = await services.store.jobs.get(view.id)
        return job is not None and job.prediction_id is not None

    await _until(bound)
    assert job is not None and job.prediction_id is not None
    prediction = replicate_fake.predictions[job.prediction_id]
    await asyncio.sleep(1.3)
    prediction.advance(replicate_fake)
    body = json.dumps(prediction.to_json(replicate_fake.base_url)).encode()

    forged = _headers(body, signature="v1,bm90IHRoZSBzaWduYXR1cmU=")
    assert (await _post(base, body, forged, view.id))[0] == 400
    tampered = _headers(body)
    assert (await _post(base, body.replace(b"walnut", b"cherry"), tampered, view.id))[0] == 400
    stale = _headers(body, age=3600)
    status, answer = await _post(base, body, stale, view.id)
    assert status == 400 and answer["error"]["code"] == "invalid_signature"
    missing = {"Content-Type": "application/json"}
    assert (await _post(base, body, missing, view.id))[0] == 400
    other = json.dumps({**json.loads(body), "id": "someoneelses"}).encode()
    status, answer = await _post(base, other, _headers(other), view.id)
    assert status == 400 and answer["error"]["field"] == "id"
    assert (await services.store.jobs.get(view.id)).status == "running"  # type: ignore[union-attr]

    genuine = _headers(body)
    status, answer = await _post(base, body, genuine, view.id)
    assert status == 200 and answer["status"] == "delivered"
    done = await services.generation.wait(view.id, timeout=5)
    assert done.status == "succeeded" and (await services.credits.balance(account.id)).credits == 9
    status, answer = await _post(base, body, genuine, view.id)  # Replicate retries, or someone replays it
    assert status == 200 and answer["status"] == "duplicate"
    status, answer = await _post(base, body, _headers(body), view.id)  # a new delivery of a finished job
    assert status == 200 and answer["status"] == "ignored"
    assert (await services.credits.balance(account.id)).credits == 9
    assert len(await services.library.for_job(view.id)) == 1


def test_webhook_route_is_documented(settings: Settings) -> None:
    from tools.openapi import document
    from tools.routes import OPERATIONS

    doc = document(OPERATIONS, version="test", server_url="http://127.0.0.1")
    operation = doc["paths"]["/webhooks/replicate"]["post"]
    assert {"200", "400"} <= set(operation["responses"]) and "429" not in operation["responses"]  # not limited
