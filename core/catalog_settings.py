"""The catalog's settings: models, credit packs and hourly plans, style presets, and their defaults."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ASPECT_RATIO_PATTERN = r"^\d{1,2}:\d{1,2}$"

#: What a catalog model makes. ``image`` and ``video`` start from a prompt; the others from an input image.
ModelKind = Literal["image", "video", "image_to_video", "upscale", "remove_background", "restore_face"]
MODEL_KINDS: tuple[str, ...] = ("image", "video", "image_to_video", "upscale", "remove_background", "restore_face")
#: Kinds whose output is a video: they draw a plan's ``video`` quota first, then credits.
VIDEO_KINDS = frozenset({"video", "image_to_video"})
#: Kinds that take an input image (a library asset).
INPUT_KINDS = frozenset({"image_to_video", "upscale", "remove_background", "restore_face"})
#: The edit operations people ask for, and the model kind that performs each.
OPERATIONS: dict[str, str] = {
    "upscale": "upscale",
    "remove_background": "remove_background",
    "restore_face": "restore_face",
    "animate": "image_to_video",
}


class Section(BaseModel):
    """A settings section: unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")


class ProviderCost(Section):
    """What one output costs us at a provider, in USD: ``per_output`` (an image or a video), or ``per_second`` of
    the prediction's run time (Replicate's ``metrics.predict_time`` on the model's hardware)."""

    per_output: Decimal | None = Field(default=None, ge=0)
    per_second: Decimal | None = Field(default=None, ge=0)

    def usd(self, outputs: int, predict_seconds: float | None) -> Decimal | None:
        """The cost of ``outputs`` outputs made in ``predict_seconds``; None when it cannot be known."""
        if self.per_output is not None:
            return self.per_output * outputs
        if self.per_second is not None and predict_seconds is not None:
            return self.per_second * Decimal(str(predict_seconds))
        return None


class ModelSpec(Section):
    """One catalog model: what it makes (``kind``), where it runs (``ref`` on Replicate, whose input schema
    ``family`` names) and what it costs (``price`` credits per output)."""

    ref: str = Field(description="owner/name (official model) or owner/name:version")
    price: int = Field(ge=0, description="credits per output")
    kind: ModelKind = "image"
    family: Literal["flux", "flux_pro", "sdxl", "ideogram", "seedance", "real_esrgan", "rembg", "codeformer"]
    aspect_ratios: list[str] = Field(default_factory=list, description="required for image and video kinds")
    max_outputs: int = Field(default=4, ge=1, le=4)
    timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        description="cancel and refund after this long (default: generation.video_timeout_seconds for videos, "
        "replicate.timeout_seconds otherwise)",
    )
    input_defaults: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="extra fields of the model's input, e.g. {duration: 5, resolution: 480p}"
    )
    description: str = ""
    providers: dict[str, str] = Field(
        default_factory=dict,
        description="where it runs, in order of preference: provider → that provider's model id, e.g. "
        "{replicate: black-forest-labs/flux-schnell, hf: black-forest-labs/FLUX.1-schnell} (default: Replicate, ref)",
    )

    costs: dict[str, ProviderCost] = Field(
        default_factory=dict, description="what an output costs us at each provider (cost and margin reports)"
    )
    trigger_word: str | None = Field(default=None, description="custom models: the word the prompt must carry")

    @field_validator("ref")
    @classmethod
    def _ref(cls, value: str) -> str:
        owner_name = value.split(":", 1)[0]
        if owner_name.count("/") != 1 or not all(owner_name.split("/")):
            raise ValueError("must look like owner/name or owner/name:version")
        return value

    @field_validator("aspect_ratios")
    @classmethod
    def _ratios(cls, value: list[str]) -> list[str]:
        for ratio in value:
            if not re.fullmatch(ASPECT_RATIO_PATTERN, ratio):
                raise ValueError(f"{ratio!r} is not an aspect ratio like 16:9")
        return value

    @field_validator("providers")
    @classmethod
    def _providers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, model_id in value.items():
            if name not in ("replicate", "hf"):
                raise ValueError(f"unknown provider {name!r}: use replicate or hf")
            if not model_id.strip():
                raise ValueError(f"the {name} model id is empty")
        return value

    @property
    def routes(self) -> list[tuple[str, str]]:
        """``[(provider, model id), …]`` in the order to try them."""
        return list(self.providers.items()) or [("replicate", self.ref)]

    @model_validator(mode="after")
    def _fits_kind(self) -> ModelSpec:
        if self.kind in ("image", "video") and not self.aspect_ratios:
            raise ValueError(f"a model of kind {self.kind} needs at least one aspect ratio")
        if "hf" in self.providers and self.kind != "image":
            raise ValueError("the hf provider makes images only (text-to-image)")
        if self.kind != "image" and self.max_outputs != 1:
            self.max_outputs = 1  # one video or one edited image per job
        return self

    @property
    def is_video(self) -> bool:
        """True when the model's output is a video."""
        return self.kind in VIDEO_KINDS

    @property
    def needs_input(self) -> bool:
        """True when the model works on an input image."""
        return self.kind in INPUT_KINDS


# ISO 4217 currencies Stripe charges without a minor unit (https://docs.stripe.com/currencies#zero-decimal).
ZERO_DECIMAL_CURRENCIES = frozenset(
    ["bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"]
)


class _Priced(Section):
    name: str = Field(min_length=1, max_length=100)
    price: Decimal = Field(gt=0, description="in the currency's main unit, e.g. 9.99 (write it as a string)")
    currency: str = Field(pattern=r"^[a-z]{3}$", description="ISO 4217, lower case, e.g. usd, inr")

    @property
    def unit_amount(self) -> int:
        """The price in the currency's smallest unit (cents, paise), as Stripe's ``unit_amount`` wants it."""
        exponent = 0 if self.currency in ZERO_DECIMAL_CURRENCIES else 2
        return int(self.price.scaleb(exponent))

    @model_validator(mode="after")
    def _whole_minor_units(self) -> _Priced:
        exponent = 0 if self.currency in ZERO_DECIMAL_CURRENCIES else 2
        if self.price.scaleb(exponent) != self.price.scaleb(exponent).to_integral_value():
            raise ValueError(f"price {self.price} {self.currency} is not a whole number of the smallest unit")
        return self


class PackSpec(_Priced):
    """A credit pack: ``credits`` that never expire, for ``price`` ``currency``."""

    credits: int = Field(gt=0)
    currency: str = Field(default="usd", pattern=r"^[a-z]{3}$")


class PlanSpec(_Priced):
    """An hourly session plan: ``images`` and ``videos`` usable for ``duration_minutes`` after activation, on
    ``models`` only."""

    images: int = Field(ge=0)
    videos: int = Field(ge=0)
    duration_minutes: int = Field(default=60, ge=1, le=60 * 24 * 31)
    models: list[str] = Field(
        default_factory=lambda: ["flux_schnell", "sdxl"], min_length=1, description="models the image quota pays for"
    )
    video_models: list[str] | None = Field(
        default=None, description="models the video quota pays for (default: every video model)"
    )
    currency: str = Field(default="inr", pattern=r"^[a-z]{3}$")


def default_packs() -> dict[str, PackSpec]:
    """The credit packs sold when ``config.yaml`` names none."""
    return {
        "starter": PackSpec(name="Starter", credits=50, price=Decimal("9.99"), currency="usd"),
        "creator": PackSpec(name="Creator", credits=200, price=Decimal("29.99"), currency="usd"),
        "professional": PackSpec(name="Professional", credits=500, price=Decimal("59.99"), currency="usd"),
        "enterprise": PackSpec(name="Enterprise", credits=1500, price=Decimal("149.99"), currency="usd"),
    }


def default_plans() -> dict[str, PlanSpec]:
    """The hourly plans sold when ``config.yaml`` names none."""
    return {
        "flash_lite": PlanSpec(name="Flash Lite", price=Decimal("50"), currency="inr", images=3, videos=0),
        "flash": PlanSpec(name="Flash", price=Decimal("100"), currency="inr", images=8, videos=1),
        "pro": PlanSpec(name="Pro", price=Decimal("200"), currency="inr", images=15, videos=3),
    }


def default_styles() -> dict[str, str]:
    """The style presets (name → prompt suffix) when ``config.yaml`` names none."""
    return {
        "photorealistic": "photorealistic, natural lighting, high detail, sharp focus, 35mm photograph",
        "artistic": "artistic illustration, painterly, expressive brush strokes, rich colors",
        "sketch": "pencil sketch, hand-drawn, graphite linework, white paper",
        "modern": "modern, clean minimalist design, contemporary, soft even lighting",
    }
