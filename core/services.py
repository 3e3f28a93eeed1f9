"""Building the services from settings, once per process (the CLI and ``tools.app.create_app`` use this)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from core.accounts import AccountService
from core.billing import Billing
from core.clock import Clock, SystemClock
from core.config import Secrets, Settings, load_secrets
from core.credits import CreditService
from core.errors import ConfigError
from core.events import LocalEventHub
from core.gallery import Gallery
from core.generation import GenerationService
from core.library import Library, UseRecorder
from core.providers import ImageProvider
from core.providers.payments import PaymentProvider
from core.providers.replicate import ReplicateProvider
from core.providers.stripe import StripePayments
from core.tools import ToolRegistry
from core.viewers import ViewerTokens, load_or_create_secret
from storage import migrate
from storage.blobs import LocalBlobStore
from storage.db import Database, create_engine


@dataclass
class Services:
    settings: Settings
    db: Database
    clock: Clock
    blobs: LocalBlobStore
    credits: CreditService
    accounts: AccountService
    library: Library
    provider: ImageProvider
    generation: GenerationService
    secrets: Secrets
    hub: LocalEventHub
    gallery: Gallery
    uses: UseRecorder
    tools: ToolRegistry
    viewer_tokens: ViewerTokens
    payments: PaymentProvider
    billing: Billing


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


@asynccontextmanager
async def open_services(
    settings: Settings,
    *,
    clock: Clock | None = None,
    provider: ImageProvider | None = None,
    secrets: Secrets | None = None,
    payments: PaymentProvider | None = None,
) -> AsyncIterator[Services]:
    """Create every service; on exit stop running jobs, close the providers, dispose of the engine.

    ``provider`` (images) and ``payments`` replace Replicate and Stripe (built from ``secrets``) when given."""
    clock = clock or SystemClock()
    secrets = secrets or load_secrets()
    db = Database(create_engine(settings.database.url, echo=settings.database.echo))
    owned_provider = provider is None
    try:
        await prepare_database(db, settings)
        blobs = LocalBlobStore(settings.media.root)
        credits = CreditService(db, settings.credits, clock)
        library = Library(
            db,
            blobs,
            settings.media_base_url,
            clock,
            cache_seconds=settings.media.search_cache_seconds,
            stale_seconds=settings.media.search_stale_seconds,
        )
        if provider is None:
            token = secrets.replicate_api_token.get_secret_value() if secrets.replicate_api_token else None
            provider = ReplicateProvider(settings.replicate, token)
        generation = GenerationService(
            db=db, settings=settings, credits=credits, library=library, provider=provider, blobs=blobs, clock=clock
        )
        hub = LocalEventHub(settings.viewers.queue_size)
        gallery = Gallery(hub, db, library)
        generation.subscribe(gallery.on_job)
        uses = UseRecorder(db, clock)
        if payments is None:
            payments = StripePayments(
                settings.stripe,
                secrets.stripe_secret_key.get_secret_value() if secrets.stripe_secret_key else None,
                secrets.stripe_webhook_secret.get_secret_value() if secrets.stripe_webhook_secret else None,
            )
        secret = secrets.secret_key.get_secret_value() if secrets.secret_key else None
        signing_key = load_or_create_secret(secret, settings.server.secret_key_file)
        services = Services(
            settings=settings,
            db=db,
            clock=clock,
            blobs=blobs,
            credits=credits,
            accounts=AccountService(db, credits, clock, key_cache_seconds=settings.tools.key_cache_seconds),
            library=library,
            provider=provider,
            generation=generation,
            secrets=secrets,
            hub=hub,
            gallery=gallery,
            uses=uses,
            tools=ToolRegistry(settings, generation, library, gallery, uses, clock),
            viewer_tokens=ViewerTokens(
                signing_key,
                clock,
                settings.viewers.token_ttl_seconds,
            ),
            payments=payments,
            billing=Billing(db, settings, credits, payments, clock, link_secret=signing_key),
        )
        try:
            yield services
        finally:
            await generation.close()
            await uses.flush()
            if owned_provider:
                await provider.close()
            await payments.close()
    finally:
        await db.dispose()
