"""Every repository over one ``Database``: what the services are built from."""

from __future__ import annotations

from dataclasses import dataclass

from storage.db import Database
from storage.repositories.accounts import AccountRepository
from storage.repositories.assets import AssetRepository
from storage.repositories.custom_models import CustomModelRepository
from storage.repositories.events import EventRepository
from storage.repositories.grants import CreditRepository
from storage.repositories.jobs import JobRepository
from storage.repositories.orders import OrderRepository
from storage.repositories.reports import ReportRepository


@dataclass(frozen=True)
class Store:
    """The repositories of one database."""

    db: Database
    accounts: AccountRepository
    credits: CreditRepository
    jobs: JobRepository
    assets: AssetRepository
    orders: OrderRepository
    events: EventRepository
    reports: ReportRepository
    custom_models: CustomModelRepository

    @classmethod
    def of(cls, db: Database) -> Store:
        """The repositories over ``db``."""
        return cls(
            db=db,
            accounts=AccountRepository(db),
            credits=CreditRepository(db),
            jobs=JobRepository(db),
            assets=AssetRepository(db),
            orders=OrderRepository(db),
            events=EventRepository(db),
            reports=ReportRepository(db),
            custom_models=CustomModelRepository(db),
        )
