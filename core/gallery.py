"""The live call gallery: what viewers of one conversation see (history, then live events)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from core.events import EventHub, channel
from core.generation import JobView
from core.library import AssetView, Library
from storage.repositories.assets import AssetRepository
from storage.repositories.jobs import JobRepository


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def asset_fields(asset: AssetView) -> dict[str, Any]:
    """The fields every viewer event of an image or video carries (id, kind, URLs, size in pixels, mime; a
    video's ``duration_seconds``, its ``thumb_url`` being the poster frame)."""
    return {
        "asset_id": asset.id,
        "kind": asset.kind,
        "url": asset.url,
        "thumb_url": asset.thumb_url,
        "width": asset.width,
        "height": asset.height,
        "mime": asset.mime,
        "duration_seconds": asset.duration_seconds,
    }


def job_event(event_type: str, job: JobView) -> list[dict[str, Any]]:
    """The viewer events for one job event (one ``image_generated`` per stored output)."""
    base = {
        "conversation_id": job.conversation_id,
        "job_id": job.id,
        "prompt": job.prompt,
        "model": job.model,
        "kind": job.kind,  # the job's; an output's own kind (image or video) replaces it in image_generated
    }
    if event_type == "image_generated":
        return [{"type": "image_generated", **base, **asset_fields(a), "at": _iso(job.finished_at)} for a in job.assets]
    if event_type == "generation_failed":
        return [
            {
                "type": "generation_failed",
                **base,
                "error": {"code": job.error_code, "message": job.error},
                "at": _iso(job.finished_at),
            }
        ]
    return [{"type": "generation_started", **base, "num_outputs": job.num_outputs, "at": _iso(job.created_at)}]


def library_event(asset: AssetView, conversation_id: str, query: str, at: datetime) -> dict[str, Any]:
    """The ``image_from_library`` viewer event of an asset an agent showed."""
    return {
        "type": "image_from_library",
        "conversation_id": conversation_id,
        "name": asset.name,
        "description": asset.description,
        "query": query,
        **asset_fields(asset),
        "at": _iso(at),
    }


class Gallery:
    """Publishes job and library events to a conversation's viewers and rebuilds its history."""

    def __init__(self, hub: EventHub, jobs: JobRepository, assets: AssetRepository, library: Library) -> None:
        self.hub = hub
        self.jobs = jobs
        self.assets = assets
        self.library = library

    def on_job(self, event_type: str, job: JobView) -> None:
        """``GenerationService`` listener: forward the job's events to its conversation, if it has one."""
        if not job.conversation_id:
            return
        key = channel(job.account_id, job.conversation_id)
        for event in job_event(event_type, job):
            self.hub.publish(key, event)

    def show_asset(
        self, account_id: int, conversation_id: str, asset: AssetView, query: str, at: datetime
    ) -> int | None:
        """Push a library image to the conversation's viewers; returns how many received it, or None when the
        hub is shared by several replicas (whose viewers this process does not count)."""
        key = channel(account_id, conversation_id)
        if not self.hub.shared and not self.hub.viewers(key):
            return 0
        delivered = self.hub.publish(key, library_event(asset, conversation_id, query, at))
        return None if self.hub.shared else delivered

    async def last_image_id(self, account_id: int, conversation_id: str) -> int | None:
        """The asset id of the newest picture (not video) generated or shown in the conversation, or None."""
        for event in reversed(await self.history(account_id, conversation_id, limit=20)):
            if event.get("kind") == "image":
                return int(event["asset_id"])
        return None

    async def history(self, account_id: int, conversation_id: str, limit: int = 50) -> list[dict[str, Any]]:
        """The conversation's images so far (generated and shown from the library), oldest first, at most
        ``limit`` (the newest ones)."""
        generated = await self.jobs.conversation_images(account_id, conversation_id, limit)
        shown = await self.assets.conversation_uses(account_id, conversation_id, limit)
        items: list[tuple[datetime, dict[str, Any]]] = []
        for asset, job in generated:
            view = self.library.view(asset)
            when = job.finished_at or job.created_at
            items.append(
                (
                    when,
                    {
                        "type": "image_generated",
                        "conversation_id": conversation_id,
                        "job_id": job.id,
                        "prompt": job.prompt,
                        "model": job.model,
                        **asset_fields(view),
                        "at": _iso(when),
                    },
                )
            )
        for asset, at in shown:
            items.append((at, library_event(self.library.view(asset), conversation_id, "", at)))
        items.sort(key=lambda pair: pair[0])
        return [event for _, event in items[-limit:]] if limit else []
