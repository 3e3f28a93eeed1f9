"""(f) Listing the library with filters at 100,000 assets, server-side: the time ``LibraryManager.list_assets``
takes (what ``GET /api/v1/library`` and the Library page await), per filter mix, in this process.

    python -m bench.library [--assets 100000] [--rounds 200] [--database-url postgresql+asyncpg://…]

The library is one account's: names, descriptions and four tags per asset from a stone shop's vocabulary
(tags Zipf-distributed, so some are on thousands of assets and some on a handful), 40 folders (nested), six
categories plus generated pictures, 2 % favorites, Zipf use counts, added in order over a year, 1 % videos.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench.run import COLORS, FINISHES, MATERIALS, PRODUCTS, REPO, pct

CATEGORIES = ["product", "marketing", "social", "presentation", "email", "agent", "generated"]
STYLE_TAGS = ["modern", "rustic", "minimal", "luxury", "farmhouse", "industrial", "coastal", "scandinavian",
              "showroom", "installed", "sample", "closeup", "promo", "catalog-2026", "bestseller", "new"]  # fmt: skip


def _asset(
    i: int, account_id: int, rng: random.Random, folders: list[int], now: datetime, total: int
) -> dict[str, Any]:
    color, material, product, finish = (rng.choice(COLORS), rng.choice(MATERIALS), rng.choice(PRODUCTS),
                                        rng.choice(FINISHES))  # fmt: skip
    # Zipf-like: a few style tags on very many assets, most on few.
    style = STYLE_TAGS[min(int(rng.paretovariate(1.2)) - 1, len(STYLE_TAGS) - 1)]
    digest = f"{i:064x}"
    return {
        "account_id": account_id, "kind": "video" if i % 100 == 0 else "image",
        "blob_key": f"{digest[:2]}/{digest}.webp", "thumb_key": None, "mime": "image/webp", "size_bytes": 120_000,
        "width": 1024, "height": 1024, "sha256": digest, "name": f"{color.title()} {material} {product} #{i}",
        "description": f"{finish.title()} {color} {material} {product}",
        "tags": ",".join(dict.fromkeys([material, color, style, finish])),
        "category": rng.choice(CATEGORIES), "folder_id": rng.choice(folders) if rng.random() < 0.7 else None,
        "favorite": rng.random() < 0.02, "use_count": int(rng.paretovariate(1.5)) - 1, "view_count": 0,
        "created_at": now - timedelta(seconds=(total - i) * 365 * 86400 / total),  # added in order over a year
    }  # fmt: skip


async def seed(services: Any, assets: int) -> tuple[int, list[int]]:
    """One account with ``assets`` assets in 40 folders; its id and the folder ids."""
    rng = random.Random(11)
    account = await services.accounts.create("Bench Library Co")
    folders: list[int] = []
    for n in range(40):
        parent = folders[n // 5] if n >= 8 else None
        folders.append((await services.manager.create_folder(account.id, f"Folder {n}", parent)).id)
    now = datetime.now(UTC)
    for start in range(0, assets, 2000):
        rows = [_asset(i, account.id, rng, folders, now, assets) for i in range(start, min(assets, start + 2000))]
        await services.store.assets.add_many(rows, now)
    return account.id, folders


def mixes(folders: list[int]) -> dict[str, dict[str, Any]]:
    """The filter mixes measured: what the Library page and integrators ask."""
    return {
        "newest": {},
        "kind=video": {"kind": "video"},
        "category=marketing": {"category": "marketing"},
        "folder": {"folder_id": folders[3]},
        "no folder": {"folder_id": 0},
        "tag (common)": {"tag": "modern"},
        "tag (rare)": {"tag": "bestseller"},
        "tag (material)": {"tag": "travertine"},
        "favorite": {"favorite": True},
        "favorite+category": {"favorite": True, "category": "product"},
        "tag+category+kind": {"tag": "granite", "category": "social", "kind": "image"},
        "most_used": {"sort": "most_used"},
        "name": {"sort": "name"},
        "q=travertine": {"q": "travertine"},
        "q=black granite": {"q": "black granite"},
        "q+category": {"q": "walnut", "category": "presentation"},
        "q+folder newest": {"q": "oak", "folder_id": folders[5], "sort": "newest"},
    }


async def measure(services: Any, account_id: int, folders: list[int], rounds: int) -> dict[str, Any]:
    """``rounds`` calls of each mix (first pages of 50, and the second page by cursor); milliseconds."""
    manager = services.manager
    per_mix: dict[str, dict[str, float]] = {}
    everything: list[float] = []
    for name, params in mixes(folders).items():
        first = await manager.list_assets(account_id, **params)  # warm: the first query plans and pages in
        times = []
        for i in range(rounds):
            cursor = first.cursor if i % 4 == 3 else None  # every fourth call asks for page two
            began = time.perf_counter()
            await manager.list_assets(account_id, **params, cursor=cursor)
            times.append((time.perf_counter() - began) * 1000)
        everything += times
        per_mix[name] = {"p50_ms": round(statistics.median(times), 2), "p95_ms": round(pct(times, 95), 2),
                         "found": len(first.assets)}  # fmt: skip
    return {"mixes": per_mix, "p50_ms": round(statistics.median(everything), 2),
            "p95_ms": round(pct(everything, 95), 2), "p99_ms": round(pct(everything, 99), 2),
            "calls": len(everything)}  # fmt: skip


async def run(assets: int = 100_000, rounds: int = 200, database_url: str | None = None) -> dict[str, Any]:
    """Seed a fresh library of ``assets`` and measure every mix."""
    tmp = Path(tempfile.mkdtemp(prefix="showme-bench-library-"))
    os.environ.setdefault("SHOWME_SECRET_KEY", "bench-secret")
    from core.config import Settings
    from tools.services import open_services

    settings = Settings.model_validate({
        "database": {"url": database_url or f"sqlite+aiosqlite:///{tmp / 'library.db'}", "writer_process": False},
        "media": {"root": str(tmp / "media"), "search_cache_seconds": 0},
        "server": {"secret_key_file": str(tmp / "secret")},
    })  # fmt: skip
    async with open_services(settings) as services:
        began = time.perf_counter()
        account_id, folders = await seed(services, assets)
        if database_url:  # as autovacuum does after a bulk load: statistics, and the text index's pending list
            async with services.db.connection() as conn:
                autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await autocommit.execute(text("VACUUM ANALYZE"))
        seeded = time.perf_counter() - began
        from tools.cli import _tune_garbage_collector

        await _tune_garbage_collector(None)  # as the server does once started
        result = await measure(services, account_id, folders, rounds)
    return {"assets": assets, "rounds": rounds, "seed_seconds": round(seeded, 1),
            "database": "postgresql" if database_url else "sqlite", **result}  # fmt: skip


def in_server_loop(work: Any) -> Any:
    """Run ``work`` on the event loop ``showme serve`` runs on (uvloop when installed), with its GC settings."""
    from tools.cli import new_event_loop

    loop, _ = new_event_loop("auto")
    try:
        result = loop.run_until_complete(work)
        return result
    finally:
        loop.close()


def report(r: dict[str, Any]) -> str:
    worst = max(r["mixes"].items(), key=lambda item: item[1]["p95_ms"])
    return (
        f"(f) library listing with filters, {r['assets']:,} assets ({r['database']}), {r['calls']} calls over "
        f"{len(r['mixes'])} filter mixes: p50 {r['p50_ms']:.2f} ms, p95 {r['p95_ms']:.2f} ms (target <= 5), "
        f"p99 {r['p99_ms']:.2f} ms; slowest mix {worst[0]!r} p95 {worst[1]['p95_ms']:.2f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assets", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--database-url")
    options = parser.parse_args()
    outcome = in_server_loop(run(options.assets, options.rounds, options.database_url))
    print(json.dumps(outcome["mixes"], indent=1))
    print(report(outcome))
    name = "results-library-postgresql.json" if options.database_url else "results-library.json"
    (REPO / "bench" / name).write_text(json.dumps(outcome, indent=2) + "\n")
