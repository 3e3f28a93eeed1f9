"""What callers pass in and get back: ``GenerationRequest`` and ``JobView``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from core.library import AssetView
from storage.records import JobRecord
from storage.repositories.jobs import ACTIVE, FINISHED

__all__ = ["ACTIVE", "FINISHED", "GenerationRequest", "JobView", "job_view"]


@dataclass(frozen=True)
class GenerationRequest:
    """What to generate. ``model`` (any kind: image, video or an edit) and ``aspect_ratio`` default from config;
    ``num_outputs`` 1–4 images, each charged (videos and edits make one); ``input_asset_id`` is the library
    image an edit or animation works on (required by those kinds); ``prompt`` may be empty for an edit;
    ``seed`` 0 to 2³²−1; ``idempotency_key`` (at most 255 characters) makes a retried request return the first
    job instead of a new one."""

    prompt: str
    model: str | None = None
    style: str | None = None
    aspect_ratio: str | None = None
    num_outputs: int = 1
    seed: int | None = None
    conversation_id: str | None = None
    source: str = "api"
    idempotency_key: str | None = None
    input_asset_id: int | None = None


@dataclass(frozen=True)
class JobView:
    """A generation job: ``kind`` is its model's (image, video, image_to_video, upscale, remove_background,
    restore_face); ``cost`` is what was held (of ``unit``), ``charged`` what was spent once settled; ``assets``
    are the outputs of a succeeded job; ``input_asset_id`` the image an edit or animation started from."""

    id: str
    account_id: int
    status: str
    model: str
    prompt: str
    styled_prompt: str
    aspect_ratio: str
    num_outputs: int
    unit: str
    cost: int
    charged: int
    charge_state: str
    prediction_id: str | None
    error_code: str | None
    error: str | None
    conversation_id: str | None
    source: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    assets: list[AssetView] = field(default_factory=list)
    style: str | None = None
    kind: str = "image"
    input_asset_id: int | None = None

    @property
    def done(self) -> bool:
        """True once the job succeeded, failed or was canceled."""
        return self.status in FINISHED


def job_view(job: JobRecord, assets: list[AssetView], running_since: datetime | None = None) -> JobView:
    """The view of a job row; ``running_since``: when this process started running it (a queued job it runs
    shows as running)."""
    return JobView(
        id=job.id,
        account_id=job.account_id,
        status="running" if job.status == "queued" and running_since is not None else job.status,
        model=job.model,
        prompt=job.prompt,
        styled_prompt=str(job.params.get("styled_prompt") or job.prompt),
        aspect_ratio=str(job.params.get("aspect_ratio") or "1:1"),
        num_outputs=job.num_outputs,
        unit=job.unit,
        cost=job.cost,
        charged=job.charged,
        charge_state=job.charge_state,
        prediction_id=job.prediction_id,
        error_code=job.error_code,
        error=job.error,
        conversation_id=job.conversation_id,
        source=job.source,
        created_at=job.created_at,
        started_at=job.started_at or running_since,
        finished_at=job.finished_at,
        assets=assets,
        style=job.params.get("style"),
        kind=job.kind,
        input_asset_id=job.params.get("input_asset_id"),
    )
