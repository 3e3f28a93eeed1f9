"""The Telegram bot through the real server: python-telegram-bot's Application talks to a fake Bot API,
real Update JSON arrives at /webhooks/telegram, images come from the fake Replicate."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

from sqlalchemy import func, select

from storage.models import Account, Job
from tests.bot.conftest import TelegramServer
from tests.fakes.stripe import FakeStripe
from tests.fakes.telegram import Call


def buttons(call: Call) -> list[dict[str, str]]:
    return [b for row in call.params["reply_markup"]["inline_keyboard"] for b in row]


async def test_startup_registers_commands_and_the_webhook_with_its_secret(tg: TelegramServer) -> None:
    [webhook] = tg.telegram.of("setWebhook")
    assert webhook.params["url"] == "https://showme.example/webhooks/telegram"
    assert webhook.params["secret_token"] == "tg-secret_123"
    [commands] = tg.telegram.of("setMyCommands")
    names = [c["command"] for c in commands.params["commands"]]
    assert names[:2] == ["imagine", "image"] and {"balance", "buy", "redeem", "library", "settings", "help"} <= set(
        names
    )


async def test_imagine_sends_upload_action_then_the_stored_photo_with_buttons(tg: TelegramServer) -> None:
    response = await tg.post(tg.telegram.text_update("/imagine black galaxy granite in a modern kitchen"))
    assert response.status == 200
    [photo] = await tg.telegram.wait_for("sendPhoto")
    actions = tg.telegram.of("sendChatAction")
    assert actions and actions[0].params["action"] == "upload_photo" and int(actions[0].params["chat_id"]) == 42
    account_id = await tg.account_id()
    assert account_id is not None
    # The photo is the stored image, byte for byte, captioned with the prompt, with the three buttons.
    async with tg.services.db.read() as session:
        job_id = await session.scalar(select(Job.id).where(Job.account_id == account_id))
    job = await tg.services.generation.get(str(job_id))
    stored = await tg.services.blobs.get(job.assets[0].blob_key)
    assert photo.files["photo"] == stored
    assert photo.params["caption"].startswith("black galaxy granite in a modern kitchen")
    assert [(b["text"], b["callback_data"]) for b in buttons(photo)] == [
        ("🔁 Again", f"a:{job.id}"),
        ("🎨 Style", f"s:{job.id}"),
        ("📄 Original", f"o:{job.id}"),
        ("⬆️ Upscale", f"e:u:{job.id}"),
        ("✂️ Remove background", f"e:r:{job.id}"),
        ("🎬 Animate", f"e:a:{job.id}"),
    ]
    assert job.source == "telegram" and job.charged == 1
    assert (await tg.services.credits.balance(account_id)).credits == 9  # 10 starter credits, 1 spent


async def test_wrong_secret_is_refused_and_nothing_is_processed(tg: TelegramServer) -> None:
    before = len(tg.telegram.calls)
    response = await tg.post(tg.telegram.text_update("/imagine a fox"), secret="wrong")
    assert response.status == 403
    response = await tg.client.post("/webhooks/telegram", json=tg.telegram.text_update("/imagine a fox"))
    assert response.status == 403
    await asyncio.sleep(0.3)
    assert len(tg.telegram.calls) == before
    assert await tg.account_id() is None
    response = await tg.client.post(
        "/webhooks/telegram", data=b"{not json", headers={"X-Telegram-Bot-Api-Secret-Token": "tg-secret_123"}
    )
    assert response.status == 400


async def test_an_update_arriving_in_pieces_is_read_whole(tg: TelegramServer) -> None:
    update = tg.telegram.text_update("/imagine a fox in the snow")
    update["message"]["entities"] += [{"type": "bold", "offset": 10, "length": 3}] * 400  # about 20 kB
    raw = json.dumps(update).encode()

    async def pieces(data: bytes) -> Any:
        for start in range(0, len(data), 1024):
            yield data[start : start + 1024]
            await asyncio.sleep(0)

    headers = {"X-Telegram-Bot-Api-Secret-Token": "tg-secret_123", "Content-Type": "application/json"}
    response = await tg.client.post("/webhooks/telegram", data=pieces(raw), headers=headers)
    assert response.status == 200
    await tg.telegram.wait_for("sendPhoto")
    response = await tg.client.post("/webhooks/telegram", data=pieces(b" " * 1_100_000), headers=headers)
    assert response.status == 413


async def test_buttons_again_style_original_and_only_for_the_requester(tg: TelegramServer) -> None:
    await tg.post(tg.telegram.text_update("/imagine a lighthouse at dusk"))
    [photo] = await tg.telegram.wait_for("sendPhoto")
    job_id = photo.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"].split(":")[1]
    message = tg.telegram.sent_message(photo)
    # 📄 Original: the full-quality file as a document.
    await tg.post(tg.telegram.callback_update(f"o:{job_id}", message))
    [document] = await tg.telegram.wait_for("sendDocument")
    job = await tg.services.generation.get(job_id)
    assert document.files["document"] == await tg.services.blobs.get(job.assets[0].blob_key)
    # 🔁 Again: a new picture with a new seed, same prompt and model.
    await tg.post(tg.telegram.callback_update(f"a:{job_id}", message))
    photos = await tg.telegram.wait_for("sendPhoto", 2)
    assert photos[1].params["caption"].startswith("a lighthouse at dusk")
    # 🎨 Style → a style menu → a restyled picture.
    await tg.post(tg.telegram.callback_update(f"s:{job_id}", message))
    menu = await tg.telegram.wait_for_text("Which style?")
    assert f"S:{job_id}:sketch" in [b["callback_data"] for b in buttons(menu)]
    await tg.post(tg.telegram.callback_update(f"S:{job_id}:sketch", tg.telegram.sent_message(menu)))
    photos = await tg.telegram.wait_for("sendPhoto", 3)
    assert "sketch" in photos[2].params["caption"]
    # Someone else pressing the buttons is told no, and nothing is generated or charged to them.
    await tg.post(tg.telegram.callback_update(f"a:{job_id}", message, user_id=77))
    await asyncio.sleep(0.5)
    refusals = [c for c in tg.telegram.of("answerCallbackQuery") if c.params.get("show_alert")]
    assert refusals and "Only the person" in refusals[-1].params["text"]
    assert len(tg.telegram.of("sendPhoto")) == 3
    account_id = await tg.account_id()
    assert account_id is not None
    assert (await tg.services.credits.balance(account_id)).credits == 7


async def test_no_credits_gets_a_buy_button_and_is_not_charged(tg: TelegramServer) -> None:
    tg.services.settings.credits.starter_credits = 0
    await tg.post(tg.telegram.text_update("/imagine a red fox"))
    [message] = await tg.telegram.wait_for("sendMessage")
    assert "Not enough credits" in message.params["text"]
    assert buttons(message) == [{"text": "💳 Buy credits", "callback_data": "b"}]
    assert tg.telegram.of("sendPhoto") == []
    async with tg.services.db.read() as session:
        assert await session.scalar(select(func.count()).select_from(Job)) == 0
    # The Buy button lists packs and plans as links that open Stripe Checkout for this account.
    await tg.post(tg.telegram.callback_update("b", tg.telegram.sent_message(message)))
    menu = await tg.telegram.wait_for_text("Choose a credit pack")
    links = {b["text"].split(":")[0]: b["url"] for b in buttons(menu)}
    assert set(links) >= {"Creator", "Flash hour"} and all("/checkout/start?t=" in u for u in links.values())
    path = "/" + links["Creator"].split("://", 1)[1].split("/", 1)[1]
    response = await tg.client.get(path, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"].startswith(tg.stripe.base_url + "/pay/cs_test_")
    # Paying tells the buyer in Telegram.
    [order] = await tg.services.billing.orders()
    assert order.source == "telegram"
    session = tg.stripe.pay(str(order.checkout_session_id))
    body = FakeStripe.event("checkout.session.completed", session)
    response = await tg.client.post(
        "/webhooks/stripe", data=body.encode(), headers={"Stripe-Signature": FakeStripe.sign(body)}
    )
    assert response.status == 200
    note = await tg.telegram.wait_for_text("Payment received")
    assert "You have 200 credits." in note.params["text"]


async def test_redeemed_code_shows_in_balance(tg: TelegramServer) -> None:
    [code] = await tg.services.billing.create_codes("flash")
    await tg.post(tg.telegram.text_update(f"/redeem {code.lower()}"))
    [reply] = await tg.telegram.wait_for("sendMessage")
    assert "Flash session active" in reply.params["text"]
    await tg.post(tg.telegram.text_update("/balance"))
    balance = (await tg.telegram.wait_for_text("You have")).params["text"]
    assert "You have 10 credits." in balance
    assert "Session: 8 images (60 min left)." in balance and "Session: 1 video (60 min left)." in balance
    await tg.post(tg.telegram.text_update(f"/redeem {code}"))
    await tg.telegram.wait_for_text("already redeemed")


async def test_private_messages_that_ask_for_a_picture_generate_one(tg: TelegramServer) -> None:
    await tg.post(tg.telegram.text_update("what are your opening hours?"))
    [hint] = await tg.telegram.wait_for("sendMessage")
    assert "Tell me what to draw" in hint.params["text"]
    await tg.post(tg.telegram.text_update("draw a cabin in the snow in sketch style"))
    [photo] = await tg.telegram.wait_for("sendPhoto")
    assert photo.params["caption"].startswith("a cabin in the snow") and "sketch" in photo.params["caption"]


async def test_group_commands_replies_and_a_visible_queue(tg: TelegramServer) -> None:
    tg.replicate.duration = 0.8
    group = -100500
    await tg.post(tg.telegram.text_update("/imagine@showme_test_bot a red barn", chat_id=group))
    await tg.post(tg.telegram.text_update("/imagine@showme_test_bot a blue barn", chat_id=group))
    await tg.post(tg.telegram.text_update("/imagine@another_bot a green barn", chat_id=group))
    photos = await tg.telegram.wait_for("sendPhoto", 2, timeout=15)
    # Both arrive at once and are handled concurrently: either may run first; the other waits its turn.
    assert {p.params["caption"].split("\n")[0] for p in photos} == {"a red barn", "a blue barn"}
    queued = [c for c in tg.telegram.of("sendMessage") if "Queued" in c.params.get("text", "")]
    assert len(queued) == 1 and "number 1 in line" in queued[0].params["text"]
    # A reply to the bot's message in the group is a request.
    reply_to = {**tg.telegram.sent_message(photos[0]), "message_id": 999}
    await tg.post(tg.telegram.text_update("a yellow barn at sunrise", chat_id=group, reply_to=reply_to))
    photos = await tg.telegram.wait_for("sendPhoto", 3, timeout=15)
    assert photos[2].params["caption"].startswith("a yellow barn at sunrise")
    await asyncio.sleep(0.3)
    assert len(tg.telegram.of("sendPhoto")) == 3  # the command for another bot was ignored


async def test_settings_are_persisted_and_used(tg: TelegramServer) -> None:
    await tg.post(tg.telegram.text_update("/settings"))
    [menu] = await tg.telegram.wait_for("sendMessage")
    assert "p:model:flux_dev" in [b["callback_data"] for b in buttons(menu)]
    await tg.post(tg.telegram.callback_update("p:model:flux_dev", tg.telegram.sent_message(menu)))
    await tg.post(tg.telegram.callback_update("p:aspect_ratio:16:9", tg.telegram.sent_message(menu)))
    edits = await tg.telegram.wait_for("editMessageText", 2)
    # The two taps run concurrently: both changes are kept (the menu shows each as it is saved).
    assert any("Model: flux_dev" in e.params["text"] for e in edits)
    account_id = await tg.account_id()
    assert account_id is not None
    async with tg.services.db.read() as session:
        stored = await session.scalar(select(Account.preferences).where(Account.id == account_id))
    assert stored["chat"] == {"model": "flux_dev", "aspect_ratio": "16:9"}

    await tg.post(tg.telegram.text_update("/imagine a quiet harbour"))
    [photo] = await tg.telegram.wait_for("sendPhoto")
    assert "flux_dev · 16:9" in photo.params["caption"]
    assert (await tg.services.credits.balance(account_id)).credits == 8


async def test_library_sends_the_users_own_pictures_as_an_album(tg: TelegramServer) -> None:
    await tg.post(tg.telegram.text_update("/imagine granite kitchen island"))
    await tg.telegram.wait_for("sendPhoto")
    await tg.post(tg.telegram.text_update("/imagine granite bathroom vanity"))
    await tg.telegram.wait_for("sendPhoto", 2)
    await tg.post(tg.telegram.text_update("/library granite"))
    [album] = await tg.telegram.wait_for("sendMediaGroup")
    assert len(album.params["media"]) == 2 and len(album.files) == 2
    await tg.post(tg.telegram.text_update("/library zebra"))
    await tg.telegram.wait_for_text("Nothing in your pictures matches")


async def test_start_creates_the_account_with_starter_credits(tg: TelegramServer) -> None:
    await tg.post(tg.telegram.text_update("/start"))
    [welcome] = await tg.telegram.wait_for("sendMessage")
    assert welcome.params["text"].startswith("Welcome!") and "You have 10 credits." in welcome.params["text"]
    assert "/imagine" in welcome.params["text"]


async def test_polling_mode_when_the_public_url_is_not_https(
    settings: Any, replicate_fake: Any, telegram_fake: Any, clock: Any, aiohttp_client: Any
) -> None:
    from core.config import Secrets
    from tests.fakes.telegram import TOKEN
    from tools.app import create_app

    settings.server.public_url = "http://127.0.0.1:8080"
    settings.telegram.api_base_url = f"{telegram_fake.base_url}/bot"
    secrets = Secrets(REPLICATE_API_TOKEN=replicate_fake.token, SHOWME_SECRET_KEY="k", TELEGRAM_BOT_TOKEN=TOKEN)
    client = await aiohttp_client(create_app(settings, clock=clock, secrets=secrets))
    await telegram_fake.wait_for("getUpdates")
    assert telegram_fake.of("setWebhook") == [] and telegram_fake.of("deleteWebhook")
    response = await client.post("/webhooks/telegram", json={"update_id": 1})
    assert response.status == 404  # updates arrive by polling only


async def test_buy_in_local_development_creates_the_session_from_a_callback(
    settings: Any, replicate_fake: Any, stripe_fake: Any, telegram_fake: Any, clock: Any, aiohttp_client: Any
) -> None:
    from core.config import Secrets
    from tests.fakes.stripe import API_KEY
    from tests.fakes.telegram import TOKEN
    from tools.app import create_app

    settings.telegram.mode = "webhook"  # plain-http public URL, as on a laptop behind a tunnel
    settings.telegram.api_base_url = f"{telegram_fake.base_url}/bot"
    settings.stripe.api_base = stripe_fake.base_url
    secrets = Secrets(
        REPLICATE_API_TOKEN=replicate_fake.token, STRIPE_SECRET_KEY=API_KEY, TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_WEBHOOK_SECRET="s",
    )  # fmt: skip
    client = await aiohttp_client(create_app(settings, clock=clock, secrets=secrets))
    headers = {"X-Telegram-Bot-Api-Secret-Token": "s"}
    await client.post("/webhooks/telegram", json=telegram_fake.text_update("/buy"), headers=headers)
    menu = await telegram_fake.wait_for_text("Choose a credit pack")
    assert "B:pack:creator" in [b.get("callback_data") for b in buttons(menu)]
    click = telegram_fake.callback_update("B:pack:creator", telegram_fake.sent_message(menu))
    await client.post("/webhooks/telegram", json=click, headers=headers)
    pay = await telegram_fake.wait_for_text("Tap Pay now")
    [link] = buttons(pay)
    assert link["url"].startswith(stripe_fake.base_url + "/pay/cs_test_")


async def test_edit_buttons_and_video_command(tg: TelegramServer) -> None:
    """✂️ under a photo sends back a transparent PNG as a document (a photo would drop the alpha), charged once
    even when Telegram redelivers the press; another user's press is refused; a failing model refunds; /video
    answers with sendVideo, its size, length and poster."""
    from PIL import Image

    await tg.post(tg.telegram.text_update("/imagine a quartz countertop"))
    [photo] = await tg.telegram.wait_for("sendPhoto")
    message = tg.telegram.sent_message(photo)
    job_id = next(b["callback_data"] for b in buttons(photo) if b["text"] == "🔁 Again")[2:]
    account_id = await tg.account_id()
    assert account_id is not None and (await tg.services.credits.balance(account_id)).credits == 9
    press = tg.telegram.callback_update(f"e:r:{job_id}", message)
    await tg.post(press)
    [document] = await tg.telegram.wait_for("sendDocument")
    with Image.open(io.BytesIO(document.files["document"])) as cut_out:
        assert cut_out.format == "PNG" and cut_out.mode == "RGBA" and cut_out.getpixel((0, 0))[3] == 0
    await tg.post(press)  # the same callback query again: the first job, no new charge
    await asyncio.sleep(0.5)
    assert (await tg.services.credits.balance(account_id)).credits == 8  # rembg costs 1
    # Someone else's press on the upscale button is refused and costs nothing.
    await tg.post(tg.telegram.callback_update(f"e:u:{job_id}", message, user_id=77))
    await asyncio.sleep(0.5)
    refusals = [c for c in tg.telegram.of("answerCallbackQuery") if c.params.get("show_alert")]
    assert refusals and "Only the person" in refusals[-1].params["text"]
    # A failing upscaler: the sentence says nothing was charged.
    tg.replicate.failing_models.add("nightmareai/real-esrgan")
    await tg.post(tg.telegram.callback_update(f"e:u:{job_id}", message))
    for _ in range(100):
        edits = [c.params["text"] for c in tg.telegram.of("editMessageText") if "not charged" in c.params["text"]]
        if edits:
            break
        await asyncio.sleep(0.1)
    assert edits and "that picture failed" in edits[0], tg.telegram.of("editMessageText")
    assert (await tg.services.credits.balance(account_id)).credits == 8
    # /video: a real MP4 with its size, length and a JPEG poster.
    await tg.post(tg.telegram.text_update("/video waves rolling onto a beach"))
    [video] = await tg.telegram.wait_for("sendVideo", timeout=20)
    assert (video.params["width"], video.params["height"], video.params["duration"]) == (96, 64, 1)
    poster = str(video.params["thumbnail"]).removeprefix("attach://")  # a new upload, as the Bot API requires
    assert video.files["video"][4:8] == b"ftyp" and video.files[poster][:3] == b"\xff\xd8\xff"
    assert [b["text"] for b in buttons(video)] == ["🔁 Again", "📄 Original"]
    assert (await tg.services.credits.balance(account_id)).credits == 3  # a video costs 5


async def test_plain_messages_ask_for_videos_and_animations(tg: TelegramServer) -> None:
    """In a private chat "animate this" with no picture yet says so; "could I get a photo of …" makes one;
    "animate it so …" animates that picture; "make a short video of …" makes a clip."""
    tg.services.settings.credits.starter_credits = 20
    await tg.post(tg.telegram.text_update("animate this"))
    await tg.telegram.wait_for_text("no picture of yours to animate yet")
    await tg.post(tg.telegram.text_update("could I get a photo of a copper kettle on a stove"))
    [photo] = await tg.telegram.wait_for("sendPhoto")
    assert photo.params["caption"].startswith("a copper kettle on a stove")
    await tg.post(tg.telegram.text_update("please animate it so the steam rises"))
    [clip] = await tg.telegram.wait_for("sendVideo", timeout=20)
    account_id = await tg.account_id()
    assert account_id is not None
    async with tg.services.db.read() as session:
        jobs = (await session.scalars(select(Job).where(Job.account_id == account_id).order_by(Job.created_at))).all()
    assert [j.kind for j in jobs] == ["image", "image_to_video"]
    assert jobs[1].params["styled_prompt"] == "the steam rises" and jobs[1].params["input_asset_id"]
    await tg.post(tg.telegram.text_update("Make a short video of waves rolling onto a beach, vertical"))
    await tg.telegram.wait_for("sendVideo", 2, timeout=20)
    last = tg.replicate.creates[-1]["input"]
    assert (last["prompt"], last["aspect_ratio"]) == ("waves rolling onto a beach", "9:16")
    assert clip.files["video"][4:8] == b"ftyp"


async def test_a_redelivered_update_sends_its_photo_once(tg: TelegramServer) -> None:
    # Telegram redelivers an update whose 200 it did not get: at once (while the first is running) and later.
    update = tg.telegram.text_update("/imagine a lighthouse in a storm")
    await asyncio.gather(tg.post(update), tg.post(update))
    await tg.telegram.wait_for("sendPhoto")
    await tg.post(update)
    press = tg.telegram.callback_update("a:" + "0" * 32, tg.telegram.sent_message(tg.telegram.of("sendPhoto")[0]))
    await tg.post(tg.telegram.text_update("/balance"))  # answered after the redeliveries were handled
    await tg.telegram.wait_for_text("credits")
    await asyncio.sleep(0.3)
    assert len(tg.telegram.of("sendPhoto")) == 1
    account_id = await tg.account_id()
    assert account_id is not None
    async with tg.services.db.read() as session:
        assert await session.scalar(select(func.count()).select_from(Job)) == 1
    assert (await tg.services.credits.balance(account_id)).credits == 9
    # A redelivered button press is dropped the same way: one answer to the callback query.
    await asyncio.gather(tg.post(press), tg.post(press))
    await tg.telegram.wait_for("answerCallbackQuery")
    await asyncio.sleep(0.3)
    assert len(tg.telegram.of("answerCallbackQuery")) == 1
