"""Two ``showme serve`` processes on one PostgreSQL, one Redis and one S3 bucket (moto's server), as a load
balancer would run them: nothing a person or a platform sees depends on which replica they reach.

Needs PostgreSQL (``SHOWME_TEST_POSTGRES_URL``) and Redis (``SHOWME_TEST_REDIS_URL``); skipped without them.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from storage.db import create_engine
from storage.models import Asset, Job
from tests.fakes.replicate import FakeReplicate, make_image, sign_webhook
from tests.fakes.serve import free_port
from tests.test_cli import REPO, _command

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@dataclass
class Replica:
    name: str
    port: int
    env: dict[str, str]
    cwd: Path
    proc: asyncio.subprocess.Process | None = None
    logs: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *_command(), "serve", "--port", str(self.port), cwd=self.cwd, env=self.env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        async with aiohttp.ClientSession() as http:
            for _ in range(600):
                try:
                    async with http.get(f"{self.base}/readyz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                assert self.proc.returncode is None, await self._stderr()
                await asyncio.sleep(0.05)
        raise AssertionError(f"replica {self.name} did not become ready")

    async def _stderr(self) -> str:
        assert self.proc is not None and self.proc.stderr is not None
        return (await self.proc.stderr.read()).decode()

    async def stop(self, sig: int = signal.SIGINT) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(sig)
        _out, err = await asyncio.wait_for(self.proc.communicate(), 30)
        self.logs.append(err.decode())
        if sig == signal.SIGINT:
            assert self.proc.returncode == 0 and "Traceback" not in err.decode(), err.decode()


@dataclass
class Deployment:
    a: Replica
    b: Replica
    env: dict[str, str]
    cwd: Path
    database_url: str

    async def cli(self, *args: str) -> Any:
        proc = await asyncio.create_subprocess_exec(
            *_command(), *args, "--json", cwd=self.cwd, env=self.env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        return json.loads(out)

    async def account(self, name: str) -> tuple[str, str]:
        account = str((await self.cli("accounts", "create", name))["account"]["id"])
        return account, (await self.cli("keys", "create", "--account", account))["key"]

    async def credits(self, account: str) -> int:
        return int((await self.cli("credits", "show", "--account", account))["balance"]["credits"])

    async def rows(self, statement: Any) -> list[Any]:
        engine = create_engine(self.database_url)
        try:
            async with engine.connect() as conn:
                return list((await conn.execute(statement)).all())
        finally:
            await engine.dispose()


@pytest.fixture
async def deployment(
    database_url: str, tmp_path: Path, redis_url: str, redis_prefix: str, s3_endpoint: str, s3_bucket: str,
    replicate_fake: FakeReplicate,
) -> AsyncIterator[Any]:  # fmt: skip
    """``deploy(**settings)``: replicas A and B (not started) sharing everything; A's public URL is B's, as if
    a load balancer sent Replicate's webhooks for A's predictions to B."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOWME_")}
    env.update(
        PYTHONPATH=str(REPO), REPLICATE_API_TOKEN=replicate_fake.token, REPLICATE_BASE_URL=replicate_fake.base_url,
        SSL_CERT_FILE=os.environ["SSL_CERT_FILE"], SHOWME_SECRET_KEY="one key for every replica",
        SHOWME_DATABASE__URL=database_url, SHOWME_EVENTS__BACKEND="redis", SHOWME_REDIS__URL=redis_url,
        SHOWME_REDIS__KEY_PREFIX=redis_prefix, SHOWME_MEDIA__BACKEND="s3",
        SHOWME_MEDIA__S3__ENDPOINT_URL=s3_endpoint, SHOWME_MEDIA__S3__BUCKET=s3_bucket,
        SHOWME_MEDIA__S3__ADDRESSING_STYLE="path", SHOWME_REPLICATE__WEBHOOKS__ENABLED="on",
        SHOWME_GENERATION__THUMBNAIL_WORKER="thread", SHOWME_SERVER__ACCESS_LOG="false",
        SHOWME_GENERATION__DOWNLOAD_BACKOFF_SECONDS="[0.01, 0.02]",
        AWS_ACCESS_KEY_ID=os.environ["AWS_ACCESS_KEY_ID"], AWS_SECRET_ACCESS_KEY=os.environ["AWS_SECRET_ACCESS_KEY"],
    )  # fmt: skip
    replicas: list[Replica] = []

    def deploy(**settings: str) -> Deployment:
        shared = {**env, **settings}
        b = Replica("B", free_port(), {}, tmp_path)
        a = Replica("A", free_port(), {}, tmp_path)
        for replica, public in ((a, b.base), (b, b.base)):
            replica.env = {**shared, "SHOWME_SERVER__PUBLIC_URL": public,
                           "SHOWME_MEDIA__S3__LOCAL_CACHE": str(tmp_path / f"cache-{replica.name}")}  # fmt: skip
        replicas.extend((a, b))
        return Deployment(a, b, {**shared, "SHOWME_SERVER__PUBLIC_URL": b.base}, tmp_path, database_url)

    yield deploy
    for replica in replicas:
        await replica.stop(signal.SIGKILL)


async def _post_tool(http: aiohttp.ClientSession, base: str, key: str, tool: str, **args: Any) -> tuple[int, Any]:
    async with http.post(f"{base}/tools/{tool}", headers={"Authorization": f"Bearer {key}"}, json=args) as r:
        return r.status, await r.json()


async def _next_event(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    while (event := await ws.receive_json(timeout=10))["type"] != kind:
        assert event["type"] in ("generation_started", "image_generated", "image_from_library"), event
    return event


async def _limits_hold_for_both(d: Deployment, http: aiohttp.ClientSession, replicate_fake: FakeReplicate) -> None:
    """A burst over the account's tool-call limit (4 a minute), spread over both replicas, gets 429 with
    Retry-After and costs nothing; the create window (8 a minute) holds for both replicas together."""
    burst, burst_key = await d.account("Burst Co")
    results = []
    for i in range(6):
        status, _ = await _post_tool(http, (d.a if i % 2 else d.b).base, burst_key, "generate_image",
                                     prompt=f"a granite sample number {i}")  # fmt: skip
        results.append(status)
    assert results == [200, 200, 200, 200, 429, 429]
    async with http.post(f"{d.a.base}/tools/generate_image", headers={"Authorization": f"Bearer {burst_key}"},
                         json={"prompt": "one more"}) as r:  # fmt: skip
        assert r.status == 429 and int(r.headers["Retry-After"]) >= 1
    assert await d.credits(burst) == 6  # 10 starter credits, 4 pictures
    assert len(replicate_fake.creates) == 5

    _, window_key = await d.account("Window Co")
    calls = [
        asyncio.create_task(
            _post_tool(http, (d.a if i % 2 else d.b).base, window_key, "generate_image", prompt=f"a quartz slab {i}")
        )
        for i in range(4)  # within the account's 4 tool calls a minute
    ]
    await asyncio.sleep(4)
    assert len(replicate_fake.creates) == 8  # three went, one waits for the window
    answers = await asyncio.gather(*calls)
    assert sorted(a["status"] for _, a in answers) == ["generating"] + ["ready"] * 3, answers


async def test_what_one_replica_does_the_other_shows_serves_and_counts(
    deployment: Any, replicate_fake: FakeReplicate
) -> None:
    d = deployment(SHOWME_TOOLS__MAX_WAIT_SECONDS="3", SHOWME_RATE_LIMITS__TOOL_CALLS_PER_ACCOUNT="4/minute",
                   SHOWME_REPLICATE__MAX_CREATES_PER_MINUTE="8")  # fmt: skip
    await asyncio.gather(d.a.start(), d.b.start())
    account, key = await d.account("Acme Granite")
    link = await d.cli("viewer-link", "call_1", "--account", account)
    auth = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession() as http:
        # A tool call on A reaches a viewer on B.
        async with http.ws_connect(f"{d.b.base}/ws/calls/call_1?token={link['token']}") as ws:
            assert (await ws.receive_json(timeout=10))["type"] == "history"
            status, answer = await _post_tool(http, d.a.base, key, "generate_image",
                                              prompt="black galaxy granite in a modern kitchen",
                                              conversation_id="call_1")  # fmt: skip
            assert status == 200 and answer["status"] == "ready", answer
            event = await _next_event(ws, "image_generated")
            assert event["url"] == answer["image_url"] and event["job_id"] == answer["job_id"]

            # A library upload on A is found by a search on B within 1 s (B had cached the empty answer).
            async with http.get(f"{d.b.base}/api/v1/library/search?q=calacatta", headers=auth) as r:
                assert (await r.json())["results"] == []
            form = aiohttp.FormData()
            form.add_field("file", make_image("calacatta", 0, "png"), filename="c.png", content_type="image/png")
            form.add_field("name", "Calacatta gold marble")
            async with http.post(f"{d.a.base}/api/v1/library", headers=auth, data=form) as r:
                assert r.status == 201, await r.text()
                uploaded = (await r.json())["asset"]
            began = time.monotonic()
            while True:
                async with http.get(f"{d.b.base}/api/v1/library/search?q=calacatta", headers=auth) as r:
                    items = (await r.json())["results"]
                if items:
                    break
                assert time.monotonic() - began < 1.0, "the upload on A was not found on B within 1 s"
                await asyncio.sleep(0.02)
            assert items[0]["asset"]["id"] == uploaded["id"]

            # The agent shows it through A; the viewer on B sees it.
            status, shown = await _post_tool(http, d.a.base, key, "show_product_image", query="calacatta marble",
                                             conversation_id="call_1")  # fmt: skip
            assert status == 200 and shown["status"] == "shown" and shown["viewers"] is None  # counted per replica
            assert (await _next_event(ws, "image_from_library"))["asset_id"] == uploaded["id"]

        # An image stored by A is served by B (from the bucket), byte for byte.
        key_path = answer["image_url"].split("/media/", 1)[1]
        async with http.get(f"{d.a.base}/media/{key_path}") as r:
            from_a = await r.read()
        async with http.get(f"{d.b.base}/media/{key_path}", allow_redirects=False) as r:
            assert r.status == 302
        async with http.get(f"{d.b.base}/media/{key_path}") as r:
            assert r.status == 200 and await r.read() == from_a and from_a.startswith(b"RIFF")

        await _limits_hold_for_both(d, http, replicate_fake)

    # History replayed by B after A stopped.
    await d.a.stop()
    async with aiohttp.ClientSession() as http, http.ws_connect(
        f"{d.b.base}/ws/calls/call_1?token={link['token']}"
    ) as ws:
        history = await ws.receive_json(timeout=10)
    assert [item["type"] for item in history["items"]] == ["image_generated", "image_from_library"]
    assert history["items"][0]["url"] == answer["image_url"]


async def test_a_killed_replicas_prediction_is_finished_by_the_webhook_on_the_other_once(
    deployment: Any, replicate_fake: FakeReplicate
) -> None:
    d = deployment(SHOWME_GENERATION__LEASE_SECONDS="6")
    await asyncio.gather(d.a.start(), d.b.start())
    account, key = await d.account("Acme Granite")
    replicate_fake.duration = 3.0
    async with aiohttp.ClientSession() as http:
        call = asyncio.create_task(_post_tool(http, d.a.base, key, "generate_image", prompt="a walnut kitchen"))
        for _ in range(200):
            if replicate_fake.predictions:
                break
            await asyncio.sleep(0.02)
        assert replicate_fake.predictions, "A did not create the prediction"
        assert d.a.proc is not None
        d.a.proc.send_signal(signal.SIGKILL)  # while Replicate holds A's create (Prefer: wait)
        await d.a.proc.wait()
        with pytest.raises(aiohttp.ClientError):
            await call

    async def job() -> Any:
        rows = await d.rows(select(Job.id, Job.status, Job.charge_state, Job.prediction_id, Job.lease_owner))
        assert len(rows) == 1
        return rows[0]

    first = await job()
    assert first.status in ("queued", "running") and first.prediction_id is None  # A died before saving it
    for _ in range(300):
        if (current := await job()).status == "succeeded":
            break
        await asyncio.sleep(0.1)
    assert current.status == "succeeded" and current.charge_state == "settled"
    assert current.prediction_id == next(iter(replicate_fake.predictions))
    assert [(url.split("?")[0], status) for url, _, status in replicate_fake.webhooks_sent] == [
        (f"{d.b.base}/webhooks/replicate", 200)
    ]
    assert await d.credits(account) == 9

    # A forged or stale webhook for the same job changes nothing.
    prediction = replicate_fake.predictions[current.prediction_id]
    body = json.dumps(prediction.to_json(replicate_fake.base_url)).encode()
    async with aiohttp.ClientSession() as http:
        for age, signature in ((0, "v1,Zm9yZ2Vk"), (3600, None)):
            webhook_id, stamp = f"msg_{uuid.uuid4().hex}", int(time.time()) - age
            headers = {"webhook-id": webhook_id, "webhook-timestamp": str(stamp),
                       "webhook-signature": signature or sign_webhook(body, webhook_id, stamp)}  # fmt: skip
            async with http.post(f"{d.b.base}/webhooks/replicate?job={current.id}", data=body, headers=headers) as r:
                assert r.status == 400

    # A restarts: it does nothing more.
    await d.a.start()
    await asyncio.sleep(2)
    assert (await job()).status == "succeeded" and await d.credits(account) == 9
    assets = await d.rows(select(Asset.id).where(Asset.job_id == current.id))
    assert len(assets) == 1 and len(replicate_fake.creates) == 1
    await d.a.stop()
    await d.b.stop()
