"""The ``showme`` CLI run as a person runs it: a subprocess, configured by the environment, talking to the fake
Replicate over https through ``REPLICATE_BASE_URL``. Includes SIGKILL mid-generation and the restart."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from storage.db import Database, create_engine
from storage.models import Job
from tests.conftest import backend_environment
from tests.fakes.replicate import FakeReplicate
from tests.fakes.serve import free_port
from tests.fakes.stripe import FakeStripe

REPO = Path(__file__).resolve().parents[1]


def _command() -> list[str]:
    script = shutil.which("showme")
    return [script] if script else [sys.executable, "-m", "tools.cli"]


class Cli:
    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.cwd = cwd

    async def start(self, *args: str, **env: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *_command(),
            *args,
            cwd=self.cwd,
            env={**self.env, **env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    async def run(self, *args: str, **env: str) -> tuple[int, str, str]:
        proc = await self.start(*args, **env)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    async def json(self, *args: str, **env: str) -> Any:
        code, out, err = await self.run(*args, "--json", **env)
        assert code == 0, err
        return json.loads(out)


@pytest.fixture
def cli(database_url: str, tmp_path: Path, replicate_fake: FakeReplicate) -> Cli:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOWME_")}
    env.update(
        PYTHONPATH=str(REPO),
        REPLICATE_API_TOKEN=replicate_fake.token,
        REPLICATE_BASE_URL=replicate_fake.base_url,
        SSL_CERT_FILE=os.environ["SSL_CERT_FILE"],
        SHOWME_DATABASE__URL=database_url,
        SHOWME_MEDIA__ROOT=str(tmp_path / "media"),
        SHOWME_SERVER__SECRET_KEY_FILE=str(tmp_path / "secret_key"),
        SHOWME_GENERATION__DOWNLOAD_BACKOFF_SECONDS="[0.01, 0.02]",
        **backend_environment(tmp_path),
    )
    return Cli(env, tmp_path)


def _stored(cli: Cli, key: str) -> bytes:
    """A stored blob's bytes, from the media directory or the bucket the CLI's environment names."""
    if cli.env.get("SHOWME_MEDIA__BACKEND") == "s3":
        import boto3

        client = boto3.client("s3", endpoint_url=cli.env["SHOWME_MEDIA__S3__ENDPOINT_URL"], region_name="us-east-1")
        return bytes(client.get_object(Bucket=cli.env["SHOWME_MEDIA__S3__BUCKET"], Key=key)["Body"].read())
    return (Path(cli.env["SHOWME_MEDIA__ROOT"]) / key).read_bytes()


def _single_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


async def test_generate_stores_charges_and_is_searchable(cli: Cli, replicate_fake: FakeReplicate) -> None:
    created = await cli.json("accounts", "create", "Acme Granite")
    account = str(created["account"]["id"])
    assert created["credits"] == 10
    code, out, err = await cli.run(
        "generate",
        "black galaxy granite countertops",
        "--account",
        account,
        "--model",
        "flux_dev",
        "--aspect-ratio",
        "16:9",
    )
    assert code == 0, err
    assert "succeeded" in out and "charged 2 credits" in out and "balance 8 credits" in out
    printed = out.split("image 1: ", 1)[1].split()[0]
    result = await cli.json("library", "search", "galaxy granite", "--account", account)
    [found] = [r["asset"] for r in result["results"]]
    assert printed == (found["file_path"] or found["blob_key"])
    assert _stored(cli, found["blob_key"]) in replicate_fake.files.values()
    show = await cli.json("credits", "show", "--account", account, "--ledger", "10")
    assert show["balance"]["credits"] == 8
    assert [e["kind"] for e in show["ledger"]] == ["settle", "hold", "grant"]


async def test_generate_json_output(cli: Cli) -> None:
    account = str((await cli.json("accounts", "create", "Acme"))["account"]["id"])
    data = await cli.json("generate", "a red fox in the snow", "--account", account, "--num-outputs", "2")
    job = data["job"]
    assert job["status"] == "succeeded" and job["charged"] == 2 and len(job["assets"]) == 2
    assert data["balance"]["credits"] == 8
    again = await cli.json("jobs", "show", job["id"])
    assert again["job"]["id"] == job["id"]


async def test_person_caused_errors_are_one_line_with_exit_codes(cli: Cli, tmp_path: Path) -> None:
    account = str((await cli.json("accounts", "create", "Acme"))["account"]["id"])
    cases: list[tuple[tuple[str, ...], dict[str, str], int, str]] = [
        (("generate", "a cat", "--account", "999"), {}, 3, "account 999 does not exist"),
        (("generate", "a cat", "--account", account, "--model", "dalle"), {}, 2, "unknown model 'dalle'"),
        (("generate", "a cat", "--account", account, "--aspect-ratio", "5:1"), {}, 2, "aspect_ratio '5:1'"),
        (("generate", "a cat", "--account", account, "--num-outputs", "9"), {}, 2, "num_outputs must be between"),
        (("generate", "a cat", "--account", account, "--model", "flux_pro", "--num-outputs", "1"), {}, 0, ""),
        (
            ("generate", "cats", "--account", account, "--model", "flux_dev", "--num-outputs", "3"),
            {},
            4,
            "not enough credits: this needs 6, the account has 5",
        ),
        (("generate", "a cat", "--account", account), {"REPLICATE_API_TOKEN": ""}, 5, "set REPLICATE_API_TOKEN"),
        (("generate", "a cat", "--account", "abc"), {}, 2, "'abc' is not a whole number"),
        (("credits", "grant", "--account", account, "--amount", "0"), {}, 2, "must be greater than 0"),
        (("jobs", "show", "nope"), {}, 3, "job nope does not exist"),
        (("accounts", "create", " "), {}, 2, "name must be 1 to 200 characters"),
        (("credits", "show", "--account", account), {"SHOWME_SERVER__PORT": "eighty"}, 78, "server.port"),
    ]
    for args, env, expected, words in cases:
        code, _, err = await cli.run(*args, **env)
        assert code == expected, (args, err)
        if words:
            assert words in _single_error_line(err), (args, err)
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "models:\n  flux_schnell:\n    ref: nope\n    price: -1\n    family: flux\n    aspect_ratios: ['1:1']\n"
    )
    code, _, err = await cli.run("--config", str(bad), "credits", "show", "--account", account)
    line = _single_error_line(err)
    assert code == 78 and "models.flux_schnell.ref" in line and "models.flux_schnell.price" in line
    code, _, err = await cli.run("--config", str(tmp_path / "missing.yaml"), "credits", "show", "--account", account)
    assert code == 78 and "config file not found" in _single_error_line(err)
    secret = tmp_path / "secret.yaml"
    secret.write_text("replicate_api_token: r8_abc\n")
    code, _, err = await cli.run("--config", str(secret), "credits", "show", "--account", account)
    assert code == 78 and "replicate_api_token: unknown key" in _single_error_line(err)
    # Nothing was charged by any failed or refused command: 10 starter − 5 (the one flux_pro success).
    assert (await cli.json("credits", "show", "--account", account))["balance"]["credits"] == 5


async def test_unreachable_database_is_one_line(cli: Cli) -> None:
    code, _, err = await cli.run(
        "credits", "show", "--account", "1", SHOWME_DATABASE__URL="postgresql+asyncpg://postgres@127.0.0.1:1/x"
    )
    assert code == 69 and "cannot use the database" in _single_error_line(err)


async def test_idempotency_key_from_the_cli(cli: Cli, replicate_fake: FakeReplicate) -> None:
    account = str((await cli.json("accounts", "create", "Acme"))["account"]["id"])
    first = await cli.json("generate", "a cat", "--account", account, "--idempotency-key", "order-7")
    second = await cli.json("generate", "a cat", "--account", account, "--idempotency-key", "order-7")
    assert first["job"]["id"] == second["job"]["id"] and second["balance"]["credits"] == 9
    assert len(replicate_fake.creates) == 1
    code, _, err = await cli.run("generate", "a dog", "--account", account, "--idempotency-key", "order-7")
    assert code == 7 and "idempotency key was already used" in _single_error_line(err)


async def _job_row(database_url: str) -> Job | None:
    db = Database(create_engine(database_url))
    try:
        async with db.read() as session:
            return await session.scalar(select(Job))
    finally:
        await db.dispose()


async def _serving(http: aiohttp.ClientSession, base: str) -> None:
    """Wait until the server at ``base`` answers ``/healthz``."""

    async def up() -> bool:
        try:
            async with http.get(f"{base}/healthz") as r:
                return r.status == 200
        except aiohttp.ClientError:
            return False

    await _wait_for(up)


async def _wait_for(predicate: Any, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_sigkill_while_polling_resumes_by_prediction_id(
    cli: Cli, database_url: str, replicate_fake: FakeReplicate
) -> None:
    account = str((await cli.json("accounts", "create", "Acme"))["account"]["id"])
    replicate_fake.duration = 3.0
    fast = {"SHOWME_REPLICATE__WAIT_SECONDS": "1", "SHOWME_GENERATION__LEASE_SECONDS": "1"}
    proc = await cli.start("generate", "a lighthouse at dusk", "--account", account, **fast)

    async def has_prediction() -> bool:
        job = await _job_row(database_url)
        return job is not None and job.prediction_id is not None

    await _wait_for(has_prediction)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    job = await _job_row(database_url)
    assert job is not None and (job.status, job.charge_state) == ("running", "held")
    assert (await cli.json("credits", "show", "--account", account))["balance"]["credits"] == 9  # held
    await asyncio.sleep(1.2)  # the killed runner's lease lapses
    result = await cli.json("jobs", "resume", **fast)
    assert result["resumed"] == [job.id] and result["failed"] == []
    [resumed] = result["jobs"]
    assert (resumed["status"], resumed["charged"], len(resumed["assets"])) == ("succeeded", 1, 1)
    assert len(replicate_fake.creates) == 1  # resumed by prediction id, not generated again
    assert (await cli.json("credits", "show", "--account", account))["balance"]["credits"] == 9


async def test_sigkill_before_prediction_exists_fails_and_refunds(
    cli: Cli, database_url: str, replicate_fake: FakeReplicate
) -> None:
    account = str((await cli.json("accounts", "create", "Acme"))["account"]["id"])
    replicate_fake.duration = 30.0  # the create call sits in Prefer: wait
    fast = {"SHOWME_REPLICATE__WAIT_SECONDS": "30", "SHOWME_GENERATION__LEASE_SECONDS": "1"}
    proc = await cli.start("generate", "a windmill", "--account", account, **fast)

    async def create_arrived() -> bool:
        return len(replicate_fake.creates) == 1

    await _wait_for(create_arrived)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    job = await _job_row(database_url)
    assert job is not None and job.prediction_id is None and job.charge_state == "held"
    await asyncio.sleep(1.2)
    result = await cli.json("jobs", "resume", **fast)
    assert result["failed"] == [job.id]
    [failed] = result["jobs"]
    assert (failed["status"], failed["charge_state"], failed["charged"]) == ("failed", "released", 0)
    assert (await cli.json("credits", "show", "--account", account))["balance"]["credits"] == 10
    # A second resume finds nothing to do: the refund happened once.
    again = await cli.json("jobs", "resume", **fast)
    assert again["resumed"] == [] and again["failed"] == []
    assert (await cli.json("credits", "show", "--account", account))["balance"]["credits"] == 10


async def test_library_import_tools_export_and_viewer_link(cli: Cli, tmp_path: Path) -> None:
    from PIL import Image

    account = str((await cli.json("accounts", "create", "Acme"))["account"]["id"])
    photos = tmp_path / "photos"
    (photos / "granite").mkdir(parents=True)
    Image.new("RGB", (40, 30), (5, 5, 5)).save(photos / "granite" / "black-galaxy.jpg")
    Image.new("RGB", (40, 30), (250, 250, 250)).save(photos / "carrara_marble.png")
    (photos / "notes.png").write_bytes(b"not an image")
    (photos / "catalog.csv").write_text(
        'file,name,tags,description\nblack-galaxy.jpg,Black Galaxy Granite,"granite,black",Gold flecks\n'
    )
    code, out, err = await cli.run("library", "import", str(photos), "--account", account, "--json")
    result = json.loads(out)
    assert code == 2 and len(result["created"]) == 2 and result["failed"][0]["file"].endswith("notes.png")
    assert {c["name"] for c in result["created"]} == {"Black Galaxy Granite", "Carrara marble"}
    again = json.loads((await cli.run("library", "import", str(photos), "--account", account, "--json"))[1])
    assert again["created"] == [] and len(again["updated"]) == 2
    hits = await cli.json("library", "search", "black granite", "--account", account)
    assert [h["asset"]["name"] for h in hits["results"]] == ["Black Galaxy Granite"]
    assert hits["results"][0]["asset"]["folder"] == "granite"

    code, out, _ = await cli.run(
        "tools", "export", "--format", "vapi", "--base-url", "https://x.example", "--api-key", "sm_k"
    )
    exported = json.loads(out)
    assert code == 0 and exported[0]["server"] == {
        "url": "https://x.example/tools/vapi",
        "headers": {"Authorization": "Bearer sm_k"},
        "timeoutSeconds": 20,
    }
    code, _, err = await cli.run("tools", "export", "--format", "soap")
    assert code == 2 and "invalid choice" in err

    link = await cli.json("viewer-link", "conv_1", "--account", account)
    assert link["url"].startswith("http://127.0.0.1:8080/calls/conv_1?token=")
    code, _, err = await cli.run("viewer-link", "a/b", "--account", account)
    assert code == 2 and "conversation_id" in _single_error_line(err)


async def test_codes_create_redeem_and_orders_list(cli: Cli) -> None:
    account = str((await cli.json("accounts", "create", "Walk-in customer"))["account"]["id"])
    created = await cli.json("codes", "create", "--plan", "flash", "--count", "3")
    assert created["plan"] == "flash" and len(set(created["codes"])) == 3
    code, out, err = await cli.run("codes", "redeem", created["codes"][0].lower(), "--account", account)
    assert code == 0, err
    assert "Flash session active" in out and "8 images, 1 video" in out
    show = await cli.json("credits", "show", "--account", account)
    assert {q["unit"]: (q["remaining"], q["minutes_left"]) for q in show["balance"]["quotas"]} == {
        "image": (8, 60),
        "video": (1, 60),
    }
    code, _, err = await cli.run("codes", "redeem", created["codes"][0], "--account", account)
    assert code == 7 and "already redeemed" in _single_error_line(err)
    code, _, err = await cli.run("codes", "redeem", "ZZZZ-ZZZZ-ZZZZ", "--account", account)
    assert code == 3 and "does not exist" in _single_error_line(err)
    code, _, err = await cli.run("codes", "create", "--plan", "platinum")
    assert code == 2 and "flash_lite" in _single_error_line(err)
    code, out, err = await cli.run("orders", "list")
    assert code == 0 and out.startswith("0 order(s)"), err


def test_event_loop_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """``server.event_loop``: auto and uvloop give uvloop's loop; asyncio asyncio's; without uvloop, auto falls
    back to asyncio's and uvloop is a configuration error naming the key."""
    import uvloop

    from core.errors import ConfigError
    from tools.cli import new_event_loop

    for choice, name in (("auto", "uvloop"), ("uvloop", "uvloop"), ("asyncio", "asyncio")):
        loop, made = new_event_loop(choice)
        try:
            assert made == name and isinstance(loop, uvloop.Loop) == (name == "uvloop")
            assert loop.run_until_complete(asyncio.sleep(0, "ran")) == "ran"
        finally:
            loop.close()
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    loop, made = new_event_loop("auto")
    loop.close()
    assert made == "asyncio" and not isinstance(loop, uvloop.Loop)
    with pytest.raises(ConfigError) as err:
        new_event_loop("uvloop")
    assert err.value.field == "server.event_loop" and "pip install uvloop" in err.value.message


async def test_serve_answers_a_tool_call_and_stops_on_sigint(cli: Cli) -> None:
    """``showme serve`` as the README starts it, a process of its own (the other tool tests run the app inside
    the test's event loop), on uvloop (``server.event_loop: auto``): a tool call gets the stored image, the call's
    viewer receives it, Ctrl-C (SIGINT) stops it cleanly, and the call was charged once."""
    account = str((await cli.json("accounts", "create", "Acme"))["account"]["id"])
    key = (await cli.json("keys", "create", "--account", account))["key"]
    link = await cli.json("viewer-link", "call_serve_1", "--account", account)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = await cli.start("serve", "--port", str(port), SHOWME_SERVER__PUBLIC_URL=base)
    try:
        assert proc.stdout is not None
        banner = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert f"serving on {base}" in banner and "event loop uvloop" in banner, banner
        async with aiohttp.ClientSession() as http:
            await _serving(http, base)
            async with http.ws_connect(f"{base}/ws/calls/call_serve_1?token={link['token']}") as ws:
                assert (await ws.receive_json(timeout=10))["type"] == "history"
                async with http.post(
                    f"{base}/tools/generate_image",
                    headers={"Authorization": f"Bearer {key}"},
                    json={"prompt": "white quartz island", "conversation_id": "call_serve_1"},
                ) as r:
                    assert r.status == 200
                    answer = await r.json()
                assert answer["status"] == "ready" and answer["image_url"].startswith(f"{base}/media/")
                while (event := await ws.receive_json(timeout=10))["type"] != "image_generated":
                    assert event["type"] == "generation_started", event
                assert event["url"] == answer["image_url"]
            async with http.get(answer["image_url"]) as r:
                assert r.status == 200 and r.content_type == "image/webp"
    finally:
        proc.send_signal(signal.SIGINT)
        _out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    assert "Traceback" not in err.decode(), err.decode()
    assert (await cli.json("credits", "show", "--account", account))["balance"]["credits"] == 9


async def test_edit_and_video_from_the_command_line(cli: Cli, tmp_path: Path, replicate_fake: FakeReplicate) -> None:
    from PIL import Image

    account = str((await cli.json("accounts", "create", "Acme"))["account"]["id"])
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (40, 30), (90, 60, 30)).save(photos / "walnut-cabinet.png")
    imported = await cli.json("library", "import", str(photos), "--account", account)
    asset_id = str(imported["created"][0]["asset_id"])
    edited = await cli.json("edit", asset_id, "--operation", "remove_background", "--account", account)
    assert (edited["job"]["status"], edited["job"]["charged"], edited["balance"]["credits"]) == ("succeeded", 1, 9)
    with Image.open(io.BytesIO(_stored(cli, edited["job"]["assets"][0]["blob_key"]))) as cut_out:
        assert cut_out.mode == "RGBA"
    code, out, _ = await cli.run("generate", "waves on a beach", "--model", "seedance_lite", "--account", account)
    assert code == 0 and "video 1:" in out and "video/mp4" in out and "1 s" in out, out
    assert "balance 4 credits" in out
    upscaled = await cli.json("edit", asset_id, "--operation", "upscale", "--account", account)
    assert (upscaled["job"]["assets"][0]["width"], upscaled["balance"]["credits"]) == (160, 2)
    code, _, err = await cli.run("generate", "a second clip", "--model", "seedance_lite", "--account", account)
    assert code != 0 and "not enough credits" in err, err  # 2 left, a video costs 5: refused, nothing charged
    assert (await cli.json("credits", "show", "--account", account))["balance"]["credits"] == 2


async def test_a_three_minute_video_survives_sigkill_of_the_server(
    cli: Cli, database_url: str, replicate_fake: FakeReplicate
) -> None:
    """The video's prediction runs 3 minutes. The server is SIGKILLed while it polls; a new server takes the job
    over by prediction id once the lease lapses, finishes it (polling slows to 2 s apart after a minute) and the
    caller is charged once."""
    account = str((await cli.json("accounts", "create", "Acme"))["account"]["id"])
    key = (await cli.json("keys", "create", "--account", account))["key"]
    replicate_fake.model_durations["bytedance/seedance-1-lite"] = 180.0
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        "SHOWME_SERVER__PUBLIC_URL": base, "SHOWME_TOOLS__MAX_WAIT_SECONDS": "1",
        "SHOWME_GENERATION__LEASE_SECONDS": "2",
    }  # fmt: skip

    async def serve() -> asyncio.subprocess.Process:
        proc = await cli.start("serve", "--port", str(port), **env)
        assert proc.stdout is not None
        assert "serving on" in (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()

        async def healthy() -> bool:
            try:
                async with aiohttp.ClientSession() as http, http.get(f"{base}/healthz") as r:
                    return r.status == 200
            except aiohttp.ClientError:
                return False

        await _wait_for(healthy)
        return proc

    first = await serve()
    async with aiohttp.ClientSession() as http, http.post(
        f"{base}/tools/generate_video", headers={"Authorization": f"Bearer {key}"},
        json={"prompt": "a kitchen at sunrise, slow pan", "conversation_id": "call_video"},
    ) as response:  # fmt: skip
        answer = await response.json()
    assert answer["status"] == "generating", answer
    job = await _job_row(database_url)
    assert job is not None and job.prediction_id is not None  # saved at once: no sync wait for videos
    await asyncio.sleep(5)
    first.send_signal(signal.SIGKILL)
    await first.wait()
    second = await serve()
    try:

        async def finished() -> bool:
            row = await _job_row(database_url)
            return row is not None and row.status in ("succeeded", "failed")

        await _wait_for(finished, timeout=240)
    finally:
        second.send_signal(signal.SIGINT)
        await asyncio.wait_for(second.wait(), 30)
    job = await _job_row(database_url)
    assert job is not None and (job.status, job.charge_state, job.charged, job.unit) == (
        "succeeded", "settled", 5, "credit"
    ), job.error
    assert len(replicate_fake.creates) == 1  # taken over by prediction id, not made twice
    assert (await cli.json("credits", "show", "--account", account))["balance"]["credits"] == 5
    # After the first minute the polls came at most every 2 s, not every 0.5 s.
    assert replicate_fake.gets < 250, replicate_fake.gets  # about 170; every 0.5 s throughout would be 360


async def test_version() -> None:
    proc = await asyncio.create_subprocess_exec(*_command(), "--version", stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert proc.returncode == 0 and re.fullmatch(r"showme \d+\.\d+\.\d+\S*\n", out.decode())


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_doctor_on_a_fresh_clone_says_exactly_what_is_missing(cli: Cli, tmp_path: Path) -> None:
    fresh = {k: v for k, v in cli.env.items() if k not in ("REPLICATE_API_TOKEN", "REPLICATE_BASE_URL")}
    proc = await asyncio.create_subprocess_exec(
        *_command(), "doctor", "--json", cwd=tmp_path, env=fresh, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert checks["REPLICATE_API_TOKEN"]["status"] == "fail"
    assert "replicate.com/account/api-tokens" in checks["REPLICATE_API_TOKEN"]["fix"]
    assert checks["database"]["status"] == "warn" and "does not exist yet" in checks["database"]["detail"]
    assert checks["public URL"]["status"] == "warn"
    assert checks["TELEGRAM_BOT_TOKEN"]["status"] == "off" and "@BotFather" in checks["TELEGRAM_BOT_TOKEN"]["fix"]
    assert checks["media store"]["status"] == "ok"
    assert not (tmp_path / "media").exists()  # the doctor looks; it creates nothing


async def test_doctor_checks_each_key_with_its_vendor(
    cli: Cli, replicate_fake: FakeReplicate, stripe_fake: FakeStripe, telegram_fake: Any, discord_fake: Any
) -> None:
    from tests.fakes import discord as fake_discord
    from tests.fakes import stripe as fake_stripe
    from tests.fakes import telegram as fake_telegram

    assert (await cli.run("db", "upgrade"))[0] == 0
    env = {
        "STRIPE_SECRET_KEY": fake_stripe.API_KEY, "STRIPE_WEBHOOK_SECRET": fake_stripe.WEBHOOK_SECRET,
        "TELEGRAM_BOT_TOKEN": fake_telegram.TOKEN, "DISCORD_BOT_TOKEN": fake_discord.TOKEN,
        "ELEVENLABS_WEBHOOK_SECRET": "wsec_abc", "SHOWME_SECRET_KEY": "k" * 40,
        "SHOWME_SERVER__PUBLIC_URL": "https://showme.example", "SHOWME_STRIPE__API_BASE": stripe_fake.base_url,
        "SHOWME_TELEGRAM__API_BASE_URL": f"{telegram_fake.base_url}/bot",
        "SHOWME_DISCORD__API_BASE_URL": f"{discord_fake.base_url}/api/v10",
    }  # fmt: skip
    code, out, err = await cli.run("doctor", **env)
    assert code == 0, out + err
    assert out.strip().endswith("all good"), out
    assert "works (account acme)" in out and "works (test mode)" in out and "works (@" in out
    # A publishable key pasted for the secret key, and a token Replicate refuses: each says what to do.
    code, out, _ = await cli.run(
        "doctor", "--json", **{**env, "STRIPE_SECRET_KEY": "pk_test_123", "REPLICATE_API_TOKEN": "r8_revoked"}
    )
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert code == 1
    stripe_check = checks["STRIPE_SECRET_KEY"]
    assert stripe_check["status"] == "fail" and "does not look like" in stripe_check["detail"]
    assert checks["REPLICATE_API_TOKEN"]["status"] == "fail" and "refused" in checks["REPLICATE_API_TOKEN"]["detail"]
    assert checks["database"]["status"] == "ok"


async def test_sigkill_during_a_training_resumes_it_and_charges_once(
    cli: Cli, database_url: str, replicate_fake: FakeReplicate, tmp_path: Path
) -> None:
    account = str((await cli.json("accounts", "create", "Acme"))["account"]["id"])
    await cli.json("credits", "grant", "--account", account, "--amount", "60", "--reference", "t")
    folder = tmp_path / "sofa-photos"
    folder.mkdir()
    from PIL import Image

    for i in range(10):
        Image.new("RGB", (48, 48), (25 * i, 90, 160)).save(folder / f"sofa-{i}.jpg")
    replicate_fake.training_duration = 4.0
    env = {"SHOWME_TRAINING__OWNER": "acme", "SHOWME_GENERATION__LEASE_SECONDS": "1"}
    proc = await cli.start("models", "train", "--account", account, "--images", str(folder), "--trigger", "SOFA1",
                           "--name", "sofa", **env)  # fmt: skip

    async def training_started() -> bool:
        job = await _job_row(database_url)
        return job is not None and job.prediction_id is not None

    await _wait_for(training_started)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    job = await _job_row(database_url)
    assert job is not None and (job.kind, job.status, job.charge_state) == ("training", "running", "held")
    assert (await cli.json("credits", "show", "--account", account))["balance"]["credits"] == 20  # 70 - 50 held
    await asyncio.sleep(1.2)  # the killed runner's lease lapses
    result = await cli.json("jobs", "resume", **env)
    assert result["resumed"] == [job.id] and result["failed"] == []
    [resumed] = result["jobs"]
    assert (resumed["status"], resumed["charged"]) == ("succeeded", 50)
    assert len(replicate_fake.trainings) == 1  # resumed by training id, not trained again
    assert (await cli.json("credits", "show", "--account", account))["balance"]["credits"] == 20
    [model] = (await cli.json("models", "list", "--account", account))["models"]
    assert model["name"] == "sofa" and model["trigger_word"] == "SOFA1"
    code, out, _ = await cli.run("generate", "the sofa in a white room", "--model", "sofa", "--account", account)
    assert code == 0, out
    assert replicate_fake.creates[-1]["version"] == model["ref"].split(":", 1)[1]


async def test_a_revoked_key_is_refused_and_revoking_again_says_so(cli: Cli) -> None:
    account = str((await cli.json("accounts", "create", "Acme"))["account"]["id"])
    other = str((await cli.json("accounts", "create", "Other"))["account"]["id"])
    key = await cli.json("keys", "create", "--account", account)
    code, _out, err = await cli.run("keys", "revoke", str(key["id"]), "--account", other)
    assert code == 3 and "no unrevoked API key" in _single_error_line(err)  # another account's key: untouched
    assert (await cli.json("keys", "revoke", str(key["id"]), "--account", account))["revoked"] is True
    code, _out, err = await cli.run("keys", "revoke", str(key["id"]), "--account", account)
    assert code == 3 and f"no unrevoked API key {key['id']}" in _single_error_line(err)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = await cli.start("serve", "--port", str(port), SHOWME_SERVER__PUBLIC_URL=base)
    try:
        async with aiohttp.ClientSession() as http:
            await _serving(http, base)
            async with http.get(f"{base}/api/v1/credits", headers={"Authorization": f"Bearer {key['key']}"}) as r:
                assert r.status == 401 and (await r.json())["error"]["message"] == "unknown or revoked API key"
    finally:
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.communicate(), 20)


async def test_an_owner_signs_in_with_a_link_from_the_command_line(cli: Cli) -> None:
    """``showme members add`` names the account's owner; ``showme login-link`` prints a link that signs them in
    to the running server's web app once."""
    account = str((await cli.json("accounts", "create", "Acme"))["account"]["id"])
    added = await cli.json("members", "add", "--account", account, "--email", "Olivia@Acme.test")
    assert added == {"account_id": int(account), "email": "olivia@acme.test", "role": "owner", "added": True}
    again = await cli.json("members", "add", "--account", account, "--email", "olivia@acme.test", "--role", "member")
    assert again["added"] is False
    code, _out, err = await cli.run("members", "add", "--account", account, "--email", "not-an-email")
    assert code == 2 and "email is not an email address" in _single_error_line(err)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = await cli.start("serve", "--port", str(port), SHOWME_SERVER__PUBLIC_URL=base)
    try:
        code, out, _err = await cli.run("login-link", "--email", "olivia@acme.test", SHOWME_SERVER__PUBLIC_URL=base)
        link = out.split()[0]
        assert code == 0 and link.startswith(f"{base}/app/login/") and "Acme (owner)" in out
        for attempt in ("first", "again"):
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                await _serving(http, base)
                async with http.get(link) as page:
                    csrf = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())
                assert csrf is not None
                async with http.post(link, data={"csrf_token": csrf.group(1)}) as answer:
                    if attempt == "first":
                        assert answer.url.path == "/app/library" and "Acme · owner" in await answer.text()
                    else:
                        assert answer.status == 400 and "not valid" in await answer.text()
    finally:
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.communicate(), 20)
