"""Running jobs: the provider prediction, the outputs stored, the charge settled or released, leases, resume.

A job is run by the process holding its lease (``lease_owner``, renewed every ``lease_seconds / 3``), so
several processes (the server, a CLI, replicas) can share one database without running a job twice; a job
whose lease lapsed is taken over by prediction id (``resume_unfinished``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from core.catalog_settings import VIDEO_KINDS
from core.clock import Clock
from core.config import Settings
from core.custom_models import ModelCatalog
from core.errors import (
    GenerationCanceled,
    InvalidRequest,
    ProviderError,
    ShowmeError,
)
from core.generation.outputs import OutputStore
from core.generation.thumbnails import Thumbnailer
from core.generation.training_run import run_training
from core.generation.views import JobView, job_view
from core.library import Library
from core.providers import (
    ImageProvider,
    PredictionState,
    ProviderInput,
)
from core.providers.replicate_training import ReplicateTrainer
from storage.blobs import BlobStore
from storage.records import JobRecord
from storage.repositories.jobs import JobRepository

log = logging.getLogger(__name__)

Listener = Callable[[str, JobView], Any]
T = TypeVar("T")
FINISHED_KEPT_SECONDS = 60


class JobRunner:
    """Runs the jobs of this process in the background and wakes their waiters. Owns its tasks (``close``).

    Args:
        jobs: the jobs' storage.
        settings: ``generation``, ``replicate`` and ``models`` are read.
        library: makes the views of stored outputs and forgets cached searches they change.
        provider: the image provider.
        blobs: where outputs are stored.
        clock: time source.
        catalog: model names to specs, an account's trained models included (default: the catalog only).
        trainer: runs trainings (``core.generation.training_run``); None: trainings fail as not configured.
        sleep: the pause between download attempts (seconds).
    """

    def __init__(
        self,
        *,
        jobs: JobRepository,
        settings: Settings,
        library: Library,
        provider: ImageProvider,
        blobs: BlobStore,
        clock: Clock,
        catalog: ModelCatalog | None = None,
        trainer: ReplicateTrainer | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.catalog = catalog or ModelCatalog(settings, None)
        self.trainer = trainer
        self.jobs = jobs
        self.settings = settings
        self.library = library
        self.provider = provider
        self.blobs = blobs
        self.clock = clock
        self.listeners: list[Listener] = []  # called with (event type, job) as jobs start and finish
        self.runner_id = uuid.uuid4().hex
        self.thumbnails = Thumbnailer(
            jobs, blobs, settings.media.thumbnail_pixels, settings.generation.thumbnail_worker
        )
        self.outputs = OutputStore(settings, blobs, sleep)
        self._slots = asyncio.Semaphore(settings.generation.max_concurrent_jobs)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._fresh: dict[str, JobRecord] = {}  # jobs submitted here: no need to read them back
        self._prediction_ids: dict[str, str] = {}
        self._facts: dict[str, dict[str, Any]] = {}  # job id → provider and switches of its prediction
        self._running: dict[str, datetime] = {}  # job id → when this process started it
        self._finished: dict[str, tuple[float, JobView]] = {}  # (monotonic expiry, job), oldest first
        self._waiters: dict[str, list[asyncio.Future[JobView | None]]] = {}
        self._lease_keeper: asyncio.Task[None] | None = None
        self._delivered: dict[str, asyncio.Future[PredictionState]] = {}  # job id → state a webhook brought

    def notify(self, event: str, job: JobView) -> None:
        """Call every listener with ``(event, job)``; a listener that raises is logged and skipped."""
        for listener in self.listeners:
            try:
                listener(event, job)
            except Exception:
                log.exception("job listener failed on %s", event)

    def running_since(self, job_id: str) -> datetime | None:
        """When this process started running the job, or None when it does not run it."""
        return self._running.get(job_id)

    def runs(self, job_id: str) -> bool:
        """True while the job's task lives in this process."""
        return job_id in self._tasks

    def spawn(self, job_id: str, fresh: JobRecord | None = None) -> None:
        """Run the job in the background (``fresh``: the row just inserted, so it is not read back)."""
        if job_id in self._tasks:
            return
        if fresh is not None:
            self._fresh[job_id] = fresh
        task = asyncio.create_task(self._run(job_id), name=f"job-{job_id}")
        self._tasks[job_id] = task
        task.add_done_callback(lambda _t: self._ended(job_id))
        if self._lease_keeper is None or self._lease_keeper.done():
            self._lease_keeper = asyncio.create_task(self._keep_leases(), name="job-leases")

    async def wait_local(self, job_id: str, deadline: float | None) -> JobView | None:
        """The finished job once this process finishes it, or None at ``deadline`` (monotonic seconds) or when
        its task ended without finishing it here."""
        finished = self._finished.get(job_id)
        if finished is not None:
            return finished[1]
        waiter: asyncio.Future[JobView | None] = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(job_id, [])
        waiters.append(waiter)
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            async with asyncio.timeout(remaining):
                return await waiter
        except TimeoutError:
            return None
        finally:
            with contextlib.suppress(ValueError):
                waiters.remove(waiter)

    def _ended(self, job_id: str) -> None:
        """The job's task is over; waiters not woken by ``_remember`` read the job from the database."""
        self._tasks.pop(job_id, None)
        for waiter in self._waiters.pop(job_id, []):
            if not waiter.done():
                waiter.set_result(None)

    async def _keep_leases(self) -> None:
        """Renew the leases of every job this process runs, one write every ``lease_seconds / 3``; ends when
        no job is left (``spawn`` starts it again)."""
        lease = self.settings.generation.lease_seconds
        while self._tasks:
            await asyncio.sleep(lease / 3)
            ids = list(self._tasks)
            if not ids:
                return
            try:
                await self.jobs.renew_leases(ids, self.runner_id, self.clock.now() + timedelta(seconds=lease))
            except Exception:  # a database hiccup: try again next period, before the leases run out
                log.exception("renewing the leases of %d running jobs failed", len(ids))

    async def _run(self, job_id: str) -> None:
        async with self._slots:
            try:
                await self._execute(job_id)
            except asyncio.CancelledError:
                raise  # shutting down: the lease lapses and the job is resumed later
            except ShowmeError as err:
                await self._fail(job_id, err)
            except Exception as err:
                log.exception("job %s failed unexpectedly", job_id)
                await self._fail(job_id, ProviderError(f"unexpected error: {type(err).__name__}: {err}"))
            finally:
                self._running.pop(job_id, None)
                self._fresh.pop(job_id, None)
                self._delivered.pop(job_id, None)

    async def _execute(self, job_id: str) -> None:
        job = self._fresh.pop(job_id, None)
        if job is None:  # resumed after a restart: read it back and mark it running
            job = await self.jobs.start(job_id, self.clock.now())
            if job is None:
                return
        started_at = self._running[job_id] = job.started_at or self.clock.now()
        if job.kind == "training":
            await run_training(self, job, started_at)
            return
        state = await self._predict(job, started_at)
        with self.thumbnails.busy():
            stored = await self.outputs.collect(state, job)
            facts = {**self._facts.pop(job_id, {}), **self._cost(job, state, len(stored))}
            await self._succeed(job, [(index, meta) for index, (meta, _) in stored], facts)
        # Images get their thumbnails now; a video's poster frame is its thumbnail already.
        started = self.thumbnails.add([(job_id, index, data) for index, (_, data) in stored if data is not None])
        if started is not None:
            self._background.add(started)
            started.add_done_callback(self._background.discard)

    async def _predict(self, job: JobRecord, started_at: datetime) -> PredictionState:
        """The job's finished prediction: resumed by its id, or created (and its id saved while it runs)."""
        spec = await self.catalog.resolve(job.account_id, job.model)
        if spec is None:
            raise InvalidRequest(f"model {job.model!r} is no longer configured", field="model")
        timeout = self.settings.prediction_timeout(spec)
        if job.prediction_id:
            elapsed = (self.clock.now() - started_at).total_seconds()
            return await self._wait(job.id, job.prediction_id, max(0.0, timeout - elapsed), elapsed)
        began = time.monotonic()
        webhook = self.settings.replicate_webhook_url
        state = await self.provider.create(
            ProviderInput(
                model_name=job.model,
                model=spec,
                prompt=str(job.params.get("styled_prompt") or job.prompt),
                aspect_ratio=str(job.params.get("aspect_ratio") or "1:1"),
                num_outputs=job.num_outputs,
                output_format=self.settings.generation.output_format,
                seed=job.params.get("seed"),
                image=await self.outputs.input_image(job),
                # A video runs for minutes: its id is saved at once rather than after a minute's sync wait,
                # so a restart in between resumes it instead of paying for a second one.
                sync_wait=not spec.is_video,
                webhook=f"{webhook}?job={job.id}" if webhook else None,
            )
        )
        self._prediction_ids[job.id] = state.id
        if state.provider is not None:
            switches = "; ".join(state.switches)[:1000] or None
            self._facts[job.id] = {"provider": state.provider, "provider_switches": switches}
        if state.done:
            return state
        # Durability: from here on a restart must find the prediction to resume it.
        await self.jobs.set_running(job.id, state.id, started_at)
        elapsed = time.monotonic() - began
        return await self._wait(job.id, state.id, max(0.0, timeout - elapsed), elapsed)

    async def _wait(self, job_id: str, prediction_id: str, timeout: float, running_for: float) -> PredictionState:
        """The prediction once terminal: polled, or, with webhooks on, the state a webhook delivers
        (``deliver``), whichever comes first; polling is then the slower fallback."""
        delivered = self._delivered.setdefault(job_id, asyncio.get_running_loop().create_future())
        if delivered.done():
            return delivered.result()
        if self.settings.replicate_webhook_url is None:
            return await self.provider.wait(prediction_id, timeout=timeout, running_for=running_for)
        poll = asyncio.ensure_future(
            self.provider.wait(prediction_id, timeout=timeout, running_for=running_for,
                               interval=self.settings.replicate.webhooks.poll_interval_seconds)
        )  # fmt: skip
        try:
            await asyncio.wait((poll, delivered), return_when=asyncio.FIRST_COMPLETED)
            return delivered.result() if delivered.done() else poll.result()
        finally:
            poll.cancel()

    def deliver(self, job_id: str, state: PredictionState) -> bool:
        """Hand a terminal prediction state (from a webhook) to the job's run when this process runs it;
        False when it does not."""
        if job_id not in self._tasks:
            return False
        delivered = self._delivered.setdefault(job_id, asyncio.get_running_loop().create_future())
        if not delivered.done():
            delivered.set_result(state)
        return True

    def _cost(self, job: JobRecord, state: PredictionState, outputs: int) -> dict[str, Any]:
        """``{"provider", "cost_microusd"}`` of a succeeded prediction, from the model's configured costs."""
        spec = self.settings.models.get(job.model)
        if spec is None:
            return {}
        provider = state.provider or spec.routes[0][0]
        price = spec.costs.get(provider)
        usd = price.usd(outputs, state.predict_time) if price is not None else None
        return {"provider": provider, "cost_microusd": None if usd is None else round(usd * 1_000_000)}

    async def _succeed(self, job: JobRecord, stored: list[tuple[int, dict[str, Any]]], facts: dict[str, Any]) -> None:
        now = self.clock.now()
        tags = ",".join(t for t in (job.model, job.params.get("style"), job.kind if job.kind != "image" else None) if t)
        assets = [
            {
                "account_id": job.account_id, "job_id": job.id, "output_index": index,
                "kind": "video" if job.kind in VIDEO_KINDS else "image",
                "name": job.prompt[:120], "description": "", "tags": tags, "category": "generated", "folder_id": None,
                "favorite": False, "prompt": job.prompt, "model": job.model, "use_count": 0, "view_count": 0,
                "created_at": now, "updated_at": now, **blob,
            }
            for index, blob in stored
        ]  # fmt: skip
        times = (self._running.get(job.id), now)
        prediction_id = self._prediction_ids.pop(job.id, None)
        finished = await self.jobs.finish(job.id, job.account_id, assets, times, prediction_id, facts)
        if finished is None:
            return
        # The new outputs are searchable by their prompt, once the searches they change have renewed.
        self.library.invalidate(job.account_id, finished.assets, renew=True)
        view = job_view(finished.job, [self.library.view(a) for a in finished.assets])
        self.notify("image_generated", self._remember(view))

    async def _fail(self, job_id: str, err: ShowmeError) -> None:
        outcome = {
            "status": "canceled" if isinstance(err, GenerationCanceled) else "failed",
            "error_code": err.code,
            "error": err.message,
            "prediction_id": self._prediction_ids.pop(job_id, None),
            **self._facts.pop(job_id, {}),
        }
        await self.jobs.fail(job_id, outcome, (self._running.get(job_id), self.clock.now()))
        job = await self.jobs.get(job_id)
        if job is not None:
            self.notify("generation_failed", self._remember(job_view(job, [])))

    def prediction_started(self, job_id: str, prediction_id: str) -> None:
        """Note the provider's id of the job's prediction or training (a failure records it on the job)."""
        self._prediction_ids[job_id] = prediction_id

    def remember(self, view: JobView) -> JobView:
        """``_remember`` for the job kinds run outside this module (trainings)."""
        return self._remember(view)

    def _remember(self, view: JobView) -> JobView:
        """Keep a finished job a minute for later waiters, and wake the present ones with it."""
        self._running.pop(view.id, None)
        # Expired entries go here rather than by a timer each (the loop's timer heap compares in Python).
        now = time.monotonic()
        finished = self._finished
        while finished:
            oldest = next(iter(finished))
            if finished[oldest][0] > now:
                break
            del finished[oldest]
        finished.pop(view.id, None)
        finished[view.id] = (now + FINISHED_KEPT_SECONDS, view)
        for waiter in self._waiters.pop(view.id, []):
            if not waiter.done():
                waiter.set_result(view)
        return view

    async def resume_unfinished(self) -> tuple[list[str], list[str]]:
        """Take over unfinished jobs whose runner stopped renewing its lease.

        Jobs with a prediction id are resumed (polled to the end); the others are failed and their hold
        released. Returns ``(resumed job ids, failed job ids)``.
        """
        now = self.clock.now()
        expires = now + timedelta(seconds=self.settings.generation.lease_seconds)
        resumed: list[str] = []
        failed: list[str] = []
        for job_id in await self.jobs.lapsed(now):
            claimed = await self.jobs.claim(job_id, self.runner_id, now, expires)
            if claimed is None:
                continue
            if claimed.prediction_id:
                resumed.append(job_id)
                self.spawn(job_id)
            else:
                failed.append(job_id)
                message = "the generation was interrupted before the provider accepted it; nothing was charged"
                await self._fail(job_id, ProviderError(message))
        return resumed, failed

    async def drain(self) -> None:
        """Wait for every job this process is running, and their thumbnails."""
        while self._tasks or self._background:
            await asyncio.gather(*list(self._tasks.values()), *list(self._background), return_exceptions=True)

    async def close(self) -> None:
        """Cancel running jobs (their leases lapse; another process resumes them) and wait for the tasks."""
        tasks = [*self._tasks.values(), *self._background]
        if self._lease_keeper is not None:
            tasks.append(self._lease_keeper)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.thumbnails.close()
