"""REST for the managed library, members and shares: ``/api/v1/library…``, ``/api/v1/members…``,
``/api/v1/shares…``. An API key acts as its whole account; reads need no scope, library changes and shares the
``library`` scope, members the ``admin`` scope."""

from __future__ import annotations

from typing import Any, cast

from aiohttp import web

from core.errors import NotFound
from tools.api import _validated
from tools.http import SERVICES, authenticate, plain, read_json
from tools.library_schemas import (
    AssetPatch,
    FolderBody,
    FolderPatch,
    InviteBody,
    LibraryListQuery,
    MemberPatch,
    SearchQuery,
    ShareBody,
    StatsQuery,
    UseBody,
)


def path_id(request: web.Request, name: str) -> int:
    """The integer path parameter ``name``; ``NotFound`` when it is not one (no such resource)."""
    raw = request.match_info[name]
    if not raw.isdigit() or len(raw) > 10:
        raise NotFound(f"no {name.removesuffix('_id')} {raw!r}")
    return int(raw)


def asset_json(asset: Any) -> dict[str, Any]:
    data = cast(dict[str, Any], plain(asset))
    data.pop("file_path", None)
    return data


async def list_library(request: web.Request) -> web.Response:
    """``GET /api/v1/library``: a page of the account's assets, filtered and sorted."""
    caller = await authenticate(request)
    q = _validated(LibraryListQuery, dict(request.query))
    page = await request.app[SERVICES].manager.list_assets(
        caller.account_id, q=q.q, kind=q.kind, category=q.category, folder_id=q.folder_id, tag=q.tag,
        favorite=q.favorite, sort=q.sort, limit=q.limit, cursor=q.cursor,
    )  # fmt: skip
    return web.json_response({"assets": [asset_json(a) for a in page.assets], "next_cursor": page.cursor})


async def search_library(request: web.Request) -> web.Response:
    """``GET /api/v1/library/search?q=…&limit=…``: best match first, as agents search (favorites and much-used
    assets a little higher)."""
    caller = await authenticate(request)
    query = _validated(SearchQuery, dict(request.query))
    hits = await request.app[SERVICES].library.search(caller.account_id, query.q, limit=query.limit)
    return web.json_response({"results": [{"rank": h.rank, "asset": asset_json(h.asset)} for h in hits]})


async def get_asset(request: web.Request) -> web.Response:
    """``GET /api/v1/library/{asset_id}``: the asset and its newest uses."""
    caller = await authenticate(request)
    services = request.app[SERVICES]
    asset_id = path_id(request, "asset_id")
    asset = await services.library.get(caller.account_id, asset_id)
    uses = await services.manager.uses(caller.account_id, asset_id)
    return web.json_response({"asset": asset_json(asset), "uses": plain(uses)})


async def patch_asset(request: web.Request) -> web.Response:
    """``PATCH /api/v1/library/{asset_id}``: change the fields sent."""
    caller = await authenticate(request, "library")
    asset_id = path_id(request, "asset_id")
    body = _validated(AssetPatch, await read_json(request))
    changes = body.model_dump(exclude_unset=True)
    asset = await request.app[SERVICES].manager.update(caller.account_id, asset_id, changes)
    return web.json_response({"asset": asset_json(asset)})


async def delete_asset(request: web.Request) -> web.Response:
    """``DELETE /api/v1/library/{asset_id}``: hidden everywhere at once; 204."""
    caller = await authenticate(request, "library")
    await request.app[SERVICES].manager.delete(caller.account_id, path_id(request, "asset_id"))
    return web.Response(status=204)


async def record_use(request: web.Request) -> web.Response:
    """``POST /api/v1/library/{asset_id}/uses``: record an agent or post use; 201."""
    caller = await authenticate(request, "library")
    asset_id = path_id(request, "asset_id")
    body = _validated(UseBody, await read_json(request))
    details = body.model_dump(exclude={"kind"})
    await request.app[SERVICES].manager.record_use(caller.account_id, asset_id, body.kind, details)
    return web.json_response({"recorded": True}, status=201)


async def download_asset(request: web.Request) -> web.StreamResponse:
    """``GET /api/v1/library/{asset_id}/download``: the file as an attachment, counted as a download."""
    caller = await authenticate(request)
    services = request.app[SERVICES]
    asset_id = path_id(request, "asset_id")
    asset = await services.library.get(caller.account_id, asset_id)
    await services.manager.record_use(caller.account_id, asset_id, "download", {"actor": "api"})
    return await attachment(request, asset)


async def attachment(request: web.Request, asset: Any) -> web.StreamResponse:
    """The asset's file with ``Content-Disposition: attachment`` (a bucket's presigned URL: a redirect)."""
    services = request.config_dict[SERVICES]
    ext = asset.blob_key.rsplit(".", 1)[-1]
    filename = "".join(c if c.isalnum() or c in " -_" else "_" for c in asset.name)[:80].strip() or "asset"
    headers = {"Content-Disposition": f'attachment; filename="{filename}.{ext}"', "Content-Type": asset.mime}
    path = services.blobs.local_path(asset.blob_key)
    if path is None:
        raise web.HTTPFound(services.blobs.presigned_url(asset.blob_key))  # type: ignore[attr-defined]
    return web.FileResponse(path, headers=headers)


async def library_stats(request: web.Request) -> web.Response:
    """``GET /api/v1/library/stats``: top assets by uses and by agent references, uses per day."""
    caller = await authenticate(request)
    query = _validated(StatsQuery, dict(request.query))
    services = request.app[SERVICES]
    await services.uses.flush()  # tool calls' uses are counted in memory first
    return web.json_response(await services.manager.stats(caller.account_id, days=query.days, top=query.top))


async def list_folders(request: web.Request) -> web.Response:
    """``GET /api/v1/library/folders``: every folder, by name."""
    caller = await authenticate(request)
    return web.json_response({"folders": plain(await request.app[SERVICES].manager.folders(caller.account_id))})


async def create_folder(request: web.Request) -> web.Response:
    """``POST /api/v1/library/folders``: 201 with the folder."""
    caller = await authenticate(request, "library")
    body = _validated(FolderBody, await read_json(request))
    folder = await request.app[SERVICES].manager.create_folder(caller.account_id, body.name, body.parent_id)
    return web.json_response({"folder": plain(folder)}, status=201)


async def patch_folder(request: web.Request) -> web.Response:
    """``PATCH /api/v1/library/folders/{folder_id}``: rename or move."""
    caller = await authenticate(request, "library")
    folder_id = path_id(request, "folder_id")
    body = _validated(FolderPatch, await read_json(request))
    changes = body.model_dump(exclude_unset=True)
    folder = await request.app[SERVICES].manager.change_folder(caller.account_id, folder_id, changes)
    return web.json_response({"folder": plain(folder)})


async def delete_folder(request: web.Request) -> web.Response:
    """``DELETE /api/v1/library/folders/{folder_id}``: only when empty; 204."""
    caller = await authenticate(request, "library")
    await request.app[SERVICES].manager.delete_folder(caller.account_id, path_id(request, "folder_id"))
    return web.Response(status=204)


async def share_asset(request: web.Request) -> web.Response:
    """``POST /api/v1/library/{asset_id}/shares``: share with a person by email; 201."""
    caller = await authenticate(request, "library")
    asset_id = path_id(request, "asset_id")
    body = _validated(ShareBody, await read_json(request))
    await request.app[SERVICES].teams.share(caller.account_id, body.email, body.permission, asset_id=asset_id)
    return web.json_response({"shared": True}, status=201)


async def share_folder(request: web.Request) -> web.Response:
    """``POST /api/v1/library/folders/{folder_id}/shares``: share a folder (and what it holds); 201."""
    caller = await authenticate(request, "library")
    folder_id = path_id(request, "folder_id")
    body = _validated(ShareBody, await read_json(request))
    await request.app[SERVICES].teams.share(caller.account_id, body.email, body.permission, folder_id=folder_id)
    return web.json_response({"shared": True}, status=201)


async def list_shares(request: web.Request) -> web.Response:
    """``GET /api/v1/shares``: what the account shared, newest first."""
    caller = await authenticate(request)
    shares = await request.app[SERVICES].teams.shares_of(caller.account_id)
    keep = ("id", "asset_id", "folder_id", "email", "permission", "target_name", "created_at")
    return web.json_response({"shares": [{k: plain(getattr(s, k)) for k in keep} for s in shares]})


async def delete_share(request: web.Request) -> web.Response:
    """``DELETE /api/v1/shares/{share_id}``: 204."""
    caller = await authenticate(request, "library")
    await request.app[SERVICES].teams.unshare(caller.account_id, path_id(request, "share_id"))
    return web.Response(status=204)


async def list_members(request: web.Request) -> web.Response:
    """``GET /api/v1/members``: the account's members, owners first."""
    caller = await authenticate(request, "admin")
    members = await request.app[SERVICES].teams.members(caller.account_id)
    return web.json_response({"members": [{"id": m.id, "email": m.email, "role": m.role,
                                           "created_at": m.created_at.isoformat()} for m in members]})  # fmt: skip


async def invite_member(request: web.Request) -> web.Response:
    """``POST /api/v1/members``: invite by email; 201 with the one-time link (also emailed)."""
    caller = await authenticate(request, "admin")
    body = _validated(InviteBody, await read_json(request))
    link = await request.app[SERVICES].teams.invite(caller.account_id, body.email, body.role, "an API key")
    return web.json_response({"email": body.email.lower(), "role": body.role, "link": link}, status=201)


async def patch_member(request: web.Request) -> web.Response:
    """``PATCH /api/v1/members/{member_id}``: change the role (an account keeps one owner)."""
    caller = await authenticate(request, "admin")
    body = _validated(MemberPatch, await read_json(request))
    await request.app[SERVICES].teams.change_member(caller.account_id, path_id(request, "member_id"), body.role)
    return await list_members(request)


async def delete_member(request: web.Request) -> web.Response:
    """``DELETE /api/v1/members/{member_id}``: 204 (an account keeps one owner)."""
    caller = await authenticate(request, "admin")
    await request.app[SERVICES].teams.change_member(caller.account_id, path_id(request, "member_id"), None)
    return web.Response(status=204)
