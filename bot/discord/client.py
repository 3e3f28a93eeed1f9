"""The Discord bot (discord.py 2): ``/imagine`` with credits, and buttons that keep working after a restart.

Runs inside ``showme serve`` when ``DISCORD_BOT_TOKEN`` is set: ``client.start`` in the server's event loop,
closed on shutdown; slash commands synced in ``setup_hook`` (to ``discord.guild_ids`` when set, else globally).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import Any

import discord
import yarl
from discord import app_commands

from bot.discord.commands import Commands
from bot.discord.views import EDITS, AgainButton, ButtonAction, EditButton, OriginalButton
from core.billing import Fulfilment
from core.chat import ChatService

log = logging.getLogger(__name__)


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
        self.chat = chat
        self.client = ShowmeClient(Commands(chat))
        self._task: asyncio.Task[None] | None = None
        self._messages: set[asyncio.Task[None]] = set()
        chat.billing.subscribe(self.on_fulfilment)

    async def on_fulfilment(self, fulfilment: Fulfilment) -> None:
        """Tell the buyer in a direct message that the payment arrived (orders started from this bot). Sent
        in the background so the payment webhook answers at once; a user who closed DMs is only logged."""
        if fulfilment.source != "discord" or fulfilment.account_id is None:
            return
        user_id = await self.chat.accounts.external_id(fulfilment.account_id, "discord")
        if user_id is None:
            return
        balance = await self.chat.credits.balance(fulfilment.account_id)
        text = f"✅ Payment received.\n{self.chat.balance_text(balance)}"
        task = asyncio.create_task(self._direct_message(int(user_id), text))
        self._messages.add(task)
        task.add_done_callback(self._messages.discard)

    async def _direct_message(self, user_id: int, text: str) -> None:
        try:
            channel = await self.client.create_dm(discord.Object(id=user_id))
            await channel.send(text)
        except discord.HTTPException as err:
            log.warning("Discord DM to %s not sent: %s", user_id, err)

    async def start(self, token: str) -> None:
        """Log in (runs ``setup_hook``: command sync) and keep the gateway connection in a background task."""
        await self.client.login(token)
        self._task = asyncio.create_task(self.client.connect(reconnect=True), name="discord-gateway")

    async def stop(self) -> None:
        """Close the client and its gateway task."""
        for task in list(self._messages):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 5)
        await self.client.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
