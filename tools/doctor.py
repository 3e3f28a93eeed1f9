"""``showme doctor``: check the configuration, the database, the media store and each vendor key, and say what
to fix. Each check gives ``ok``, ``warn`` (works, but something is off) or ``fail`` (a feature will not work);
keys are checked for their format and then asked of the vendor with its own client library:
Replicate ``GET /v1/account``, Stripe ``GET /v1/balance``, Telegram ``getMe``, Discord ``GET /users/@me``."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from core.config import Secrets, Settings, config_path, load_secrets

TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Check:
    """One finding: ``status`` ok | off (an optional feature is not set up) | warn | fail, what was found, and
    (unless ok) what to do about it."""

    name: str
    status: str
    detail: str
    fix: str = ""


def _ok(name: str, detail: str) -> Check:
    return Check(name, "ok", detail)


#: (environment variable, pattern, where to get one, what needs it)
KEY_FORMATS: dict[str, tuple[str, str, str]] = {
    "REPLICATE_API_TOKEN": (r"r8_[A-Za-z0-9_-]+", "replicate.com/account/api-tokens", "generating"),
    "HF_TOKEN": (r"hf_[A-Za-z0-9]+", "huggingface.co/settings/tokens (with Inference Providers permission)",
                 "failing over to Hugging Face"),
    "STRIPE_SECRET_KEY": (r"(sk|rk)_(test|live)_[A-Za-z0-9_]+", "dashboard.stripe.com/apikeys", "selling credits"),
    "STRIPE_WEBHOOK_SECRET": (r"whsec_[A-Za-z0-9_+/=]+", "the webhook endpoint's signing secret in Stripe",
                              "the Stripe webhook"),
    "TELEGRAM_BOT_TOKEN": (r"\d+:[A-Za-z0-9_-]+", "@BotFather", "the Telegram bot"),
    "DISCORD_BOT_TOKEN": (r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+",
                          "discord.com/developers/applications → Bot → Reset Token", "the Discord bot"),
    "ELEVENLABS_WEBHOOK_SECRET": (r"wsec_[A-Za-z0-9_]+", "the ElevenLabs post-call webhook's secret",
                                  "the ElevenLabs post-call webhook"),
}  # fmt: skip


def check_config(settings: Settings, path: str | None) -> list[Check]:
    """Which file was read, and the public URL the platforms will call."""
    resolved = config_path(path)
    source = str(resolved) if resolved is not None else "built-in defaults (no config.yaml found)"
    checks = [_ok("configuration", f"loaded from {source} and the environment")]
    public = settings.server.public_url
    if public.startswith("https://"):
        checks.append(_ok("public URL", public))
    else:
        checks.append(Check("public URL", "warn", f"{public} is not https: voice platforms, Stripe and Telegram "
                            "webhooks cannot reach it", "set server.public_url (or SHOWME_SERVER__PUBLIC_URL) to "
                            "the https address people and platforms reach this server at"))  # fmt: skip
    if settings.training.owner:
        checks.append(_ok("model training", f"trained models are created under {settings.training.owner} on Replicate"))
    else:
        checks.append(
            Check(
                "model training",
                "off",
                "training.owner is not set: custom model training is off",
                "to turn it on: set training.owner (SHOWME_TRAINING__OWNER) to your Replicate username",
            )
        )
    return checks


async def check_database(settings: Settings) -> Check:
    """The database answers and its migrations are current."""
    from storage import migrate
    from storage.db import create_engine

    url = settings.database.url
    if url.startswith("sqlite") and ":///" in url:
        file = Path(url.split(":///", 1)[1])
        if not await asyncio.to_thread(file.exists):
            return Check("database", "warn", f"{file} does not exist yet",
                         "`showme serve` creates it (or run `showme db upgrade`)")  # fmt: skip
    engine = create_engine(url)
    try:
        current = await asyncio.wait_for(migrate.current_revision(engine), TIMEOUT_SECONDS)
    except Exception as err:
        reason = str(getattr(err, "orig", None) or err).splitlines()[0] or type(err).__name__
        return Check("database", "fail", f"cannot connect: {reason}",
                     "check database.url (SHOWME_DATABASE__URL) and that the server is running")  # fmt: skip
    finally:
        await engine.dispose()
    head = migrate.head_revision()
    if current != head:
        return Check("database", "fail", f"at migration {current or 'none'}, the code needs {head}",
                     "run `showme db upgrade`")  # fmt: skip
    return _ok("database", f"{engine.dialect.name}, migration {head} (current)")


async def check_bucket(settings: Settings) -> Check:
    """The ``media.s3`` bucket answers and is ours to read (``media.backend: s3``)."""
    from tools.services import build_blobs

    s3 = settings.media.s3
    where = f"s3://{s3.bucket}" + (f" at {s3.endpoint_url}" if s3.endpoint_url else "")
    try:
        await build_blobs(settings).ping()
    except Exception as err:
        return Check("media store", "fail", f"{where} does not answer: {type(err).__name__}: {err}",
                     "check media.s3 (bucket, endpoint_url, region, addressing_style) and AWS_ACCESS_KEY_ID / "
                     "AWS_SECRET_ACCESS_KEY; create the bucket if it does not exist")  # fmt: skip
    return _ok("media store", where)


async def check_redis(settings: Settings) -> Check:
    """Redis answers (``events.backend: redis``)."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(settings.redis.url, socket_connect_timeout=3)
    try:
        await client.ping()
    except Exception as err:
        return Check("redis", "fail", f"{settings.redis.url.split('@')[-1]} does not answer: {err}",
                     "start Redis or set redis.url (SHOWME_REDIS__URL); events.backend local needs none")  # fmt: skip
    finally:
        await client.aclose()
    return _ok("redis", f"{settings.redis.url.split('@')[-1]}, prefix {settings.redis.key_prefix!r}")


def check_media(settings: Settings) -> Check:
    """The media root can be written, with the free space left."""
    root = settings.media.root.expanduser()
    existing = next(p for p in (root, *root.absolute().parents) if p.exists())
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".showme-doctor-"):
            pass
    except OSError as err:
        return Check("media store", "fail", f"{root} cannot be written: {err.strerror or err}",
                     "set media.root (SHOWME_MEDIA__ROOT) to a writable directory")  # fmt: skip
    free = shutil.disk_usage(existing).free
    detail = f"{root}{'' if existing == root else ' (created on first start)'}, {free / 1e9:.1f} GB free"
    if free < 1e9:
        return Check("media store", "warn", detail, "free disk space: every image and video is stored here")
    return _ok("media store", detail)


def check_key_format(name: str, value: str | None) -> Check | None:
    """None when the key is set and looks right; else a finding (a missing key fails only for Replicate: the
    others turn optional features off)."""
    pattern, where, needed_for = KEY_FORMATS[name]
    if not value:
        if name == "REPLICATE_API_TOKEN":
            return Check(name, "fail", f"not set: {needed_for} will not work", f"export {name}=… (from {where})")
        return Check(name, "off", f"not set: {needed_for} is off", f"to turn it on: export {name}=… (from {where})")
    if value != value.strip() or value[:1] in "\"'":
        return Check(name, "fail", "has spaces or quotes around it", f"export {name} without quotes or spaces")
    if not re.fullmatch(pattern, value):
        return Check(name, "fail", f"does not look like a {name} (expected {pattern})", f"copy it again from {where}")
    return None


async def _reach(name: str, call: Callable[[], Awaitable[str]]) -> Check:
    try:
        return _ok(name, await asyncio.wait_for(call(), TIMEOUT_SECONDS))
    except Exception as err:
        text = " ".join(str(err).split())[:200] or type(err).__name__
        unauthorized = any(w in text.lower() for w in ("401", "unauthorized", "invalid api key", "unauthenticated"))
        if unauthorized:
            return Check(name, "fail", f"the vendor refused it: {text}", "create a new key and export it again")
        return Check(name, "fail", f"could not check it: {text}", "check this machine's network and the vendor's "
                     "status page, then run `showme doctor` again")  # fmt: skip


async def _replicate(token: str) -> str:
    import replicate

    client = replicate.Client(api_token=token, base_url=os.environ.get("REPLICATE_BASE_URL"))
    account = await client.accounts.async_current()
    return f"works (account {account.username})"


async def _stripe(settings: Settings, key: str) -> str:
    import stripe

    http = stripe.HTTPXClient(timeout=TIMEOUT_SECONDS)
    client = stripe.StripeClient(key, base_addresses={"api": settings.stripe.api_base.rstrip("/")},
                                 http_client=http, max_network_retries=0)  # fmt: skip
    try:
        balance = await client.v1.balance.retrieve_async()
    finally:
        await http.close_async()
    return f"works ({'live' if balance.livemode else 'test'} mode)"


async def _telegram(settings: Settings, token: str) -> str:
    from telegram import Bot

    async with Bot(token, base_url=settings.telegram.api_base_url) as bot:
        return f"works (@{bot.username})"


async def _discord(settings: Settings, token: str) -> str:
    async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS) as http:
        response = await http.get(f"{settings.discord.api_base_url.rstrip('/')}/users/@me",
                                  headers={"Authorization": f"Bot {token}"})  # fmt: skip
        response.raise_for_status()
        return f"works ({response.json().get('username')})"


async def check_keys(settings: Settings, secrets: Secrets) -> list[Check]:
    """Each vendor key: its format, then (when it has one) a call to the vendor with it."""
    values = {
        "REPLICATE_API_TOKEN": secrets.replicate_api_token, "HF_TOKEN": secrets.hf_token,
        "STRIPE_SECRET_KEY": secrets.stripe_secret_key,
        "STRIPE_WEBHOOK_SECRET": secrets.stripe_webhook_secret, "TELEGRAM_BOT_TOKEN": secrets.telegram_bot_token,
        "DISCORD_BOT_TOKEN": secrets.discord_bot_token, "ELEVENLABS_WEBHOOK_SECRET": secrets.elevenlabs_webhook_secret,
    }  # fmt: skip
    calls: dict[str, Callable[[str], Awaitable[str]]] = {
        "REPLICATE_API_TOKEN": _replicate,
        "STRIPE_SECRET_KEY": lambda key: _stripe(settings, key),
        "TELEGRAM_BOT_TOKEN": lambda key: _telegram(settings, key),
        "DISCORD_BOT_TOKEN": lambda key: _discord(settings, key),
    }
    checks: list[Check] = []
    online: list[Awaitable[Check]] = []
    for name, secret in values.items():
        value = secret.get_secret_value() if secret is not None else None
        problem = check_key_format(name, value)
        if problem is not None:
            checks.append(problem)
        elif name in calls and value is not None:
            online.append(_reach(name, lambda call=calls[name], value=value: call(value)))
        else:
            when = "when a job fails over to it" if name == "HF_TOKEN" else "when the vendor calls us"
            checks.append(_ok(name, f"set, format ok (used {when})"))
    return checks + list(await asyncio.gather(*online))


def check_signing_key(settings: Settings, secrets: Secrets) -> Check:
    """Viewer links and checkout links are signed with SHOWME_SECRET_KEY or the key file."""
    if secrets.secret_key is not None:
        if len(secrets.secret_key.get_secret_value()) < 32:
            return Check(
                "SHOWME_SECRET_KEY",
                "warn",
                "shorter than 32 characters",
                "export SHOWME_SECRET_KEY=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')",
            )
        return _ok("SHOWME_SECRET_KEY", "set (the same value on every replica)")
    if settings.events.backend == "redis":
        return Check("SHOWME_SECRET_KEY", "fail", "not set, with several replicas (events.backend redis)",
                     "set the same SHOWME_SECRET_KEY on every replica, or their viewer and payment links "
                     "differ")  # fmt: skip
    file = settings.server.secret_key_file
    if file.exists():
        return _ok("SHOWME_SECRET_KEY", f"not set; using {file}")
    return _ok("SHOWME_SECRET_KEY", f"not set; {file} is created on first start (set the variable for replicas)")


async def run_checks(settings: Settings, config: str | None) -> list[Check]:
    """Every check, in the order a newcomer fixes them."""
    secrets = load_secrets()
    checks = check_config(settings, config)
    checks.append(await check_database(settings))
    checks.append(await check_bucket(settings) if settings.media.backend == "s3" else check_media(settings))
    if settings.events.backend == "redis":
        checks.append(await check_redis(settings))
    checks.append(check_signing_key(settings, secrets))
    checks.extend(await check_keys(settings, secrets))
    return checks


def render(checks: list[Check]) -> str:
    """One line per check (✓ ok, – off, ! warn, ✗ fail) with the fix on the next line, then a summary."""
    marks = {"ok": "✓", "off": "–", "warn": "!", "fail": "✗"}
    width = max(len(c.name) for c in checks)
    lines = []
    for check in checks:
        lines.append(f"{marks[check.status]} {check.name.ljust(width)}  {check.detail}")
        if check.fix:
            lines.append(f"  {' ' * width}  → {check.fix}")
    failed = sum(c.status == "fail" for c in checks)
    warned = sum(c.status == "warn" for c in checks)
    lines.append("")
    lines.append("all good" if not failed and not warned else f"{failed} to fix, {warned} to look at")
    return "\n".join(lines)
