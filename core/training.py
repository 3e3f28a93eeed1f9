"""Training custom models (FLUX LoRA) on an account's photos.

A training is a durable job like a prediction (``jobs.kind = "training"``): its price is held in the transaction
that creates it, the Replicate training id is saved as soon as it exists (a restart resumes it by that id), and
it settles its whole price once when the trained version is registered as the account's model, in one
transaction; a failed or canceled training releases the hold. Replicate's side
(replicate.com/docs/get-started/fine-tune-with-flux): the destination model is created (private) under
``training.owner``, then ``POST /v1/models/{trainer}/versions/{version}/trainings`` with the photos as one zip
(``input_images``), the ``trigger_word`` and ``steps``; the finished training's ``output.version`` is the model.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import uuid
import zipfile
from datetime import timedelta
from typing import Any

from PIL import Image, UnidentifiedImageError

from core.custom_models import ModelCatalog, check_name, check_trigger
from core.errors import InvalidRequest, ProviderNotConfigured
from core.generation import GenerationService, JobView

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def _check_image(name: str, data: bytes) -> None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise InvalidRequest(f"images: {name} is not a picture ({type(err).__name__})", field="images") from err


def pack_images(files: list[tuple[str, bytes]], min_images: int, max_images: int) -> tuple[bytes, int]:
    """One zip of the photos (``files``: name and bytes of each picture, or of zips of pictures), checked one
    by one with Pillow; ``(zip bytes, number of photos)``.

    Raises:
        InvalidRequest: a file that is not a picture, or fewer than ``min_images`` / more than ``max_images``
            photos (field ``images``).
    """
    photos: list[tuple[str, bytes]] = []
    for name, data in files:
        if data[:4] == b"PK\x03\x04":
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as archive:
                    for info in archive.infolist():
                        inner = info.filename.rsplit("/", 1)[-1]
                        if not info.is_dir() and inner.lower().endswith(IMAGE_SUFFIXES) and not inner.startswith("."):
                            photos.append((inner, archive.read(info)))
            except zipfile.BadZipFile as err:
                raise InvalidRequest(f"images: {name} is not a valid zip", field="images") from err
        else:
            photos.append((name, data))
    if not min_images <= len(photos) <= max_images:
        raise InvalidRequest(f"images: give {min_images}-{max_images} photos (got {len(photos)})", field="images")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for index, (name, data) in enumerate(photos):
            _check_image(name, data)
            suffix = name.rsplit(".", 1)[-1].lower() if "." in name else "jpg"
            archive.writestr(f"{index:03d}.{suffix}", data)
    return out.getvalue(), len(photos)


class TrainingService:
    """Starts trainings; the job runner runs them (``JobRunner``)."""

    def __init__(self, generation: GenerationService, catalog: ModelCatalog) -> None:
        self.generation = generation
        self.catalog = catalog
        self.settings = generation.settings
        self.runner = generation.runner

    async def start(
        self,
        account_id: int,
        *,
        name: str,
        trigger_word: str,
        files: list[tuple[str, bytes]],
        base_model: str = "flux_dev",
        source: str = "api",
        idempotency_key: str | None = None,
    ) -> JobView:
        """Hold the training's price and start it; returns the job (``queued``).

        Raises:
            InvalidRequest: a bad name, trigger word, base model or photos (named field).
            ProviderNotConfigured: training is not set up (``training.owner``, REPLICATE_API_TOKEN).
            InsufficientCredits: the account cannot pay; nothing written.
        """
        cfg = self.settings.training
        name, trigger_word = check_name(name, self.settings), check_trigger(trigger_word)
        if base_model not in cfg.base_models:
            raise InvalidRequest(f"base_model: choose one of {', '.join(cfg.base_models)}", field="base_model")
        packed, count = await asyncio.to_thread(pack_images, files, cfg.min_images, cfg.max_images)
        if not cfg.owner:
            raise ProviderNotConfigured("training is not set up: set training.owner to your Replicate username")
        if self.runner.trainer is None:
            raise ProviderNotConfigured("training needs Replicate (REPLICATE_API_TOKEN)")
        stored = await self.runner.blobs.put(packed, ".zip")
        now = self.generation.clock.now()
        key = idempotency_key or f"auto:{uuid.uuid4().hex}"
        destination = f"{cfg.owner}/showme-{account_id}-{name}".replace("_", "-")
        values: dict[str, Any] = {
            "id": uuid.uuid4().hex, "account_id": account_id, "kind": "training", "model": base_model,
            "prompt": trigger_word, "num_outputs": 1, "status": "queued", "prediction_id": None,
            "params": {"name": name, "images_key": stored.key, "image_count": count, "destination": destination,
                       "aspect_ratio": "1:1", "styled_prompt": trigger_word},
            "error_code": None, "error": None, "charged": 0, "charge_state": "held", "source": source,
            "conversation_id": None, "idempotency_key": key,
            "request_hash": hashlib.sha256(f"{name}:{trigger_word}:{base_model}:{stored.key}".encode()).hexdigest(),
            "lease_owner": self.runner.runner_id,
            "lease_expires_at": now + timedelta(seconds=self.settings.generation.lease_seconds),
            "created_at": now, "started_at": None, "finished_at": None,
        }  # fmt: skip
        return await self.generation.create_job(values, [("credit", cfg.price)], reuse_key=idempotency_key is not None)
