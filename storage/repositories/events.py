"""Deliveries handled once: platform events and updates whose id is recorded before they are acted on."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete

from storage.db import Database
from storage.models import ProcessedEvent
from storage.repositories import dialect_insert


class EventRepository:
    """``processed_events`` outside a purchase transaction (purchases record theirs in ``BillingTransaction``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def first_delivery(self, event_id: str, provider: str, event_type: str, now: datetime) -> bool:
        """Record ``event_id`` (unique over every provider); True for its first delivery, False for a repeat."""
        async with self.db.write() as session:
            inserted = await session.scalar(
                dialect_insert(session)(ProcessedEvent)
                .values(id=event_id, provider=provider, type=event_type, created_at=now)
                .on_conflict_do_nothing(index_elements=["id"])
                .returning(ProcessedEvent.id)
            )
        return inserted is not None

    async def forget(self, event_id: str) -> None:
        """Remove ``event_id``'s record, so its next delivery is handled (its handling failed)."""
        async with self.db.write() as session:
            await session.execute(delete(ProcessedEvent).where(ProcessedEvent.id == event_id))
