"""Settings of a deployment of several replicas: the media store (local disk or an S3-compatible bucket), the
event bus (in-process or Redis), Redis itself, rate limits, and Replicate's webhooks."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from core.catalog_settings import Section

_RATE = re.compile(r"^\s*\d+\s*(/|per)\s*(\d+\s*)?(second|minute|hour|day)s?\s*$", re.IGNORECASE)


class S3Settings(Section):
    """An S3-compatible bucket (AWS S3, MinIO, Cloudflare R2). Credentials come from the environment like any
    boto3 client's (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, or an instance role)."""

    bucket: str = Field(default="showme-media", min_length=3, max_length=63)
    endpoint_url: str | None = Field(
        default=None, description="MinIO: http://minio:9000; R2: https://<account id>.r2.cloudflarestorage.com"
    )
    region: str = Field(default="us-east-1", description="R2: auto")
    addressing_style: Literal["auto", "path", "virtual"] = Field(
        default="auto", description="path for MinIO and most self-hosted stores"
    )
    serve: Literal["redirect", "stream"] = Field(
        default="redirect",
        description="GET /media/{key}: redirect to a presigned URL (the bucket sends the bytes), or stream "
        "them through the replica (a bucket the browsers cannot reach)",
    )
    presign_seconds: int = Field(default=3600, ge=60, le=7 * 24 * 3600, description="lifetime of presigned URLs")
    local_cache: Path = Field(
        default=Path("data/media-cache"),
        description="files the chat bots attach are fetched here once (content-addressed, so never stale)",
    )
    local_cache_megabytes: int = Field(default=1024, ge=16, description="oldest files are removed past this")


class MediaSettings(Section):
    backend: Literal["local", "s3"] = Field(default="local", description="s3: media.s3 names the bucket")
    root: Path = Path("data/media")
    s3: S3Settings = Field(default_factory=S3Settings)
    public_base_url: str | None = Field(
        default=None, description="Base URL of /media; defaults to server.public_url + '/media'"
    )
    thumbnail_pixels: int = Field(default=512, ge=64, le=2048)
    allow_private_input_urls: bool = Field(
        default=False,
        description="let REST input_url reach loopback and private addresses (only where images live on the "
        "deployment's own network; off, such URLs are refused)",
    )
    search_cache_seconds: float = Field(
        default=30, ge=0, description="search results are reused this long unless this process changes the library"
    )
    search_stale_seconds: float = Field(
        default=30,
        ge=0,
        description="an expired search result is still answered this long after, while a background search renews it",
    )


class RedisSettings(Section):
    url: str = Field(default="redis://127.0.0.1:6379/0", description="redis:// or rediss:// (TLS)")
    key_prefix: str = Field(
        default="showme:", max_length=64, description="every key and channel starts with it (deployments may share)"
    )


class EventSettings(Section):
    backend: Literal["local", "redis"] = Field(
        default="local",
        description="redis: viewer events, cache invalidations, rate limits and Replicate's create window are "
        "shared by every replica (several replicas need it)",
    )


def _check_rate(value: str) -> str:
    if not _RATE.match(value):
        raise ValueError("must look like '60/minute', '5 per second' or '1000/hour'")
    return value.strip()


class RateLimitSettings(Section):
    """Requests over a limit get 429 with ``Retry-After`` and change nothing. Limits are ``N/second``,
    ``N/minute``, ``N/hour`` or ``N/day`` (sliding windows); with ``events.backend: redis`` they hold across
    replicas together."""

    enabled: bool = True
    tool_calls_per_account: str = Field(default="300/minute", description="voice tool calls and MCP")
    api_per_account: str = Field(default="600/minute", description="the other authenticated /api/v1 requests")
    per_address: str = Field(
        default="1200/minute",
        description="every request of one client address but the platforms' (tool calls, MCP, webhooks)",
    )
    checkout_per_address: str = Field(
        default="20/minute", description="anonymous payment links (/checkout/start) of one client address"
    )
    sign_in_per_address: str = Field(
        default="10/minute", description="sign-in emails asked for on the web app's sign-in page, per client address"
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="addresses or networks of load balancers whose X-Forwarded-For names the client "
        "(e.g. ['10.0.0.0/8']); empty: the connection's address is the client's",
    )

    _rates = field_validator(
        "tool_calls_per_account", "api_per_account", "per_address", "checkout_per_address", "sign_in_per_address"
    )(_check_rate)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)  # raises ValueError naming the bad item
        return value


class ReplicateWebhookSettings(Section):
    """Replicate calls ``<server.public_url>/webhooks/replicate`` when a prediction completes
    (replicate.com/docs/topics/webhooks), so any replica finishes any job; polling stays as the fallback."""

    enabled: Literal["auto", "on", "off"] = Field(
        default="auto", description="auto: on when server.public_url is https"
    )
    tolerance_seconds: int = Field(default=300, ge=1, description="older signed deliveries are refused")
    poll_interval_seconds: float = Field(
        default=5, gt=0, description="while a webhook is awaited, the prediction is still polled this far apart"
    )
