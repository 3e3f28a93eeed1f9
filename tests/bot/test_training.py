"""Custom models: a FLUX LoRA trained on 10 photos (the real replicate client against the fake trainings API),
charged once when it succeeds, then used by name through the voice tool and the Telegram bot; another account
cannot use it."""

from __future__ import annotations

import io
import zipfile
from typing import Any

from aiohttp import FormData
from PIL import Image

from tests.bot.conftest import DiscordServer, TelegramServer

TRIGGER = "ACMESOFA"


def photos(count: int) -> list[bytes]:
    out = []
    for i in range(count):
        buffer = io.BytesIO()
        Image.new("RGB", (64, 64), (20 * i % 255, 100, 200 - 10 * i)).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def training_form(files: list[bytes], name: str = "acme-sofa", trigger: str = TRIGGER) -> FormData:
    form = FormData()
    for i, data in enumerate(files):
        form.add_field("images", data, filename=f"sofa-{i}.png", content_type="image/png")
    form.add_field("name", name)
    form.add_field("trigger_word", trigger)
    return form


async def train(tg: TelegramServer, auth: dict[str, str], files: list[bytes], **headers: str) -> Any:
    response = await tg.client.post("/api/v1/models/trainings", data=training_form(files), headers={**auth, **headers})
    return response.status, await response.json()


async def test_a_lora_trained_on_ten_photos_is_charged_once_and_generates_by_name(tg: TelegramServer) -> None:
    services, fake = tg.services, tg.replicate
    services.settings.training.owner = "acme"
    fake.training_duration = 0.3
    await tg.post(tg.telegram.text_update("/start"))
    await tg.telegram.wait_for("sendMessage")
    account_id = await tg.account_id()
    assert account_id is not None
    await services.credits.grant(account_id=account_id, amount=100, source_ref="test:training", category="admin")
    auth = {"Authorization": f"Bearer {(await services.accounts.create_api_key(account_id)).key}"}
    # Too few photos, and a file that is not a picture: refused before anything is held.
    status, answer = await train(tg, auth, photos(4))
    assert status == 400 and answer["error"]["field"] == "images" and "10-50" in answer["error"]["message"]
    status, answer = await train(tg, auth, [*photos(9), b"not a picture"])
    assert status == 400 and "not a picture" in answer["error"]["message"]
    assert (await services.credits.balance(account_id)).credits == 110

    status, answer = await train(tg, auth, photos(10), **{"Idempotency-Key": "train-1"})
    assert status == 202 and answer["job"]["kind"] == "training", answer
    again_status, again = await train(tg, auth, photos(10), **{"Idempotency-Key": "train-1"})
    assert again_status == 202 and again["job"]["id"] == answer["job"]["id"]  # a retried request: one training
    job = await services.generation.wait(answer["job"]["id"], timeout=20)
    assert (job.status, job.charged) == ("succeeded", 50)
    assert (await services.credits.balance(account_id)).credits == 60  # 110 - 50, once
    [training] = fake.trainings.values()
    assert training["destination"] == f"acme/showme-{account_id}-acme-sofa"
    assert training["input"]["trigger_word"] == TRIGGER and training["input"]["steps"] == 1000
    with zipfile.ZipFile(io.BytesIO(training["images"])) as archive:
        assert len(archive.namelist()) == 10
    assert fake.models_created[0]["visibility"] == "private"
    listed = await (await tg.client.get("/api/v1/models", headers=auth)).json()
    [custom] = listed["custom"]
    assert custom["name"] == "acme-sofa" and custom["ref"] == training["output"]["version"]
    version = training["output"]["version"].split(":", 1)[1]

    # The voice tool, by name: the prompt gets the trigger word, the prediction runs the trained version.
    response = await tg.client.post(
        "/tools/generate_image", headers=auth, json={"prompt": "a green velvet sofa in a loft", "model": "acme-sofa"}
    )
    answer = await response.json()
    assert response.status == 200 and answer["status"] == "ready", answer
    assert fake.creates[-1]["version"] == version
    assert fake.creates[-1]["input"]["prompt"].startswith(f"{TRIGGER} a green velvet sofa")
    # The Telegram bot: /imagine … model:<name>.
    await tg.post(tg.telegram.text_update("/imagine the sofa by a sunny window model:acme-sofa"))
    await tg.telegram.wait_for("sendPhoto")
    assert fake.creates[-1]["version"] == version and "sunny window" in fake.creates[-1]["input"]["prompt"]
    assert "model:" not in fake.creates[-1]["input"]["prompt"]
    assert (await services.credits.balance(account_id)).credits == 56  # two pictures at 2 credits
    entries = [e for e in await services.credits.ledger(account_id) if e.job_id == job.id]
    assert {e.kind for e in entries} == {"hold", "settle"}  # the starter grant, then the admin one
    assert sum(e.amount for e in entries if e.kind == "settle") == 50


async def test_another_account_cannot_use_a_trained_model(tg: TelegramServer) -> None:
    services, fake = tg.services, tg.replicate
    services.settings.training.owner = "acme"
    fake.training_duration = 0.1
    owner = await services.accounts.create("Acme")
    await services.credits.grant(account_id=owner.id, amount=100, source_ref="test:owner", category="admin")
    owner_auth = {"Authorization": f"Bearer {(await services.accounts.create_api_key(owner.id)).key}"}
    _, answer = await train(tg, owner_auth, photos(10))
    assert (await services.generation.wait(answer["job"]["id"], timeout=20)).status == "succeeded"
    other = await services.accounts.create("Someone else")
    other_auth = {"Authorization": f"Bearer {(await services.accounts.create_api_key(other.id)).key}"}
    creates = len(fake.creates)
    response = await tg.client.post(
        "/tools/generate_image", headers=other_auth, json={"prompt": "a sofa", "model": "acme-sofa"}
    )
    error = (await response.json())["error"]
    assert response.status == 400 and error["field"] == "model" and "acme-sofa" in error["message"]
    response = await tg.client.post(
        "/api/v1/generations", headers=other_auth, json={"prompt": "a sofa", "model": "acme-sofa"}
    )
    assert response.status == 400
    assert (await (await tg.client.get("/api/v1/models", headers=other_auth)).json())["custom"] == []
    assert len(fake.creates) == creates
    assert (await services.credits.balance(other.id)).credits == 10


async def test_a_trained_model_in_discord_imagine(dc: DiscordServer) -> None:
    services, fake = dc.services, dc.replicate
    services.settings.training.owner = "acme"
    fake.training_duration = 0.1
    user_id = dc.discord.user()["id"]
    account, _ = await services.accounts.for_identity("discord", user_id, name="buyer")
    await services.credits.grant(account_id=account.id, amount=100, source_ref="test:discord", category="admin")
    auth = {"Authorization": f"Bearer {(await services.accounts.create_api_key(account.id)).key}"}
    response = await dc.client.post("/api/v1/models/trainings", data=training_form(photos(10)), headers=auth)
    job_id = (await response.json())["job"]["id"]
    assert (await services.generation.wait(job_id, timeout=20)).status == "succeeded"
    version = next(iter(fake.trainings.values()))["output"]["version"].split(":", 1)[1]
    interaction = dc.discord.command("imagine", prompt="the sofa on a terrace model:acme-sofa")
    await dc.discord.dispatch("INTERACTION_CREATE", interaction)
    await dc.discord.wait_for("PATCH", f"/{interaction['token']}/messages/@original")
    assert fake.creates[-1]["version"] == version
    assert fake.creates[-1]["input"]["prompt"].startswith(f"{TRIGGER} the sofa on a terrace")
