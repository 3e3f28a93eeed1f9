"""The OpenAPI contract: the document validates as OpenAPI 3.1, covers every route the server registers and
the README lists, and schemathesis fuzzes a live server against it (no 5xx, no answer outside the schema)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from openapi_spec_validator import validate

from core.config import Secrets
from tests.conftest import make_settings
from tests.fakes.replicate import FakeReplicate
from tests.fakes.serve import free_port
from tests.fakes.stripe import API_KEY, WEBHOOK_SECRET, FakeStripe
from tests.tools.conftest import Server
from tools.app import create_app
from tools.http import SERVICES

REPO = Path(__file__).resolve().parents[2]


def _as_openapi(path: str) -> str:
    return re.sub(r"\{(\w+):[^}]+\}", r"{\1}", path)


async def test_the_document_is_openapi_3_1_and_covers_every_route(server: Server) -> None:
    response = await server.client.get("/api/v1/openapi.json")
    assert response.status == 200
    spec = await response.json()
    validate(spec)  # raises on anything that is not valid OpenAPI 3.1
    assert spec["openapi"] == "3.1.0"
    documented = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    tools = set(server.services.tools.tools)
    for resource in server.client.app.router.resources():
        if isinstance(resource, web.PrefixedSubAppResource):
            continue  # the web app at /app: pages for people signed in with a session, not the integrators' API
        for route in resource:
            path = _as_openapi(resource.canonical)
            if route.method == "HEAD" or path.startswith("/ws/"):
                continue  # aiohttp adds HEAD to GET routes; WebSockets are named in the description
            if path == "/tools/{tool_name}":
                assert {("POST", f"/tools/{name}") for name in tools} <= documented
                continue
            assert (route.method, path) in documented, (route.method, path)
    assert "/ws/calls/{conversation_id}" in spec["info"]["description"]
    rows = [line for line in (REPO / "README.md").read_text().splitlines() if line.startswith("| `")]
    listed = {m for line in rows for m in re.findall(r"`(GET|POST|PATCH|DELETE) (/[^`\s?]*)", line)}
    assert len(listed) > 20, "the README's route table was not found"
    shapes = {(method, re.sub(r"\{\w+\}", "{}", path)) for method, path in documented}
    for method, path in listed:
        if not path.startswith("/ws/") and path != "/tools/{tool_name}":  # one path per tool, checked above
            assert (method, re.sub(r"\{\w+\}", "{}", path)) in shapes, (method, path)


async def test_request_bodies_in_the_document_are_the_models_that_validate_them(server: Server) -> None:
    spec = await (await server.client.get("/api/v1/openapi.json")).json()
    body = spec["paths"]["/api/v1/generations"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    generation = spec["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    assert generation["properties"]["num_outputs"]["maximum"] == 4
    assert generation["additionalProperties"] is False
    tool = spec["paths"]["/tools/generate_image"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    arguments = spec["components"]["schemas"][tool["$ref"].rsplit("/", 1)[1]]
    assert "prompt" in arguments["required"] and "conversation_id" in arguments["properties"]
    # The document says what the server does: a value past the documented maximum is refused, naming the field.
    response = await server.client.post(
        "/api/v1/generations", headers=server.auth, json={"prompt": "x", "num_outputs": 5}
    )
    assert response.status == 400 and (await response.json())["error"]["field"] == "num_outputs"
    limit = spec["paths"]["/api/v1/credits/ledger"]["get"]["parameters"][0]
    assert limit["name"] == "limit" and limit["schema"]["maximum"] == 500
    response = await server.client.get("/api/v1/credits/ledger?limit=501", headers=server.auth)
    assert response.status == 400 and (await response.json())["error"]["field"] == "limit"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    database_url: str, tmp_path: Path, replicate_fake: FakeReplicate, stripe_fake: FakeStripe, aiohttp_server: Any
) -> None:
    """Every operation, positive and negative examples (bounded), against a live server on SQLite with the fake
    Replicate and Stripe behind it. Any 5xx, undocumented status, content type or body fails."""
    port = free_port()
    settings = make_settings(database_url, tmp_path, server={"public_url": f"http://127.0.0.1:{port}"})
    settings.tools.max_wait_seconds = 2
    settings.rate_limits.per_address = settings.rate_limits.api_per_account = "1000000/minute"  # fuzz the handlers
    settings.rate_limits.tool_calls_per_account = settings.rate_limits.checkout_per_address = "1000000/minute"
    settings.stripe.api_base = stripe_fake.base_url
    settings.stripe.max_network_retries = 0
    secrets = Secrets(
        REPLICATE_API_TOKEN=replicate_fake.token, SHOWME_SECRET_KEY="fuzz", STRIPE_SECRET_KEY=API_KEY,
        STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET, ELEVENLABS_WEBHOOK_SECRET="wsec_fuzz",
    )  # fmt: skip
    app = create_app(settings, secrets=secrets)
    await aiohttp_server(app, port=port)
    services = app[SERVICES]
    account = await services.accounts.create("Fuzz")
    key = await services.accounts.create_api_key(account.id)
    await services.credits.grant(account_id=account.id, amount=1_000_000, source_ref="fuzz", category="admin")
    command = [shutil.which("schemathesis") or "schemathesis"]
    if not shutil.which("schemathesis"):
        command = [sys.executable, "-m", "schemathesis.cli"]
    report = tmp_path / "schemathesis.xml"
    proc = await asyncio.create_subprocess_exec(
        *command, "run", f"http://127.0.0.1:{port}/api/v1/openapi.json",
        "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
        "response_schema_conformance",
        "--header", f"Authorization: Bearer {key.key}",
        "--max-examples", os.environ.get("SHOWME_FUZZ_EXAMPLES", "50"),
        "--seed", os.environ.get("SHOWME_FUZZ_SEED", "1"),
        "--workers", "2", "--request-timeout", "30", "--no-color", "--suppress-health-check", "all",
        "--report", "junit", "--report-junit-path", str(report),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,  # its cache stays there
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 600)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-12000:]
    generated = re.search(r"(\d+) generated", text)
    assert generated is not None and int(generated.group(1)) >= 500, text[-3000:]
    selected, tested = re.search(r"Selected: \d+/(\d+)", text), re.search(r"Tested: (\d+)", text)
    assert selected and tested and tested.group(1) == selected.group(1), text[-3000:]  # every operation ran


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="the docs page test needs chromium (apt-get install chromium)")
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_docs_page_renders_every_operation_in_headless_chromium(
    database_url: str, tmp_path: Path, aiohttp_server: Any
) -> None:
    playwright_api = pytest.importorskip("playwright.async_api", reason="browser tests need the playwright package")
    settings = make_settings(database_url, tmp_path)
    server = await aiohttp_server(create_app(settings, secrets=Secrets(SHOWME_SECRET_KEY="docs")))
    async with playwright_api.async_playwright() as p:
        args = ["--headless", "--no-sandbox", "--disable-gpu"]
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=args)
        page = await browser.new_page()
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))
        await page.goto(f"http://127.0.0.1:{server.port}/api/docs")
        await page.wait_for_selector(".opblock-summary-path", timeout=15_000)
        paths = await page.locator(".opblock-summary-path").all_inner_texts()
        await page.screenshot(path=str(tmp_path / "api-docs.png"), full_page=False)
        await browser.close()
    flat = {p.replace("\u200b", "") for p in paths}
    assert {"/api/v1/generations", "/tools/generate_image", "/webhooks/stripe", "/mcp"} <= flat
    assert all(url.startswith(f"http://127.0.0.1:{server.port}/") for url in requested)  # nothing from a CDN
    assert (tmp_path / "api-docs.png").stat().st_size > 10_000
