"""Every route of the server as an ``Operation`` (``tools.openapi``): registered with aiohttp by ``tools.app`` and
described by ``GET /api/v1/openapi.json`` from the same list, with the docs page at ``/api/docs``."""

from __future__ import annotations

import asyncio
import html
import json
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from aiohttp import web
from pydantic import create_model

from core.billing.checkout import CheckoutResult
from core.credits import Balance
from core.errors import ShowmeError
from core.providers.failover import FailoverProvider
from core.tool_model import Tool
from storage.blobs import MEDIA_TYPES, InvalidBlobKey
from tools import api, billing, dialects, library_api, schemas, viewers, webhooks
from tools import library_schemas as ls
from tools.http import SERVICES, SETTINGS, error_response
from tools.metrics import metrics_handler
from tools.openapi import HTML, Answer, Operation, document
from tools.version import showme_version

if TYPE_CHECKING:
    from storage.s3 import S3BlobStore  # boto3 is imported only where media.backend is s3

SWAGGER_UI = Path(__file__).parent / "static" / "swagger-ui"
SWAGGER_FILES = {"swagger-ui-bundle.js": "application/javascript", "swagger-ui.css": "text/css"}


async def healthz(request: web.Request) -> web.Response:
    """Liveness: 200 ``{"status": "ok"}`` while this process answers requests (it asks nothing of the database,
    Redis or the bucket: an orchestrator restarts a replica whose ``/healthz`` fails, and a restart does not
    bring a database back; ``/readyz`` is for them)."""
    return web.json_response({"status": "ok"})


async def _check(probe: Awaitable[Any]) -> str:
    """``ok``, or why ``probe`` failed (within 3 s)."""
    try:
        async with asyncio.timeout(3):
            await probe
    except Exception as err:
        return f"unreachable: {type(err).__name__}"
    return "ok"


async def readyz(request: web.Request) -> web.Response:
    """``GET /readyz``: whether this replica can serve generations: the database, the media store and (with
    ``events.backend: redis``) Redis answer, and at least one configured provider is not skipped by its circuit
    breaker. 200 ``ready`` (or ``degraded`` while a provider is skipped), 503 ``not_ready`` otherwise; each
    part's state in the body."""
    services = request.app[SERVICES]
    body: dict[str, Any] = {"providers": {}}
    body["database"], body["media"], body["redis"] = await asyncio.gather(
        _check(services.db.ping()), _check(services.blobs.ping()),
        _check(services.bus.ping()) if services.bus is not None else asyncio.sleep(0, "not used"),
    )  # fmt: skip
    provider = services.provider
    members = provider.providers if isinstance(provider, FailoverProvider) else {provider.name: provider}
    states = provider.breaker_states() if isinstance(provider, FailoverProvider) else {}
    for name, member in members.items():
        try:
            member.check_ready()
            configured = True
        except ShowmeError:
            configured = False
        body["providers"][name] = {"configured": configured, "circuit": states.get(name, "closed")}
    usable = [p for p in body["providers"].values() if p["configured"] and p["circuit"] != "open"]
    skipped = any(p["configured"] and p["circuit"] == "open" for p in body["providers"].values())
    ok = body["database"] == "ok" and body["media"] == "ok" and body["redis"] in ("ok", "not used") and bool(usable)
    body["status"] = ("degraded" if skipped else "ready") if ok else "not_ready"
    return web.json_response(body, status=200 if ok else 503)


_MEDIA_HEADERS = {"Cache-Control": "public, max-age=31536000, immutable", "X-Content-Type-Options": "nosniff"}


async def media(request: web.Request) -> web.StreamResponse:
    """A stored media file by its content-addressed key (immutable, cached for a year). In a bucket
    (``media.backend: s3``): a redirect to a presigned URL, or the bytes streamed through (``media.s3.serve``)."""
    services = request.app[SERVICES]
    key = request.match_info["key"]
    try:
        path = services.blobs.local_path(key)
    except InvalidBlobKey:
        return error_response(404, "not_found", "no such media")
    content_type = MEDIA_TYPES.get(Path(key).suffix, "application/octet-stream")
    if path is not None:
        if not await asyncio.to_thread(path.is_file):
            return error_response(404, "not_found", "no such media")
        return web.FileResponse(path, headers={"Content-Type": content_type, **_MEDIA_HEADERS})
    bucket = cast("S3BlobStore", services.blobs)
    if request.app[SETTINGS].media.s3.serve == "redirect":
        # The presigned URL changes with each signing: browsers cache this /media URL's answer instead.
        raise web.HTTPFound(bucket.presigned_url(key), headers={"Cache-Control": "public, max-age=300"})
    size = await bucket.size(key)
    if size is None:
        return error_response(404, "not_found", "no such media")
    response = web.StreamResponse(headers={"Content-Type": content_type, **_MEDIA_HEADERS})
    response.content_length = size
    await response.prepare(request)
    try:
        async for chunk in bucket.stream(key):
            await response.write(chunk)
        await response.write_eof()
    except ConnectionResetError:  # the browser went away mid-file (aiohttp's ClientConnectionResetError)
        pass
    return response


def tool_operations(tools: list[Tool]) -> list[Operation]:
    """``POST /tools/<name>`` of each registered tool, its body the model that validates the arguments plus
    the conversation whose viewers see the result."""
    operations = []
    for tool in tools:
        body = create_model(  # type: ignore[call-overload]
            f"{tool.name}_request", __base__=tool.model, conversation_id=(str | None, None)
        )
        answer = Answer("The tool's answer (also for not_found and generating).", schemas.ToolAnswer)
        call_id = {"X-Tool-Call-Id": "the platform's id of this call (a retried call is charged once)"}
        operations.append(
            Operation("POST", f"/tools/{tool.name}", dialects.plain_tool, tool.title, "Voice tools", {200: answer},
                      body=body, errors=(402, 404, 409, 422), headers=call_id)
        )  # fmt: skip
    return operations


OPENAPI_BODY = web.AppKey("openapi_body", list)


async def openapi_json(request: web.Request) -> web.Response:
    """``GET /api/v1/openapi.json``: this document (OpenAPI 3.1), built on the first request (about 0.1 s)."""
    cached = request.app[OPENAPI_BODY]  # a list made with the app: its state cannot change once started
    if not cached:
        spec = document(
            [op for op in OPERATIONS if op.path != "/tools/{tool_name}"]
            + tool_operations(list(request.app[SERVICES].tools.tools.values())),
            version=showme_version(),
            server_url=request.app[SETTINGS].server.public_url,
        )
        cached.append(json.dumps(spec))
    return web.Response(text=cached[0], content_type="application/json", headers={"Cache-Control": "no-cache"})


DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>showme API</title><link rel="stylesheet" href="/api/docs/swagger-ui.css"></head>
<body><div id="swagger-ui"></div><script src="/api/docs/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({url: %s, dom_id: "#swagger-ui", deepLinking: true});</script>
</body></html>"""


async def docs_page(request: web.Request) -> web.Response:
    """``GET /api/docs``: Swagger UI (vendored, no CDN) over ``/api/v1/openapi.json``."""
    return web.Response(text=DOCS_PAGE % html.escape(json.dumps("/api/v1/openapi.json"), quote=False),
                        content_type="text/html")  # fmt: skip


async def docs_asset(request: web.Request) -> web.StreamResponse:
    """``GET /api/docs/{file}``: the vendored Swagger UI script and stylesheet."""
    name = request.match_info["file"]
    if name not in SWAGGER_FILES:
        return error_response(404, "not_found", "no such file")
    return web.FileResponse(SWAGGER_UI / name, headers={"Content-Type": SWAGGER_FILES[name],
                                                        "Cache-Control": "public, max-age=86400"})  # fmt: skip


def _page(description: str) -> dict[int, Answer]:
    return {200: Answer(description, media_type=HTML)}


def _json(description: str, body: Any, status: int = 200) -> dict[int, Answer]:
    return {status: Answer(description, body)}


OPERATIONS: list[Operation] = [
    Operation("GET", "/healthz", healthz, "Liveness", "Operations",
              _json("This process answers.", schemas.Health), auth="none"),
    Operation("GET", "/readyz", readyz, "Readiness: database, media store, Redis and image providers", "Operations",
              {200: Answer("Ready, or degraded while a provider is skipped.", schemas.Readiness),
               503: Answer("Not ready: the database, media store or Redis does not answer, or every provider is down.",
                           schemas.Readiness)}, auth="none"),
    Operation("GET", "/metrics", metrics_handler, "Prometheus metrics", "Operations",
              {200: Answer("Prometheus text exposition format.", media_type="text/plain")}, auth="none"),
    Operation("GET", "/media/{key:.+}", media, "A stored image or video", "Media",
              {200: Answer("The file (immutable).", media_type="image/*", other_media_types=("video/*",)),
               302: Answer("In a bucket (media.backend s3, media.s3.serve redirect): its presigned URL.")},
              auth="none"),
    Operation("GET", "/api/v1/openapi.json", openapi_json, "This OpenAPI document", "Operations",
              _json("OpenAPI 3.1.", {"type": "object"}), auth="none"),
    Operation("GET", "/api/docs", docs_page, "API documentation (Swagger UI)", "Operations",
              _page("The docs page."), auth="none"),
    Operation("GET", "/api/docs/{file}", docs_asset, "Swagger UI's files", "Operations",
              {200: Answer("A script or stylesheet.", media_type="application/javascript",
                           other_media_types=("text/css",))}, auth="none"),
    # Tool dialects: the fixed names first, then ElevenLabs / plain HTTP by tool name.
    Operation("GET", "/tools", api.tool_definitions, "Tool definitions for a platform", "Voice tools",
              _json("The definitions (an array, or an object for some formats).", {"type": ["array", "object"]}),
              auth="none", query=schemas.ToolsQuery),
    Operation("POST", "/tools/vapi", dialects.vapi_tool_calls, "Vapi tool calls", "Voice tools",
              _json("One result per tool call (errors inside, as Vapi expects).", schemas.VapiResponse),
              body=schemas.VapiRequest, headers={"X-Vapi-Secret": "the API key, as Vapi sends it"}),
    Operation("POST", "/tools/retell", dialects.retell_function, "Retell custom function", "Voice tools",
              _json("The tool's answer.", schemas.ToolAnswer), body=schemas.RetellRequest, errors=(402, 404, 409, 422)),
    Operation("POST", "/tools/openai", dialects.openai_function_calls, "OpenAI function calls", "Voice tools",
              _json("function_call_output items for the app to send back.", schemas.OpenAIResponse),
              body=schemas.OpenAIRequest, errors=(402, 404, 409, 422)),
    Operation("POST", "/tools/{tool_name}", dialects.plain_tool, "A tool by name (ElevenLabs, plain HTTP)",
              "Voice tools", _json("The tool's answer.", schemas.ToolAnswer), body={"type": "object"}),
    Operation("POST", "/mcp", dialects.mcp_endpoint, "Model Context Protocol (streamable HTTP)", "Voice tools",
              {**_json("JSON-RPC answer(s).", {"type": ["object", "array"]}),
               202: Answer("Notifications only: nothing to answer."),
               400: Answer("The body is not JSON.", schemas.JsonRpcError),
               401: Answer("Missing or unknown API key.", schemas.JsonRpcError),
               403: Answer("The API key lacks a scope.", schemas.JsonRpcError)}, body=schemas.McpRequest),
    # Viewers.
    Operation("GET", "/calls/{conversation_id}", viewers.gallery_page, "The live call gallery", "Viewers",
              {**_page("The gallery page."), 403: Answer("The page, saying the link is not valid.", media_type=HTML)},
              auth="none", query=schemas.ViewerQuery),
    Operation("GET", "/ws/calls/{conversation_id}", viewers.call_socket, "Gallery events", "Viewers", {},
              websocket=True),
    Operation("GET", "/ws/voice-images", viewers.voice_images_socket, "Voice images socket", "Viewers", {},
              websocket=True),
    Operation("POST", "/api/v1/conversations/{conversation_id}/viewer-token", viewers.mint_viewer_token,
              "A viewer link for a conversation", "Viewers", _json("The token and link.", schemas.ViewerToken, 201),
              errors=(400,)),
    # REST.
    Operation("POST", "/api/v1/generations", api.create_generation, "Generate an image or video, or edit one",
              "Generations", {**_json("The job finished within wait_seconds.", schemas.JobResponse),
                              202: Answer("The job is still running; poll it.", schemas.JobResponse)},
              body=api.GenerationBody, errors=(402, 404, 409, 422), headers={"Idempotency-Key": "a retry with the same "
                                                                        "key returns the first job, charged once"}),
    Operation("GET", "/api/v1/generations/{job_id}", api.get_generation, "A job", "Generations",
              _json("The job.", schemas.JobResponse)),
    Operation("GET", "/api/v1/credits", api.get_credits, "Balance", "Credits", _json("The balance.", Balance)),
    Operation("GET", "/api/v1/credits/ledger", billing.ledger, "Ledger entries", "Credits",
              _json("Newest first.", schemas.LedgerResponse), query=schemas.LedgerQuery),
    Operation("POST", "/api/v1/credits/purchase", billing.purchase, "Claim a pack paid by a PaymentIntent",
              "Credits", _json("The fulfilment and the new balance.", schemas.PurchaseResponse),
              body=billing.PurchaseBody, errors=(402,)),
    Operation("GET", "/api/v1/pricing", billing.pricing, "Packs, plans and model prices", "Credits",
              _json("The price list.", schemas.Pricing), auth="none"),
    Operation("POST", "/api/v1/checkout", billing.create_checkout, "Start a Stripe Checkout", "Credits",
              _json("The order and the Checkout URL.", CheckoutResult, 201), auth="optional_api_key",
              body=billing.CheckoutBody),
    Operation("POST", "/api/v1/redeem", billing.redeem, "Redeem an hourly-plan code", "Credits",
              _json("The activation and the new balance.", schemas.RedeemResponse), body=billing.RedeemBody,
              errors=(404, 409)),
    Operation("GET", "/api/v1/orders", billing.list_orders, "Orders", "Credits",
              _json("Newest first.", schemas.OrdersResponse)),
    Operation("POST", "/api/v1/library", api.upload_asset, "Upload an image to the library", "Library",
              {**_json("Uploaded.", schemas.AssetResponse, 201), 200: Answer("Already in the library.",
                                                                            schemas.AssetResponse)},
              body=schemas.UploadForm, body_media_type="multipart/form-data"),
    Operation("GET", "/api/v1/library", library_api.list_library, "List the library: filters, sorts, pages",
              "Library", _json("A page of assets.", ls.AssetList), query=ls.LibraryListQuery),
    Operation("GET", "/api/v1/library/search", library_api.search_library, "Search the library as agents do",
              "Library", _json("Best match first.", schemas.SearchResponse), query=ls.SearchQuery),
    Operation("GET", "/api/v1/library/stats", library_api.library_stats, "Usage statistics", "Library",
              _json("Top assets and uses per day.", ls.LibraryStats), query=ls.StatsQuery),
    Operation("GET", "/api/v1/library/folders", library_api.list_folders, "Folders", "Library",
              _json("Every folder, by name.", ls.FolderList)),
    Operation("POST", "/api/v1/library/folders", library_api.create_folder, "Create a folder", "Library",
              _json("Created.", ls.FolderOnly, 201), body=ls.FolderBody, errors=(409,)),
    Operation("PATCH", "/api/v1/library/folders/{folder_id}", library_api.patch_folder, "Rename or move a folder",
              "Library", _json("The folder.", ls.FolderOnly), body=ls.FolderPatch, errors=(409,)),
    Operation("DELETE", "/api/v1/library/folders/{folder_id}", library_api.delete_folder, "Delete an empty folder",
              "Library", {204: Answer("Deleted.")}, errors=(409,)),
    Operation("POST", "/api/v1/library/folders/{folder_id}/shares", library_api.share_folder,
              "Share a folder with a person", "Library", _json("Shared.", ls.ShareOnly, 201), body=ls.ShareBody,
              errors=(409,)),
    Operation("GET", "/api/v1/library/{asset_id}", library_api.get_asset, "An asset and its uses", "Library",
              _json("The asset.", ls.AssetDetail)),
    Operation("PATCH", "/api/v1/library/{asset_id}", library_api.patch_asset, "Change an asset's details", "Library",
              _json("The asset.", ls.AssetOnly), body=ls.AssetPatch),
    Operation("DELETE", "/api/v1/library/{asset_id}", library_api.delete_asset, "Delete an asset", "Library",
              {204: Answer("Hidden everywhere; the file goes once nothing references it.")}),
    Operation("POST", "/api/v1/library/{asset_id}/uses", library_api.record_use, "Record a use (agent, post)",
              "Library", _json("Recorded.", ls.Recorded, 201), body=ls.UseBody),
    Operation("GET", "/api/v1/library/{asset_id}/download", library_api.download_asset, "Download (counted)",
              "Library", {200: Answer("The file as an attachment.", media_type="image/*",
                                      other_media_types=("video/*",)),
                          302: Answer("In a bucket: its presigned URL.")}),
    Operation("POST", "/api/v1/library/{asset_id}/shares", library_api.share_asset, "Share an asset with a person",
              "Library", _json("Shared.", ls.ShareOnly, 201), body=ls.ShareBody, errors=(409,)),
    Operation("GET", "/api/v1/shares", library_api.list_shares, "What the account shared", "Library",
              _json("Newest first.", ls.ShareList)),
    Operation("DELETE", "/api/v1/shares/{share_id}", library_api.delete_share, "Stop sharing", "Library",
              {204: Answer("Stopped.")}),
    Operation("GET", "/api/v1/members", library_api.list_members, "Members", "Members",
              _json("Owners first.", ls.MemberList)),
    Operation("POST", "/api/v1/members", library_api.invite_member, "Invite a person", "Members",
              _json("The one-time invite link (also emailed).", ls.Invite, 201), body=ls.InviteBody),
    Operation("PATCH", "/api/v1/members/{member_id}", library_api.patch_member, "Change a member's role", "Members",
              _json("Every member.", ls.MemberList), body=ls.MemberPatch, errors=(409,)),
    Operation("DELETE", "/api/v1/members/{member_id}", library_api.delete_member, "Remove a member", "Members",
              {204: Answer("Removed.")}, errors=(409,)),
    Operation("POST", "/api/v1/models/trainings", api.start_training, "Train a custom model on your photos",
              "Models", {202: Answer("The training job (held price, charged when the model is ready).",
                                     schemas.JobResponse)},
              body=schemas.TrainingForm, body_media_type="multipart/form-data", errors=(402, 409, 503),
              headers={"Idempotency-Key": "a retry with the same key returns the first training"}),
    Operation("GET", "/api/v1/models", api.list_models, "Models: the catalog and your trained ones", "Models",
              _json("Every model you can use, with its credits.", schemas.ModelsResponse)),
    Operation("GET", "/api/v1/admin/report", api.admin_report, "Cost, revenue and margin per model and day",
              "Operations", _json("The report (money as decimal strings).", schemas.ReportOut),
              query=schemas.ReportQuery),
    Operation("POST", "/api/v1/agents/elevenlabs/config", api.elevenlabs_agent_config,
              "Add our tools to an ElevenLabs agent config", "Voice tools",
              _json("The same config with our tools and instructions.", schemas.ElevenLabsConfig),
              body=schemas.ElevenLabsConfig),
    # Webhooks.
    Operation("POST", "/webhooks/elevenlabs", webhooks.elevenlabs_webhook, "ElevenLabs post-call webhook",
              "Webhooks", _json("Received.", schemas.Received), auth="signature", body=schemas.ElevenLabsEvent,
              errors=(401,), headers={"ElevenLabs-Signature": "t=<unix seconds>,v0=<hex HMAC-SHA256>"}),
    Operation("POST", "/webhooks/stripe", billing.stripe_webhook, "Stripe webhook", "Webhooks",
              _json("Handled, duplicate or ignored.", schemas.StripeWebhookOutcome), auth="signature",
              body=schemas.StripeEvent, errors=(503,), headers={"Stripe-Signature": "t=…,v1=…"}),
    Operation("POST", "/webhooks/replicate", webhooks.replicate_webhook, "Replicate webhook (prediction completed)",
              "Webhooks", _json("Handled, scheduled, duplicate or ignored.", schemas.ReplicateWebhookOutcome),
              auth="signature", body=schemas.ReplicatePredictionEvent, query=schemas.ReplicateWebhookQuery,
              errors=(503,), headers={"webhook-id": "msg_…", "webhook-timestamp": "unix seconds",
                                      "webhook-signature": "v1,<base64 HMAC-SHA256>"}),
    Operation("POST", "/webhooks/telegram", webhooks.telegram_webhook, "Telegram webhook", "Webhooks",
              _json("Queued.", schemas.Received), auth="signature", body=schemas.TelegramUpdate, errors=(403, 404),
              headers={"X-Telegram-Bot-Api-Secret-Token": "the secret given to setWebhook"}),
    # Checkout pages (Stripe sends the buyer back here).
    Operation("GET", "/checkout/start", billing.checkout_start, "Open a chat bot's payment link", "Checkout pages",
              {303: Answer("To Stripe Checkout."), 400: Answer("The link is not valid.", media_type=HTML),
               503: Answer("Payments are not set up.", media_type=HTML)}, auth="none", query=schemas.CheckoutLinkQuery),
    Operation("GET", "/checkout/success", billing.checkout_success, "After paying", "Checkout pages",
              {**_page("What was bought."), 400: Answer("The link is incomplete.", media_type=HTML),
               404: Answer("Unknown checkout.", media_type=HTML)}, auth="none", query=schemas.CheckoutSuccessQuery),
    Operation("GET", "/checkout/cancel", billing.checkout_cancel, "After cancelling", "Checkout pages",
              _page("Nothing was charged."), auth="none"),
]  # fmt: skip
