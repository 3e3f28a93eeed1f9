"""Settings of the chat bots (Telegram, Discord)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from core.catalog_settings import Section


class TelegramSettings(Section):
    api_base_url: str = Field(
        default="https://api.telegram.org/bot", description="Bot API base; the token is appended (self-hosted, tests)"
    )
    file_base_url: str = "https://api.telegram.org/file/bot"
    enabled: bool = Field(
        default=True,
        description="run the bot in this process when TELEGRAM_BOT_TOKEN is set; several replicas may all run it "
        "in webhook mode, but polling on one replica only",
    )
    mode: Literal["auto", "webhook", "polling"] = Field(
        default="auto", description="auto: webhook when server.public_url is https, else polling"
    )
    max_queued_per_user: int = Field(default=3, ge=0, le=20, description="requests waiting behind a running one")
    progress_seconds: float = Field(default=3, ge=1, description="the status message is edited this often")
    answer_private_messages: bool = Field(
        default=True, description="in private chats, any message that asks for a picture generates one"
    )


class DiscordSettings(Section):
    enabled: bool = Field(
        default=True,
        description="connect the bot in this process when DISCORD_BOT_TOKEN is set; with several replicas, on one only",
    )
    api_base_url: str = Field(default="https://discord.com/api/v10", description="REST base (tests point it elsewhere)")
    gateway_url: str = Field(default="wss://gateway.discord.gg/", description="gateway WebSocket (tests: a fake)")
    guild_ids: list[int] = Field(
        default_factory=list, description="sync slash commands to these servers only (instant); empty: globally"
    )
    max_queued_per_user: int = Field(default=3, ge=0, le=20)
    progress_seconds: float = Field(default=3, ge=1)


class WebAppSettings(Section):
    """The business web app at ``/app``."""

    enabled: bool = Field(default=True, description="serve the web app at /app")
    email_sender: str = Field(
        default="stdout",
        description="how sign-in and invite emails go out: stdout (printed for the operator), or module:Class of "
        "an EmailSender (core.teams)",
    )
    login_link_minutes: int = Field(default=15, ge=1, le=1440, description="a sign-in link works once, this long")
    invite_days: int = Field(default=7, ge=1, le=60, description="an invite link works once, this long")
    session_hours: int = Field(default=12, ge=1, le=720, description="a signed-in browser stays signed in this long")
    purge_deleted_after_seconds: int = Field(
        default=600, ge=0, description="a deleted asset's row and unreferenced file go this long after the delete"
    )
