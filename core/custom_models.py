"""Custom models: an account's own FLUX LoRA, trained on its photos with a trigger word, then used by name.

``ModelCatalog.resolve(account_id, name)`` is the one place a model name becomes a ``ModelSpec``: a catalog
model (``config.yaml``) for everyone, else a model the account trained (``custom_models``), else None. Another
account's model is never found. A custom model is its base model (``flux_dev``) with the trained version as its
``ref``, ``training.generation_price`` credits an image, and its trigger word, which the prompt gets when it
lacks it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from core.catalog_settings import ModelSpec
from core.config import Settings
from core.errors import InvalidRequest
from storage.repositories.custom_models import CustomModelRecord, CustomModelRepository

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{1,39}$")
TRIGGER = re.compile(r"^[A-Za-z0-9_]{2,32}$")


@dataclass(frozen=True)
class CustomModelView:
    """An account's trained model: ``name`` to use it by, the ``trigger_word`` its prompts carry, the base."""

    name: str
    base_model: str
    trigger_word: str
    ref: str
    created_at: datetime


def check_name(name: str, settings: Settings) -> str:
    """A custom model's name: 2-40 lower-case letters, digits, ``-`` or ``_``, not a catalog model's.

    Raises:
        InvalidRequest: otherwise (field ``name``).
    """
    name = name.strip().lower()
    if not NAME.fullmatch(name):
        raise InvalidRequest("name: 2-40 lower-case letters, digits, - or _, starting with a letter or digit",
                             field="name")  # fmt: skip
    if name in settings.models:
        raise InvalidRequest(f"name: {name!r} is a catalog model; choose another name", field="name")
    return name


def check_trigger(word: str) -> str:
    """A trigger word: 2-32 letters, digits or ``_`` (one token the prompts can carry).

    Raises:
        InvalidRequest: otherwise (field ``trigger_word``).
    """
    word = word.strip()
    if not TRIGGER.fullmatch(word):
        raise InvalidRequest("trigger_word: 2-32 letters, digits or _ (one word, e.g. ACME_SOFA)",
                             field="trigger_word")  # fmt: skip
    return word


class ModelCatalog:
    """Catalog models and each account's custom models, by name."""

    def __init__(self, settings: Settings, repository: CustomModelRepository | None) -> None:
        self.settings = settings
        self.repository = repository

    def _spec(self, row: CustomModelRecord) -> ModelSpec | None:
        base = self.settings.models.get(row.base_model)
        if base is None:
            return None
        return base.model_copy(update={
            "ref": row.ref, "providers": {}, "costs": {}, "trigger_word": row.trigger_word,
            "price": self.settings.training.generation_price, "max_outputs": 4,
            "description": f"{row.name}: trained on your photos (say {row.trigger_word})",
        })  # fmt: skip

    async def resolve(self, account_id: int | None, name: str) -> ModelSpec | None:
        """The spec of ``name`` for ``account_id``: a catalog model, the account's custom model, or None. Custom
        models are read each time (one indexed row): a model trained again under its name is used at once."""
        spec = self.settings.models.get(name)
        if spec is not None or account_id is None or self.repository is None:
            return spec
        row = await self.repository.get(account_id, name)
        return self._spec(row) if row is not None else None

    async def custom(self, account_id: int) -> list[CustomModelView]:
        """The account's custom models, newest first."""
        rows = await self.repository.list(account_id) if self.repository is not None else []
        return [CustomModelView(r.name, r.base_model, r.trigger_word, r.ref, r.created_at) for r in rows]
