"""Videos and edits over HTTP: the voice tools (every dialect shares the registry), REST with each kind of input,
and the refusal of URLs that point inside our network."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.tools.conftest import Server, form, png


async def _upload(server: Server, name: str = "Quartz countertop") -> int:
    response = await server.client.post("/api/v1/library", headers=server.auth, data=form(png(), name=name))
    assert response.status == 201, await response.text()
    return int((await response.json())["asset"]["id"])


async def _tool(server: Server, name: str, arguments: dict[str, Any], call_id: str | None = None) -> Any:
    headers = {**server.auth, **({"X-Call-Id": call_id} if call_id else {})}
    response = await server.client.post(f"/tools/{name}", headers=headers, json=arguments)
    return response.status, await response.json()


@pytest.mark.parametrize(("operation", "price"), [("upscale", 2), ("remove_background", 1), ("restore_face", 2)])
async def test_edit_image_tool_on_a_library_asset_charges_its_price_once(
    server: Server, operation: str, price: int
) -> None:
    asset_id = await _upload(server)
    before = await server.balance()
    vapi = {
        "message": {
            "type": "tool-calls", "call": {"id": "call_edit_1"},
            "toolCallList": [{"id": "tc_1", "type": "function",
                              "function": {"name": "edit_image",
                                           "arguments": {"operation": operation, "asset_id": asset_id}}}],
        }
    }  # fmt: skip
    for _ in range(2):  # Vapi retries the same tool call: one job, one charge
        response = await server.client.post("/tools/vapi", headers=server.auth, json=vapi)
        assert response.status == 200, await response.text()
        [result] = (await response.json())["results"]
    answer = json.loads(result["result"])
    assert (answer["status"], answer["kind"], answer["credits_charged"]) == ("ready", operation, price)
    assert await server.balance() == before - price
    assert len(server.fake.creates) == 1


async def test_edit_image_without_an_asset_takes_the_last_picture_of_the_call(server: Server) -> None:
    status, body = await _tool(server, "edit_image", {"operation": "upscale", "conversation_id": "conv_e"})
    assert status == 400 and body["error"]["field"] == "asset_id"  # nothing shown yet
    status, shown = await _tool(server, "generate_image", {"prompt": "a marble island", "conversation_id": "conv_e"})
    assert status == 200 and shown["status"] == "ready"
    before = await server.balance()
    status, edited = await _tool(server, "edit_image", {"operation": "remove_background", "conversation_id": "conv_e"})
    assert status == 200 and edited["status"] == "ready", edited
    job = await server.services.generation.get(edited["job_id"])
    assert job.input_asset_id == shown["asset_ids"][0] and job.assets[0].mime == "image/png"
    assert await server.balance() == before - 1


async def test_failing_edit_model_refunds_and_says_so(server: Server) -> None:
    asset_id = await _upload(server)
    server.fake.failing_models.add("sczhou/codeformer")
    before = await server.balance()
    status, body = await _tool(server, "edit_image", {"operation": "restore_face", "asset_id": asset_id})
    assert status == 502 and "nothing was charged" in body["error"]["message"], body
    assert await server.balance() == before


async def test_rest_generations_take_an_asset_a_job_or_a_url(server: Server) -> None:
    asset_id = await _upload(server)
    auth = {**server.auth, "Idempotency-Key": "edit-1"}
    response = await server.client.post(
        "/api/v1/generations", headers=auth, json={"operation": "upscale", "input_asset_id": asset_id}
    )
    assert response.status == 200, await response.text()
    upscaled = (await response.json())["job"]
    assert (upscaled["kind"], upscaled["model"], upscaled["charged"]) == ("upscale", "real_esrgan", 2)
    again = await server.client.post(
        "/api/v1/generations", headers=auth, json={"operation": "upscale", "input_asset_id": asset_id}
    )
    assert (await again.json())["job"]["id"] == upscaled["id"]  # the retried request charged nothing more
    # The upscaled output, animated into a video.
    response = await server.client.post("/api/v1/generations", headers=server.auth, json={
        "model": "seedance_animate", "prompt": "slow zoom", "input_job_id": upscaled["id"], "wait_seconds": 10,
    })  # fmt: skip
    video = (await response.json())["job"]
    assert (video["kind"], video["status"], video["input_asset_id"]) == (
        "image_to_video", "succeeded", upscaled["assets"][0]["id"]
    ), video
    assert video["assets"][0]["mime"] == "video/mp4" and video["assets"][0]["duration_seconds"] == 1.0
    media = await server.client.get(video["assets"][0]["url"].split("8080", 1)[1])
    assert media.status == 200 and media.headers["Content-Type"] == "video/mp4"
    # Bad combinations are refused before anything is charged.
    before = await server.balance()
    for body, field in [
        ({"model": "rembg"}, "input_asset_id"),
        ({"model": "rembg", "input_asset_id": 999999}, None),
        ({"operation": "upscale", "model": "rembg", "input_asset_id": asset_id}, "operation"),
        ({"operation": "upscale", "input_asset_id": asset_id, "input_job_id": upscaled["id"]}, "input_job_id"),
        ({"operation": "sharpen", "input_asset_id": asset_id}, "operation"),
        ({"model": "flux_schnell", "prompt": "x", "input_asset_id": asset_id}, "input_asset_id"),
    ]:
        response = await server.client.post("/api/v1/generations", headers=server.auth, json=body)
        error = (await response.json())["error"]
        assert response.status in (400, 404, 422), (body, error)
        assert field is None or error.get("field") == field, (body, error)
    assert await server.balance() == before


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/photo.png",
        "https://localhost/photo.png",
        "https://10.1.2.3/photo.png",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/photo.png",
        "https://[::ffff:127.0.0.1]/photo.png",
        "http://example.com/photo.png",
        "file:///etc/passwd",
    ],
)
async def test_input_urls_inside_our_network_are_refused(server: Server, url: str) -> None:
    before = await server.balance()
    response = await server.client.post(
        "/api/v1/generations", headers=server.auth, json={"operation": "upscale", "input_url": url}
    )
    assert response.status == 400, await response.text()
    error = (await response.json())["error"]
    assert error["field"] == "input_url" and ("public address" in error["message"] or "https" in error["message"])
    assert server.fake.creates == [] and await server.balance() == before


async def test_input_url_is_downloaded_into_the_library(server: Server) -> None:
    """Where private addresses are allowed (``media.allow_private_input_urls``), the fake's https file is fetched,
    stored as an upload and edited; a redirect is followed, a non-image is refused."""
    server.services.settings.media.allow_private_input_urls = True
    server.fake.files["photo-0.png"] = png((1, 2, 3), (30, 20))
    url = f"{server.fake.base_url}/files/photo-0.png"
    response = await server.client.post(
        "/api/v1/generations", headers=server.auth, json={"operation": "remove_background", "input_url": url}
    )
    assert response.status == 200, await response.text()
    job = (await response.json())["job"]
    source = await server.services.library.get(server.account_id, job["input_asset_id"])
    assert (source.name, source.description, source.width) == ("photo 0", url, 30)
    server.fake.files["notes-0.png"] = b"not an image"
    response = await server.client.post(
        "/api/v1/generations", headers=server.auth,
        json={"operation": "upscale", "input_url": f"{server.fake.base_url}/files/notes-0.png"},
    )  # fmt: skip
    assert response.status == 400 and (await response.json())["error"]["field"] == "input_url"
