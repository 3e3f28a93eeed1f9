"""The cost and margin report over a test day: a pack bought through Stripe, a plan code, jobs on Replicate and
on the second provider, a failure; the report's figures against a hand computation (Decimal, to the
micro-dollar), from the REST endpoint and from `showme report`."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from core.clock import ManualClock
from core.config import Secrets, Settings
from tests.fakes.huggingface import TOKEN as HF_TOKEN
from tests.fakes.huggingface import FakeHuggingFace
from tests.fakes.replicate import FakeReplicate
from tests.fakes.stripe import API_KEY, WEBHOOK_SECRET, FakeStripe
from tests.test_cli import REPO, _command
from tests.tools.conftest import Server, start_server
from tests.tools.test_billing import send_event, start_checkout

M = Decimal("0.000001")


@pytest.fixture
async def shop(
    settings: Settings,
    replicate_fake: FakeReplicate,
    stripe_fake: FakeStripe,
    huggingface_fake: FakeHuggingFace,
    clock: ManualClock,
    aiohttp_client: Any,
) -> AsyncIterator[Server]:
    settings.tools.max_wait_seconds = 8
    settings.credits.starter_credits = 0  # every credit in the report was paid for
    settings.stripe.api_base = stripe_fake.base_url
    settings.stripe.max_network_retries = 0
    settings.huggingface.base_url = huggingface_fake.base_url
    secrets = Secrets(
        REPLICATE_API_TOKEN=replicate_fake.token, HF_TOKEN=HF_TOKEN, SHOWME_SECRET_KEY="k",
        STRIPE_SECRET_KEY=API_KEY, STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
    )  # fmt: skip
    yield await start_server(settings, secrets, clock, aiohttp_client, replicate_fake, stripe_fake)


async def generate(server: Server, auth: dict[str, str], **body: Any) -> dict[str, Any]:
    response = await server.client.post("/api/v1/generations", headers=auth, json={"wait_seconds": 10, **body})
    job = (await response.json())["job"]
    assert job["status"] in ("succeeded", "failed"), job
    return dict(job)


async def a_test_day(shop: Server, huggingface_fake: FakeHuggingFace) -> None:
    """A pack and a plan code bought, six jobs: on Replicate, on Hugging Face (failover), one failed."""
    services = shop.services
    # Account A buys the Creator pack: 200 credits for $29.99.
    checkout = await start_checkout(shop, "pack:creator")
    paid = shop.stripe.pay(checkout["checkout_session_id"])
    await send_event(shop, FakeStripe.event("checkout.session.completed", paid))
    # Account B redeems a Flash code bought anonymously: ₹100 for 8 images + 1 video.
    plan = await start_checkout(shop, "plan:flash", auth=False)
    paid = shop.stripe.pay(plan["checkout_session_id"])
    await send_event(shop, FakeStripe.event("checkout.session.completed", paid))
    [order] = [o for o in await services.billing.orders() if o.product == "plan:flash"]
    other = await services.accounts.create("Bistro")
    other_key = (await services.accounts.create_api_key(other.id)).key
    await services.billing.redeem(str(order.code), other.id)

    shop.fake.model_durations["stability-ai/sdxl"] = 0.4  # predict_time 0.4 s, priced per second
    a = shop.auth
    await generate(shop, a, prompt="granite island", model="flux_schnell", num_outputs=2)   # 2 credits, Replicate
    await generate(shop, a, prompt="marble bathroom", model="flux_pro")                     # 5 credits
    await generate(shop, a, prompt="oak floor", model="sdxl")                               # 1 credit, per second
    await generate(shop, a, prompt="FAILME quartz", model="flux_dev")                       # fails: free
    shop.fake.create_errors = [(503, {"title": "Service Unavailable", "detail": "down"})] * 10
    failed_over = await generate(shop, a, prompt="slate roof", model="flux_schnell")       # 1 credit, on HF
    shop.fake.create_errors = []
    await generate(shop, {"Authorization": f"Bearer {other_key}"}, prompt="menu board", model="flux_schnell")
    assert len(huggingface_fake.requests) == 1 and failed_over["charged"] == 1


async def test_the_report_matches_a_hand_computation(
    shop: Server, huggingface_fake: FakeHuggingFace, clock: ManualClock, tmp_path: Path
) -> None:
    services = shop.services
    await a_test_day(shop, huggingface_fake)
    credit = Decimal("29.99") / 200
    unit_inr = Decimal(100) / 9
    inr_usd = Decimal("0.012")
    expected = {
        "flux_schnell": {"jobs": 3, "failures": 0, "credits_charged": 3, "quota_units_charged": 1,
                         "revenue_usd": 3 * credit + unit_inr * inr_usd,
                         "cost_usd": 2 * Decimal("0.003") + Decimal("0.002") + Decimal("0.003")},
        "flux_pro": {"jobs": 1, "failures": 0, "credits_charged": 5, "quota_units_charged": 0,
                     "revenue_usd": 5 * credit, "cost_usd": Decimal("0.04")},
        "sdxl": {"jobs": 1, "failures": 0, "credits_charged": 1, "quota_units_charged": 0,
                 "revenue_usd": credit, "cost_usd": Decimal("0.000975") * Decimal("0.4")},
        "flux_dev": {"jobs": 1, "failures": 1, "credits_charged": 0, "quota_units_charged": 0,
                     "revenue_usd": Decimal(0), "cost_usd": Decimal(0)},
    }  # fmt: skip
    operator = (await services.accounts.create_api_key(shop.account_id, scopes=("operator",))).key
    day = clock.now().date().isoformat()
    as_operator = {"Authorization": f"Bearer {operator}"}
    response = await shop.client.get(f"/api/v1/admin/report?since={day}", headers=as_operator)
    assert response.status == 200
    report = await response.json()
    lines = {line["model"]: line for line in report["lines"]}
    assert set(lines) == set(expected) and all(line["day"] == day for line in lines.values())
    for model, want in expected.items():
        line = lines[model]
        for name in ("jobs", "failures", "credits_charged", "quota_units_charged"):
            assert line[name] == want[name], (model, name)
        assert line["revenue_usd"] == str(want["revenue_usd"].quantize(M)), model
        assert line["cost_usd"] == str(want["cost_usd"].quantize(M)), model
        assert line["margin_usd"] == str((want["revenue_usd"] - want["cost_usd"]).quantize(M)), model
    assert lines["flux_schnell"]["revenue"] == {"inr": str(unit_inr.quantize(M)), "usd": str((3 * credit).quantize(M))}
    total_revenue = sum((w["revenue_usd"] for w in expected.values()), Decimal(0))
    total_cost = sum((w["cost_usd"] for w in expected.values()), Decimal(0))
    assert report["totals"]["jobs"] == 6 and report["totals"]["failures"] == 1
    assert report["totals"]["margin_usd"] == str((total_revenue - total_cost).quantize(M))
    # A customer's key (every default scope) may not read it.
    assert (await shop.client.get(f"/api/v1/admin/report?since={day}", headers=shop.auth)).status == 403

    # The same figures from the command line.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOWME_")}
    env.update(PYTHONPATH=str(REPO), SHOWME_DATABASE__URL=services.settings.database.url,
               SHOWME_MEDIA__ROOT=str(tmp_path / "cli-media"), SHOWME_SERVER__SECRET_KEY_FILE=str(tmp_path / "k"))
    proc = await asyncio.create_subprocess_exec(
        *_command(), "report", "--since", day, "--until", (clock.now().date() + timedelta(days=1)).isoformat(),
        "--json",
        cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    cli = json.loads(out)
    assert cli["lines"] == report["lines"] and cli["totals"] == report["totals"]
