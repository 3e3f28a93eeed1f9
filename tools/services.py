"""The composition root: every service built from settings once per process (``tools.app`` and the CLI)."""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import cast

from pydantic import SecretStr
from redis.exceptions import RedisError

from core.accounts import AccountService
from core.billing import Billing
from core.chat import ChatService
from core.clock import Clock, SystemClock
from core.config import Secrets, Settings, load_secrets
from core.credits import CreditService
from core.custom_models import ModelCatalog
from core.errors import ConfigError
from core.events import Broadcast, EventHub, LocalBroadcast, LocalEventHub
from core.gallery import Gallery
from core.generation import GenerationService, JobRunner
from core.library import Library, UseRecorder
from core.library.manage import LibraryManager
from core.providers import ImageProvider
from core.providers.failover import FailoverProvider
from core.providers.huggingface import HuggingFaceProvider
from core.providers.payments import PaymentProvider
from core.providers.redis import RedisBus
from core.providers.replicate import ReplicateProvider
from core.providers.replicate_training import ReplicateTrainer
from core.providers.stripe import StripePayments
from core.rate_limits import CreateWindow, RateLimits, redis_storage, storage_for
from core.reports import ReportService
from core.teams import EmailSender, StdoutEmailSender, Teams
from core.tools import ToolRegistry
from core.training import TrainingService
from core.viewers import ViewerTokens, load_or_create_secret
from storage import migrate
from storage.blobs import BlobStore, LocalBlobStore
from storage.db import Database, create_engine
from storage.repositories.library import LibraryRepository
from storage.repositories.teams import TeamRepository
from storage.store import Store


@dataclass
class Services:
    settings: Settings
    db: Database
    store: Store
    clock: Clock
    blobs: BlobStore
    credits: CreditService
    accounts: AccountService
    library: Library
    provider: ImageProvider
    generation: GenerationService
    secrets: Secrets
    hub: EventHub
    gallery: Gallery
    uses: UseRecorder
    tools: ToolRegistry
    viewer_tokens: ViewerTokens
    payments: PaymentProvider
    billing: Billing
    reports: ReportService
    models: ModelCatalog
    training: TrainingService
    broadcast: Broadcast
    rate_limits: RateLimits
    manager: LibraryManager
    teams: Teams
    bus: RedisBus | None = None
    #: The Replicate provider behind ``provider`` (verifies Replicate's webhooks); None when one was given.
    replicate: ReplicateProvider | None = None


def chat_service(services: Services, platform: str, max_queued: int) -> ChatService:
    """The chat core of one adapter (``telegram``, ``discord``)."""
    return ChatService(
        platform=platform, settings=services.settings, accounts=services.accounts, generation=services.generation,
        billing=services.billing, credits=services.credits, library=services.library, blobs=services.blobs,
        events=services.store.events, max_queued=max_queued,
    )  # fmt: skip


async def prepare_database(db: Database, settings: Settings) -> None:
    """Upgrade a SQLite database in place; require ``showme db upgrade`` for any other database.

    Raises ``ConfigError`` when a non-SQLite database is behind the code's migrations.
    """
    if db.is_sqlite and settings.database.auto_upgrade:
        await migrate.upgrade(db.engine)
        return
    current = await migrate.current_revision(db.engine)
    if current != migrate.head_revision():
        raise ConfigError(
            f"the database is at migration {current or 'none'}, the code needs {migrate.head_revision()}: "
            "run `showme db upgrade`"
        )


def build_blobs(settings: Settings) -> BlobStore:
    """The media store ``media.backend`` names: files under ``media.root``, or the ``media.s3`` bucket."""
    if settings.media.backend == "s3":
        from storage.s3 import S3BlobStore

        s3 = settings.media.s3
        return S3BlobStore(
            s3.bucket, endpoint_url=s3.endpoint_url, region=s3.region, addressing_style=s3.addressing_style,
            presign_seconds=s3.presign_seconds, local_cache=s3.local_cache,
            local_cache_bytes=s3.local_cache_megabytes * 1_048_576,
        )  # fmt: skip
    return LocalBlobStore(settings.media.root)


def build_bus(settings: Settings) -> RedisBus | None:
    """The Redis bus when ``events.backend`` is redis (started by ``open_services``), else None."""
    if settings.events.backend != "redis":
        return None
    return RedisBus(settings.redis.url, settings.redis.key_prefix, settings.viewers.queue_size)


def _redis_url(settings: Settings) -> str | None:
    return settings.redis.url if settings.events.backend == "redis" else None


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def build_services(
    settings: Settings,
    db: Database,
    clock: Clock,
    secrets: Secrets,
    provider: ImageProvider,
    payments: PaymentProvider,
    trainer: ReplicateTrainer | None = None,
    bus: RedisBus | None = None,
) -> Services:
    """Every service over ``db``, wired together (nothing is started: see ``open_services``). Without a
    ``trainer`` (Replicate), custom model trainings fail as not configured; with a ``bus`` (Redis), viewer
    events and cache invalidations reach the other replicas."""
    store = Store.of(db)
    blobs = build_blobs(settings)
    broadcast: Broadcast = bus or LocalBroadcast()
    credits = CreditService(store.credits, settings.credits, clock)
    media = settings.media
    library = Library(
        store.assets, blobs, settings.media_base_url, clock,
        cache_seconds=media.search_cache_seconds, stale_seconds=media.search_stale_seconds, broadcast=broadcast,
    )  # fmt: skip
    catalog = ModelCatalog(settings, store.custom_models)
    runner = JobRunner(
        jobs=store.jobs, settings=settings, library=library, provider=provider, blobs=blobs, clock=clock,
        catalog=catalog, trainer=trainer,
    )  # fmt: skip
    generation = GenerationService(runner, credits)
    hub: EventHub = bus or LocalEventHub(settings.viewers.queue_size)
    gallery = Gallery(hub, store.jobs, store.assets, library)
    generation.subscribe(gallery.on_job)
    uses = UseRecorder(store.assets, clock)
    signing_key = load_or_create_secret(_secret(secrets.secret_key), settings.server.secret_key_file)
    web = settings.webapp
    teams = Teams(
        TeamRepository(db), clock, hashlib.sha256(b"links:" + signing_key).digest(), email_sender(web.email_sender),
        settings.server.public_url, login_ttl=web.login_link_minutes * 60, invite_ttl=web.invite_days * 86400,
    )  # fmt: skip
    manager = LibraryManager(library, LibraryRepository(db), purge_after_seconds=web.purge_deleted_after_seconds)
    return Services(
        settings=settings, db=db, store=store, clock=clock, blobs=blobs, credits=credits,
        accounts=AccountService(store.accounts, credits, clock, key_cache_seconds=settings.tools.key_cache_seconds,
                                broadcast=broadcast),
        library=library, provider=provider, generation=generation, secrets=secrets, hub=hub, gallery=gallery,
        uses=uses, tools=ToolRegistry(settings, generation, library, gallery, uses, clock),
        viewer_tokens=ViewerTokens(signing_key, clock, settings.viewers.token_ttl_seconds), payments=payments,
        billing=Billing(store.orders, settings, credits, payments, clock, link_secret=signing_key),
        reports=ReportService(store.reports, settings, clock), models=catalog,
        training=TrainingService(generation, catalog), broadcast=broadcast, bus=bus,
        rate_limits=RateLimits(settings.rate_limits, storage_for(_redis_url(settings), settings.redis.key_prefix)),
        manager=manager, teams=teams,
    )  # fmt: skip


def email_sender(name: str) -> EmailSender:
    """The configured sender: ``stdout``, or ``module:Class`` built without arguments.

    Raises:
        ConfigError: the class cannot be imported.
    """
    if name == "stdout":
        return StdoutEmailSender()
    module, _, attr = name.partition(":")
    try:
        return cast(EmailSender, getattr(importlib.import_module(module), attr)())
    except (ImportError, AttributeError, TypeError, ValueError) as err:
        raise ConfigError(f"webapp.email_sender {name!r} cannot be loaded ({err}): use stdout or module:Class") from err


async def _start_bus(bus: RedisBus, settings: Settings) -> None:
    """Start the Redis bus; raises ``ConfigError`` naming Redis when it does not answer."""
    try:
        await bus.start()
    except (RedisError, OSError) as err:
        raise ConfigError(
            f"Redis at {settings.redis.url.split('@')[-1]} does not answer ({err}): start it, or set "
            "events.backend: local (one replica)"
        ) from err


def _replicate(settings: Settings, secrets: Secrets) -> ReplicateProvider:
    """Replicate with ``REPLICATE_API_TOKEN``, its create window shared through Redis when events are."""
    redis_url = _redis_url(settings)
    window = None
    if redis_url is not None:
        storage = redis_storage(redis_url, settings.redis.key_prefix)
        window = CreateWindow(storage, settings.replicate.max_creates_per_minute)
    return ReplicateProvider(
        settings.replicate, _secret(secrets.replicate_api_token),
        download_workers=settings.generation.concurrent_video_downloads,
        download_megabytes_per_second=settings.generation.video_download_megabytes_per_second,
        create_window=window,
    )  # fmt: skip


@asynccontextmanager
async def open_services(
    settings: Settings,
    *,
    clock: Clock | None = None,
    provider: ImageProvider | None = None,
    secrets: Secrets | None = None,
    payments: PaymentProvider | None = None,
) -> AsyncIterator[Services]:
    """Open the database (upgrading SQLite in place) and build every service; on exit stop running jobs,
    write pending asset uses, close the providers and dispose of the engine.

    ``provider`` (images) and ``payments`` replace Replicate and Stripe (built from ``secrets``) when given.

    Raises:
        ConfigError: a PostgreSQL database behind the code's migrations; Redis not answering
            (``events.backend: redis``).
    """
    secrets = secrets or load_secrets()
    db = Database(
        create_engine(settings.database.url, echo=settings.database.echo),
        writer_process=settings.database.writer_process,
    )
    owned_provider = provider is None
    bus = build_bus(settings)
    try:
        await prepare_database(db, settings)
        if bus is not None:
            await _start_bus(bus, settings)
        replicate: ReplicateProvider | None = None
        if provider is None:
            replicate = _replicate(settings, secrets)
            hf = HuggingFaceProvider(settings.huggingface, _secret(secrets.hf_token))
            provider = FailoverProvider({"replicate": replicate, "hf": hf}, settings.failover)
        trainer = ReplicateTrainer(replicate) if replicate is not None else None
        payments = payments or StripePayments(
            settings.stripe, _secret(secrets.stripe_secret_key), _secret(secrets.stripe_webhook_secret)
        )
        services = build_services(settings, db, clock or SystemClock(), secrets, provider, payments, trainer, bus)
        services.replicate = replicate
        try:
            yield services
        finally:
            await services.generation.close()
            await services.uses.flush()
            if owned_provider:
                await provider.close()
            await payments.close()
    finally:
        if bus is not None:
            await bus.close()
        await db.dispose()
