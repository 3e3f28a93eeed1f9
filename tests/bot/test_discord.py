"""The Discord bot through the real server: discord.py's own gateway dispatch receives INTERACTION_CREATE from a
fake gateway, and its REST calls land on a fake Discord API (``discord.http.Route.BASE`` points there)."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.bot.conftest import DiscordServer
from tests.fakes.stripe import FakeStripe


def components(payload: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for row in payload.get("components", []) for c in row["components"]]


async def imagine(dc: DiscordServer, prompt: str, **options: str) -> dict[str, Any]:
    interaction = dc.discord.command("imagine", prompt=prompt, **options)
    await dc.discord.dispatch("INTERACTION_CREATE", interaction)
    return interaction


async def test_commands_are_synced_at_startup(dc: DiscordServer) -> None:
    [sync] = dc.discord.of("PUT", "/commands")
    names = {c["name"] for c in sync.json}
    assert names == {"imagine", "video", "balance", "buy", "redeem", "library"}
    options = {o["name"]: o for o in next(c for c in sync.json if c["name"] == "imagine")["options"]}
    assert options["prompt"]["required"] is True
    assert [c["value"] for c in options["style"]["choices"]] == ["photorealistic", "artistic", "sketch", "modern"]


async def test_imagine_defers_then_sends_the_image_with_persistent_buttons(dc: DiscordServer) -> None:
    interaction = await imagine(dc, "black galaxy granite in a modern kitchen", style="modern")
    [callback] = await dc.discord.wait_for("POST", f"/interactions/{interaction['id']}/")
    assert callback.json == {"type": 5}  # deferred, "thinking"
    token = interaction["token"]
    edits = await dc.discord.wait_for("PATCH", f"/{token}/messages/@original")
    final = next(e for e in edits if e.files)
    [(filename, data)] = final.files.items()
    [embed] = final.json["embeds"]
    assert embed["image"]["url"] == f"attachment://{filename}"
    assert embed["description"] == "black galaxy granite in a modern kitchen"
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Model"] == "flux_schnell" and fields["Style"] == "modern" and fields["Credits left"].startswith("9 ")
    buttons = components(final.json)
    job_id = buttons[0]["custom_id"].removeprefix("showme:again:")
    assert [b["custom_id"] for b in buttons] == [
        f"showme:again:{job_id}", f"showme:original:{job_id}", f"showme:edit:upscale:{job_id}",
        f"showme:edit:remove_background:{job_id}", f"showme:edit:animate:{job_id}",
    ]  # fmt: skip
    job = await dc.services.generation.get(job_id)
    assert data == await dc.services.blobs.get(job.assets[0].blob_key)
    assert job.source == "discord" and job.charged == 1


async def test_no_credits_is_a_private_message_with_buy_links_and_no_charge(dc: DiscordServer) -> None:
    dc.services.settings.credits.starter_credits = 0
    interaction = await imagine(dc, "a red fox in the snow")
    token = interaction["token"]
    [followup] = await dc.discord.wait_for("POST", f"/webhooks/{interaction['application_id']}/{token}")
    assert followup.json["flags"] & 64  # ephemeral
    assert "Not enough credits" in followup.json["content"]
    links = components(followup.json)
    assert links and all(b["style"] == 5 and "/checkout/start?t=" in b["url"] for b in links)
    assert dc.discord.of("DELETE", f"/{token}/messages/@original")  # the public "thinking…" is removed
    account_id = await dc.services.accounts.for_identity("discord", interaction["user"]["id"], name="x")
    assert (await dc.services.credits.ledger(account_id[0].id)) == []
    # A link opens Stripe Checkout for that account.
    path = "/" + links[0]["url"].split("://", 1)[1].split("/", 1)[1]
    response = await dc.client.get(path, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"].startswith(dc.stripe.base_url)


async def test_buttons_work_after_a_restart_and_only_for_the_requester(
    dc: DiscordServer,
    settings: Any,
    discord_fake: Any,
    stripe_fake: Any,
    replicate_fake: Any,
    clock: Any,
    aiohttp_client: Any,
) -> None:
    from tests.bot.conftest import discord_app
    from tools.http import SERVICES

    interaction = await imagine(dc, "a lighthouse at dusk")
    edits = await dc.discord.wait_for("PATCH", f"/{interaction['token']}/messages/@original")
    final = next(e for e in edits if e.files)
    again_id, original_id, *_edits = [b["custom_id"] for b in components(final.json)]
    message = dc.discord.message(payload=final.json)
    # Restart: the first server shuts down, a new one (new process state, same database) takes over.
    await dc.client.close()
    discord_fake.identified.clear()
    before = len(discord_fake.requests)
    client = await aiohttp_client(discord_app(settings, discord_fake, stripe_fake, replicate_fake, clock))
    services = client.server.app[SERVICES]
    # Someone else pressing the button is refused privately; nothing is generated.
    stranger = discord_fake.user("4200000000000000077", "sam")
    click = discord_fake.click(again_id, message, user=stranger)
    await discord_fake.dispatch("INTERACTION_CREATE", click)
    [refusal] = await discord_fake.wait_for("POST", f"/interactions/{click['id']}/")
    assert refusal.json["type"] == 4 and refusal.json["data"]["flags"] & 64
    assert "Only the person" in refusal.json["data"]["content"]
    # The requester's click after the restart makes a new image.
    click = discord_fake.click(again_id, message)
    await discord_fake.dispatch("INTERACTION_CREATE", click)
    [deferred] = await discord_fake.wait_for("POST", f"/interactions/{click['id']}/")
    assert deferred.json == {"type": 5}
    edits = await discord_fake.wait_for("PATCH", f"/{click['token']}/messages/@original")
    final = next(e for e in edits if e.files)
    new_job = components(final.json)[0]["custom_id"].removeprefix("showme:again:")
    assert f"showme:again:{new_job}" != again_id
    job = await services.generation.get(new_job)
    assert job.prompt == "a lighthouse at dusk" and job.status == "succeeded"
    # 📄 Original: the stored file, privately.
    click = discord_fake.click(original_id, message)
    await discord_fake.dispatch("INTERACTION_CREATE", click)
    [reply] = await discord_fake.wait_for("POST", f"/interactions/{click['id']}/")
    assert reply.json["type"] == 4 and reply.json["data"]["flags"] & 64 and len(reply.files) == 1
    assert len(discord_fake.requests) > before


async def test_balance_redeem_buy_and_library(dc: DiscordServer) -> None:
    [code] = await dc.services.billing.create_codes("flash")
    redeem = dc.discord.command("redeem", code=code)
    await dc.discord.dispatch("INTERACTION_CREATE", redeem)
    [reply] = await dc.discord.wait_for("POST", f"/interactions/{redeem['id']}/")
    assert "Flash session active" in reply.json["data"]["content"] and reply.json["data"]["flags"] & 64
    balance = dc.discord.command("balance")
    await dc.discord.dispatch("INTERACTION_CREATE", balance)
    [reply] = await dc.discord.wait_for("POST", f"/interactions/{balance['id']}/")
    assert "Session: 8 images (60 min left)." in reply.json["data"]["content"]
    again = dc.discord.command("redeem", code=code)
    await dc.discord.dispatch("INTERACTION_CREATE", again)
    [reply] = await dc.discord.wait_for("POST", f"/interactions/{again['id']}/")
    assert "already redeemed" in reply.json["data"]["content"] and reply.json["data"]["flags"] & 64
    buy = dc.discord.command("buy", product="plan:flash")
    await dc.discord.dispatch("INTERACTION_CREATE", buy)
    [reply] = await dc.discord.wait_for("POST", f"/interactions/{buy['id']}/")
    [link] = [c for row in reply.json["data"]["components"] for c in row["components"]]
    assert link["style"] == 5 and "/checkout/start?t=" in link["url"] and "Flash" in link["label"]
    first = await imagine(dc, "granite kitchen island")
    await dc.discord.wait_for("PATCH", f"/{first['token']}/messages/@original")
    await asyncio.sleep(0.2)
    library = dc.discord.command("library", query="granite")
    await dc.discord.dispatch("INTERACTION_CREATE", library)
    [followup] = await dc.discord.wait_for("POST", f"/webhooks/{library['application_id']}/{library['token']}")
    assert len(followup.files) == 1 and followup.json["flags"] & 64


async def test_a_failed_generation_is_a_private_message_and_costs_nothing(dc: DiscordServer) -> None:
    interaction = await imagine(dc, "FAILME a broken picture")
    [followup] = await dc.discord.wait_for(
        "POST", f"/webhooks/{interaction['application_id']}/{interaction['token']}", timeout=15
    )
    assert followup.json["flags"] & 64 and "not charged" in followup.json["content"]
    account, _ = await dc.services.accounts.for_identity("discord", interaction["user"]["id"], name="x")
    assert (await dc.services.credits.balance(account.id)).credits == 10


async def _final_edit(dc: DiscordServer, token: str) -> Any:
    """The edit of the original response that attached the result (after any progress edits)."""
    for _ in range(200):
        edits = [e for e in dc.discord.of("PATCH", f"/{token}/messages/@original") if e.files]
        if edits:
            return edits[0]
        await asyncio.sleep(0.1)
    raise AssertionError("no result was attached")


async def test_edit_buttons_and_video_command(dc: DiscordServer) -> None:
    """✂️ on a picture: the requester gets the transparent PNG, charged once (a retried interaction too); a
    stranger is refused; a failing model refunds; /video attaches a real MP4 with Again and Original only."""
    import io

    from PIL import Image

    interaction = await imagine(dc, "a quartz countertop")
    edits = await dc.discord.wait_for("PATCH", f"/{interaction['token']}/messages/@original")
    final = next(e for e in edits if e.files)
    ids = {b["custom_id"].split(":")[-2]: b["custom_id"] for b in components(final.json)}
    message = dc.discord.message(payload=final.json)
    account = (await dc.services.accounts.for_identity("discord", interaction["user"]["id"], name="x"))[0].id
    assert (await dc.services.credits.balance(account)).credits == 9
    stranger = dc.discord.user("4200000000000000077", "sam")
    click = dc.discord.click(ids["remove_background"], message, user=stranger)
    await dc.discord.dispatch("INTERACTION_CREATE", click)
    [refusal] = await dc.discord.wait_for("POST", f"/interactions/{click['id']}/")
    assert "Only the person" in refusal.json["data"]["content"]
    click = dc.discord.click(ids["remove_background"], message)
    for _ in range(2):  # the gateway redelivers the same interaction: one job, one charge
        await dc.discord.dispatch("INTERACTION_CREATE", click)
    cut = await _final_edit(dc, click["token"])
    [(filename, data)] = cut.files.items()
    with Image.open(io.BytesIO(data)) as image:
        assert filename.endswith(".png") and image.mode == "RGBA" and image.getpixel((0, 0))[3] == 0
    await asyncio.sleep(0.3)
    assert (await dc.services.credits.balance(account)).credits == 8
    dc.replicate.failing_models.add("nightmareai/real-esrgan")
    click = dc.discord.click(ids["upscale"], message)
    await dc.discord.dispatch("INTERACTION_CREATE", click)
    [followup] = await dc.discord.wait_for("POST", f"/webhooks/{click['application_id']}/{click['token']}")
    assert "not charged" in followup.json["content"] and followup.json["flags"] & 64
    assert (await dc.services.credits.balance(account)).credits == 8
    video = dc.discord.command("video", prompt="waves rolling onto a beach")
    await dc.discord.dispatch("INTERACTION_CREATE", video)
    final = await _final_edit(dc, video["token"])
    [(filename, data)] = final.files.items()
    assert filename.endswith(".mp4") and data[4:8] == b"ftyp"
    assert [b["custom_id"].split(":")[1] for b in components(final.json)] == ["again", "original"]
    assert (await dc.services.credits.balance(account)).credits == 3


async def test_a_buyer_gets_a_direct_message_when_the_payment_arrives(dc: DiscordServer) -> None:
    buy = dc.discord.command("buy", product="pack:creator")
    await dc.discord.dispatch("INTERACTION_CREATE", buy)
    [reply] = await dc.discord.wait_for("POST", f"/interactions/{buy['id']}/")
    [link] = [c for row in reply.json["data"]["components"] for c in row["components"]]
    path = "/" + link["url"].split("://", 1)[1].split("/", 1)[1]
    assert (await dc.client.get(path, allow_redirects=False)).status == 303
    [order] = await dc.services.billing.orders()
    assert order.source == "discord"
    session = dc.stripe.pay(str(order.checkout_session_id))
    body = FakeStripe.event("checkout.session.completed", session)
    for _ in range(2):  # a redelivered event fulfils nothing more and sends no second message
        response = await dc.client.post(
            "/webhooks/stripe", data=body.encode(), headers={"Stripe-Signature": FakeStripe.sign(body)}
        )
        assert response.status == 200
    [opened] = await dc.discord.wait_for("POST", "/users/@me/channels")
    assert str(opened.json["recipient_id"]) == buy["user"]["id"]
    [message] = await dc.discord.wait_for("POST", "/channels/")
    assert "Payment received" in message.json["content"] and "210 credits" in message.json["content"]
    await asyncio.sleep(0.2)
    assert len(dc.discord.of("POST", "/channels/")) == 1
