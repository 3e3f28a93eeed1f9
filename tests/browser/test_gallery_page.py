"""The live call gallery in headless Chromium: a tool call's image appears on the page; a bad link shows a
clear error and opens no event feed. Needs Debian's chromium (/usr/bin/chromium) and playwright's Python
package (its own browser download is not used)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.config import Secrets, Settings
from core.generation import GenerationRequest
from tests.browser.conftest import BROWSER_MARKS
from tests.conftest import make_settings
from tests.fakes.replicate import FakeReplicate
from tests.fakes.serve import free_port
from tools.app import create_app
from tools.http import SERVICES

pytestmark = BROWSER_MARKS



@pytest.fixture
async def live(database_url: str, tmp_path: Path, replicate_fake: FakeReplicate, aiohttp_server: Any) -> Any:
    port = free_port()
    settings: Settings = make_settings(database_url, tmp_path, server={"public_url": f"http://127.0.0.1:{port}"})
    app = create_app(settings, secrets=Secrets(REPLICATE_API_TOKEN=replicate_fake.token, SHOWME_SECRET_KEY="k"))
    server = await aiohttp_server(app, port=port)
    services = app[SERVICES]
    account = await services.accounts.create("Acme Granite")
    key = await services.accounts.create_api_key(account.id)
    return server, services, account.id, key.key



async def test_image_appears_live_on_the_gallery(live: Any, browser: Any, tmp_path: Path) -> None:
    import aiohttp

    server, services, account_id, key = live
    token, _ = services.viewer_tokens.mint(account_id, "conv_browser")
    page = await browser.new_page()
    await page.goto(f"http://127.0.0.1:{server.port}/calls/conv_browser?token={token}")
    await page.wait_for_selector('#status[data-state="live"]', timeout=10_000)
    async with aiohttp.ClientSession() as http:
        response = await http.post(
            f"http://127.0.0.1:{server.port}/tools/generate_image",
            headers={"Authorization": f"Bearer {key}"},
            json={"prompt": "black galaxy granite kitchen", "conversation_id": "conv_browser"},
        )
        body = await response.json()
    assert body["status"] == "ready"
    image = await page.wait_for_selector("article.card.image img.photo", timeout=10_000)
    await page.wait_for_function("document.querySelector('img.photo').naturalWidth > 0", timeout=10_000)
    assert await image.get_attribute("data-full") == body["image_url"]
    assert await page.inner_text("article.card.image .title") == "black galaxy granite kitchen"
    assert await page.locator("article.card").count() == 1  # the placeholder was replaced, not duplicated
    await image.click()
    assert await page.is_visible("#lightbox.open img")
    await page.screenshot(path=str(tmp_path / "gallery.png"), full_page=True)
    assert (tmp_path / "gallery.png").stat().st_size > 1000
    # Reloading shows the same image from history.
    await page.reload()
    await page.wait_for_selector("article.card.image img.photo", timeout=10_000)
    assert await page.locator("article.card").count() == 1


async def test_bad_token_shows_a_clear_error_and_gets_no_events(live: Any, browser: Any, tmp_path: Path) -> None:
    server, services, account_id, _key = live
    page = await browser.new_page()
    sockets: list[Any] = []
    page.on("websocket", lambda ws: sockets.append(ws))
    await page.goto(f"http://127.0.0.1:{server.port}/calls/conv_browser?token=forged.token")
    problem = await page.wait_for_selector("#problem", state="visible", timeout=10_000)
    assert "not valid" in await problem.inner_text()
    await services.generation.generate(
        account_id, GenerationRequest(prompt="a secret kitchen", conversation_id="conv_browser")
    )
    await page.wait_for_timeout(500)
    assert await page.locator("article.card").count() == 0
    assert sockets == []  # the page never opened the event feed
    await page.screenshot(path=str(tmp_path / "bad-token.png"))


async def test_a_flash_plan_video_plays_on_the_gallery(
    database_url: str, tmp_path: Path, replicate_fake: FakeReplicate, aiohttp_server: Any, browser: Any
) -> None:
    """A redeemed Flash code's video quota pays for one text-to-video through the voice tool; the gallery shows
    the job in progress, then plays the stored MP4; the quota shows 0 videos left."""
    import aiohttp

    from core.video import decode_frames

    port = free_port()
    settings = make_settings(
        database_url, tmp_path, server={"public_url": f"http://127.0.0.1:{port}"}, tools={"max_wait_seconds": 1}
    )
    app = create_app(settings, secrets=Secrets(REPLICATE_API_TOKEN=replicate_fake.token, SHOWME_SECRET_KEY="k"))
    await aiohttp_server(app, port=port)
    services = app[SERVICES]
    account = await services.accounts.create("Acme Kitchens")
    key = (await services.accounts.create_api_key(account.id)).key
    [code] = await services.billing.codes.create("flash")
    replicate_fake.model_durations["bytedance/seedance-1-lite"] = 3.0
    base, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {key}"}
    token, _ = services.viewer_tokens.mint(account.id, "conv_video")
    page = await browser.new_page()
    await page.goto(f"{base}/calls/conv_video?token={token}")
    await page.wait_for_selector('#status[data-state="live"]', timeout=10_000)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/api/v1/redeem", headers=auth, json={"code": code}) as response:
            assert response.status == 200, await response.text()
        async with http.post(
            f"{base}/tools/generate_video", headers=auth,
            json={"prompt": "a slow pan across a white kitchen", "conversation_id": "conv_video"},
        ) as response:  # fmt: skip
            body = await response.json()
        assert (body["status"], body["kind"]) == ("generating", "video"), body
        assert "minute" in body["message"]
        await page.wait_for_selector("article.card.pending", timeout=5_000)
        assert "Making the video" in await page.inner_text("article.card.pending")
        await page.wait_for_selector("article.card.video video", timeout=20_000)
        await page.wait_for_function("document.querySelector('article.card video').readyState >= 2", timeout=20_000)
        assert await page.locator("article.card").count() == 1  # the placeholder became the video
        await page.screenshot(path=str(tmp_path / "gallery-video.png"), full_page=True)
        async with http.get(f"{base}/api/v1/credits", headers=auth) as response:
            balance = await response.json()
    job = await services.generation.get(body["job_id"])
    assert (job.status, job.unit, job.charged) == ("succeeded", "video", 1)
    [video] = job.assets
    assert decode_frames(await services.blobs.local_file(video.blob_key)) == 12
    quotas = {q["unit"]: q["remaining"] for q in balance["quotas"]}
    assert quotas["video"] == 0 and quotas["image"] == 8 and balance["credits"] == 10
