"""Generation end to end through the real ``replicate`` client against the fake Replicate on https."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from PIL import Image

from core.clock import ManualClock
from core.config import Settings
from core.errors import Conflict, InsufficientCredits, InvalidRequest, PromptRefused
from core.generation import GenerationRequest, GenerationService, JobRunner
from tests.fakes.replicate import SDXL_VERSION, FakeReplicate
from tools.services import Services


async def _account(services: Services, credits: int = 0) -> int:
    account = await services.accounts.create("Acme Granite")
    if credits:
        await services.credits.grant(account_id=account.id, amount=credits, source_ref=f"test:{account.id}")
    return account.id


async def test_generate_stores_image_creates_searchable_asset_and_debits_price(
    services: Services, replicate_fake: FakeReplicate
) -> None:
    account = await _account(services)  # 10 starter credits
    job = await services.generation.generate(
        account, GenerationRequest(prompt="black galaxy granite countertops", model="flux_dev", aspect_ratio="16:9")
    )
    assert job.status == "succeeded", job.error
    assert (job.unit, job.cost, job.charged, job.charge_state) == ("credit", 2, 2, "settled")
    assert (await services.credits.balance(account)).credits == 8
    # Sync wait was used and the output was an https URL, read through the client's FileOutput.
    assert replicate_fake.prefer_headers == ["wait=5"]
    assert replicate_fake.creates[0]["input"]["aspect_ratio"] == "16:9"
    [asset] = job.assets
    assert asset.url.startswith("http://127.0.0.1:8080/media/")
    path = await services.blobs.local_file(asset.blob_key)  # the file itself, or the bucket's copy here
    assert path.read_bytes() == replicate_fake.files[next(iter(replicate_fake.files))]
    with Image.open(path) as img:
        assert (img.width, img.height) == (asset.width, asset.height) == (64, 48)
    assert asset.mime == "image/webp" and asset.size_bytes == path.stat().st_size
    await services.generation.drain()  # thumbnails are made after the image is delivered
    thumb_key = (await services.library.get(account, asset.id)).thumb_key
    assert thumb_key and await services.blobs.exists(thumb_key)
    hits = await services.library.search(account, "galaxy granite")
    assert [h.asset.id for h in hits] == [asset.id]
    assert await services.library.search(account, "marble bathroom") == []
    other = await _account(services)
    assert await services.library.search(other, "galaxy granite") == []
    assert await services.credits.invariant_violations() == []


async def test_each_output_is_charged_and_style_suffix_sent(services: Services, replicate_fake: FakeReplicate) -> None:
    account = await _account(services)
    job = await services.generation.generate(
        account, GenerationRequest(prompt="a red fox", style="sketch", num_outputs=3, seed=7)
    )
    assert job.status == "succeeded" and len(job.assets) == 3 and job.charged == 3
    sent = replicate_fake.creates[0]["input"]
    assert sent["prompt"].startswith("a red fox, pencil sketch") and sent["num_outputs"] == 3 and sent["seed"] == 7
    assert (await services.credits.balance(account)).credits == 7


async def test_sdxl_uses_pinned_version_and_pixel_size(services: Services, replicate_fake: FakeReplicate) -> None:
    account = await _account(services)
    job = await services.generation.generate(
        account, GenerationRequest(prompt="a barn", model="sdxl", aspect_ratio="16:9")
    )
    assert job.status == "succeeded", job.error
    assert replicate_fake.creates[0]["version"] == SDXL_VERSION
    assert (replicate_fake.creates[0]["input"]["width"], replicate_fake.creates[0]["input"]["height"]) == (1344, 768)


async def test_flux_pro_single_uri_output(services: Services, replicate_fake: FakeReplicate) -> None:
    account = await _account(services)
    job = await services.generation.generate(account, GenerationRequest(prompt="a lighthouse", model="flux_pro"))
    assert job.status == "succeeded" and len(job.assets) == 1 and job.charged == 5
    with pytest.raises(InvalidRequest) as err:
        await services.generation.submit(account, GenerationRequest(prompt="x y", model="flux_pro", num_outputs=2))
    assert err.value.field == "num_outputs"


async def test_polling_when_prediction_outlasts_sync_wait(services: Services, replicate_fake: FakeReplicate) -> None:
    services.settings.replicate.wait_seconds = 1
    replicate_fake.duration = 1.6
    account = await _account(services)
    job = await services.generation.generate(account, GenerationRequest(prompt="a slow castle"))
    assert job.status == "succeeded"
    assert replicate_fake.prefer_headers == ["wait=1"]
    # Polled at most 0.5 s apart: ~0.6 s of polling after the 1 s wait gives at least 2 GETs.
    assert replicate_fake.gets >= 2


async def test_plain_http_outputs_come_back_as_strings(services: Services, replicate_fake: FakeReplicate) -> None:
    replicate_fake.plain_http_outputs = True
    account = await _account(services)
    job = await services.generation.generate(account, GenerationRequest(prompt="a blue sofa"))
    assert job.status == "succeeded" and job.assets[0].size_bytes > 0


@pytest.mark.parametrize(
    ("status", "problem", "code", "words"),
    [
        (
            402,
            {"title": "Insufficient credit", "detail": "You have insufficient credit to run this model."},
            "provider_billing",
            "needs credit",
        ),
        (401, {"title": "Unauthenticated", "detail": "Invalid token"}, "provider_auth_failed", "REPLICATE_API_TOKEN"),
        (500, {"title": "Internal error", "detail": "boom"}, "provider_unavailable", "unavailable"),
    ],
)
async def test_provider_http_errors_fail_clearly_and_refund(
    services: Services, replicate_fake: FakeReplicate, status: int, problem: dict[str, str], code: str, words: str
) -> None:
    replicate_fake.create_errors.append((status, problem))
    account = await _account(services)
    job = await services.generation.generate(account, GenerationRequest(prompt="a kitchen"))
    assert (job.status, job.error_code, job.charge_state, job.charged) == ("failed", code, "released", 0)
    assert words in (job.error or "")
    assert (await services.credits.balance(account)).credits == 10
    assert await services.credits.invariant_violations() == []


async def test_422_names_the_invalid_input(services: Services, replicate_fake: FakeReplicate) -> None:
    services.settings.models["flux_schnell"].aspect_ratios.append("7:3")  # config allows what the model refuses
    account = await _account(services)
    job = await services.generation.generate(account, GenerationRequest(prompt="a kitchen", aspect_ratio="7:3"))
    assert job.error_code == "provider_invalid_input" and "input.aspect_ratio" in (job.error or "")
    assert (await services.credits.balance(account)).credits == 10


async def test_429_is_retried_after_the_stated_delay(services: Services, replicate_fake: FakeReplicate) -> None:
    throttled = {"title": "Request was throttled", "detail": "Request was throttled. Expected available in 1 second."}
    replicate_fake.create_errors.extend([(429, throttled), (429, throttled)])
    account = await _account(services)
    loop = asyncio.get_running_loop()
    started = loop.time()
    job = await services.generation.generate(account, GenerationRequest(prompt="a patio"))
    assert job.status == "succeeded" and len(replicate_fake.creates) == 3
    assert loop.time() - started >= 2.0


async def test_429_beyond_the_retry_budget_fails_and_refunds(services: Services, replicate_fake: FakeReplicate) -> None:
    services.settings.replicate.rate_limit_retries = 1
    throttled = {"title": "Request was throttled", "detail": "Request was throttled. Expected available in 1 second."}
    replicate_fake.create_errors.extend([(429, throttled)] * 3)
    account = await _account(services)
    job = await services.generation.generate(account, GenerationRequest(prompt="a patio"))
    assert job.error_code == "provider_rate_limited" and "gave up after 1 retries" in (job.error or "")
    assert (await services.credits.balance(account)).credits == 10


async def test_model_failure_carries_the_models_error_and_refunds(
    services: Services, replicate_fake: FakeReplicate
) -> None:
    account = await _account(services)
    job = await services.generation.generate(account, GenerationRequest(prompt="FAILME please"))
    assert job.error_code == "model_failed" and "CUDA out of memory" in (job.error or "")
    assert (await services.credits.balance(account)).credits == 10


async def test_timeout_cancels_prediction_and_refunds(services: Services, replicate_fake: FakeReplicate) -> None:
    services.settings.replicate.wait_seconds = 1
    services.settings.replicate.timeout_seconds = 1.5
    account = await _account(services)
    job = await services.generation.generate(account, GenerationRequest(prompt="SLOWME forever"))
    assert job.error_code == "generation_timeout" and job.charge_state == "released"
    assert replicate_fake.cancels == [job.prediction_id]
    assert (await services.credits.balance(account)).credits == 10


async def test_download_retries_then_succeeds(services: Services, replicate_fake: FakeReplicate) -> None:
    replicate_fake.download_failures = 2
    account = await _account(services)
    job = await services.generation.generate(account, GenerationRequest(prompt="a fountain"))
    assert job.status == "succeeded" and replicate_fake.downloads == 3


async def test_download_failing_every_attempt_refunds(services: Services, replicate_fake: FakeReplicate) -> None:
    replicate_fake.download_failures = 3
    account = await _account(services)
    job = await services.generation.generate(account, GenerationRequest(prompt="a fountain"))
    assert job.error_code == "output_download_failed" and "3 attempts" in (job.error or "")
    assert (await services.credits.balance(account)).credits == 10


async def test_partial_outputs_charge_only_what_was_stored(services: Services, replicate_fake: FakeReplicate) -> None:
    replicate_fake.broken_outputs = {0}  # every attempt at the first output fails, the second output is fine
    account = await _account(services)
    job = await services.generation.generate(account, GenerationRequest(prompt="two fountains", num_outputs=2))
    assert job.status == "succeeded" and len(job.assets) == 1 and job.charged == 1
    assert replicate_fake.downloads == 4
    assert (await services.credits.balance(account)).credits == 9
    assert await services.credits.invariant_violations() == []


async def test_refused_and_invalid_requests_cost_nothing_and_name_the_field(services: Services) -> None:
    account = await _account(services)
    with pytest.raises(PromptRefused):
        await services.generation.submit(account, GenerationRequest(prompt="lots of gore"))
    for request, field in [
        (GenerationRequest(prompt="a cat", model="dalle"), "model"),
        (GenerationRequest(prompt="a cat", aspect_ratio="5:1"), "aspect_ratio"),
        (GenerationRequest(prompt="a cat", num_outputs=5), "num_outputs"),
        (GenerationRequest(prompt="a cat", style="cubist"), "style"),
        (GenerationRequest(prompt="  "), "prompt"),
    ]:
        with pytest.raises(InvalidRequest) as err:
            await services.generation.submit(account, request)
        assert err.value.field == field
    assert (await services.credits.balance(account)).credits == 10


async def test_insufficient_credits_writes_nothing(services: Services, replicate_fake: FakeReplicate) -> None:
    account = await _account(services)  # 10 credits
    await services.generation.generate(account, GenerationRequest(prompt="a cat", model="flux_pro"))  # 5 left
    with pytest.raises(InsufficientCredits) as err:
        await services.generation.submit(account, GenerationRequest(prompt="two dogs", model="flux_dev", num_outputs=3))
    assert (err.value.needed, err.value.available, err.value.unit) == (6, 5, "credit")
    assert "needs 6" in err.value.message and "has 5" in err.value.message
    assert (await services.credits.balance(account)).credits == 5
    assert len(replicate_fake.creates) == 1


async def test_idempotency_key_returns_the_same_job_and_charges_once(
    services: Services, replicate_fake: FakeReplicate
) -> None:
    account = await _account(services)
    request = GenerationRequest(prompt="a cat", idempotency_key="call-123")
    first, second = await asyncio.gather(
        services.generation.submit(account, request), services.generation.submit(account, request)
    )
    assert first.id == second.id
    await services.generation.wait(first.id)
    again = await services.generation.generate(account, request)
    assert again.id == first.id and again.status == "succeeded"
    assert len(replicate_fake.creates) == 1
    assert (await services.credits.balance(account)).credits == 9
    with pytest.raises(Conflict) as err:
        await services.generation.submit(account, GenerationRequest(prompt="a dog", idempotency_key="call-123"))
    assert err.value.field == "idempotency_key"


async def test_creates_beyond_the_per_minute_limit_wait(services: Services, replicate_fake: FakeReplicate) -> None:
    """``replicate.max_creates_per_minute`` (Replicate allows 600 with short bursts): a burst up to the limit
    goes out at once, the next create waits for the bucket to drain."""
    from core.providers import ProviderInput
    from core.providers.replicate import ReplicateProvider

    settings = services.settings.replicate.model_copy(update={"max_creates_per_minute": 2})
    provider = ReplicateProvider(settings, replicate_fake.token)
    model = services.settings.models["flux_schnell"]
    request = ProviderInput("flux_schnell", model, "a paced cat", "1:1", 1, "webp")
    calls = [asyncio.ensure_future(provider.create(request)) for _ in range(3)]
    done, pending = await asyncio.wait(calls, timeout=3)
    assert (len(done), len(pending), len(replicate_fake.creates)) == (2, 1, 2)
    for call in pending:
        call.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    await provider.close()


def _second_service(services: Services, settings: Settings) -> GenerationService:
    """Another generation service on the same database, provider and store, with its own settings."""
    runner = JobRunner(
        jobs=services.store.jobs,
        settings=settings,
        library=services.library,
        provider=services.provider,
        blobs=services.blobs,
        clock=services.clock,
    )
    return GenerationService(runner, services.credits)


async def test_thumbnails_in_a_worker_process(services: Services, replicate_fake: FakeReplicate) -> None:
    from concurrent.futures import ProcessPoolExecutor

    from core.config import load_settings

    settings = load_settings(None)
    assert settings.generation.thumbnail_worker == "process"
    generation = _second_service(services, settings.model_copy(update={"media": services.settings.media}))
    assert isinstance(generation.runner.thumbnails.executor, ProcessPoolExecutor)
    account = await _account(services)
    job = await generation.generate(account, GenerationRequest(prompt="a thumbnail test"))
    await generation.drain()
    thumb = (await services.library.get(account, job.assets[0].id)).thumb_key
    assert thumb and await services.blobs.exists(thumb)
    await generation.close()


async def test_running_jobs_leases_are_renewed_together(
    services: Services, replicate_fake: FakeReplicate, clock: ManualClock
) -> None:
    from sqlalchemy import select

    from storage.models import Job

    replicate_fake.duration = 0.6
    settings = services.settings.model_copy(
        update={"generation": services.settings.generation.model_copy(update={"lease_seconds": 0.3})}
    )
    generation = _second_service(services, settings)
    account = await _account(services, credits=10)
    jobs = [await generation.submit(account, GenerationRequest(prompt=f"lease test {i}")) for i in range(2)]

    async def leases() -> dict[str, tuple[str | None, datetime | None]]:
        async with services.db.read() as session:
            rows = await session.execute(select(Job.id, Job.lease_owner, Job.lease_expires_at))
            return {row.id: (row.lease_owner, row.lease_expires_at) for row in rows}

    first = await leases()
    clock.advance(hours=1)  # an hour later by the service's clock: only a renewal moves the expiry that far
    await asyncio.sleep(0.25)  # the keeper renews every lease_seconds / 3 = 0.1 s
    renewed = await leases()
    for job in jobs:
        owner, expires = renewed[job.id]
        assert owner == generation.runner_id and expires is not None
        assert expires.replace(tzinfo=None) >= (first[job.id][1] or expires).replace(tzinfo=None) + timedelta(hours=1)
    done = [await generation.wait(job.id, timeout=10) for job in jobs]
    assert [j.status for j in done] == ["succeeded", "succeeded"]
    await asyncio.sleep(0.15)
    assert (
        generation.runner._lease_keeper is not None and generation.runner._lease_keeper.done()
    )  # no jobs left: it stopped
    await generation.close()
