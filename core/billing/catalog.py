"""The catalog: credit packs and hourly plans from ``config.yaml``, and the public price list."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from core.config import PackSpec, PlanSpec, Settings
from core.errors import InvalidRequest


@dataclass(frozen=True)
class Product:
    """A pack (``pack:<key>``: ``credits``) or an hourly plan (``plan:<key>``: ``images``, ``videos`` for
    ``duration_minutes`` on ``models``). ``unit_amount`` is the price in the currency's smallest unit."""

    id: str
    kind: str
    key: str
    name: str
    price: Decimal
    currency: str
    unit_amount: int
    credits: int = 0
    images: int = 0
    videos: int = 0
    duration_minutes: int = 0
    models: tuple[str, ...] = ()
    video_models: tuple[str, ...] | None = None  # None: every video model

    @property
    def description(self) -> str:
        """What the product gives, in one line a buyer reads."""
        if self.kind == "pack":
            return f"{self.credits} showme credits (never expire)"
        parts = [f"{self.images} images"] + ([f"{self.videos} videos"] if self.videos else [])
        return f"{' + '.join(parts)} for {self.duration_minutes} minutes after activation"

    def as_json(self) -> dict[str, Any]:
        """The product as the public price list shows it (``GET /api/v1/pricing``)."""
        data: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "price": str(self.price),
            "currency": self.currency,
            "unit_amount": self.unit_amount,
            "description": self.description,
        }
        if self.kind == "pack":
            data["credits"] = self.credits
        else:
            data.update(
                images=self.images, videos=self.videos, duration_minutes=self.duration_minutes, models=list(self.models)
            )
        return data


class Catalog:
    """What is for sale (``settings.packs``, ``settings.plans``) and what each model costs."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @staticmethod
    def _pack(key: str, spec: PackSpec) -> Product:
        return Product(
            id=f"pack:{key}", kind="pack", key=key, name=spec.name, price=spec.price, currency=spec.currency,
            unit_amount=spec.unit_amount, credits=spec.credits,
        )  # fmt: skip

    @staticmethod
    def _plan(key: str, spec: PlanSpec) -> Product:
        return Product(
            id=f"plan:{key}", kind="plan", key=key, name=spec.name, price=spec.price, currency=spec.currency,
            unit_amount=spec.unit_amount, images=spec.images, videos=spec.videos,
            duration_minutes=spec.duration_minutes, models=tuple(spec.models),
            video_models=tuple(spec.video_models) if spec.video_models is not None else None,
        )  # fmt: skip

    def packs(self) -> list[Product]:
        """Every credit pack, in configuration order."""
        return [self._pack(k, v) for k, v in self.settings.packs.items()]

    def plans(self) -> list[Product]:
        """Every hourly plan, in configuration order."""
        return [self._plan(k, v) for k, v in self.settings.plans.items()]

    def product(self, product_id: str) -> Product:
        """``pack:<key>`` or ``plan:<key>``.

        Raises:
            InvalidRequest: no such product (field ``product``), listing the choices.
        """
        for product in self.packs() + self.plans():
            if product.id == product_id:
                return product
        choices = ", ".join(p.id for p in self.packs() + self.plans())
        raise InvalidRequest(f"product {product_id!r} does not exist; choose one of {choices}", field="product")

    def plan(self, name: str) -> Product:
        """A plan by its key (``flash``) or id (``plan:flash``).

        Raises:
            InvalidRequest: no such plan (field ``plan``).
        """
        key = name.removeprefix("plan:")
        if key not in self.settings.plans:
            raise InvalidRequest(
                f"plan {name!r} does not exist; choose one of {', '.join(self.settings.plans)}", field="plan"
            )
        return self._plan(key, self.settings.plans[key])

    def pricing(self) -> dict[str, Any]:
        """The public price list: packs, plans, each model's kind and price in credits per output (an image,
        a video or an edited image; ``credits_per_image`` repeats it for image models), starter credits."""
        return {
            "packs": [p.as_json() for p in self.packs()],
            "plans": [p.as_json() for p in self.plans()],
            "models": [
                {
                    "id": name,
                    "kind": spec.kind,
                    "credits": spec.price,
                    "unit": "video" if spec.is_video else "image",
                    "description": spec.description,
                    **({"credits_per_image": spec.price} if spec.kind == "image" else {}),
                }
                for name, spec in self.settings.models.items()
            ],
            "starter_credits": self.settings.credits.starter_credits,
        }
