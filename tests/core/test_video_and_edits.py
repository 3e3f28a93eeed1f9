"""Videos and image edits end to end: the real ``replicate`` client uploads the input through the files API of
the fake Replicate, which answers with real MP4s and PNGs; what is stored is decoded back."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from core.errors import InsufficientCredits, InvalidRequest, NotFound
from core.generation import GenerationRequest
from core.video import decode_frames, probe_video
from tests.fakes.replicate import FakeReplicate
from tools.services import Services


def _png(size: tuple[int, int] = (40, 30), colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


async def _account_with_photo(services: Services, credits: int = 0) -> tuple[int, int]:
    account = await services.accounts.create("Acme Kitchens")
    if credits:
        await services.credits.grant(account_id=account.id, amount=credits, source_ref=f"test:{account.id}")
    asset, _ = await services.library.import_image(account.id, _png(), name="Quartz countertop")
    return account.id, asset.id


async def test_text_to_video_is_stored_as_a_video_asset_with_poster_and_duration(
    services: Services, replicate_fake: FakeReplicate
) -> None:
    account, _ = await _account_with_photo(services, credits=10)
    job = await services.generation.generate(
        account, GenerationRequest(prompt="a slow pan across a modern kitchen", model="seedance_lite")
    )
    assert job.status == "succeeded", job.error
    assert (job.kind, job.unit, job.charged) == ("video", "credit", 5)
    [sent] = replicate_fake.creates
    assert sent["input"] == {
        "prompt": "a slow pan across a modern kitchen", "duration": 5, "resolution": "480p", "aspect_ratio": "16:9"
    }
    assert replicate_fake.prefer_headers == [None]  # no sync wait: the prediction id is saved at once
    [video] = job.assets
    assert (video.kind, video.mime, video.width, video.height) == ("video", "video/mp4", 96, 64)
    assert video.duration_seconds == pytest.approx(1.0) and video.url.endswith(".mp4")
    path = await services.blobs.local_file(video.blob_key)
    assert decode_frames(path) == 12 and probe_video(path, 64).width == 96
    assert video.thumb_url is not None  # the poster frame
    with Image.open(await services.blobs.local_file(video.thumb_key or "")) as poster:
        assert poster.format == "WEBP" and poster.size == (96, 64)
    assert (await services.credits.balance(account)).credits == 10 + 10 - 5


@pytest.mark.parametrize(
    ("model", "price", "mode", "size"),
    [("real_esrgan", 2, "RGB", (160, 120)), ("rembg", 1, "RGBA", (40, 30)), ("codeformer", 2, "RGB", (80, 60))],
)
async def test_edit_uploads_the_library_image_and_stores_the_result(
    services: Services, replicate_fake: FakeReplicate, model: str, price: int, mode: str, size: tuple[int, int]
) -> None:
    account, asset_id = await _account_with_photo(services)
    job = await services.generation.generate(
        account, GenerationRequest(prompt="", model=model, input_asset_id=asset_id)
    )
    assert job.status == "succeeded", job.error
    assert (job.charged, job.input_asset_id, job.prompt) == (price, asset_id, f"{_label(model)}: Quartz countertop")
    [upload] = replicate_fake.uploads.values()
    assert upload[0] == _png() and upload[1] == "input.png"
    [result] = job.assets
    result_path = await services.blobs.local_file(result.blob_key)
    with Image.open(result_path) as img:
        assert (img.format, img.mode, img.size) == ("PNG", mode, size)
    if mode == "RGBA":
        with Image.open(result_path) as img:
            assert img.getpixel((0, 0))[3] == 0 and img.getpixel((20, 15))[3] == 255  # background gone
    assert (await services.credits.balance(account)).credits == 10 - price


def _label(model: str) -> str:
    return {"real_esrgan": "Upscaled", "rembg": "Background removed", "codeformer": "Faces restored"}[model]


async def test_animate_starts_the_clip_from_the_picture(services: Services, replicate_fake: FakeReplicate) -> None:
    account, asset_id = await _account_with_photo(services, credits=10)
    job = await services.generation.generate(
        account, GenerationRequest(prompt="steam rises from the pot", model="seedance_animate", input_asset_id=asset_id)
    )
    assert job.status == "succeeded", job.error
    sent = replicate_fake.creates[0]["input"]
    assert sent["prompt"] == "steam rises from the pot" and "aspect_ratio" not in sent
    assert replicate_fake.input_file(sent["image"]) == _png()
    [video] = job.assets
    assert video.kind == "video" and decode_frames(await services.blobs.local_file(video.blob_key)) == 12


async def test_failed_edit_is_refunded_and_bad_inputs_cost_nothing(
    services: Services, replicate_fake: FakeReplicate
) -> None:
    account, asset_id = await _account_with_photo(services)
    replicate_fake.failing_models.add("nightmareai/real-esrgan")
    job = await services.generation.generate(account, GenerationRequest(prompt="", model="real_esrgan",
                                                                        input_asset_id=asset_id))  # fmt: skip
    assert (job.status, job.charge_state, job.charged) == ("failed", "released", 0)
    with pytest.raises(InvalidRequest) as missing:
        await services.generation.submit(account, GenerationRequest(prompt="", model="rembg"))
    assert missing.value.field == "input_asset_id"
    other = await services.accounts.create("Someone else")
    with pytest.raises(NotFound):
        await services.generation.submit(other.id, GenerationRequest(prompt="", model="rembg", input_asset_id=asset_id))
    with pytest.raises(InvalidRequest) as wrong:
        await services.generation.submit(
            account, GenerationRequest(prompt="a kitchen", model="flux_schnell", input_asset_id=asset_id)
        )
    assert wrong.value.field == "input_asset_id"
    with pytest.raises(InsufficientCredits):  # 10 starter credits, a video costs 5: the third is refused
        for _ in range(3):
            await services.generation.submit(account, GenerationRequest(prompt="waves", model="seedance_lite"))
    assert (await services.credits.balance(account)).credits == 0
    assert await services.credits.invariant_violations() == []
