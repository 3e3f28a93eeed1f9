from __future__ import annotations

import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from PIL import Image

from core.clock import ManualClock
from core.config import Secrets, Settings
from tests.fakes.replicate import FakeReplicate
from tests.fakes.stripe import API_KEY, WEBHOOK_SECRET, FakeStripe
from tools.app import create_app
from tools.http import SERVICES
from tools.services import Services


@dataclass
class Server:
    client: TestClient[Any, web.Application]
    services: Services
    account_id: int
    key: str
    fake: FakeReplicate
    stripe: FakeStripe

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    async def balance(self) -> int:
        return (await self.services.credits.balance(self.account_id)).credits

    async def viewer(self, conversation_id: str) -> Any:
        token, _ = self.services.viewer_tokens.mint(self.account_id, conversation_id)
        ws = await self.client.ws_connect(f"/ws/calls/{conversation_id}?token={token}")
        history = await ws.receive_json(timeout=5)
        assert history["type"] == "history"
        return ws


def form(data: bytes, filename: str = "photo.png", **fields: str) -> Any:
    from aiohttp import FormData

    body = FormData()
    body.add_field("file", data, filename=filename, content_type="image/png")
    for key, value in fields.items():
        body.add_field(key, value)
    return body


def png(color: tuple[int, int, int] = (10, 20, 30), size: tuple[int, int] = (40, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
async def server(
    settings: Settings,
    replicate_fake: FakeReplicate,
    stripe_fake: FakeStripe,
    clock: ManualClock,
    aiohttp_client: Any,
) -> AsyncIterator[Server]:
    # aiohttp_client comes last so it is torn down first: the app's shutdown still writes to the database.
    settings.tools.max_wait_seconds = 5
    settings.stripe.api_base = stripe_fake.base_url
    settings.stripe.max_network_retries = 0
    secrets = Secrets(
        REPLICATE_API_TOKEN=replicate_fake.token,
        SHOWME_SECRET_KEY="test-secret",
        ELEVENLABS_WEBHOOK_SECRET="wsec_test",
        RETELL_API_KEY="retell_key",
        VAPI_WEBHOOK_SECRET="vapi_secret",
        STRIPE_SECRET_KEY=API_KEY,
        STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
    )
    yield await start_server(settings, secrets, clock, aiohttp_client, replicate_fake, stripe_fake)


async def start_server(
    settings: Settings,
    secrets: Secrets,
    clock: ManualClock,
    aiohttp_client: Any,
    replicate_fake: FakeReplicate,
    stripe_fake: FakeStripe | None = None,
) -> Server:
    """The app on a test client, with the account "Acme Granite" and an API key of it."""
    app = create_app(settings, clock=clock, secrets=secrets)
    client = await aiohttp_client(app)
    services = app[SERVICES]
    account = await services.accounts.create("Acme Granite")
    key = await services.accounts.create_api_key(account.id)
    return Server(client, services, account.id, key.key, replicate_fake, stripe_fake)  # type: ignore[arg-type]
