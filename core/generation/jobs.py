"""Generation jobs: submit (job row + credit hold in one transaction), read, wait.

Lifecycle (ARCHITECTURE.md "Generation job lifecycle")::

    submit: job row (idempotency key unique per account) + hold, one transaction      status queued
    run:    provider create (sync wait) → prediction id saved → short polling           status running
            → outputs downloaded (retries) → blob store → assets → settle → event      status succeeded
            → thumbnails, after the event (they are not on the time-to-screen path)
    any failure → release the hold (exactly once)                                       status failed
    restart → jobs whose runner's lease expired are resumed by prediction id, or failed and released
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from datetime import timedelta
from typing import Any

from core.catalog_settings import ModelSpec
from core.credits import CreditService, insufficient, missing_account
from core.errors import Conflict, InvalidRequest, NotFound
from core.generation.runner import JobRunner, Listener
from core.generation.views import GenerationRequest, JobView, job_view
from core.generation.webhooks import PredictionWebhooks
from core.library import AssetView
from core.prompts import apply_style, check_prompt
from storage.errors import AccountMissing, DuplicateKey, NotEnoughUnits
from storage.records import JobRecord, record

log = logging.getLogger(__name__)

#: What an animation shows when the request says nothing about the motion.
DEFAULT_MOTION = "gentle natural motion, slow camera push-in"

#: How an edit's job is named when the request gives no prompt (``"Upscaled: Black Galaxy granite"``).
EDIT_LABELS = {
    "upscale": "Upscaled",
    "remove_background": "Background removed",
    "restore_face": "Faces restored",
    "image_to_video": "Animated",
}


class GenerationService:
    """Creates, runs, resumes and reports generation jobs. Owns its runner's background tasks (``close``).

    Args:
        runner: runs the jobs; its jobs' storage, settings, library, provider and clock are this service's.
        credits: which units pay for a job (``charge_options``).
    """

    def __init__(self, runner: JobRunner, credits: CreditService) -> None:
        self.runner = runner
        self.webhooks = PredictionWebhooks(runner)
        self.credits = credits
        self.jobs = runner.jobs
        self.settings = runner.settings
        self.library = runner.library
        self.provider = runner.provider
        self.clock = runner.clock

    @property
    def runner_id(self) -> str:
        """The lease owner id of this process's runner."""
        return self.runner.runner_id

    async def model(self, account_id: int, name: str | None) -> tuple[str, ModelSpec]:
        """``(name, spec)`` of ``name`` (default: ``generation.default_model``) for the account: a catalog model
        or one the account trained. Raises ``InvalidRequest`` (field ``model``) for any other name."""
        model_name = name or self.settings.generation.default_model
        spec = await self.runner.catalog.resolve(account_id, model_name)
        if spec is None:
            choices = ", ".join(sorted(self.settings.models))
            raise InvalidRequest(
                f"unknown model {model_name!r}; choose one of {choices}, or a model you trained", field="model"
            )
        return model_name, spec

    def _validated(self, request: GenerationRequest, model_name: str, spec: ModelSpec) -> tuple[str, str, str]:
        """``(prompt, styled prompt, aspect ratio)``; raises ``InvalidRequest`` naming the field. An edit's
        prompt may be empty (its label is made from the input image); a trained model's prompt carries its
        trigger word."""
        cfg = self.settings
        if spec.needs_input and not (request.prompt or "").strip():
            prompt = styled = ""
        else:
            prompt = check_prompt(request.prompt, cfg.prompts.blocked_terms, max_length=cfg.prompts.max_length)
            styled = apply_style(prompt, request.style, cfg.styles)
            if spec.trigger_word and spec.trigger_word.lower() not in styled.lower():
                styled = f"{spec.trigger_word} {styled}"
        aspect = request.aspect_ratio or ("16:9" if spec.kind == "video" else "1:1")
        if spec.aspect_ratios and aspect not in spec.aspect_ratios:
            raise InvalidRequest(
                f"aspect_ratio {aspect!r} is not accepted by {model_name}; use one of {', '.join(spec.aspect_ratios)}",
                field="aspect_ratio",
            )
        if not 1 <= request.num_outputs <= spec.max_outputs:
            raise InvalidRequest(
                f"num_outputs must be between 1 and {spec.max_outputs} for {model_name}", field="num_outputs"
            )
        if request.seed is not None and not 0 <= request.seed < 2**32:
            raise InvalidRequest("seed must be between 0 and 4294967295", field="seed")
        if request.idempotency_key is not None and len(request.idempotency_key) > 255:
            raise InvalidRequest("idempotency key must be at most 255 characters", field="idempotency_key")
        return prompt, styled, aspect

    async def _input_image(
        self, account_id: int, request: GenerationRequest, model_name: str, spec: ModelSpec
    ) -> AssetView | None:
        """The library image an edit or animation works on; None for models that take none.

        Raises:
            InvalidRequest: the model needs an image and none was given, or the asset is a video
                (field ``input_asset_id``).
            NotFound: no such asset in the account's library.
        """
        if not spec.needs_input:
            if request.input_asset_id is not None:
                raise InvalidRequest(f"{model_name} makes {spec.kind}s from a prompt, not from an image",
                                     field="input_asset_id")  # fmt: skip
            return None
        if request.input_asset_id is None:
            message = f"{model_name} ({spec.kind}) needs an image: give input_asset_id"
            raise InvalidRequest(message, field="input_asset_id")
        asset = await self.library.get(account_id, request.input_asset_id)
        if asset.kind != "image":
            raise InvalidRequest(f"asset {asset.id} is a {asset.kind}, not an image", field="input_asset_id")
        return asset

    async def _row(self, account_id: int, request: GenerationRequest, model_name: str, spec: ModelSpec
                   ) -> dict[str, Any]:  # fmt: skip
        """The new job's columns (but ``unit`` and ``cost``, which the hold decides)."""
        prompt, styled, aspect = self._validated(request, model_name, spec)
        source = await self._input_image(account_id, request, model_name, spec)
        params: dict[str, Any] = {"style": request.style, "aspect_ratio": aspect, "seed": request.seed,
                                  "styled_prompt": styled}  # fmt: skip
        if source is not None:
            params.update(input_asset_id=source.id, input_blob_key=source.blob_key, input_mime=source.mime)
            if spec.kind == "image_to_video" and not styled:
                params["styled_prompt"] = DEFAULT_MOTION
            prompt = prompt or f"{EDIT_LABELS[spec.kind]}: {source.name}"[:1000]
        hashed = [model_name, prompt, request.style, aspect, request.num_outputs, request.seed,
                  request.conversation_id, request.input_asset_id]  # fmt: skip
        now = self.clock.now()
        return {
            "id": uuid.uuid4().hex, "account_id": account_id, "kind": spec.kind, "model": model_name,
            "prompt": prompt, "params": params,
            "num_outputs": request.num_outputs, "status": "queued", "prediction_id": None, "error_code": None,
            "error": None, "charged": 0, "charge_state": "held", "source": request.source,
            "conversation_id": request.conversation_id,
            "idempotency_key": request.idempotency_key or f"auto:{uuid.uuid4().hex}",
            "request_hash": hashlib.sha256(json.dumps(hashed, sort_keys=True).encode()).hexdigest(),
            "lease_owner": self.runner.runner_id,
            "lease_expires_at": now + timedelta(seconds=self.settings.generation.lease_seconds),
            "created_at": now, "started_at": None, "finished_at": None,
        }  # fmt: skip

    async def submit(self, account_id: int, request: GenerationRequest) -> JobView:
        """Create the job and hold its price in one transaction, then start it in the background.

        Returns:
            The job (``queued``). With an ``idempotency_key`` this account already used for the same request,
            that job, and nothing is charged.

        Raises:
            InvalidRequest: a bad field (named), or no such account.
            NotFound: ``input_asset_id`` is not an asset of the account.
            PromptRefused: the prompt is blocked.
            InsufficientCredits: the account cannot pay; nothing written.
            Conflict: the idempotency key was used for a different request.
            ProviderNotConfigured: the provider has no credentials.
        """
        model_name, spec = await self.model(account_id, request.model)
        values = await self._row(account_id, request, model_name, spec)
        self.provider.check_ready()
        options = [(c.unit, c.amount) for c in self.credits.charge_options(
            request.num_outputs, spec.price, "video" if spec.is_video else "image"
        )]  # fmt: skip
        return await self.create_job(values, options, reuse_key=request.idempotency_key is not None)

    async def create_job(self, values: dict[str, Any], options: list[tuple[str, int]], *, reuse_key: bool
                         ) -> JobView:  # fmt: skip
        """Insert the job ``values`` holding the first of ``options`` (``(unit, amount)``) the account can pay,
        in one transaction, then start it. With ``reuse_key``, an earlier job of the same idempotency key is
        returned instead (nothing charged).

        Raises:
            InsufficientCredits: no option is covered; nothing written.
            InvalidRequest: no such account.
            Conflict: the idempotency key was used for a different request.
        """
        account_id = values["account_id"]
        try:
            created = await self.jobs.create(values, options, reuse_key=reuse_key, now=values["created_at"])
        except NotEnoughUnits as err:
            raise insufficient(err) from err
        except AccountMissing as err:
            raise missing_account(err) from err
        except DuplicateKey:  # another process inserted the same key between our read and our insert
            existing = await self.jobs.by_key(account_id, values["idempotency_key"])
            if existing is None:
                raise
            return await self._same_request(*existing, values["request_hash"])
        if created.existing is not None:
            return await self._same_request(*created.existing, values["request_hash"])
        job = record(JobRecord, {**values, "unit": created.unit, "cost": created.amount})
        view = job_view(job, [])
        self.runner.notify("generation_started", view)
        self.runner.spawn(job.id, job)
        return view

    async def _same_request(self, job_id: str, job_hash: str, request_hash: str) -> JobView:
        if job_hash != request_hash:
            raise Conflict("this idempotency key was already used for a different request", field="idempotency_key")
        return await self.get(job_id)

    async def output_asset_id(self, account_id: int, job_id: str) -> int:
        """The first output of the account's finished job ``job_id`` (to edit or animate it).

        Raises:
            NotFound: no such job of the account.
            InvalidRequest: the job has no stored output (field ``input_job_id``).
        """
        job = await self.get(job_id, account_id)
        if not job.assets:
            raise InvalidRequest(f"job {job_id} has no finished output to use", field="input_job_id")
        return job.assets[0].id

    async def generate(self, account_id: int, request: GenerationRequest, *, timeout: float | None = None) -> JobView:
        """``submit`` and wait until the job finishes (or ``timeout`` seconds pass; then it is still running)."""
        job = await self.submit(account_id, request)
        return await self.wait(job.id, timeout=timeout)

    async def get(self, job_id: str, account_id: int | None = None) -> JobView:
        """The job with its assets.

        Raises:
            NotFound: no such job, or it belongs to another account than ``account_id``.
        """
        job = await self.jobs.get(job_id)
        if job is None or (account_id is not None and job.account_id != account_id):
            raise NotFound(f"job {job_id} does not exist")
        assets = await self.library.for_job(job_id) if job.status == "succeeded" else []
        return job_view(job, assets, self.runner.running_since(job_id))

    async def wait(self, job_id: str, *, timeout: float | None = None) -> JobView:
        """Wait until the job is finished or ``timeout`` seconds pass; returns its latest state.

        A job run by this process wakes its waiters in the step that records it; one run elsewhere is polled
        every 0.25 s.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.runner.runs(job_id):
                done = await self.runner.wait_local(job_id, deadline)
                return done if done is not None else await self.get(job_id)
            view = await self.get(job_id)
            if view.done or (deadline is not None and time.monotonic() >= deadline):
                return view
            await asyncio.sleep(0.25)

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(event_type, job)`` on ``generation_started``, ``image_generated`` and
        ``generation_failed``. Listeners must not block."""
        self.runner.listeners.append(listener)

    def start_thumbnail_worker(self) -> None:
        """Start the thumbnail worker now instead of at the first finished job."""
        self.runner.thumbnails.start()

    async def resume_unfinished(self) -> tuple[list[str], list[str]]:
        """``JobRunner.resume_unfinished``: ``(resumed job ids, failed job ids)``."""
        return await self.runner.resume_unfinished()

    async def drain(self) -> None:
        """Wait for every job this process is running, and their thumbnails."""
        await self.runner.drain()

    async def close(self) -> None:
        """Cancel running jobs (their leases lapse; another process resumes them) and wait for the tasks."""
        await self.webhooks.close()
        await self.runner.close()
