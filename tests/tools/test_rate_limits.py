"""Rate limits at the HTTP boundary (in this process's memory; ``tests/core/test_redis_bus.py`` shares them
through Redis): per account for tool calls and the API, per client address, and for anonymous payment links.
A refused request gets 429 with ``Retry-After`` and changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from core.clock import ManualClock
from core.config import Secrets, Settings
from tests.fakes.replicate import FakeReplicate
from tests.tools.conftest import start_server
from tools.limits import client_address


@pytest.fixture
async def limited(settings: Settings, replicate_fake: FakeReplicate, clock: ManualClock, aiohttp_client: Any) -> Any:
    settings.rate_limits.tool_calls_per_account = "3/minute"
    settings.rate_limits.api_per_account = "4/minute"
    settings.rate_limits.checkout_per_address = "2/minute"
    settings.rate_limits.per_address = "40/minute"
    settings.tools.max_wait_seconds = 5
    secrets = Secrets(REPLICATE_API_TOKEN=replicate_fake.token, SHOWME_SECRET_KEY="test-secret")
    return await start_server(settings, secrets, clock, aiohttp_client, replicate_fake)


async def test_tool_calls_over_the_account_limit_get_429_and_cost_nothing(
    limited: Any, replicate_fake: FakeReplicate
) -> None:
    statuses = []
    for i in range(5):
        response = await limited.client.post(
            "/tools/generate_image", headers=limited.auth, json={"prompt": f"a granite kitchen number {i}"}
        )
        statuses.append(response.status)
        if response.status == 429:
            body = await response.json()
            retry = int(response.headers["Retry-After"])
            assert 1 <= retry <= 60 and body["error"]["retry_after_seconds"] == retry
            assert body["error"]["code"] == "rate_limited" and "try again" in body["error"]["message"]
    assert statuses == [200, 200, 200, 429, 429]
    assert len(replicate_fake.creates) == 3 and await limited.balance() == 7  # 10 starter credits, 3 charged
    # Other requests of the account have their own limit; the refused tool calls did not count toward it.
    for _ in range(4):
        assert (await limited.client.get("/api/v1/credits", headers=limited.auth)).status == 200
    assert (await limited.client.get("/api/v1/credits", headers=limited.auth)).status == 429


async def test_anonymous_payment_links_and_addresses_have_limits_probes_do_not(limited: Any) -> None:
    statuses = [(await limited.client.get("/checkout/start?t=forged", allow_redirects=False)).status
                for _ in range(3)]  # fmt: skip
    assert statuses[:2] == [400, 400] and statuses[2] == 429
    for _ in range(50):
        assert (await limited.client.get("/healthz")).status == 200
    for _ in range(45):  # a platform's calls come from one address for all its customers: not limited by it
        assert (await limited.client.post("/webhooks/telegram", json={})).status != 429
    statuses = [(await limited.client.get("/api/v1/pricing")).status for _ in range(40)]
    assert statuses.count(429) >= 1 and statuses[0] == 200  # 3 payment-link requests counted before


def test_the_client_address_is_the_proxys_word_only_when_the_proxy_is_trusted() -> None:
    proxies = ("10.0.0.0/8",)
    assert client_address("203.0.113.9", "198.51.100.1", proxies) == "203.0.113.9"  # not from a proxy
    assert client_address("10.0.0.2", "198.51.100.1", proxies) == "198.51.100.1"
    # The client may send its own X-Forwarded-For: the left part is never believed.
    assert client_address("10.0.0.2", "1.2.3.4, 198.51.100.1, 10.0.0.7", proxies) == "198.51.100.1"
    assert client_address("10.0.0.2", "10.0.0.9", proxies) == "10.0.0.2"
    assert client_address("10.0.0.2", "198.51.100.1", ()) == "10.0.0.2"  # no proxy configured
    assert client_address(None, None, proxies) == "unknown"


def test_bad_limits_and_proxies_are_refused_naming_the_key(isolated_env: None) -> None:
    from core.config import load_settings
    from core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"rate_limits\.tool_calls_per_account"):
        load_settings(None, rate_limits={"tool_calls_per_account": "lots"})
    with pytest.raises(ConfigError, match=r"rate_limits\.trusted_proxies"):
        load_settings(None, rate_limits={"trusted_proxies": ["10.0.0.0/33"]})
