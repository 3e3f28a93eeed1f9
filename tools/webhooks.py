"""Inbound platform webhooks, each verified by its own signature."""

from __future__ import annotations

import hashlib
import hmac
import logging

from aiohttp import web

from core.errors import (
    InsufficientCredits,
    InvalidRequest,
    NotFound,
    ProviderNotConfigured,
    ShowmeError,
    Unauthorized,
)
from core.transcripts import follow_up
from tools.http import SERVICES, SETTINGS, TELEGRAM_BOT, parse_json, read_body

log = logging.getLogger(__name__)


def verify_elevenlabs_signature(header: str, body: bytes, secret: str, now: float, tolerance: int) -> None:
    """Check ``ElevenLabs-Signature: t=<unix s>,v0=<hex HMAC-SHA256(secret, "{t}.{body}")>``; raises
    ``Unauthorized`` when missing, wrong or older than ``tolerance`` seconds."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts.get("t", ""))
    except ValueError:
        raise Unauthorized("missing or malformed ElevenLabs-Signature") from None
    if now - timestamp > tolerance or timestamp - now > 300:
        raise Unauthorized("stale ElevenLabs-Signature timestamp")
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(parts.get("v0", ""), expected):
        raise Unauthorized("bad ElevenLabs-Signature")


async def elevenlabs_webhook(request: web.Request) -> web.Response:
    """``POST /webhooks/elevenlabs``: post-call transcripts. Always 200 once verified (ElevenLabs needs it);
    with ``elevenlabs.generate_from_transcripts`` on, promised but unshown pictures are generated."""
    services = request.app[SERVICES]
    settings = request.app[SETTINGS]
    secret = services.secrets.elevenlabs_webhook_secret
    if secret is None:
        raise Unauthorized("ELEVENLABS_WEBHOOK_SECRET is not set on this server")
    raw = await read_body(request, settings.tools.max_body_bytes * 8)
    verify_elevenlabs_signature(
        request.headers.get("ElevenLabs-Signature", ""),
        raw,
        secret.get_secret_value(),
        services.clock.now().timestamp(),
        settings.elevenlabs.signature_tolerance_seconds,
    )
    event = parse_json(raw)
    if event.get("type") != "post_call_transcription":
        return web.json_response({"status": "ignored", "type": event.get("type")})
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    conversation_id = data.get("conversation_id")
    transcript = data.get("transcript") if isinstance(data.get("transcript"), list) else []
    if not isinstance(conversation_id, str) or not conversation_id:
        raise InvalidRequest("data.conversation_id is required", field="data.conversation_id")
    if not settings.elevenlabs.generate_from_transcripts:
        return web.json_response({"status": "received", "generated": []})
    try:
        result = await follow_up(services.store.jobs, services.generation, conversation_id, transcript)
    except (InsufficientCredits, ShowmeError) as err:
        log.warning("post-call generation for %s skipped: %s", conversation_id, err.message)
        return web.json_response({"status": "skipped", "reason": err.message})
    return web.json_response(
        {
            "status": "received",
            "promised": [r.prompt for r in result.promised],
            "generated": result.generated_job_ids,
        }
    )


TELEGRAM_SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
TELEGRAM_BODY_LIMIT = 1_048_576


async def telegram_webhook(request: web.Request) -> web.Response:
    """``POST /webhooks/telegram``: 404 when no bot takes webhooks here, 403 without the right secret header
    (nothing processed), 400 for a body that is not an Update, else 200 at once with the update queued."""
    bots = request.app[TELEGRAM_BOT]
    if not bots:
        raise NotFound("no Telegram bot runs on this server (TELEGRAM_BOT_TOKEN is not set)")
    bot = bots[0]
    bot.verify(request.headers.get(TELEGRAM_SECRET_HEADER, ""))
    await bot.enqueue(parse_json(await read_body(request, TELEGRAM_BODY_LIMIT)))
    return web.json_response({"ok": True})


async def replicate_webhook(request: web.Request) -> web.Response:
    """``POST /webhooks/replicate?job=<job id>``: a prediction completed (Replicate's ``completed`` webhook event).

    Verified by Replicate's signature (``REPLICATE_WEBHOOK_SECRET``, else the account's default secret) within
    ``replicate.webhooks.tolerance_seconds``; each ``webhook-id`` is acted on once (a replay changes nothing).
    Then the job is finished by whichever replica can (``core.generation.webhooks``). Answers 200 with what
    was done, 400 for a forged or stale call.
    """
    services = request.app[SERVICES]
    settings = request.app[SETTINGS]
    if services.replicate is None:
        raise ProviderNotConfigured("this server does not create predictions on Replicate")
    body = await read_body(request, settings.tools.max_body_bytes)
    secret = services.secrets.replicate_webhook_secret
    state = await services.replicate.webhook_state(
        request.headers, body, secret=secret.get_secret_value() if secret else None,
        tolerance_seconds=settings.replicate.webhooks.tolerance_seconds,
    )  # fmt: skip
    job_id = request.query.get("job")
    if not job_id:
        return web.json_response({"status": "ignored", "reason": "no job in the webhook URL"})
    webhook_id = f"replicate:{request.headers['webhook-id']}"[:255]
    events = services.store.events
    if not await events.first_delivery(webhook_id, "replicate", "prediction.completed", services.clock.now()):
        return web.json_response({"status": "duplicate"})
    try:
        outcome = await services.generation.webhooks.completed(job_id, state)
    except ShowmeError:
        raise
    except Exception:
        await events.forget(webhook_id)  # Replicate retries; the next delivery is handled again
        raise
    log.info("Replicate webhook for job %s (prediction %s, %s): %s", job_id, state.id, state.status, outcome)
    return web.json_response({"status": outcome, "job_id": job_id, "prediction_id": state.id})
