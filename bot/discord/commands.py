"""The Discord bot's slash commands and button actions; each translates one interaction into ``core.chat``
calls and renders the answer (``bot.discord.views``)."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import discord
from discord import app_commands

from bot.discord import views
from core.chat import ChatService, model_option
from core.errors import InsufficientCredits, ShowmeError
from core.generation import GenerationRequest, JobView

log = logging.getLogger(__name__)


class Commands:
    """The commands of one bot over ``chat``."""

    def __init__(self, chat: ChatService) -> None:
        self.chat = chat
        self.settings = chat.settings

    async def _account_id(self, user: discord.User | discord.Member) -> int:
        account, _ = await self.chat.account(user.id, user.display_name)
        return account.id

    def buy_view(self, account_id: int, products: list[str] | None = None) -> discord.ui.View:
        """``views.buy_view`` for this bot."""
        return views.buy_view(self.chat, self.chat.billing, account_id, products)

    def add_to(self, tree: app_commands.CommandTree[Any]) -> None:
        """Register /imagine, /video, /balance, /buy, /redeem and /library."""
        settings = self.settings
        styles = [app_commands.Choice(name=s, value=s) for s in list(settings.styles)[:25]]
        ratios = [app_commands.Choice(name=r, value=r) for r in settings.aspect_ratios[:25]]
        models = [
            app_commands.Choice(name=f"{name} ({spec.price} credit{'s' if spec.price != 1 else ''})", value=name)
            for name, spec in list(settings.models.items())[:25]
            if spec.kind == "image"
        ]
        billing = self.chat.billing
        products = [
            app_commands.Choice(name=self.chat.product_label(p)[:100], value=p.id)
            for p in (billing.packs() + billing.plans())[:25]
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
            await self.imagine(interaction, prompt, style, aspect_ratio, model)

        @tree.command(name="video", description="Make a short video from your words (about a minute)")
        @app_commands.describe(prompt="What the video shows")
        async def video(interaction: discord.Interaction[Any], prompt: app_commands.Range[str, 1, 1000]) -> None:
            await self.video(interaction, prompt)

        @tree.command(name="balance", description="Your credits and session time left")
        async def balance(interaction: discord.Interaction[Any]) -> None:
            current = await self.chat.credits.balance(await self._account_id(interaction.user))
            text = f"{self.chat.balance_text(current)}\n{self.chat.prices_text()}"
            await interaction.response.send_message(text, ephemeral=True)

        @tree.command(name="buy", description="Buy credits or an hourly session")
        @app_commands.describe(product="What to buy (leave empty to see everything)")
        @app_commands.choices(product=products)
        async def buy(interaction: discord.Interaction[Any], product: app_commands.Choice[str] | None = None) -> None:
            account_id = await self._account_id(interaction.user)
            view = self.buy_view(account_id, [product.value] if product else None)
            text = "Pay securely with Stripe; your credits arrive as soon as the payment is confirmed."
            await interaction.response.send_message(text, view=view, ephemeral=True)

        @tree.command(name="redeem", description="Redeem a session code")
        @app_commands.describe(code="The code, like ABCD-EFGH-JKMN")
        async def redeem(interaction: discord.Interaction[Any], code: app_commands.Range[str, 1, 64]) -> None:
            await self.redeem(interaction, code)

        @tree.command(name="library", description="Find your pictures")
        @app_commands.describe(query="Words to look for")
        async def library(interaction: discord.Interaction[Any], query: app_commands.Range[str, 1, 200]) -> None:
            await self.library(interaction, query)

    async def imagine(
        self,
        interaction: discord.Interaction[Any],
        prompt: str,
        style: app_commands.Choice[str] | None,
        aspect_ratio: app_commands.Choice[str] | None,
        model: app_commands.Choice[str] | None,
    ) -> None:
        """/imagine: defer with "thinking" at once (Discord wants an answer within 3 s), then generate. A trained
        model is named in the prompt (``… model:acme-sofa``): the model choices list the catalog only."""
        await interaction.response.defer(thinking=True)
        account_id = await self._account_id(interaction.user)
        prompt, trained = model_option(prompt)
        request = self.chat.request(
            prompt,
            await self.chat.preferences(account_id),
            style=style.value if style else None,
            aspect_ratio=aspect_ratio.value if aspect_ratio else None,
            model=model.value if model else trained,
            idempotency_key=f"discord:{interaction.id}",  # a retried interaction is charged once
        )
        await self.generate(interaction, account_id, request)

    async def video(self, interaction: discord.Interaction[Any], prompt: str) -> None:
        """/video: defer at once, then make the clip with the default video model."""
        await interaction.response.defer(thinking=True)
        account_id = await self._account_id(interaction.user)
        request = self.chat.video_request(
            prompt, await self.chat.preferences(account_id), idempotency_key=f"discord:{interaction.id}"
        )
        await self.generate(interaction, account_id, request)

    async def redeem(self, interaction: discord.Interaction[Any], code: str) -> None:
        """/redeem: activate a plan's code; the answer is private."""
        account_id = await self._account_id(interaction.user)
        activation = await self.chat.billing.redeem(code, account_id)
        current = await self.chat.credits.balance(account_id)
        await interaction.response.send_message(
            f"✅ {activation.name} session active until <t:{int(activation.expires_at.timestamp())}:t>.\n"
            f"{self.chat.balance_text(current)}",
            ephemeral=True,
        )

    async def library(self, interaction: discord.Interaction[Any], query: str) -> None:
        """/library: the user's pictures that match, privately."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        hits = await self.chat.library.search(await self._account_id(interaction.user), query, limit=10)
        if not hits:
            await interaction.followup.send(f"Nothing in your pictures matches “{query}”.", ephemeral=True)
            return
        files = [
            discord.File(
                await self.chat.blobs.local_file(h.asset.blob_key),
                filename=f"{h.asset.id}.{h.asset.blob_key.rsplit('.', 1)[-1]}",
            )
            for h in hits
        ]
        names = "\n".join(f"• {(h.asset.prompt or h.asset.name)[:80]}" for h in hits)
        await interaction.followup.send(names, files=files, ephemeral=True)

    async def fail(self, interaction: discord.Interaction[Any], text: str, account_id: int, buy: bool = False) -> None:
        """Replace the public "thinking…" response with a private message (and Buy links when asked)."""
        with contextlib.suppress(discord.HTTPException):
            await interaction.delete_original_response()
        kwargs: dict[str, Any] = {"ephemeral": True}
        if buy:
            kwargs["view"] = self.buy_view(account_id)
        await interaction.followup.send(text, **kwargs)

    async def generate(
        self, interaction: discord.Interaction[Any], account_id: int, request: GenerationRequest
    ) -> None:
        """After a deferred response: run the request in the user's line, edit the response as it progresses,
        then into the image embed with its buttons (or a private failure)."""
        events = self.chat.imagine(
            str(interaction.user.id), account_id, request, progress_seconds=self.settings.discord.progress_seconds
        )
        async for event in events:
            if event.kind in ("queued", "progress"):
                with contextlib.suppress(discord.HTTPException):
                    await interaction.edit_original_response(content=event.text)
            elif event.kind == "refused":
                await self.fail(interaction, event.text, account_id, buy=isinstance(event.error, InsufficientCredits))
            elif event.kind == "failed":
                await self.fail(interaction, event.text, account_id)
            elif event.kind == "succeeded" and event.job is not None:
                balance = await self.chat.credits.balance(account_id)
                embed, file = views.render(
                    event.job, balance.credits, await self.chat.blobs.local_file(event.job.assets[0].blob_key)
                )
                kind = event.job.assets[0].kind
                await interaction.edit_original_response(
                    content=None, embed=embed, attachments=[file], view=views.result_view(event.job.id, kind)
                )

    async def _own_job(self, interaction: discord.Interaction[Any], job_id: str) -> tuple[int, JobView] | None:
        account_id = await self._account_id(interaction.user)
        try:
            job: JobView | None = await self.chat.generation.get(job_id)
        except ShowmeError:
            job = None
        if job is None or job.account_id != account_id:
            await interaction.response.send_message(
                "Only the person who asked for this picture can use its buttons.", ephemeral=True
            )
            return None
        return account_id, job

    async def again(self, interaction: discord.Interaction[Any], job_id: str) -> None:
        """🔁 Again: the job's request with a new seed."""
        found = await self._own_job(interaction, job_id)
        if found is None:
            return
        account_id, job = found
        await interaction.response.defer(thinking=True)
        request = await self.chat.again(account_id, job, idempotency_key=f"discord:{interaction.id}")
        await self.generate(interaction, account_id, request)

    async def edit(self, interaction: discord.Interaction[Any], job_id: str, operation: str) -> None:
        """⬆️ / ✂️ / 🎬: the picture upscaled, cut out or animated (a retried interaction is charged once)."""
        found = await self._own_job(interaction, job_id)
        if found is None:
            return
        account_id, job = found
        request = self.chat.edit_request(job, operation, idempotency_key=f"discord:{interaction.id}")
        await interaction.response.defer(thinking=True)
        await self.generate(interaction, account_id, request)

    async def original(self, interaction: discord.Interaction[Any], job_id: str) -> None:
        """📄 Original: the stored file, privately."""
        found = await self._own_job(interaction, job_id)
        if found is None:
            return
        job = found[1]
        if not job.assets:
            await interaction.response.send_message("This picture has no file.", ephemeral=True)
            return
        asset = job.assets[0]
        path = await self.chat.blobs.local_file(asset.blob_key)
        await interaction.response.send_message(
            f"Original, {asset.width}×{asset.height}",
            file=discord.File(path, filename=f"showme-{job.id[:8]}-original{path.suffix}"),
            ephemeral=True,
        )

    async def on_error(self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError) -> None:
        """Every failure answers privately; never "The application did not respond"."""
        cause = error.original if isinstance(error, app_commands.CommandInvokeError) else error
        await self.answer_error(interaction, cause)

    async def answer_error(self, interaction: discord.Interaction[Any], cause: BaseException) -> None:
        """Log an unexpected error and tell the person, privately (with Buy links for a lack of credits)."""
        if not isinstance(cause, ShowmeError):
            log.error("Discord command failed", exc_info=cause)
        text = self.chat.error_text(cause) if isinstance(cause, Exception) else "Something went wrong."
        account_id = await self._account_id(interaction.user)
        buy = isinstance(cause, InsufficientCredits)
        if interaction.response.is_done():
            await self.fail(interaction, text, account_id, buy=buy)
            return
        kwargs: dict[str, Any] = {"ephemeral": True}
        if buy:
            kwargs["view"] = self.buy_view(account_id)
        await interaction.response.send_message(text, **kwargs)
