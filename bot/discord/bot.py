"""The Discord bot (discord.py 2): ``/imagine`` with credits, and buttons that keep working after a restart.

Runs inside ``showme serve`` when ``DISCORD_BOT_TOKEN`` is set: ``client.start`` in the server's event loop,
closed on shutdown; slash commands synced in ``setup_hook`` (to ``discord.guild_ids`` when set, else globally).
Discord's rules (../shared/PROTOCOLS.md "Discord"): the first response to an interaction within 3 s (we defer with
"thinking" at once), the interaction token lives 15 minutes, persistent buttons are ``DynamicItem``s whose
``custom_id`` carries the job id (``showme:again:<job>``), so any process can answer them. This module translates
interactions into ``core`` calls and renders the results; the rules live in ``core.chat`` and below.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any

import discord
import yarl
from discord import app_commands, ui

from core.chat import ChatService
from core.errors import InsufficientCredits, ShowmeError
from core.generation import GenerationRequest, JobView
from core.services import Services

log = logging.getLogger(__name__)

JOB_ID = r"(?P<job>[0-9a-f]{32})"
EMBED_COLOR = 0x5865F2


def _bot(interaction: discord.Interaction[Any]) -> DiscordBot:
    client = interaction.client
    assert isinstance(client, ShowmeClient)
    return client.showme


class AgainButton(ui.DynamicItem[ui.Button[Any]], template=rf"showme:again:{JOB_ID}"):
    """🔁 Again: the same prompt, model, style and aspect ratio with a new seed, for the requester only."""

    def __init__(self, job_id: str) -> None:
        super().__init__(
            ui.Button(label="Again", emoji="🔁", style=discord.ButtonStyle.primary, custom_id=f"showme:again:{job_id}")
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: ui.Item[Any], match: re.Match[str], /
    ) -> AgainButton:
        return cls(match["job"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _bot(interaction).guarded(interaction, _bot(interaction).again(interaction, self.job_id))


class OriginalButton(ui.DynamicItem[ui.Button[Any]], template=rf"showme:original:{JOB_ID}"):
    """📄 Original: the stored full-quality file, privately to the requester."""

    def __init__(self, job_id: str) -> None:
        super().__init__(
            ui.Button(
                label="Original", emoji="📄", style=discord.ButtonStyle.secondary, custom_id=f"showme:original:{job_id}"
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: ui.Item[Any], match: re.Match[str], /
    ) -> OriginalButton:
        return cls(match["job"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _bot(interaction).guarded(interaction, _bot(interaction).original(interaction, self.job_id))


def result_view(job_id: str) -> ui.View:
    view = ui.View(timeout=None)
    view.add_item(AgainButton(job_id))
    view.add_item(OriginalButton(job_id))
    return view


class ShowmeClient(discord.Client):
    def __init__(self, showme: DiscordBot) -> None:
        super().__init__(intents=discord.Intents.none())
        self.showme = showme
        self.tree = app_commands.CommandTree(self)

    async def setup_hook(self) -> None:
        self.add_dynamic_items(AgainButton, OriginalButton)
        self.showme.add_commands(self.tree)
        guild_ids = self.showme.settings.discord.guild_ids
        if guild_ids:
            for guild_id in guild_ids:
                guild = discord.Object(id=guild_id)
                self.tree.copy_global_to(guild=guild)
                await self.tree.sync(guild=guild)
        else:
            await self.tree.sync()
        self.tree.on_error = self.showme.on_command_error  # type: ignore[method-assign]


class DiscordBot:
    """The discord.py client with our commands and buttons, started and stopped by the aiohttp app."""

    def __init__(self, services: Services, token: str) -> None:
        self.services = services
        self.settings = services.settings
        self.token = token
        self.chat = ChatService.for_platform(services, "discord", self.settings.discord.max_queued_per_user)
        # discord.py keeps its endpoints in class attributes; config points them elsewhere (tests, proxies).
        discord.http.Route.BASE = self.settings.discord.api_base_url.rstrip("/")
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.settings.discord.gateway_url)
        self.client = ShowmeClient(self)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Log in (runs ``setup_hook``: command sync) and keep the gateway connection in a background task."""
        await self.client.login(self.token)
        self._task = asyncio.create_task(self.client.connect(reconnect=True), name="discord-gateway")

    async def stop(self) -> None:
        await self.client.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    # -- commands --------------------------------------------------------------------------------------------

    def add_commands(self, tree: app_commands.CommandTree[Any]) -> None:
        settings = self.settings
        styles = [app_commands.Choice(name=s, value=s) for s in list(settings.styles)[:25]]
        ratios = [app_commands.Choice(name=r, value=r) for r in settings.aspect_ratios[:25]]
        models = [
            app_commands.Choice(name=f"{name} ({spec.price} credit{'s' if spec.price != 1 else ''})", value=name)
            for name, spec in list(settings.models.items())[:25]
        ]
        products = [
            app_commands.Choice(name=self.chat.product_label(p)[:100], value=p.id)
            for p in (self.services.billing.packs() + self.services.billing.plans())[:25]
        ]

        @tree.command(name="imagine", description="Make a picture from your words")
        @app_commands.describe(
            prompt="What to draw", style="Style preset", aspect_ratio="Picture shape", model="Image model"
        )
        @app_commands.choices(style=styles, aspect_ratio=ratios, model=models)
        async def imagine(
            interaction: discord.Interaction[Any],
            prompt: app_commands.Range[str, 1, 1000],
            style: app_commands.Choice[str] | None = None,
            aspect_ratio: app_commands.Choice[str] | None = None,
            model: app_commands.Choice[str] | None = None,
        ) -> None:
            await interaction.response.defer(thinking=True)
            account_id = await self._account_id(interaction.user)
            preferences = await self.chat.preferences(account_id)
            request = self.chat.request(
                prompt,
                preferences,
                style=style.value if style else None,
                aspect_ratio=aspect_ratio.value if aspect_ratio else None,
                model=model.value if model else None,
                # A retried interaction (same id) returns the first job and is charged once.
                idempotency_key=f"discord:{interaction.id}",
            )
            await self.generate(interaction, account_id, request)

        @tree.command(name="balance", description="Your credits and session time left")
        async def balance(interaction: discord.Interaction[Any]) -> None:
            account_id = await self._account_id(interaction.user)
            current = await self.services.credits.balance(account_id)
            await interaction.response.send_message(
                f"{self.chat.balance_text(current)}\n{self.chat.prices_text()}", ephemeral=True
            )

        @tree.command(name="buy", description="Buy credits or an hourly session")
        @app_commands.describe(product="What to buy (leave empty to see everything)")
        @app_commands.choices(product=products)
        async def buy(interaction: discord.Interaction[Any], product: app_commands.Choice[str] | None = None) -> None:
            account_id = await self._account_id(interaction.user)
            chosen = [product.value] if product else None
            await interaction.response.send_message(
                "Pay securely with Stripe; your credits arrive as soon as the payment is confirmed.",
                view=self.buy_view(account_id, chosen),
                ephemeral=True,
            )

        @tree.command(name="redeem", description="Redeem a session code")
        @app_commands.describe(code="The code, like ABCD-EFGH-JKMN")
        async def redeem(interaction: discord.Interaction[Any], code: app_commands.Range[str, 1, 64]) -> None:
            account_id = await self._account_id(interaction.user)
            activation = await self.services.billing.redeem(code, account_id)
            current = await self.services.credits.balance(account_id)
            await interaction.response.send_message(
                f"✅ {activation.name} session active until <t:{int(activation.expires_at.timestamp())}:t>.\n"
                f"{self.chat.balance_text(current)}",
                ephemeral=True,
            )

        @tree.command(name="library", description="Find your pictures")
        @app_commands.describe(query="Words to look for")
        async def library(interaction: discord.Interaction[Any], query: app_commands.Range[str, 1, 200]) -> None:
            await interaction.response.defer(ephemeral=True, thinking=True)
            account_id = await self._account_id(interaction.user)
            hits = await self.services.library.search(account_id, query, limit=10)
            if not hits:
                await interaction.followup.send(f"Nothing in your pictures matches “{query}”.", ephemeral=True)
                return
            files = [
                discord.File(
                    self.services.blobs.local_path(h.asset.blob_key),
                    filename=f"{h.asset.id}.{h.asset.blob_key.rsplit('.', 1)[-1]}",
                )
                for h in hits
            ]
            names = "\n".join(f"• {(h.asset.prompt or h.asset.name)[:80]}" for h in hits)
            await interaction.followup.send(names, files=files, ephemeral=True)

    # -- generation ------------------------------------------------------------------------------------------

    async def _account_id(self, user: discord.User | discord.Member) -> int:
        account, _ = await self.chat.account(user.id, user.display_name)
        return account.id

    def buy_view(self, account_id: int, products: list[str] | None = None) -> ui.View:
        """Link buttons to signed ``/checkout/start`` URLs (the session is created when one is opened)."""
        billing = self.services.billing
        view = ui.View(timeout=None)
        for product in billing.packs() + billing.plans():
            if products is not None and product.id not in products:
                continue
            url = billing.checkout_link(account_id, product.id, "discord")
            view.add_item(ui.Button(label=self.chat.product_label(product)[:80], url=url))
        return view

    async def fail(self, interaction: discord.Interaction[Any], text: str, account_id: int, buy: bool = False) -> None:
        """Replace the public "thinking…" response with a private message (and Buy links when asked)."""
        with contextlib.suppress(discord.HTTPException):
            await interaction.delete_original_response()
        kwargs: dict[str, Any] = {"ephemeral": True}
        if buy:
            kwargs["view"] = self.buy_view(account_id)
        await interaction.followup.send(text, **kwargs)

    async def fail_with(self, interaction: discord.Interaction[Any], err: ShowmeError, account_id: int) -> None:
        """``fail`` with the error's sentence, and Buy links when it is a lack of credits."""
        await self.fail(interaction, self.chat.error_text(err), account_id, buy=isinstance(err, InsufficientCredits))

    async def generate(
        self, interaction: discord.Interaction[Any], account_id: int, request: GenerationRequest
    ) -> None:
        """After a deferred response: queue behind the user's running picture, generate, edit the response into
        the image embed with its buttons."""

        async def queued(position: int) -> None:
            with contextlib.suppress(discord.HTTPException):
                await interaction.edit_original_response(
                    content=f"⏳ Queued: your picture is number {position} in line."
                )

        try:
            await self.chat.queue.run(
                str(interaction.user.id), lambda: self._run(interaction, account_id, request), on_queued=queued
            )
        except ShowmeError as err:
            await self.fail_with(interaction, err, account_id)

    async def _run(self, interaction: discord.Interaction[Any], account_id: int, request: GenerationRequest) -> None:
        generation = self.services.generation
        try:
            job = await generation.submit(account_id, request)
        except ShowmeError as err:
            await self.fail_with(interaction, err, account_id)
            return
        started = asyncio.get_running_loop().time()
        while not job.done:
            job = await generation.wait(job.id, timeout=self.settings.discord.progress_seconds)
            if not job.done:
                seconds = int(asyncio.get_running_loop().time() - started)
                with contextlib.suppress(discord.HTTPException):
                    await interaction.edit_original_response(
                        content=f"🎨 Making your picture with {job.model}… {seconds} s"
                    )
        if job.status != "succeeded" or not job.assets:
            await self.fail(interaction, self.chat.job_failed_text(job), account_id)
            return
        balance = await self.services.credits.balance(account_id)
        embed, file = self.render(job, balance.credits)
        await interaction.edit_original_response(
            content=None, embed=embed, attachments=[file], view=result_view(job.id)
        )

    def render(self, job: JobView, credits_left: int) -> tuple[discord.Embed, discord.File]:
        asset = job.assets[0]
        path = self.services.blobs.local_path(asset.blob_key)
        filename = f"showme-{job.id[:8]}{path.suffix}"
        embed = discord.Embed(description=job.prompt[:4000], color=EMBED_COLOR)
        embed.set_image(url=f"attachment://{filename}")
        embed.add_field(name="Model", value=job.model)
        if job.style:
            embed.add_field(name="Style", value=job.style)
        paid = f"{job.charged} {job.unit}{'s' if job.charged != 1 else ''}"
        embed.add_field(name="Credits left", value=f"{credits_left} (this one: {paid})")
        return embed, discord.File(path, filename=filename)

    # -- buttons ---------------------------------------------------------------------------------------------

    async def _own_job(self, interaction: discord.Interaction[Any], job_id: str) -> tuple[int, JobView] | None:
        account_id = await self._account_id(interaction.user)
        try:
            job = await self.services.generation.get(job_id)
        except ShowmeError:
            job = None
        if job is None or job.account_id != account_id:
            await interaction.response.send_message(
                "Only the person who asked for this picture can use its buttons.", ephemeral=True
            )
            return None
        return account_id, job

    async def again(self, interaction: discord.Interaction[Any], job_id: str) -> None:
        found = await self._own_job(interaction, job_id)
        if found is None:
            return
        account_id, job = found
        await interaction.response.defer(thinking=True)
        preferences = await self.chat.preferences(account_id)
        request = self.chat.request(
            job.prompt,
            preferences,
            model=job.model,
            style=job.style,
            aspect_ratio=job.aspect_ratio,
            new_seed=True,
            idempotency_key=f"discord:{interaction.id}",
        )
        await self.generate(interaction, account_id, request)

    async def original(self, interaction: discord.Interaction[Any], job_id: str) -> None:
        found = await self._own_job(interaction, job_id)
        if found is None:
            return
        _, job = found
        if not job.assets:
            await interaction.response.send_message("This picture has no file.", ephemeral=True)
            return
        asset = job.assets[0]
        path = self.services.blobs.local_path(asset.blob_key)
        await interaction.response.send_message(
            f"Original, {asset.width}×{asset.height}",
            file=discord.File(path, filename=f"showme-{job.id[:8]}-original{path.suffix}"),
            ephemeral=True,
        )

    async def guarded(self, interaction: discord.Interaction[Any], work: Any) -> None:
        """Run a button's work; any error becomes a private answer (buttons have no command error hook)."""
        try:
            await work
        except Exception as err:
            await self.on_command_error(interaction, app_commands.CommandInvokeError(None, err))  # type: ignore[arg-type]

    # -- errors ----------------------------------------------------------------------------------------------

    async def on_command_error(
        self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError
    ) -> None:
        """Every failure answers privately; never "The application did not respond"."""
        cause = error.original if isinstance(error, app_commands.CommandInvokeError) else error
        if not isinstance(cause, ShowmeError):
            log.error("Discord command failed", exc_info=cause)
        text = self.chat.error_text(cause) if isinstance(cause, Exception) else "Something went wrong."
        account_id = await self._account_id(interaction.user)
        buy = isinstance(cause, InsufficientCredits)
        if interaction.response.is_done():
            await self.fail(interaction, text, account_id, buy=buy)
        else:
            kwargs: dict[str, Any] = {"ephemeral": True}
            if buy:
                kwargs["view"] = self.buy_view(account_id)
            await interaction.response.send_message(text, **kwargs)
