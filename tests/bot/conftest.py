from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from core.clock import ManualClock
from core.config import Secrets, Settings
from tests.fakes.replicate import FakeReplicate
from tests.fakes.stripe import API_KEY, WEBHOOK_SECRET, FakeStripe
from tests.fakes.telegram import TOKEN, FakeTelegram
from tools.app import create_app
from tools.http import SERVICES
from tools.services import Services

TELEGRAM_SECRET = "tg-secret_123"


@dataclass
class TelegramServer:
    client: TestClient[Any, web.Application]
    services: Services
    telegram: FakeTelegram
    stripe: FakeStripe
    replicate: FakeReplicate

    async def post(self, update: dict[str, Any], secret: str = TELEGRAM_SECRET) -> Any:
        return await self.client.post(
            "/webhooks/telegram", json=update, headers={"X-Telegram-Bot-Api-Secret-Token": secret}
        )

    async def account_id(self, user_id: int = 42) -> int | None:
        from sqlalchemy import select

        from storage.models import Identity

        async with self.services.db.read() as session:
            return await session.scalar(
                select(Identity.account_id).where(Identity.platform == "telegram", Identity.external_id == str(user_id))
            )


@pytest.fixture
async def tg(
    settings: Settings,
    replicate_fake: FakeReplicate,
    stripe_fake: FakeStripe,
    telegram_fake: FakeTelegram,
    clock: ManualClock,
    aiohttp_client: Any,
) -> AsyncIterator[TelegramServer]:
    # aiohttp_client comes last so it is torn down first: the app's shutdown still writes to the database.
    settings.server.public_url = "https://showme.example"
    settings.telegram.api_base_url = f"{telegram_fake.base_url}/bot"
    settings.telegram.file_base_url = f"{telegram_fake.base_url}/file/bot"
    settings.telegram.progress_seconds = 1
    settings.stripe.api_base = stripe_fake.base_url
    settings.tools.max_wait_seconds = 5
    secrets = Secrets(
        REPLICATE_API_TOKEN=replicate_fake.token,
        SHOWME_SECRET_KEY="test-secret",
        STRIPE_SECRET_KEY=API_KEY,
        STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_WEBHOOK_SECRET=TELEGRAM_SECRET,
    )
    app = create_app(settings, clock=clock, secrets=secrets)
    client = await aiohttp_client(app)
    yield TelegramServer(client, app[SERVICES], telegram_fake, stripe_fake, replicate_fake)


@dataclass
class DiscordServer:
    client: TestClient[Any, web.Application]
    services: Services
    discord: Any
    stripe: FakeStripe
    replicate: FakeReplicate


def discord_app(settings: Settings, fake: Any, stripe: FakeStripe, replicate: FakeReplicate, clock: ManualClock) -> Any:
    from tests.fakes.discord import TOKEN as DISCORD_TOKEN

    settings.discord.api_base_url = f"{fake.base_url}/api/v10"
    settings.discord.gateway_url = f"{fake.base_url.replace('http', 'ws')}/gateway"
    settings.discord.progress_seconds = 1
    settings.stripe.api_base = stripe.base_url
    secrets = Secrets(
        REPLICATE_API_TOKEN=replicate.token,
        SHOWME_SECRET_KEY="test-secret",
        STRIPE_SECRET_KEY=API_KEY,
        STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        DISCORD_BOT_TOKEN=DISCORD_TOKEN,
    )
    return create_app(settings, clock=clock, secrets=secrets)


@pytest.fixture
async def dc(
    settings: Settings,
    replicate_fake: FakeReplicate,
    stripe_fake: FakeStripe,
    discord_fake: Any,
    clock: ManualClock,
    aiohttp_client: Any,
) -> AsyncIterator[DiscordServer]:
    app = discord_app(settings, discord_fake, stripe_fake, replicate_fake, clock)
    client = await aiohttp_client(app)
    yield DiscordServer(client, app[SERVICES], discord_fake, stripe_fake, replicate_fake)
