"""The web app in headless Chromium, as a business owner uses it: sign in by link, upload two pictures (one by
the file picker, one dropped), tag, favorite and file one in a folder, find it by search and by filter, generate
with the cost shown before and the balance after, buy a pack through the Stripe fake's hosted page, create and
revoke an API key. Every page is screenshotted into ``$SHOWME_TEST_OUTPUT/webapp`` (default
``test-output/webapp``), at 1280 px and at 375 px wide."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from core.config import Secrets
from tests.browser.conftest import BROWSER_MARKS
from tests.conftest import make_settings
from tests.fakes.replicate import FakeReplicate
from tests.fakes.serve import free_port
from tests.fakes.stripe import API_KEY, WEBHOOK_SECRET, FakeStripe
from tools.app import create_app
from tools.http import SERVICES

OUTPUT = Path(os.environ.get("SHOWME_TEST_OUTPUT", Path(__file__).parents[2] / "test-output")) / "webapp"
pytestmark = BROWSER_MARKS


def picture(color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (96, 72), color).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
async def live(
    database_url: str, tmp_path: Path, replicate_fake: FakeReplicate, stripe_fake: FakeStripe, aiohttp_server: Any
) -> Any:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = make_settings(database_url, tmp_path, server={"public_url": base}, tools={"max_wait_seconds": 5},
                             stripe={"api_base": stripe_fake.base_url, "max_network_retries": 0})  # fmt: skip
    secrets = Secrets(REPLICATE_API_TOKEN=replicate_fake.token, SHOWME_SECRET_KEY="k", STRIPE_SECRET_KEY=API_KEY,
                      STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET)  # fmt: skip
    app = create_app(settings, secrets=secrets)
    await aiohttp_server(app, port=port)
    stripe_fake.webhook_url = f"{base}/webhooks/stripe"
    services = app[SERVICES]
    account = await services.accounts.create("Acme Granite")
    await services.teams.add_member(account.id, "olivia@acme.test", "owner")
    return base, services, account.id


class Shots:
    """Full-page screenshots, one file per page and width."""

    def __init__(self) -> None:
        OUTPUT.mkdir(parents=True, exist_ok=True)
        self.taken: list[Path] = []

    async def __call__(self, page: Any, name: str) -> None:
        path = OUTPUT / f"{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)


async def drop_file(page: Any, data: bytes, name: str) -> None:
    """Drop a file on the upload area, as a person dragging it from their desktop."""
    await page.evaluate(
        """([b64, name]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, {type: "image/png"}));
            const zone = document.getElementById("upload");
            zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: transfer, bubbles: true, cancelable: true}));
            zone.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
        }""",
        [base64.b64encode(data).decode(), name],
    )


async def tile_names(page: Any) -> list[str]:
    return [n.strip() for n in await page.locator("#results .tile .name").all_inner_texts()]


async def test_an_owner_runs_the_business_from_the_web_app(live: Any, browser: Any, tmp_path: Path) -> None:
    base, services, account_id = live
    shots = Shots()
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("dialog", lambda dialog: dialog.accept())
    await sign_in_and_upload(page, base, services, shots, tmp_path)
    await organise(page, base, shots)
    await find(page, base, shots)
    await generate(page, base, services, account_id, shots)
    await buy_a_pack(page, base, services, account_id, shots)
    await create_and_revoke_a_key(page, base, shots)
    for path, name in (("/app/usage", "09-usage"), ("/app/members", "10-members"), ("/app/keys", "11-keys")):
        await page.goto(base + path)
        await shots(page, name)
    await at_375_pixels(page, browser, base, shots)
    assert all(p.stat().st_size > 5000 for p in shots.taken)


async def sign_in_and_upload(page: Any, base: str, services: Any, shots: Shots, tmp_path: Path) -> None:
    """Sign in by link (its page's button signs in: mail scanners only open links); upload two pictures, one
    through the file picker and one dropped on the page."""
    await page.goto(await services.teams.login_link("olivia@acme.test"))
    await shots(page, "01-sign-in-confirm")
    await page.click("button:has-text('Sign in')")
    await page.wait_for_url(f"{base}/app/library")
    assert "Your library is empty" in await page.inner_text("#results")
    await shots(page, "02-library-empty")
    granite = tmp_path / "black-galaxy-granite.png"
    granite.write_bytes(picture((20, 20, 24)))
    await page.set_input_files("#files", str(granite))
    await page.wait_for_function("document.getElementById('upload-status').textContent.startsWith('1 uploaded')")
    await drop_file(page, picture((230, 230, 225)), "calacatta_marble.png")
    await page.wait_for_function("document.querySelectorAll('#results .tile').length === 2")
    assert sorted(await tile_names(page)) == ["black galaxy granite", "calacatta marble"]


async def organise(page: Any, base: str, shots: Shots) -> None:
    """A folder, then tag, favorite and file the granite in it from its detail page."""
    await page.fill("#new-folder", "Kitchens")
    await page.click("form[action='/app/folders'] button")
    await page.wait_for_url("**/app/library?folder_id=*")
    await page.goto(f"{base}/app/library")
    await page.click("#results .tile a.name:has-text('black galaxy granite')")
    await page.fill("#name", "Black Galaxy Granite")
    await page.fill("#tags", "granite, black, countertop")
    await page.select_option("#category", "product")
    await page.select_option("#folder_id", label="Kitchens")
    await page.fill("#alt_text", "A slab of black granite with gold flecks")
    await page.check("input[name=favorite]")
    await page.click("#edit-asset button[type=submit]")
    await page.wait_for_selector("text=Saved.")
    assert await page.get_attribute(".preview img", "alt") == "A slab of black granite with gold flecks"
    await shots(page, "03-asset-detail")


async def find(page: Any, base: str, shots: Shots) -> None:
    """Search as you type, the favorites and category filters, the tag, the folder, the list view, and the star
    from the keyboard."""
    await page.goto(f"{base}/app/library")
    await page.type("#q", "granit", delay=30)
    await page.wait_for_function("document.querySelectorAll('#results .tile').length === 1")
    assert await tile_names(page) == ["Black Galaxy Granite"]
    assert "q=granit" in page.url  # the address keeps the search
    await page.fill("#q", "")
    await page.wait_for_function("document.querySelectorAll('#results .tile').length === 2")
    await page.check("#favorite")
    await page.wait_for_function("document.querySelectorAll('#results .tile').length === 1")
    assert await tile_names(page) == ["Black Galaxy Granite"]
    await page.uncheck("#favorite")
    await page.select_option("#category", "product")
    await page.wait_for_function("document.querySelectorAll('#results .tile').length === 1")
    await page.goto(f"{base}/app/library")
    await page.click(".tags a:has-text('countertop')")
    assert await tile_names(page) == ["Black Galaxy Granite"]
    await page.click(".folders a:has-text('Kitchens')")
    assert await tile_names(page) == ["Black Galaxy Granite"]
    await page.goto(f"{base}/app/library?view=list")
    assert await page.locator("table.list tbody tr").count() == 2
    await page.goto(f"{base}/app/library")
    marble_star = page.locator(".tile:has-text('calacatta marble') .star button")
    await marble_star.focus()
    await page.keyboard.press("Enter")
    await page.wait_for_function(
        "[...document.querySelectorAll('.tile')].some(t => t.textContent.includes('calacatta') && "
        "t.querySelector('.star button').getAttribute('aria-pressed') === 'true')"
    )
    await shots(page, "04-library")


async def generate(page: Any, base: str, services: Any, account_id: int, shots: Shots) -> None:
    """The cost before, the picture and the new balance after."""
    balance = (await services.credits.balance(account_id)).credits
    await page.goto(f"{base}/app/generate")
    assert await page.inner_text("#cost") == "1 credit"
    assert await page.inner_text("#balance") == f"{balance} credits"
    await page.select_option("#num_outputs", "2")
    assert await page.inner_text("#cost") == "2 credits"
    await page.select_option("#num_outputs", "1")
    await page.fill("#prompt", "black galaxy granite countertops in a bright modern kitchen")
    await page.click("#generate-button")
    await page.wait_for_selector("#generated img", timeout=15_000)
    await page.wait_for_function(f"document.getElementById('balance').textContent === '{balance - 1} credits'")
    assert (await services.credits.balance(account_id)).credits == balance - 1
    await shots(page, "05-generate")


async def buy_a_pack(page: Any, base: str, services: Any, account_id: int, shots: Shots) -> None:
    """Stripe Checkout (the fake's hosted page), then the credits are there."""
    balance = (await services.credits.balance(account_id)).credits
    pack = services.billing.pricing()["packs"][0]
    await page.goto(f"{base}/app/credits")
    await shots(page, "06-credits-before")
    await page.click(f"button[aria-label='Buy {pack['name']}']")
    await page.wait_for_selector("text=Pay")
    await page.click("button:has-text('Pay')")
    await page.wait_for_url("**/checkout/success**")
    await page.goto(f"{base}/app/credits")
    assert await page.inner_text("#credit-balance") == str(balance + pack["credits"])
    assert "fulfilled" in await page.inner_text("table.list")
    await shots(page, "07-credits-after")


async def create_and_revoke_a_key(page: Any, base: str, shots: Shots) -> None:
    """A key shown once that works, then revoked and refused at once."""
    await page.goto(f"{base}/app/keys")
    await page.fill("#key-name", "ElevenLabs sales agent")
    await page.click("button:has-text('Create key')")
    key = await page.input_value("#new-key")
    assert key.startswith("sm_")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http:
        async with http.get(f"{base}/api/v1/credits") as response:
            assert response.status == 200
        await shots(page, "08-keys-created")
        await page.goto(f"{base}/app/keys")
        assert key not in await page.content()  # never shown again
        await page.click(f"button[aria-label='Revoke {key[:10]}']")
        await page.wait_for_selector("text=The key is revoked")
        async with http.get(f"{base}/api/v1/credits") as response:
            assert response.status == 401


async def at_375_pixels(page: Any, browser: Any, base: str, shots: Shots) -> None:
    """On a phone-sized screen nothing scrolls sideways."""
    phone = await browser.new_page(viewport={"width": 375, "height": 800})
    await phone.context.add_cookies(await page.context.cookies())
    for path, name in (("/app/library", "12-library-375"), ("/app/generate", "13-generate-375"),
                       ("/app/credits", "14-credits-375"), ("/app/usage", "15-usage-375")):  # fmt: skip
        await phone.goto(base + path)
        wide = await phone.evaluate(
            "() => [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > 376)"
            ".map(e => `${e.tagName}.${e.className}#${e.id}`)"
        )
        assert await phone.evaluate("document.documentElement.scrollWidth") <= 375, (path, wide)
        await shots(phone, name)
