"""Settings: ``config.yaml`` (checked in, no secrets) overridden by ``SHOWME_…`` environment variables.

Nested keys use ``__`` in the environment: ``SHOWME_DATABASE__URL``, ``SHOWME_CREDITS__STARTER_CREDITS``.
Secrets (``REPLICATE_API_TOKEN`` …) come only from the environment (``Secrets``); a secret written into the
YAML file is rejected as an unknown key.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from core.catalog_settings import (
    ASPECT_RATIO_PATTERN,
    OPERATIONS,
    ZERO_DECIMAL_CURRENCIES,
    ModelSpec,
    PackSpec,
    PlanSpec,
    Section,
    default_packs,
    default_plans,
    default_styles,
)
from core.chat_settings import DiscordSettings, TelegramSettings, WebAppSettings
from core.deployment_settings import (
    EventSettings,
    MediaSettings,
    RateLimitSettings,
    RedisSettings,
    ReplicateWebhookSettings,
)
from core.errors import ConfigError
from core.model_defaults import default_models
from core.provider_settings import FailoverSettings, HuggingFaceSettings, ReportSettings, TrainingSettings

__all__ = [
    "ASPECT_RATIO_PATTERN", "ZERO_DECIMAL_CURRENCIES", "ModelSpec", "PackSpec", "PlanSpec", "Secrets", "Settings",
    "load_secrets", "load_settings",
]  # fmt: skip


class DatabaseSettings(Section):
    url: str = "sqlite+aiosqlite:///data/showme.db"
    echo: bool = False
    auto_upgrade: bool = True
    writer_process: bool = Field(
        default=True,
        description="Batch job and credit writes in a writer process (group commit) instead of this process",
    )


class ServerSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    public_url: str = "http://127.0.0.1:8080"
    access_log: bool = True
    event_loop: Literal["auto", "uvloop", "asyncio"] = Field(
        default="auto",
        description="the server's event loop: uvloop (libuv) when installed with auto; asyncio's own otherwise",
    )
    secret_key_file: Path = Field(
        default=Path("data/secret_key"), description="signing key kept here when SHOWME_SECRET_KEY is not set"
    )

    @field_validator("public_url")
    @classmethod
    def _strip(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class CreditSettings(Section):
    starter_credits: int = Field(default=10, ge=0)
    starter_priority: int = Field(default=50, description="lower burns first")
    paid_priority: int = 100
    admin_priority: int = 100
    session_priority: int = 10


class ReplicateSettings(Section):
    wait_seconds: int = Field(default=60, ge=1, le=60, description="Prefer: wait=N on create")
    poll_interval_seconds: float = Field(default=0.5, gt=0, le=0.5)
    timeout_seconds: float = Field(default=60, gt=0, description="cancel a prediction after this long")
    rate_limit_retries: int = Field(default=3, ge=0, le=10)
    max_retry_after_seconds: float = Field(default=30, ge=0)
    request_timeout_seconds: float = Field(default=30, gt=0)
    max_creates_per_minute: int = Field(default=600, ge=1, description="Replicate's limit on prediction creates")
    max_connections: int = Field(default=256, ge=8, description="HTTP connections to Replicate (sync waits hold one)")
    webhooks: ReplicateWebhookSettings = Field(default_factory=ReplicateWebhookSettings)


class GenerationSettings(Section):
    default_model: str = "flux_schnell"
    max_concurrent_jobs: int = Field(default=128, ge=1, le=1024)
    download_attempts: int = Field(default=3, ge=1, le=10)
    download_backoff_seconds: list[float] = Field(default_factory=lambda: [1.0, 2.0, 4.0])
    download_timeout_seconds: float = Field(default=30, gt=0)
    lease_seconds: float = Field(
        default=30, gt=0, description="a job whose runner stops renewing is resumed after this"
    )
    output_format: Literal["webp", "jpg", "png"] = "webp"
    default_video_model: str = Field(default="seedance_lite", description="text-to-video model of /video and tools")
    operations: dict[str, str] = Field(
        default_factory=lambda: {
            "upscale": "real_esrgan", "remove_background": "rembg", "restore_face": "codeformer",
            "animate": "seedance_animate",
        },
        description="the model that performs each edit operation",
    )  # fmt: skip
    video_timeout_seconds: float = Field(default=600, gt=0, description="a video prediction is canceled after this")
    video_download_timeout_seconds: float = Field(default=300, gt=0, description="one attempt to fetch a video")
    concurrent_video_downloads: int = Field(
        default=2, ge=1, le=64, description="video outputs downloaded at once; the others wait their turn"
    )
    video_download_megabytes_per_second: float | None = Field(
        default=20, gt=0, description="bandwidth of all video downloads together (null: unlimited)"
    )
    thumbnail_worker: Literal["process", "thread"] = Field(
        default="process", description="process: a low-priority worker process (no GIL contention with requests)"
    )


class ToolSettings(Section):
    max_wait_seconds: float = Field(default=8, ge=0, le=120, description="generate_image answers by then")
    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="larger tool/API bodies get 413")
    upload_max_bytes: int = Field(default=20 * 1_048_576, ge=1024, description="library uploads")
    key_cache_seconds: float = Field(default=30, ge=0, description="API key lookups are cached this long")
    default_model: str | None = Field(default=None, description="model for tool calls (default: generation's)")
    verify_retell_signature: bool = Field(default=False, description="requires RETELL_API_KEY")
    verify_vapi_signature: bool = Field(default=False, description="requires VAPI_WEBHOOK_SECRET")


class ViewerSettings(Section):
    token_ttl_seconds: int = Field(default=12 * 3600, ge=60, description="lifetime of viewer links")
    send_timeout_seconds: float = Field(default=5, gt=0, description="a viewer slower than this is dropped")
    queue_size: int = Field(default=256, ge=8, description="events buffered per viewer before dropping it")
    heartbeat_seconds: float = Field(default=25, gt=0)
    history_limit: int = Field(default=50, ge=0, le=500)


class ElevenLabsSettings(Section):
    generate_from_transcripts: bool = Field(
        default=False, description="post-call: generate pictures the agent promised but never showed"
    )
    signature_tolerance_seconds: int = Field(default=1800, ge=1)


class StripeSettings(Section):
    api_base: str = Field(default="https://api.stripe.com", description="point tests and staging elsewhere")
    success_url: str | None = Field(
        default=None, description="default: server.public_url + /checkout/success?session_id={CHECKOUT_SESSION_ID}"
    )
    cancel_url: str | None = Field(default=None, description="default: server.public_url + /checkout/cancel")
    webhook_tolerance_seconds: int = Field(default=300, ge=1, description="older signed events are refused")
    max_network_retries: int = Field(default=2, ge=0, le=5)
    request_timeout_seconds: float = Field(default=30, gt=0)


class PromptSettings(Section):
    blocked_terms: list[str] = Field(default_factory=list)
    max_length: int = Field(default=1000, ge=10, le=10000)


class Settings(BaseSettings):
    """Every setting of showme. Build with ``load_settings``; see ``config.yaml`` for documentation."""

    model_config = SettingsConfigDict(
        env_prefix="SHOWME_", env_nested_delimiter="__", extra="forbid", nested_model_default_partial_update=True
    )

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    media: MediaSettings = Field(default_factory=MediaSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    credits: CreditSettings = Field(default_factory=CreditSettings)
    replicate: ReplicateSettings = Field(default_factory=ReplicateSettings)
    huggingface: HuggingFaceSettings = Field(default_factory=HuggingFaceSettings)
    failover: FailoverSettings = Field(default_factory=FailoverSettings)
    reports: ReportSettings = Field(default_factory=ReportSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    models: dict[str, ModelSpec] = Field(default_factory=default_models)
    styles: dict[str, str] = Field(default_factory=default_styles)
    aspect_ratios: list[str] = Field(default_factory=lambda: ["1:1", "16:9", "9:16", "4:3"])
    prompts: PromptSettings = Field(default_factory=PromptSettings)
    tools: ToolSettings = Field(default_factory=ToolSettings)
    viewers: ViewerSettings = Field(default_factory=ViewerSettings)
    elevenlabs: ElevenLabsSettings = Field(default_factory=ElevenLabsSettings)
    packs: dict[str, PackSpec] = Field(default_factory=default_packs)
    plans: dict[str, PlanSpec] = Field(default_factory=default_plans)
    stripe: StripeSettings = Field(default_factory=StripeSettings)
    telegram: TelegramSettings = Field(default_factory=TelegramSettings)
    webapp: WebAppSettings = Field(default_factory=WebAppSettings)
    discord: DiscordSettings = Field(default_factory=DiscordSettings)
    events: EventSettings = Field(default_factory=EventSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    rate_limits: RateLimitSettings = Field(default_factory=RateLimitSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Where values come from, first wins (pydantic-settings' hook): the environment overrides the YAML
        file, which arrives as init arguments."""
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _check_references(self) -> Settings:
        if self.tools.default_model is not None and self.tools.default_model not in self.models:
            raise ValueError(f"tools.default_model {self.tools.default_model!r} is not in models")
        if self.generation.default_model not in self.models:
            raise ValueError(
                f"generation.default_model {self.generation.default_model!r} is not in models "
                f"({', '.join(sorted(self.models))})"
            )
        self._check_generation_models()
        for name, plan in self.plans.items():
            for field, listed in (("models", plan.models), ("video_models", plan.video_models or [])):
                unknown = [m for m in listed if m not in self.models]
                if unknown:
                    raise ValueError(f"plans.{name}.{field}: {', '.join(unknown)} not in models")
        for kind, catalog in (("packs", self.packs), ("plans", self.plans)):
            for name in catalog:
                if not re.fullmatch(r"[a-z0-9_]{1,32}", name):
                    raise ValueError(f"{kind}.{name}: names are 1-32 of a-z, 0-9 and _")
        return self

    def _check_generation_models(self) -> None:
        """The video model and each operation's model exist and are of the kind they are used for."""
        video = self.models.get(self.generation.default_video_model)
        if video is None or video.kind != "video":
            raise ValueError(
                f"generation.default_video_model {self.generation.default_video_model!r} is not a model of kind video"
            )
        for operation, model in self.generation.operations.items():
            if operation not in OPERATIONS:
                raise ValueError(f"generation.operations: unknown operation {operation!r}; use {', '.join(OPERATIONS)}")
            if model not in self.models or self.models[model].kind != OPERATIONS[operation]:
                raise ValueError(
                    f"generation.operations.{operation}: {model!r} is not a model of kind {OPERATIONS[operation]}"
                )

    def prediction_timeout(self, model: str | ModelSpec) -> float:
        """How long a prediction of ``model`` (a name, or a spec) may run (seconds) before it is canceled and
        refunded."""
        spec = self.models[model] if isinstance(model, str) else model
        if spec.timeout_seconds is not None:
            return spec.timeout_seconds
        return self.generation.video_timeout_seconds if spec.is_video else self.replicate.timeout_seconds

    @property
    def replicate_webhook_url(self) -> str | None:
        """Where Replicate sends completed predictions (``replicate.webhooks``), or None when webhooks are off."""
        enabled = self.replicate.webhooks.enabled
        if enabled == "off" or (enabled == "auto" and not self.server.public_url.startswith("https://")):
            return None
        return f"{self.server.public_url}/webhooks/replicate"

    @property
    def media_base_url(self) -> str:
        """Where ``/media`` is reached: ``media.public_base_url``, else ``server.public_url`` + ``/media``."""
        return (self.media.public_base_url or f"{self.server.public_url}/media").rstrip("/")


class Secrets(BaseSettings):
    """Secrets, read from the environment only (never from config.yaml)."""

    model_config = SettingsConfigDict(extra="ignore")

    replicate_api_token: SecretStr | None = Field(default=None, alias="REPLICATE_API_TOKEN")
    replicate_webhook_secret: SecretStr | None = Field(
        default=None, alias="REPLICATE_WEBHOOK_SECRET", description="whsec_…; default: asked of Replicate's API once"
    )
    hf_token: SecretStr | None = Field(default=None, alias="HF_TOKEN", description="Hugging Face access token")
    secret_key: SecretStr | None = Field(
        default=None, alias="SHOWME_SECRET_KEY", description="signs viewer links; same on every replica"
    )
    elevenlabs_webhook_secret: SecretStr | None = Field(default=None, alias="ELEVENLABS_WEBHOOK_SECRET")
    retell_api_key: SecretStr | None = Field(default=None, alias="RETELL_API_KEY")
    vapi_webhook_secret: SecretStr | None = Field(default=None, alias="VAPI_WEBHOOK_SECRET")
    stripe_secret_key: SecretStr | None = Field(default=None, alias="STRIPE_SECRET_KEY")
    telegram_bot_token: SecretStr | None = Field(default=None, alias="TELEGRAM_BOT_TOKEN")
    telegram_webhook_secret: SecretStr | None = Field(
        default=None, alias="TELEGRAM_WEBHOOK_SECRET", description="default: derived from the bot token"
    )
    discord_bot_token: SecretStr | None = Field(default=None, alias="DISCORD_BOT_TOKEN")
    stripe_webhook_secret: SecretStr | None = Field(
        default=None, alias="STRIPE_WEBHOOK_SECRET", description="whsec_… of the webhook endpoint"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Where values come from, first wins (pydantic-settings' hook)."""
        return (init_settings, env_settings)


def _format_validation_error(err: ValidationError, source: str) -> str:
    problems = []
    for item in err.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        reason = item["msg"]
        if item["type"] == "extra_forbidden":
            reason = "unknown key (secrets belong in environment variables, not in the file)"
        problems.append(f"{key}: {reason}")
    return f"invalid configuration ({source}): " + "; ".join(problems)


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The config file to read: ``explicit``, else ``$SHOWME_CONFIG``, else ``./config.yaml`` when present."""
    if explicit:
        return Path(explicit)
    if env := os.environ.get("SHOWME_CONFIG"):
        return Path(env)
    default = Path("config.yaml")
    return default if default.exists() else None


def load_settings(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Load settings from ``path`` (see ``config_path``) and the environment; ``overrides`` win over both.

    Raises ``ConfigError`` naming the key and the reason for a missing file, bad YAML or an invalid value.
    """
    resolved = config_path(path)
    data: dict[str, Any] = {}
    source = "defaults + environment"
    if resolved is not None:
        source = f"{resolved} + environment"
        try:
            raw = yaml.safe_load(resolved.read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            raise ConfigError(f"config file not found: {resolved}") from err
        except yaml.YAMLError as err:
            raise ConfigError(f"{resolved} is not valid YAML: {err}") from err
        if raw is not None and not isinstance(raw, dict):
            raise ConfigError(f"{resolved} must hold a mapping of settings at the top level")
        data = raw or {}
    data.update(overrides)
    try:
        return Settings(**data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from err


def load_secrets() -> Secrets:
    """The secrets from the environment (``REPLICATE_API_TOKEN`` …)."""
    return Secrets()
