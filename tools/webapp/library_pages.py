"""The Library pages: browse (grid or list, search as you type, filters, folders, tags), bulk upload, an
asset's detail (edit, favorite, uses, copy link, download, share, delete), folders, and what was shared with
the person."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError

from core.errors import InvalidRequest, NotFound, invalid_from_validation
from core.library import AssetView
from core.library.manage import CATEGORIES
from core.teams import Teams
from tools.http import SERVICES
from tools.library_api import attachment
from tools.library_schemas import LibraryListQuery
from tools.webapp import account_of, page, person_of, render, settings_of

ROUTES = web.RouteTableDef()


def _wants_json(request: web.Request) -> bool:
    return request.headers.get("Accept") == "application/json"


def _filters(request: web.Request) -> LibraryListQuery:
    query = {k: v for k, v in request.query.items() if v != ""}
    try:
        return LibraryListQuery.model_validate(query)
    except ValidationError as err:
        raise invalid_from_validation(err) from err


@ROUTES.get("/library")
@page(account=False)
async def library(request: web.Request) -> web.Response:
    """The library: filters from the query string; ``partial=1`` answers only the results (search as you
    type)."""
    person = person_of(request)
    services = request.config_dict[SERVICES]
    if person.account_id is None:
        return await render(request, "library.html", {"outsider": True, "shared": await _shared(request)})
    f = _filters(request)
    listing = await services.manager.list_assets(
        person.account_id, q=f.q, kind=f.kind, category=f.category, folder_id=f.folder_id, tag=f.tag,
        favorite=f.favorite, sort=f.sort, limit=f.limit, cursor=f.cursor,
    )  # fmt: skip
    view = "list" if request.query.get("view") == "list" else "grid"
    context = {"assets": listing.assets, "cursor": listing.cursor, "f": f, "view": view, "categories": CATEGORIES,
               "query": {k: v for k, v in request.query.items() if k not in ("cursor", "partial")}}  # fmt: skip
    if request.query.get("partial") == "1":
        return await render(request, "library_results.html", context)
    folders = await services.manager.folders(person.account_id)
    context |= {"folders": folders, "tags": await services.manager.tags(person.account_id),
                "folder_names": {f.id: f.name for f in folders}, "shared": await _shared(request)}  # fmt: skip
    return await render(request, "library.html", context)


async def _shared(request: web.Request) -> list[tuple[str, AssetView]]:
    """What other accounts shared with the person: ``(permission, asset)``, assets of shared folders
    included."""
    services = request.config_dict[SERVICES]
    person = person_of(request)
    found: list[tuple[str, AssetView]] = []
    for share in await services.teams.shared_with(person.email):
        if share.account_id == person.account_id:
            continue
        if share.asset_id is not None:
            try:
                found.append((share.permission, await services.library.get(share.account_id, share.asset_id)))
            except NotFound:
                continue
        elif share.folder_id is not None:
            page_ = await services.manager.list_assets(share.account_id, folder_id=share.folder_id, limit=100)
            found += [(share.permission, a) for a in page_.assets]
    return found


@ROUTES.post("/library/upload")
@page()
async def upload(request: web.Request) -> web.StreamResponse:
    """Bulk upload: every ``file`` part becomes an asset (in ``folder_id`` when given); JSON for the page's
    script, else back to the library."""
    services, settings = request.config_dict[SERVICES], settings_of(request)
    form = await request.post()
    folder = str(form.get("folder_id") or "")
    folder_path = next((f.name for f in await services.manager.folders(account_of(request))
                        if folder.isdigit() and f.id == int(folder)), None)  # fmt: skip
    uploaded, failed = [], []
    for field in form.getall("file", []):
        if not hasattr(field, "file"):
            continue
        data = field.file.read(settings.tools.upload_max_bytes + 1)
        name = field.filename.rsplit(".", 1)[0].replace("-", " ").replace("_", " ").strip() or "upload"
        try:
            if len(data) > settings.tools.upload_max_bytes:
                raise InvalidRequest(f"larger than {settings.tools.upload_max_bytes} bytes", field="file")
            asset, _ = await services.library.import_image(
                account_of(request), data, name=name, folder=folder_path,
                thumbnail_pixels=settings.media.thumbnail_pixels,
            )  # fmt: skip
            uploaded.append({"id": asset.id, "name": asset.name})
        except InvalidRequest as err:
            failed.append({"file": field.filename, "error": err.message})
    if _wants_json(request):
        status = 200 if uploaded or not failed else 400
        return web.json_response({"uploaded": uploaded, "failed": failed}, status=status)
    raise web.HTTPSeeOther("/app/library")


async def _asset(request: web.Request, needed: str) -> tuple[AssetView, str]:
    """The asset of the path and what the person may do with it (``needed`` at least)."""
    services = request.config_dict[SERVICES]
    raw = request.match_info["asset_id"]
    record = await services.store.assets.get(int(raw)) if raw.isdigit() and len(raw) < 10 else None
    if record is None:
        raise NotFound("this asset does not exist (or was deleted)")
    asset = services.library.view(record)
    granted = await services.teams.access(person_of(request), asset)
    Teams.require(granted, needed)
    assert granted is not None
    return asset, granted


@ROUTES.get("/library/{asset_id}")
@page(account=False)
async def asset_detail(request: web.Request) -> web.Response:
    """An asset: its picture, details (a form when the person may edit), uses, links, shares."""
    services = request.config_dict[SERVICES]
    asset, granted = await _asset(request, "view")
    own = granted == "member"
    context: dict[str, Any] = {
        "asset": asset, "granted": granted, "can_edit": granted in ("edit", "member"),
        "can_use": granted in ("use", "edit", "member"), "own": own, "categories": CATEGORIES,
        "uses": await services.manager.uses(asset.account_id, asset.id) if own else [],
        "folders": await services.manager.folders(asset.account_id) if own else [],
        "shares": [s for s in await services.teams.shares_of(asset.account_id) if s.asset_id == asset.id] if own
        else [],
    }  # fmt: skip
    return await render(request, "asset.html", context)


_TEXT_FIELDS = ("name", "description", "tags", "alt_text", "keywords")


@ROUTES.post("/library/{asset_id}")
@page(account=False)
async def edit_asset(request: web.Request) -> web.StreamResponse:
    """Save the detail form (the person needs ``edit``)."""
    asset, granted = await _asset(request, "edit")
    form = await request.post()
    changes: dict[str, Any] = {f: str(form[f]) for f in _TEXT_FIELDS if f in form}
    if "category" in form:
        changes["category"] = str(form["category"]) or None
    if "folder_id" in form and granted == "member":
        folder = str(form["folder_id"])
        changes["folder_id"] = int(folder) if folder.isdigit() else None
    if "favorite" in form or "name" in form:
        changes["favorite"] = form.get("favorite") == "on"
    await request.config_dict[SERVICES].manager.update(asset.account_id, asset.id, changes)
    raise web.HTTPSeeOther(f"/app/library/{asset.id}?saved=1")


@ROUTES.post("/library/{asset_id}/favorite")
@page(account=False)
async def toggle_favorite(request: web.Request) -> web.StreamResponse:
    """Star or unstar (``edit``); JSON ``{"favorite"}`` for the script."""
    asset, _ = await _asset(request, "edit")
    changed = await request.config_dict[SERVICES].manager.update(asset.account_id, asset.id,
                                                                 {"favorite": not asset.favorite})  # fmt: skip
    if _wants_json(request):
        return web.json_response({"favorite": changed.favorite})
    raise web.HTTPSeeOther(request.headers.get("Referer", "/app/library"))


@ROUTES.post("/library/{asset_id}/delete")
@page()
async def delete_asset(request: web.Request) -> web.StreamResponse:
    """Delete an asset of the person's account."""
    asset, _ = await _asset(request, "member")
    await request.config_dict[SERVICES].manager.delete(asset.account_id, asset.id)
    raise web.HTTPSeeOther("/app/library?deleted=1")


@ROUTES.get("/library/{asset_id}/download")
@page(account=False)
async def download(request: web.Request) -> web.StreamResponse:
    """The file as an attachment (``use``), counted as a download."""
    asset, _ = await _asset(request, "use")
    details: dict[str, str | None] = {"actor": f"web:{person_of(request).email}"}
    await request.config_dict[SERVICES].manager.record_use(asset.account_id, asset.id, "download", details)
    return await attachment(request, asset)


@ROUTES.post("/library/{asset_id}/share")
@page()
async def share_asset(request: web.Request) -> web.StreamResponse:
    """Share an asset of the person's account with an email address."""
    asset, _ = await _asset(request, "member")
    form = await request.post()
    await request.config_dict[SERVICES].teams.share(
        asset.account_id, str(form.get("email") or ""), str(form.get("permission") or ""), asset_id=asset.id,
        shared_by=person_of(request).email,
    )  # fmt: skip
    raise web.HTTPSeeOther(f"/app/library/{asset.id}?shared=1")


@ROUTES.post("/shares/{share_id}/delete")
@page()
async def unshare(request: web.Request) -> web.StreamResponse:
    """Stop a share of the person's account."""
    raw = request.match_info["share_id"]
    if not raw.isdigit():
        raise NotFound("no such share")
    await request.config_dict[SERVICES].teams.unshare(account_of(request), int(raw))
    raise web.HTTPSeeOther(request.headers.get("Referer", "/app/library"))


def _folder_id(request: web.Request) -> int:
    raw = request.match_info["folder_id"]
    if not raw.isdigit() or len(raw) > 9:
        raise NotFound("no such folder")
    return int(raw)


@ROUTES.post("/folders")
@page()
async def create_folder(request: web.Request) -> web.StreamResponse:
    """A new folder (at the top, or in ``parent_id``)."""
    form = await request.post()
    parent = str(form.get("parent_id") or "")
    folder = await request.config_dict[SERVICES].manager.create_folder(
        account_of(request), str(form.get("name") or ""), int(parent) if parent.isdigit() else None
    )
    raise web.HTTPSeeOther(f"/app/library?folder_id={folder.id}")


@ROUTES.post("/folders/{folder_id}")
@page()
async def change_folder(request: web.Request) -> web.StreamResponse:
    """Rename a folder (``name``) or move it (``parent_id``, empty for the top)."""
    form = await request.post()
    changes: dict[str, Any] = {}
    if form.get("name"):
        changes["name"] = str(form["name"])
    if "parent_id" in form:
        parent = str(form["parent_id"])
        changes["parent_id"] = int(parent) if parent.isdigit() else None
    folder_id = _folder_id(request)
    await request.config_dict[SERVICES].manager.change_folder(account_of(request), folder_id, changes)
    raise web.HTTPSeeOther(f"/app/library?folder_id={folder_id}")


@ROUTES.post("/folders/{folder_id}/delete")
@page()
async def delete_folder(request: web.Request) -> web.StreamResponse:
    """Delete an empty folder."""
    await request.config_dict[SERVICES].manager.delete_folder(account_of(request), _folder_id(request))
    raise web.HTTPSeeOther("/app/library")


@ROUTES.post("/folders/{folder_id}/share")
@page()
async def share_folder(request: web.Request) -> web.StreamResponse:
    """Share a folder (and what it holds) with an email address."""
    form = await request.post()
    folder_id = _folder_id(request)
    await request.config_dict[SERVICES].teams.share(
        account_of(request), str(form.get("email") or ""), str(form.get("permission") or ""), folder_id=folder_id,
        shared_by=person_of(request).email,
    )  # fmt: skip
    raise web.HTTPSeeOther(f"/app/library?folder_id={folder_id}&shared=1")

