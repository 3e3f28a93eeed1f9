"""The Discord bot (discord.py 2): ``/imagine`` with credits, and buttons that keep working after a restart.

Runs inside ``showme serve`` when ``DISCORD_BOT_TOKEN`` is set: ``client.start`` in the server's event loop,
closed on shutdown; slash commands synced in ``setup_hook`` (to ``discord.guild_ids`` when set, else globally).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from typing import Any

import discord
import yarl
from discord import app_commands

from bot.discord.commands import Commands
from bot.discord.views import EDITS, AgainButton, ButtonAction, EditButton, OriginalButton
from core.chat import ChatService


class ShowmeClient(discord.Client):
    """The discord.py client with our command tree and persistent buttons."""

    def __init__(self, commands: Commands) -> None:
        super().__init__(intents=discord.Intents.none())
        self.commands = commands
        self.tree = app_commands.CommandTree(self)
        self.button_actions: dict[str, ButtonAction] = {
            "again": self._guarded(commands.again),
            "original": self._guarded(commands.original),
            **{
                f"edit:{operation}": self._guarded(functools.partial(commands.edit, operation=operation))
                for operation in EDITS
            },
        }

    def _guarded(self, action: ButtonAction) -> ButtonAction:
        """A button's action whose errors become a private answer (buttons have no command error hook)."""

        async def run(interaction: discord.Interaction[Any], job_id: str) -> None:
            try:
                await action(interaction, job_id)
            except Exception as err:
                await self.commands.answer_error(interaction, err)

        return run

    async def setup_hook(self) -> None:
        self.add_dynamic_items(AgainButton, OriginalButton, EditButton)
        self.commands.add_to(self.tree)
        guild_ids = self.commands.settings.discord.guild_ids
        for guild_id in guild_ids:
            guild = discord.Object(id=guild_id)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)
        if not guild_ids:
            await self.tree.sync()
        self.tree.on_error = self.commands.on_error  # type: ignore[method-assign]


class DiscordBot:
    """The client and its gateway connection, started and stopped by the server."""

    def __init__(self, chat: ChatService) -> None:
        settings = chat.settings.discord
        # discord.py keeps its REST and gateway endpoints in class attributes and offers no per-client
        # setting: config points them elsewhere (tests, proxies), for the one client a process runs.
        discord.http.Route.BASE = settings.api_base_url.rstrip("/")
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.gateway_url)
        self.client = ShowmeClient(Commands(chat))
        self._task: asyncio.Task[None] | None = None

    async def start(self, token: str) -> None:
        """Log in (runs ``setup_hook``: command sync) and keep the gateway connection in a background task."""
        await self.client.login(token)
        self._task = asyncio.create_task(self.client.connect(reconnect=True), name="discord-gateway")

    async def stop(self) -> None:
        """Close the client and its gateway task."""
        await self.client.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
