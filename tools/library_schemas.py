"""Request and response models of the managed library, members and shares (``/api/v1/library…``,
``/api/v1/members…``, ``/api/v1/shares…``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.library import AssetView
from core.library.manage import FolderView
from tools.schemas import Query

Category = Literal["product", "marketing", "social", "presentation", "email", "agent"]


class Body(BaseModel):
    """A JSON body: unknown fields are refused, naming the field."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class LibraryListQuery(Query):
    """``GET /api/v1/library``: every filter narrows; ``sort`` relevance needs ``q`` and is its default."""

    q: str = Field(default="", max_length=500, description="words of the name, description, tags, keywords")
    kind: Literal["image", "video"] | None = None
    category: Literal["product", "marketing", "social", "presentation", "email", "agent", "generated"] | None = None
    folder_id: int | None = Field(default=None, ge=0, le=2**31 - 1, description="0: assets in no folder")
    tag: str | None = Field(default=None, max_length=64)
    favorite: bool | None = None
    sort: Literal["newest", "most_used", "name", "relevance"] | None = None
    limit: int = Field(default=50, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=500, description="next_cursor of the previous page")


class SearchQuery(Query):
    """``GET /api/v1/library/search``: the agents' ranked search."""

    q: str = Field(default="", max_length=500)
    limit: int = Field(default=10, ge=1, le=50)


class StatsQuery(Query):
    """``GET /api/v1/library/stats``: the last ``days`` UTC days (today included)."""

    days: int = Field(default=30, ge=1, le=366)
    top: int = Field(default=10, ge=1, le=100)


class AssetPatch(Body):
    """``PATCH /api/v1/library/{asset_id}``: only the fields sent change; ``folder_id`` null takes the asset out of
    its folder."""

    name: str | None = Field(default=None, min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=5000)
    tags: list[str] | str | None = Field(default=None, description="a list, or comma-separated")
    category: Category | None = None
    folder_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    favorite: bool | None = None
    alt_text: str | None = Field(default=None, max_length=5000)
    keywords: list[str] | str | None = Field(default=None, description="searchable, not shown; like tags")


class UseBody(Body):
    """``POST /api/v1/library/{asset_id}/uses``: ``agent`` (an agent showed it in a conversation) or ``post``
    (published on a platform)."""

    kind: Literal["agent", "post"]
    agent_id: str | None = Field(default=None, max_length=255)
    agent_name: str | None = Field(default=None, max_length=255)
    conversation_id: str | None = Field(default=None, max_length=255)
    platform: str | None = Field(default=None, max_length=64, description="instagram, linkedin, …")
    post_id: str | None = Field(default=None, max_length=255)


class FolderBody(Body):
    name: str = Field(min_length=1, max_length=120)
    parent_id: int | None = Field(default=None, ge=1, le=2**31 - 1)


class FolderPatch(Body):
    name: str | None = Field(default=None, min_length=1, max_length=120)
    parent_id: int | None = Field(default=None, ge=1, le=2**31 - 1, description="null: to the top")


class ShareBody(Body):
    email: str = Field(min_length=3, max_length=254)
    permission: Literal["view", "use", "edit"]


class InviteBody(Body):
    email: str = Field(min_length=3, max_length=254)
    role: Literal["owner", "admin", "member"] = "member"


class MemberPatch(Body):
    role: Literal["owner", "admin", "member"]


class AssetList(BaseModel):
    assets: list[AssetView]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null on the last page")


class AssetUse(BaseModel):
    kind: str
    count: int
    agent_id: str | None
    agent_name: str | None
    conversation_id: str | None
    platform: str | None
    post_id: str | None
    actor: str | None = Field(description="the voice platform of a tool call")
    created_at: str


class AssetDetail(BaseModel):
    asset: AssetView
    uses: list[AssetUse] = Field(description="newest first (agent, post, download)")


class AssetOnly(BaseModel):
    asset: AssetView


class FolderList(BaseModel):
    folders: list[FolderView]


class FolderOnly(BaseModel):
    folder: FolderView


class Ranked(BaseModel):
    asset: dict[str, Any] = Field(description="id, name, kind, thumb_url")
    count: int


class DayCount(BaseModel):
    day: str = Field(description="YYYY-MM-DD, UTC")
    kind: str
    count: int


class LibraryStats(BaseModel):
    since: str
    days: int
    totals: dict[str, int] = Field(description="uses by kind: agent, post, download, view")
    top_assets: list[Ranked]
    top_agent_assets: list[Ranked]
    per_day: list[DayCount]


class Recorded(BaseModel):
    recorded: bool


class Member(BaseModel):
    id: int
    email: str
    role: str
    created_at: str


class MemberList(BaseModel):
    members: list[Member]


class Invite(BaseModel):
    email: str
    role: str
    link: str = Field(description="one-time; also emailed")


class Share(BaseModel):
    id: int
    asset_id: int | None
    folder_id: int | None
    email: str
    permission: str
    target_name: str
    created_at: str


class ShareList(BaseModel):
    shares: list[Share]


class ShareOnly(BaseModel):
    shared: bool
