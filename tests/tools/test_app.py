"""The aiohttp app built by ``create_app``: health, media, errors in the one JSON shape."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from core.config import Secrets, Settings
from core.generation import GenerationRequest
from tests.fakes.replicate import FakeReplicate
from tools.app import SERVICES, create_app


async def test_healthz_media_and_errors(settings: Settings, replicate_fake: FakeReplicate, aiohttp_client: Any) -> None:
    app = create_app(settings, secrets=Secrets(REPLICATE_API_TOKEN=replicate_fake.token))
    client = await aiohttp_client(app)
    response = await client.get("/healthz")
    assert response.status == 200 and await response.json() == {"status": "ok"}

    services = app[SERVICES]
    account = await services.accounts.create("Acme")
    job = await services.generation.generate(account.id, GenerationRequest(prompt="a cat"))
    key = job.assets[0].blob_key
    response = await client.get(f"/media/{key}")
    assert response.status == 200 and response.content_type == "image/webp"
    assert await response.read() == replicate_fake.files[next(iter(replicate_fake.files))]
    assert "immutable" in response.headers["Cache-Control"]

    for path in ["/media/..%2F..%2Fetc%2Fpasswd", "/media/ab/" + "0" * 64 + ".webp", "/nothing-here"]:
        response = await client.get(path)
        assert response.status == 404
        body = await response.json()
        assert body["error"]["code"] == "not_found"


def test_access_log_leaves_out_the_query_string(caplog: Any) -> None:
    import logging

    from aiohttp.test_utils import make_mocked_request

    from tools.app import AccessLogger

    request = make_mocked_request("GET", "/calls/conv_1?token=secret-token-value")
    response = web.Response(text="ok")
    with caplog.at_level(logging.INFO, logger="test.access"):
        AccessLogger(logging.getLogger("test.access"), "").log(request, response, 0.002)
    assert "/calls/conv_1" in caplog.text and "secret-token-value" not in caplog.text
