"""How the Discord bot renders things: the image embed, persistent buttons, buy links.

Persistent buttons are ``DynamicItem``s whose ``custom_id`` carries the job id (``showme:again:<job>``,
``showme:edit:<operation>:<job>``), so any
process answers them, also after a restart (discord.py ``DynamicItem``; Discord's message components,
discord.com/developers/docs/interactions/message-components).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import discord
from discord import ui

from core.billing import Billing
from core.chat import ChatService
from core.generation import JobView

JOB_ID = r"(?P<job>[0-9a-f]{32})"
EMBED_COLOR = 0x5865F2

#: What a button press runs: ``(interaction, job id)``; set by the client at setup.
ButtonAction = Callable[[discord.Interaction[Any], str], Awaitable[None]]


def _action(interaction: discord.Interaction[Any], name: str) -> ButtonAction:
    action: ButtonAction = interaction.client.button_actions[name]
    return action


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
        await _action(interaction, "again")(interaction, self.job_id)


class OriginalButton(ui.DynamicItem[ui.Button[Any]], template=rf"showme:original:{JOB_ID}"):
    """📄 Original: the stored full-quality file, privately to the requester."""

    def __init__(self, job_id: str) -> None:
        button = ui.Button(
            label="Original", emoji="📄", style=discord.ButtonStyle.secondary, custom_id=f"showme:original:{job_id}"
        )
        super().__init__(button)
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: ui.Item[Any], match: re.Match[str], /
    ) -> OriginalButton:
        return cls(match["job"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _action(interaction, "original")(interaction, self.job_id)


#: The edit buttons under a picture: operation → (label, emoji).
EDITS = {"upscale": ("Upscale", "⬆️"), "remove_background": ("Remove background", "✂️"), "animate": ("Animate", "🎬")}


class EditButton(ui.DynamicItem[ui.Button[Any]], template=rf"showme:edit:(?P<op>[a-z_]+):{JOB_ID}"):
    """⬆️ Upscale, ✂️ Remove background, 🎬 Animate: an edit of the picture, for the requester only."""

    def __init__(self, operation: str, job_id: str) -> None:
        label, emoji = EDITS.get(operation, (operation, None))
        button = ui.Button(
            label=label, emoji=emoji, style=discord.ButtonStyle.secondary, custom_id=f"showme:edit:{operation}:{job_id}"
        )
        super().__init__(button)
        self.operation = operation
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: ui.Item[Any], match: re.Match[str], /
    ) -> EditButton:
        return cls(match["op"], match["job"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _action(interaction, f"edit:{self.operation}")(interaction, self.job_id)


def result_view(job_id: str, kind: str = "image") -> ui.View:
    """The buttons under a result: Again and Original, and under a picture the edits too."""
    view = ui.View(timeout=None)
    view.add_item(AgainButton(job_id))
    view.add_item(OriginalButton(job_id))
    if kind != "video":
        for operation in EDITS:
            view.add_item(EditButton(operation, job_id))
    return view


def buy_view(chat: ChatService, billing: Billing, account_id: int, products: list[str] | None = None) -> ui.View:
    """Link buttons to signed ``/checkout/start`` URLs (the checkout session is created when one is opened)."""
    view = ui.View(timeout=None)
    for product in billing.packs() + billing.plans():
        if products is not None and product.id not in products:
            continue
        url = billing.checkout_link(account_id, product.id, "discord")
        view.add_item(ui.Button(label=chat.product_label(product)[:80], url=url))
    return view


def render(job: JobView, credits_left: int, path: Path) -> tuple[discord.Embed, discord.File]:
    """The finished picture as an embed with its file (``path``, the first output's) attached; a video is
    attached beside the embed, where Discord plays it (an embed cannot show a video)."""
    asset = job.assets[0]
    filename = f"showme-{job.id[:8]}{path.suffix}"
    embed = discord.Embed(description=job.prompt[:4000], color=EMBED_COLOR)
    if asset.kind == "video":
        embed.add_field(name="Video", value=f"{asset.width}×{asset.height}, {asset.duration_seconds or 0:g} s")
    else:
        embed.set_image(url=f"attachment://{filename}")
    embed.add_field(name="Model", value=job.model)
    if job.style:
        embed.add_field(name="Style", value=job.style)
    paid = f"{job.charged} {job.unit}{'s' if job.charged != 1 else ''}"
    embed.add_field(name="Credits left", value=f"{credits_left} (this one: {paid})")
    return embed, discord.File(path, filename=filename)
