"""Running a training job (``jobs.kind = "training"``, started by ``core.training``): like a prediction, the
training id is saved as soon as Replicate accepts it (a restart resumes by it), and success registers the
trained version as the account's model and settles the whole price in one transaction; a failure raises, and
the runner releases the hold."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from core.errors import ModelFailed, ProviderNotConfigured
from core.generation.views import job_view
from core.providers.replicate_training import TrainingInput
from storage.records import JobRecord

if TYPE_CHECKING:
    from core.generation.runner import JobRunner


async def run_training(runner: JobRunner, job: JobRecord, started_at: datetime) -> None:
    """Create (or resume) the job's training, wait for it, then register its model and settle, once.

    Raises:
        ProviderNotConfigured: no trainer (Replicate) is configured.
        ModelFailed: the training failed or was canceled, or made no version.
        GenerationTimeout: it ran past ``training.timeout_seconds`` (it was canceled).
    """
    if runner.trainer is None:
        raise ProviderNotConfigured("training needs Replicate: set REPLICATE_API_TOKEN")
    cfg = runner.settings.training
    elapsed = (runner.clock.now() - started_at).total_seconds()
    if job.prediction_id:
        state = await runner.trainer.wait(job.prediction_id, timeout=max(0.0, cfg.timeout_seconds - elapsed),
                                          running_for=elapsed)  # fmt: skip
    else:
        images = await runner.blobs.get(str(job.params["images_key"]))
        name = str(job.params["name"])
        created = await runner.trainer.create(
            TrainingInput(
                trainer=cfg.trainer, destination=str(job.params["destination"]), images=images,
                trigger_word=job.prompt, steps=cfg.steps, hardware=cfg.hardware,
                description=f"showme custom model {name} of account {job.account_id}",
            )
        )  # fmt: skip
        runner.prediction_started(job.id, created.id)
        await runner.jobs.set_running(job.id, created.id, started_at)
        state = await runner.trainer.wait(created.id, timeout=cfg.timeout_seconds)
    if state.status != "succeeded" or not state.trained_version:
        raise ModelFailed(f"the training {state.status}: {state.error or 'no model version was made'}")
    now = runner.clock.now()
    model = {
        "account_id": job.account_id, "name": str(job.params["name"]), "base_model": job.model,
        "trigger_word": job.prompt, "ref": state.trained_version, "job_id": job.id, "created_at": now,
    }  # fmt: skip
    seconds = None if state.predict_time is None else Decimal(str(state.predict_time))
    cost = None if seconds is None else round(cfg.cost_per_second * seconds * 1_000_000)
    facts = {"custom_model": model, "provider": "replicate", "cost_microusd": cost}
    finished = await runner.jobs.finish(job.id, job.account_id, [], (started_at, now), state.id, facts)
    if finished is not None:
        runner.notify("training_finished", runner.remember(job_view(finished.job, [])))
