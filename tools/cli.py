"""The ``showme`` command line.

Exit codes: 0 ok · 1 unexpected error · 2 bad arguments or invalid request · 3 not found · 4 not enough
credits · 5 provider (Replicate) error · 6 prompt refused · 7 conflict · 69 database unavailable ·
78 configuration error. Every error is one line on stderr (and ``{"error": {...}}`` on stdout with ``--json``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import sys
import traceback
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import DBAPIError, OperationalError

from core.config import ZERO_DECIMAL_CURRENCIES, Settings, load_settings
from core.errors import (
    ConfigError,
    Conflict,
    InsufficientCredits,
    InvalidRequest,
    NotFound,
    PromptRefused,
    ProviderError,
    ShowmeError,
)
from core.library import CATEGORIES
from tools.version import showme_version

if TYPE_CHECKING:
    from core.generation import GenerationRequest, JobView
    from tools.services import Services

# The server's modules are imported by the commands that use them: this module is also what a spawned worker
# process (thumbnails) imports first, as its parent's __main__, and it should stay small there.

EXIT_CODES: list[tuple[type[ShowmeError], int]] = [
    (ConfigError, 78),
    (InvalidRequest, 2),
    (NotFound, 3),
    (InsufficientCredits, 4),
    (PromptRefused, 6),
    (ProviderError, 5),
    (Conflict, 7),
]


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2, like argparse but without the usage dump
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    from tools.http import plain

    if args.json:
        print(json.dumps(plain(payload), indent=2, sort_keys=True))
    else:
        print(text)


def _plural(n: int, unit: str) -> str:
    return f"{n} {unit}{'' if n == 1 else 's'}"


# -- commands ----------------------------------------------------------------------------------------


async def cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    """Check the configuration, database, media store and vendor keys; exit 1 when something must be fixed."""
    from dataclasses import asdict

    from tools.doctor import render, run_checks

    checks = await run_checks(settings, args.config)
    failed = any(c.status == "fail" for c in checks)
    _emit(args, {"ok": not failed, "checks": [asdict(c) for c in checks]}, render(checks))
    return 1 if failed else 0


async def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from storage import migrate
    from storage.db import Database, create_engine

    db = Database(create_engine(settings.database.url))
    try:
        before = await migrate.current_revision(db.engine)
        await migrate.upgrade(db.engine)
        after = await migrate.current_revision(db.engine)
    finally:
        await db.dispose()
    _emit(args, {"from": before, "to": after}, f"database at migration {after} (was {before or 'empty'})")
    return 0


async def cmd_accounts_create(args: argparse.Namespace, s: Services) -> int:
    account = await s.accounts.create(args.name)
    balance = await s.credits.balance(account.id)
    _emit(
        args,
        {"account": account, "credits": balance.credits},
        f"account {account.id} {account.name!r} created with {_plural(balance.credits, 'starter credit')}",
    )
    return 0


async def cmd_keys_create(args: argparse.Namespace, s: Services) -> int:
    scopes = tuple(args.scopes.split(",")) if args.scopes else None
    key = await (
        s.accounts.create_api_key(args.account, scopes=scopes, name=args.name)
        if scopes
        else s.accounts.create_api_key(args.account, name=args.name)
    )
    _emit(
        args,
        {"id": key.id, "account_id": key.account_id, "key": key.key, "scopes": list(key.scopes)},
        f"{key.key}\n(API key {key.id} for account {key.account_id}, scopes {','.join(key.scopes)}; "
        "it is shown only now: store it safely)",
    )
    return 0


async def cmd_keys_revoke(args: argparse.Namespace, s: Services) -> int:
    await s.accounts.revoke_api_key(args.account, args.key_id)
    _emit(args, {"id": args.key_id, "account_id": args.account, "revoked": True},
          f"API key {args.key_id} of account {args.account} revoked")  # fmt: skip
    return 0


async def cmd_credits_grant(args: argparse.Namespace, s: Services) -> int:
    import uuid

    await s.accounts.get(args.account)
    reference = f"admin:{args.reference}" if args.reference else f"admin:{uuid.uuid4().hex}"
    result = await s.credits.grant(
        account_id=args.account,
        amount=args.amount,
        unit=args.unit,
        category="admin",
        source_ref=reference,
        note=args.note,
    )
    balance = await s.credits.balance(args.account)
    verb = "granted" if result.created else "already granted (same --reference), nothing added"
    now_has = _plural(balance.credits, "credit")
    _emit(
        args,
        {"grant_id": result.grant_id, "created": result.created, "balance": balance},
        f"{_plural(args.amount, args.unit)} {verb}; account {args.account} now has {now_has}",
    )
    return 0


async def cmd_credits_show(args: argparse.Namespace, s: Services) -> int:
    await s.accounts.get(args.account)
    balance = await s.credits.balance(args.account)
    ledger = await s.credits.ledger(args.account, limit=args.ledger) if args.ledger else []
    lines = [f"account {args.account}: {_plural(balance.credits, 'credit')}"]
    for quota in balance.quotas:
        left = f", {quota.minutes_left} min left" if quota.minutes_left is not None else ""
        lines.append(f"  session quota: {_plural(quota.remaining, quota.unit)}{left}")
    for entry in ledger:
        # A grant's ledger delta is 0 (its amount is the grant's own); show what it added.
        effect = entry.amount if entry.kind == "grant" else entry.delta
        job = f", job {entry.job_id}" if entry.job_id else ""
        note = f" {entry.note}" if entry.note and entry.kind in ("grant", "expire", "refund") else ""
        lines.append(
            f"  {entry.created_at:%Y-%m-%d %H:%M:%S} {entry.kind:<8} {_plural(entry.amount, entry.unit):<12} "
            f"balance effect {effect:+d} (grant {entry.grant_id}{job}){note}"
        )
    _emit(args, {"balance": balance, "ledger": ledger}, "\n".join(lines))
    return 0


async def cmd_codes_create(args: argparse.Namespace, s: Services) -> int:
    plan = s.billing.catalog.plan(args.plan)
    codes = await s.billing.create_codes(plan.key, args.count)
    _emit(
        args,
        {"plan": plan.key, "codes": codes},
        "\n".join(codes) + f"\n({_plural(len(codes), 'code')} for the {plan.name} plan: {plan.description})",
    )
    return 0


async def cmd_codes_redeem(args: argparse.Namespace, s: Services) -> int:
    from tools.http import plain

    await s.accounts.get(args.account)
    activation = await s.billing.redeem(args.code, args.account)
    _emit(
        args,
        {"activation": {**plain(activation), "models": list(activation.models)}},
        f"{activation.name} session active on account {args.account}: {_plural(activation.images, 'image')}, "
        f"{_plural(activation.videos, 'video')} until {activation.expires_at:%Y-%m-%d %H:%M} UTC "
        f"(models: {', '.join(activation.models)})",
    )
    return 0


async def cmd_orders_list(args: argparse.Namespace, s: Services) -> int:
    orders = await s.billing.orders(account_id=args.account, status=args.status, limit=args.limit)
    lines = [f"{len(orders)} order(s)"]
    for o in orders:
        who = f"account {o.account_id}" if o.account_id is not None else "no account"
        extra = f" code {o.code}" if o.code else ""
        extra += f" refunded {o.refunded_amount}" if o.refunded_amount else ""
        price = o.amount if o.currency in ZERO_DECIMAL_CURRENCIES else o.amount / 100
        lines.append(
            f"  {o.created_at:%Y-%m-%d %H:%M} {o.id} {o.product:<18} {price:>9.2f} {o.currency} "
            f"{o.status:<15} {who} via {o.source}{extra}"
        )
    _emit(args, {"orders": orders}, "\n".join(lines))
    return 0


def _job_text(job: JobView, balance: int | None = None) -> str:
    charged = f"charged {_plural(job.charged, job.unit)}" if job.charge_state == "settled" else "nothing charged"
    lines = [f"job {job.id} {job.status} · model {job.model} · {charged}"]
    if balance is not None:
        lines[0] += f" · balance {_plural(balance, 'credit')}"
    if job.error:
        lines.append(f"error: {job.error}")
    for index, asset in enumerate(job.assets, 1):
        length = f", {asset.duration_seconds:g} s" if asset.duration_seconds else ""
        lines.append(f"{asset.kind} {index}: {asset.file_path or asset.blob_key + ' (in the bucket)'}")
        lines.append(f"  {asset.url}  ({asset.width}×{asset.height} {asset.mime}{length}, {asset.size_bytes} bytes)")
    return "\n".join(lines)


async def cmd_generate(args: argparse.Namespace, s: Services) -> int:
    from core.generation import GenerationRequest

    await s.accounts.get(args.account)
    request = GenerationRequest(
        prompt=args.prompt,
        model=args.model,
        style=args.style,
        aspect_ratio=args.aspect_ratio,
        num_outputs=args.num_outputs,
        seed=args.seed,
        source="cli",
        idempotency_key=args.idempotency_key,
        input_asset_id=args.input_asset_id,
    )
    return await _finish_job(args, s, request)


async def cmd_edit(args: argparse.Namespace, s: Services) -> int:
    from core.generation import GenerationRequest

    await s.accounts.get(args.account)
    model = s.settings.generation.operations[args.operation]
    request = GenerationRequest(
        prompt=args.prompt or "", model=model, input_asset_id=args.asset_id, source="cli",
        idempotency_key=args.idempotency_key,
    )  # fmt: skip
    return await _finish_job(args, s, request)


async def _finish_job(args: argparse.Namespace, s: Services, request: GenerationRequest) -> int:
    """Run the job to its end, print it with the balance; exit 0 done, 1 unfinished or refused, 5 provider."""
    job = await s.generation.generate(args.account, request)
    await s.generation.drain()  # its thumbnails, before the process exits
    balance = await s.credits.balance(args.account)
    _emit(args, {"job": job, "balance": balance}, _job_text(job, balance.credits))
    if job.status == "succeeded":
        return 0
    if job.status in ("queued", "running"):
        return 1
    print(f"error: {job.error}", file=sys.stderr)
    return 5 if job.error_code and job.error_code.startswith(("provider", "model", "generation", "output")) else 1


def _photos(directory: Path) -> list[tuple[str, bytes]]:
    """Name and bytes of each picture (or zip) in ``directory``; raises ``InvalidRequest`` for a missing one."""
    if not directory.is_dir():
        raise InvalidRequest(f"--images: {directory} is not a folder of photos", field="images")
    suffixes = (".jpg", ".jpeg", ".png", ".webp", ".zip")
    return [(p.name, p.read_bytes()) for p in sorted(directory.iterdir()) if p.suffix.lower() in suffixes]


async def cmd_models_train(args: argparse.Namespace, s: Services) -> int:
    """Train a custom model on the photos in ``--images`` (pictures, or zips of them) and wait for it."""
    await s.accounts.get(args.account)
    files = await asyncio.to_thread(_photos, Path(args.images))
    job = await s.training.start(
        args.account, name=args.name or args.trigger.lower(), trigger_word=args.trigger, files=files,
        base_model=args.base, source="cli", idempotency_key=args.idempotency_key,
    )  # fmt: skip
    print(f"training {job.id} started on {len(files)} files; it takes a while (Ctrl-C is safe: "
          "`showme jobs resume` or the server finishes it)", file=sys.stderr)  # fmt: skip
    job = await s.generation.wait(job.id)
    balance = await s.credits.balance(args.account)
    text = f"model {args.name or args.trigger.lower()}: {job.status}, charged {job.charged} credits"
    _emit(args, {"job": job, "balance": balance}, text + (f" ({job.error})" if job.error else ""))
    return 0 if job.status == "succeeded" else 5


async def cmd_models_list(args: argparse.Namespace, s: Services) -> int:
    """The account's trained models."""
    models = await s.models.custom(args.account)
    lines = [f"{m.name:<24} trigger {m.trigger_word:<16} base {m.base_model}  {m.ref}" for m in models]
    _emit(args, {"models": models}, "\n".join(lines) or "no trained models yet: showme models train …")
    return 0


async def cmd_jobs_show(args: argparse.Namespace, s: Services) -> int:
    job = await s.generation.get(args.job_id)
    _emit(args, {"job": job}, _job_text(job))
    return 0


async def cmd_jobs_resume(args: argparse.Namespace, s: Services) -> int:
    resumed, failed = await s.generation.resume_unfinished()
    await s.generation.drain()
    jobs = [await s.generation.get(j) for j in resumed + failed]
    text = f"{len(resumed)} job(s) resumed, {len(failed)} failed and refunded"
    for job in jobs:
        text += "\n" + _job_text(job)
    _emit(args, {"resumed": resumed, "failed": failed, "jobs": jobs}, text)
    return 0


async def cmd_report(args: argparse.Namespace, s: Services) -> int:
    """Cost, revenue and margin per model and day (``core.reports``)."""
    from core.reports import report_json, report_text

    report = await s.reports.report(args.since, args.until)
    _emit(args, report_json(report), report_text(report))
    return 0


def _day(value: str) -> Any:
    from datetime import date

    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date like 2026-12-06") from None


async def cmd_library_search(args: argparse.Namespace, s: Services) -> int:
    await s.accounts.get(args.account)
    hits = await s.library.search(args.account, args.query, limit=args.limit)
    lines = [f"{len(hits)} match(es) for {args.query!r}"]
    for hit in hits:
        lines.append(f"  asset {hit.asset.id}: {hit.asset.name!r} [{', '.join(hit.asset.tags)}] {hit.asset.url}")
    _emit(args, {"results": [{"rank": h.rank, "asset": h.asset} for h in hits]}, "\n".join(lines))
    return 0


async def _tune_garbage_collector(_app: object) -> None:
    """Move everything alive once the server has started (modules, settings, SQLAlchemy metadata and compiled
    statements, the clients) out of the garbage collector's reach (``gc.freeze``): a full collection then
    scans only what requests create. And collect the young generation every 50,000 allocations instead of
    700: almost everything a request allocates is freed by reference counting, so frequent young collections
    mostly find nothing (figures: bench/README.md)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def new_event_loop(choice: str) -> tuple[asyncio.AbstractEventLoop, str]:
    """A new event loop for ``server.event_loop`` (``auto``, ``uvloop`` or ``asyncio``) and the name of the one
    made. ``auto`` takes uvloop when it can be imported. Raises ``ConfigError`` for ``uvloop`` when it is not
    installed.

    uvloop runs the loop and its socket I/O in C (libuv); what it changes is measured in bench/README.md."""
    if choice in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError as err:
            if choice == "uvloop":
                raise ConfigError(
                    f"server.event_loop is uvloop, but uvloop cannot be imported ({err}): pip install uvloop",
                    field="server.event_loop",
                ) from err
        else:
            return uvloop.new_event_loop(), "uvloop"
    return asyncio.new_event_loop(), "asyncio"


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from aiohttp import web

    from tools.app import AccessLogger, create_app

    host = args.host or settings.server.host
    port = args.port or settings.server.port
    logging.getLogger("aiohttp.access").setLevel(logging.INFO)
    logging.getLogger("tools").setLevel(logging.INFO)
    loop, loop_name = new_event_loop(settings.server.event_loop)
    print(
        f"showme serving on http://{host}:{port} (public URL {settings.server.public_url}, event loop {loop_name}); "
        "Ctrl-C stops",
        flush=True,
    )
    app = create_app(settings)
    app.on_startup.append(_tune_garbage_collector)
    web.run_app(  # closes the loop when it returns
        app,
        loop=loop,
        host=host,
        port=port,
        print=None,
        shutdown_timeout=10,
        access_log=logging.getLogger("aiohttp.access") if settings.server.access_log else None,
        access_log_class=AccessLogger,
    )
    return 0


async def cmd_tools_export(args: argparse.Namespace, s: Services) -> int:
    from tools.dialects import export_tools

    base = (args.base_url or s.settings.server.public_url).rstrip("/")
    print(json.dumps(export_tools(s.tools, args.format, base, api_key=args.api_key), indent=2))
    return 0


async def cmd_viewer_link(args: argparse.Namespace, s: Services) -> int:
    from tools.viewers import viewer_url

    await s.accounts.get(args.account)
    ttl = args.hours * 3600 if args.hours else None
    token, expires = s.viewer_tokens.mint(args.account, args.conversation_id, ttl_seconds=ttl)
    url = viewer_url(s.settings.server.public_url, args.conversation_id, token)
    _emit(
        args, {"url": url, "token": token, "expires_at": expires}, f"{url}\n(valid until {expires:%Y-%m-%d %H:%M} UTC)"
    )
    return 0


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif"}


def _catalog(directory: Path) -> dict[str, dict[str, str]]:
    """``catalog.json`` (a list of objects, or an object keyed by file) or ``catalog.csv`` (a header row with
    ``file`` and any of ``name, tags, description, category, folder``), keyed by file name."""
    import csv

    entries: dict[str, dict[str, str]] = {}
    json_path, csv_path = directory / "catalog.json", directory / "catalog.csv"
    if json_path.exists():
        try:
            data = json.loads(json_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise InvalidRequest(
                f"{json_path} is not valid JSON: {err.msg} (line {err.lineno})", field="catalog"
            ) from err
        items = data.items() if isinstance(data, dict) else ((str(i.get("file", "")), i) for i in data)
        for name, item in items:
            if isinstance(item, dict):
                entries[Path(name).name] = {k: ", ".join(v) if isinstance(v, list) else str(v) for k, v in item.items()}
    elif csv_path.exists():
        with csv_path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or "file" not in reader.fieldnames:
                raise InvalidRequest(f"{csv_path} needs a header row with a 'file' column", field="catalog")
            for row in reader:
                entries[Path(row["file"]).name] = {k: v for k, v in row.items() if k and v}
    return entries


def _scan(directory: Path) -> tuple[dict[str, dict[str, str]], list[Path]]:
    if not directory.is_dir():
        raise InvalidRequest(f"{directory} is not a directory", field="directory")
    files = sorted(p for p in directory.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    return _catalog(directory), files


def _title(stem: str) -> str:
    words = stem.replace("_", " ").replace("-", " ").split()
    return " ".join(words).capitalize() if words else stem


def _catalog_category(category: Any, tags: Any) -> tuple[str | None, Any]:
    """A catalog's category as one of the library's (``Products`` → ``product``) and the tags; a category
    outside the list becomes a tag instead."""
    if not category:
        return None, tags
    cleaned = str(category).strip().lower()
    for known in CATEGORIES:
        if cleaned in (known, f"{known}s"):
            return known, tags
    listed = tags.split(",") if isinstance(tags, str) else list(tags or [])
    return None, [*listed, cleaned]


async def cmd_library_import(args: argparse.Namespace, s: Services) -> int:
    await s.accounts.get(args.account)
    directory = Path(args.directory)
    catalog, files = await asyncio.to_thread(_scan, directory)
    created, updated, failed = [], [], []
    for path in files:
        meta = dict(catalog.get(path.name, {}))
        category, meta["tags"] = _catalog_category(meta.get("category"), meta.get("tags"))
        try:
            data = await asyncio.to_thread(path.read_bytes)
            asset, is_new = await s.library.import_image(
                args.account,
                data,
                name=meta.get("name") or _title(path.stem),
                description=meta.get("description", ""),
                tags=meta.get("tags"),
                category=category,
                folder=meta.get("folder")
                or (str(path.parent.relative_to(directory)) if path.parent != directory else None),
                thumbnail_pixels=s.settings.media.thumbnail_pixels,
            )
        except InvalidRequest as err:
            failed.append({"file": str(path), "error": err.message})
            continue
        (created if is_new else updated).append({"file": str(path), "asset_id": asset.id, "name": asset.name})
    text = f"{len(created)} imported, {len(updated)} already there (metadata updated), {len(failed)} failed"
    for item in failed:
        text += f"\n  {item['file']}: {item['error']}"
    _emit(args, {"created": created, "updated": updated, "failed": failed}, text)
    return 0 if not failed else 2


# -- parser ------------------------------------------------------------------------------------------


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be greater than 0")
    return number


Group = Callable[[str, str], Any]


def _group(commands: Any) -> Group:
    """A command with actions (``showme db upgrade``): returns ``group(name, help)``, the actions' parser."""

    def group(name: str, help_text: str) -> Any:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        actions = sub.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
        actions.required = True
        return actions

    return group


def _add_setup_commands(commands: Any, group: Group, common: argparse.ArgumentParser) -> None:
    """serve, db, accounts, keys."""
    p = commands.add_parser("serve", parents=[common], help="run the HTTP server (host and port from config)")
    p.add_argument("--host", help="interface to listen on (default: server.host)")
    p.add_argument("--port", type=_positive, help="port (default: server.port)")
    p.set_defaults(handler=cmd_serve, sync=True)

    db = group("db", "database maintenance")
    db.add_parser("upgrade", parents=[common], help="apply migrations").set_defaults(handler=cmd_db_upgrade, raw=True)
    p = commands.add_parser("doctor", parents=[common], help="check configuration, database, media and vendor keys")
    p.set_defaults(handler=cmd_doctor, raw=True)
    p = commands.add_parser("report", parents=[common], help="revenue, provider cost and margin by model and day")
    p.add_argument("--since", type=_day, required=True, help="first day (UTC), like 2026-12-01")
    p.add_argument("--until", type=_day, help="day after the last (default: tomorrow)")
    p.set_defaults(handler=cmd_report)

    accounts = group("accounts", "accounts (payers)")
    p = accounts.add_parser("create", parents=[common], help="create an account with starter credits")
    p.add_argument("name")
    p.set_defaults(handler=cmd_accounts_create)

    keys = group("keys", "API keys")
    p = keys.add_parser("create", parents=[common], help="mint an API key (printed once)")
    p.add_argument("--account", type=_positive, required=True, help="account id")
    p.add_argument("--scopes", help="comma-separated scopes (default: all)")
    p.add_argument("--name", help="a label for the key")
    p.set_defaults(handler=cmd_keys_create)
    p = keys.add_parser("revoke", parents=[common], help="revoke an API key (every replica refuses it at once)")
    p.add_argument("key_id", type=_positive, help="the key's id (printed when it was created)")
    p.add_argument("--account", type=_positive, required=True, help="account id")
    p.set_defaults(handler=cmd_keys_revoke)


def _add_money_commands(group: Group, common: argparse.ArgumentParser) -> None:
    """credits, codes, orders."""
    credits = group("credits", "credits and the ledger")
    p = credits.add_parser("grant", parents=[common], help="grant credits to an account")
    p.add_argument("--account", type=_positive, required=True)
    p.add_argument("--amount", type=_positive, required=True, help="how many (whole) units")
    p.add_argument("--unit", choices=["credit", "image", "video"], default="credit")
    p.add_argument("--reference", help="makes the grant idempotent: a second grant with it adds nothing")
    p.add_argument("--note")
    p.set_defaults(handler=cmd_credits_grant)
    p = credits.add_parser("show", parents=[common], help="balance, session quotas and (with --ledger N) entries")
    p.add_argument("--account", type=_positive, required=True)
    p.add_argument("--ledger", type=_positive, metavar="N", help="also list the newest N ledger entries")
    p.set_defaults(handler=cmd_credits_show)

    codes = group("codes", "redemption codes for hourly session plans")
    p = codes.add_parser("create", parents=[common], help="create codes that each activate one plan once")
    p.add_argument("--plan", required=True, help="plan name from config (flash_lite, flash, pro, …)")
    p.add_argument("--count", type=_positive, default=1, help="how many codes (1-1000)")
    p.set_defaults(handler=cmd_codes_create)
    p = codes.add_parser("redeem", parents=[common], help="activate a code's plan on an account now")
    p.add_argument("code")
    p.add_argument("--account", type=_positive, required=True)
    p.set_defaults(handler=cmd_codes_redeem)

    orders = group("orders", "purchases (Stripe Checkout and PaymentIntents)")
    p = orders.add_parser("list", parents=[common], help="newest orders first")
    p.add_argument("--account", type=_positive, help="only this account's orders")
    p.add_argument("--status", help="open, processing, fulfilled, payment_failed, expired, refunded, …")
    p.add_argument("--limit", type=_positive, default=50)
    p.set_defaults(handler=cmd_orders_list)


def _add_generation_commands(commands: Any, group: Group, common: argparse.ArgumentParser) -> None:
    """generate, jobs."""
    p = commands.add_parser(
        "generate", parents=[common], help="generate an image or a video and store it in the library"
    )
    p.add_argument("prompt")
    p.add_argument("--account", type=_positive, required=True)
    p.add_argument("--model", help="model name from config, any kind (default: generation.default_model)")
    p.add_argument("--input-asset", type=_positive, dest="input_asset_id",
                   help="library asset an image_to_video model animates")  # fmt: skip
    p.add_argument("--style", help="style preset (photorealistic, artistic, sketch, modern, …)")
    p.add_argument("--aspect-ratio", help="like 16:9 (default 1:1)")
    p.add_argument("--num-outputs", type=_positive, default=1, help="1–4 images, each charged")
    p.add_argument("--seed", type=int)
    p.add_argument("--idempotency-key", help="a retried command with the same key returns the first job")
    p.set_defaults(handler=cmd_generate)
    p = commands.add_parser("edit", parents=[common], help="upscale, cut out, restore faces in or animate an asset")
    p.add_argument("asset_id", type=_positive)
    p.add_argument("--operation", required=True, choices=["upscale", "remove_background", "restore_face", "animate"])
    p.add_argument("--account", type=_positive, required=True)
    p.add_argument("--prompt", help="for animate: how the picture should move")
    p.add_argument("--idempotency-key", help="a retried command with the same key returns the first job")
    p.set_defaults(handler=cmd_edit)

    jobs = group("jobs", "generation jobs")
    p = jobs.add_parser("show", parents=[common], help="show one job")
    p.add_argument("job_id")
    p.set_defaults(handler=cmd_jobs_show)
    p = jobs.add_parser("resume", parents=[common], help="resume interrupted jobs, or fail and refund them")
    p.set_defaults(handler=cmd_jobs_resume)

    models = group("models", "custom models trained on your photos")
    p = models.add_parser("train", parents=[common], help="train a FLUX LoRA on a folder of photos, then wait")
    p.add_argument("--account", type=_positive, required=True)
    p.add_argument("--images", required=True, help="a folder of 10-50 photos (JPEG, PNG, WebP) or zips of them")
    p.add_argument("--trigger", required=True, help="the word that calls up the subject, e.g. ACME_SOFA")
    p.add_argument("--name", help="the model's name (default: the trigger word, lower case)")
    p.add_argument("--base", default="flux_dev", help="base model (training.base_models)")
    p.add_argument("--idempotency-key", help="a retried command with the same key returns the first training")
    p.set_defaults(handler=cmd_models_train)
    p = models.add_parser("list", parents=[common], help="the account's trained models")
    p.add_argument("--account", type=_positive, required=True)
    p.set_defaults(handler=cmd_models_list)


def _add_integration_commands(commands: Any, group: Group, common: argparse.ArgumentParser) -> None:
    """tools, viewer-link, library."""
    tools = group("tools", "tool definitions for voice platforms")
    p = tools.add_parser("export", parents=[common], help="print tool definitions for a platform (JSON)")
    p.add_argument(
        "--format", required=True, choices=["openai", "openai-responses", "elevenlabs", "vapi", "retell", "mcp"]
    )
    p.add_argument("--base-url", help="where platforms reach this server (default: server.public_url)")
    p.add_argument("--api-key", help="write this key into the auth headers (default: a placeholder)")
    p.set_defaults(handler=cmd_tools_export)

    p = commands.add_parser("viewer-link", parents=[common], help="a signed link to a call's live gallery")
    p.add_argument("conversation_id")
    p.add_argument("--account", type=_positive, required=True)
    p.add_argument("--hours", type=_positive, help="valid this many hours (default: viewers.token_ttl_seconds)")
    p.set_defaults(handler=cmd_viewer_link)

    library = group("library", "the media library")
    p = library.add_parser("import", parents=[common], help="import a folder of product photos (+ catalog.json/csv)")
    p.add_argument("directory")
    p.add_argument("--account", type=_positive, required=True)
    p.set_defaults(handler=cmd_library_import)
    p = library.add_parser("search", parents=[common], help="full-text search of an account's library")
    p.add_argument("query")
    p.add_argument("--account", type=_positive, required=True)
    p.add_argument("--limit", type=_positive, default=10)
    p.set_defaults(handler=cmd_library_search)


async def cmd_login_link(args: argparse.Namespace, s: Services) -> int:
    memberships = await s.teams.memberships(args.email)
    link = await s.teams.login_link(args.email)
    accounts = ", ".join(f"{m.account_name} ({m.role})" for m in memberships) or "no account: shared items only"
    text = f"{link}\n(one sign-in, within {s.settings.webapp.login_link_minutes} minutes; {args.email}: {accounts})"
    _emit(args, {"email": args.email.strip().lower(), "link": link,
                 "accounts": [{"id": m.account_id, "name": m.account_name, "role": m.role} for m in memberships]},
          text)  # fmt: skip
    return 0


async def cmd_members_add(args: argparse.Namespace, s: Services) -> int:
    await s.accounts.get(args.account)
    added = await s.teams.add_member(args.account, args.email, args.role)
    email = args.email.strip().lower()
    _emit(args, {"account_id": args.account, "email": email, "role": args.role, "added": added},
          f"{email} is {args.role} of account {args.account}" if added
          else f"{email} was a member of account {args.account} already (role unchanged)")  # fmt: skip
    return 0


async def cmd_members_list(args: argparse.Namespace, s: Services) -> int:
    members = await s.teams.members(args.account)
    _emit(args, {"members": [{"id": m.id, "email": m.email, "role": m.role} for m in members]},
          "\n".join(f"{m.id}\t{m.role}\t{m.email}" for m in members) or "no members")  # fmt: skip
    return 0


def _add_team_commands(commands: Any, group: Group, common: argparse.ArgumentParser) -> None:
    """login-link, members."""
    p = commands.add_parser("login-link", parents=[common], help="a one-time link that signs a person in to /app")
    p.add_argument("--email", required=True, help="the person's email address")
    p.set_defaults(handler=cmd_login_link)
    members = group("members", "the people of an account (web app)")
    p = members.add_parser("add", parents=[common], help="add a person to an account (e.g. its first owner)")
    p.add_argument("--account", type=_positive, required=True, help="account id")
    p.add_argument("--email", required=True)
    p.add_argument("--role", choices=("owner", "admin", "member"), default="owner")
    p.set_defaults(handler=cmd_members_add)
    p = members.add_parser("list", parents=[common], help="an account's members")
    p.add_argument("--account", type=_positive, required=True, help="account id")
    p.set_defaults(handler=cmd_members_list)


def build_parser() -> argparse.ArgumentParser:
    """The ``showme`` command line (ARCHITECTURE.md "Public interface")."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", default=argparse.SUPPRESS, help="config file (default: $SHOWME_CONFIG or ./config.yaml)"
    )
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")

    parser = _Parser(prog="showme", description="showme: AI images in front of people, mid-conversation.")
    parser.add_argument("--config", default=None, help="config file (default: $SHOWME_CONFIG or ./config.yaml)")
    parser.add_argument("--json", action="store_true", default=False, help="machine-readable output")
    parser.add_argument("--version", action="version", version=f"showme {showme_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    group = _group(commands)
    _add_setup_commands(commands, group, common)
    _add_money_commands(group, common)
    _add_generation_commands(commands, group, common)
    _add_integration_commands(commands, group, common)
    _add_team_commands(commands, group, common)
    return parser


def _error_exit(args: argparse.Namespace, code: str, message: str, status: int) -> int:
    message = " ".join(message.split())
    if getattr(args, "json", False):
        print(json.dumps({"error": {"code": code, "message": message}}))
    print(f"error: {message}", file=sys.stderr)
    return status


async def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    handler: Callable[..., Awaitable[int]] = args.handler
    if getattr(args, "raw", False):
        return await handler(args, settings)
    # One-shot commands make thumbnails in a thread: a worker process would cost more to start than it saves.
    settings.generation.thumbnail_worker = "thread"
    from tools.services import open_services

    async with open_services(settings) as services:
        return await handler(args, services)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``showme`` console script; returns the exit code."""
    logging.basicConfig(
        level=os.environ.get("SHOWME_LOG_LEVEL", "WARNING"), format="%(levelname)s %(name)s: %(message)s"
    )
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
        if getattr(args, "sync", False):
            return int(args.handler(args, settings))
        return asyncio.run(_dispatch(args, settings))
    except ShowmeError as err:
        status = next((code for cls, code in EXIT_CODES if isinstance(err, cls)), 1)
        return _error_exit(args, err.code, err.message, status)
    except (OperationalError, DBAPIError, OSError) as err:
        if os.environ.get("SHOWME_DEBUG"):
            traceback.print_exc()
        reason = str(getattr(err, "orig", None) or err).splitlines()[0]
        return _error_exit(args, "database_unavailable", f"cannot use the database: {reason}", 69)
    except KeyboardInterrupt:
        return _error_exit(args, "interrupted", "interrupted; unfinished jobs resume with `showme jobs resume`", 130)
    except Exception as err:
        if os.environ.get("SHOWME_DEBUG"):
            traceback.print_exc()
        return _error_exit(
            args, "internal_error", f"unexpected {type(err).__name__}: {err} (SHOWME_DEBUG=1 shows details)", 1
        )


if __name__ == "__main__":
    sys.exit(main())
