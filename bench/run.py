"""showme benchmarks, measured in one run on this machine (README "Performance").

    python -m bench.run            # about two minutes
    python -m bench.run --quick    # shorter load phases

(a) show_product_image (search + screen push + use record) at 50 connections over a 10,000-asset library,
    as a ratio to a bare aiohttp JSON handler measured in the same run (wrk, 2 threads): aiohttp as it comes
    (asyncio's event loop), the reference; and, for comparison, the same handler on uvloop, showme's loop.
(b) a burst of 100 concurrent generate_image calls against a provider that takes 2 s.
(c) time-to-screen overhead: viewer receives image_generated − the provider's prediction succeeded.
(d) 1,000 viewers on one conversation: delay from the tool call to each viewer's receipt.
(e) show_product_image p99 alone, then while 20 video jobs download 50 MB outputs; the server's RSS meanwhile.
(f) listing the library with filters at 100,000 assets, server-side (``bench.library``, in this process).
Every process (fake Replicate, bare handler, showme) is separate; wrk and the bench client share the 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[1]
SECRET = "bench-secret"
COLORS = [
    "black",
    "white",
    "grey",
    "blue",
    "green",
    "gold",
    "brown",
    "beige",
    "cream",
    "red",
    "silver",
    "ivory",
    "charcoal",
    "navy",
    "sand",
    "copper",
    "pearl",
    "midnight",
    "snow",
    "smoke",
]
MATERIALS = [
    "granite",
    "marble",
    "quartz",
    "quartzite",
    "oak",
    "walnut",
    "maple",
    "slate",
    "travertine",
    "porcelain",
    "ceramic",
    "terrazzo",
    "soapstone",
    "limestone",
    "onyx",
    "concrete",
    "bamboo",
    "cherry",
]
PRODUCTS = [
    "countertop",
    "backsplash",
    "floor tile",
    "vanity top",
    "kitchen island",
    "cabinet",
    "fireplace surround",
    "shower wall",
    "table top",
    "stair tread",
    "window sill",
    "bar top",
    "wall panel",
    "mosaic",
    "slab",
]
FINISHES = ["polished", "honed", "leathered", "brushed", "matte", "glossy", "textured", "flamed"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))] if ordered else float("nan")


def raise_nofile() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))


async def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url) as r:
                    if r.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not come up")
            await asyncio.sleep(0.1)


async def seed(env: dict[str, str], assets: int) -> tuple[int, str]:
    """Create the account, its API key and a library of ``assets`` products (direct inserts, no files)."""
    os.environ.update(env)
    from core.config import load_settings
    from core.library import normalize_tags
    from tools.services import open_services

    settings = load_settings(None)
    rng = random.Random(7)
    async with open_services(settings) as s:
        account = await s.accounts.create("Bench Stone Co")
        key = await s.accounts.create_api_key(account.id)
        await s.credits.grant(account_id=account.id, amount=1_000_000, source_ref=f"bench-{account.id}")
        for start in range(0, assets, 1000):
            rows = []
            for i in range(start, min(assets, start + 1000)):
                color, material, product = rng.choice(COLORS), rng.choice(MATERIALS), rng.choice(PRODUCTS)
                finish = rng.choice(FINISHES)
                digest = f"{i:064x}"
                rows.append({
                    "account_id": account.id, "kind": "image", "blob_key": f"{digest[:2]}/{digest}.webp",
                    "thumb_key": None, "mime": "image/webp", "size_bytes": 120_000, "width": 1024, "height": 1024,
                    "sha256": digest, "name": f"{color.title()} {material} {product} #{i}",
                    "description": f"{finish.title()} {color} {material} {product}",
                    "tags": normalize_tags([material, color, product, finish]), "category": "product",
                    "folder_id": None, "favorite": False, "use_count": 0, "view_count": 0,
                })  # fmt: skip
            await s.store.assets.add_many(rows, s.clock.now())
    return account.id, key.key


async def warm_searches(base: str, key: str, queries: list[str]) -> None:
    """Call show_product_image once for each query (10 at a time)."""
    gate = asyncio.Semaphore(10)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http:

        async def one(query: str) -> None:
            async with gate, http.post(f"{base}/tools/show_product_image", json={"query": query}) as r:
                r.raise_for_status()

        await asyncio.gather(*(one(q) for q in queries))


def wrk(url: str, key: str, queries: list[str], seconds: int, connections: int = 50) -> dict[str, float]:
    lua = Path(tempfile.mkstemp(suffix=".lua")[1])
    quoted = ", ".join(json.dumps(q) for q in queries)
    lua.write_text(f"""
local queries = {{{quoted}}}
local counter = 0
request = function()
  counter = counter + 1
  local body = '{{"query":"' .. queries[(counter % #queries) + 1] .. '","conversation_id":"bench"}}'
  return wrk.format("POST", "/tools/show_product_image",
    {{["Content-Type"] = "application/json", ["Authorization"] = "Bearer {key}"}}, body)
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %d %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
""")
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(lua), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lua.unlink()
    line = next(row for row in out.splitlines() if row.startswith("RESULT"))
    requests, duration_us, p50, p99, bad_status, socket_errors = map(int, line.split()[1:])
    return {
        "rps": requests / (duration_us / 1e6),
        "p50_ms": p50 / 1000,
        "p99_ms": p99 / 1000,
        "requests": requests,
        "non_2xx": bad_status,
        "socket_errors": socket_errors,
    }


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants (the server's SQLite writer, fork server and thumbnail worker)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo.extend(children.get(tree[-1], []))
    return tree


def cpu_seconds(pid: int, *, tree: bool = False) -> float:
    """User + system CPU time the process (with ``tree``, it and its live descendants) has used so far
    (``/proc/PID/stat``, clock ticks)."""
    total = 0
    for member in process_tree(pid) if tree else [pid]:
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def combine(runs: list[dict[str, float]]) -> dict[str, float]:
    """Several wrk runs as one: requests per second over all of them, the median p50 and CPU per request, and
    the worst p99."""
    requests = sum(r["requests"] for r in runs)
    return {
        "rps": requests / sum(r["requests"] / r["rps"] for r in runs),
        "p50_ms": sorted(r["p50_ms"] for r in runs)[len(runs) // 2],
        "p99_ms": max(r["p99_ms"] for r in runs),
        "requests": requests,
        "non_2xx": sum(r["non_2xx"] for r in runs),
        "socket_errors": sum(r["socket_errors"] for r in runs),
        "cpu_us_per_request": sorted(r["cpu_us_per_request"] for r in runs)[len(runs) // 2],
        "rounds": len(runs),
    }


def rss_mb(pid: int) -> float:
    """The process's resident set in MB (``/proc/PID/status``: cheap, unlike ``smaps_rollup``, whose page-table
    walk holds the process's memory map lock and so stalls it)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def memory_mb(pid: int) -> dict[str, float]:
    """Memory of the process and its descendants (the SQLite writer, its fork server, the thumbnail worker) in
    MB: ``pss``, their proportional set sizes summed (a page shared by n of them counts 1/n in each: what the
    tree adds to the machine), ``rss`` and ``peak_rss`` (VmHWM) of the process itself, and ``by_process``."""
    pss = 0.0
    by_process: dict[str, float] = {}
    for member in process_tree(pid):
        try:
            rollup = Path(f"/proc/{member}/smaps_rollup").read_text()
            name = Path(f"/proc/{member}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        kb = next(int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:"))
        pss += kb / 1024
        label = "server" if member == pid else name.split(" -c ")[-1][:60]
        by_process[f"{member} {label}"] = round(kb / 1024, 1)
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {
        "pss": pss,
        "rss": int(fields["VmRSS"].split()[0]) / 1024,
        "peak_rss": int(fields["VmHWM"].split()[0]) / 1024,
        "by_process": by_process,  # type: ignore[dict-item]
    }


async def _generate(
    http: aiohttp.ClientSession, base: str, headers: dict[str, str], i: int
) -> tuple[float, str, float]:
    """One generate_image call: (seconds, status, when it answered)."""
    started = time.monotonic()
    async with http.post(
        f"{base}/tools/generate_image",
        headers=headers,
        json={"prompt": f"granite kitchen variation {i}", "conversation_id": f"burst{i}"},
    ) as r:
        body = await r.json()
    return time.monotonic() - started, body.get("status", str(body)), time.time()


async def burst(base: str, key: str, fake: str, pids: dict[str, int], calls: int) -> dict[str, Any]:
    pid = pids["server"]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        headers = {"Authorization": f"Bearer {key}"}
        # One call first, as a server in use would have made: the burst should not measure this process's
        # first-ever statement compilations and connections (when (a) runs first it has done them anyway).
        await http.post(f"{fake}/bench/configure", json={"duration": 0.0})
        async with http.post(
            f"{base}/tools/generate_image", headers=headers, json={"prompt": "warm-up", "conversation_id": "warm"}
        ) as r:
            await r.read()
        await http.post(f"{fake}/bench/configure", json={"duration": 2.0})
        started_before = {p["id"] for p in await (await http.get(f"{fake}/bench/predictions")).json()}

        burst_started = time.time()
        cpu_before = {name: cpu_seconds(p) for name, p in pids.items()}
        tree_before = cpu_seconds(pid, tree=True)
        results = await asyncio.gather(*(_generate(http, base, headers, i) for i in range(calls)))
        cpu_used = {name: round(cpu_seconds(p) - cpu_before[name], 2) for name, p in pids.items()}
        # The SQLite writer and the thumbnail worker (nice 19; it starts on the images after the answers).
        helpers = cpu_seconds(pid, tree=True) - tree_before - cpu_used["server"]
        cpu_used["server's helper processes"] = round(helpers, 2)
        async with http.get(f"{fake}/bench/predictions") as r:
            predictions = [p for p in await r.json() if p["id"] not in started_before]
    latencies = [r[0] for r in results]
    created = sorted(p["created"] for p in predictions)
    succeeded = sorted(p["succeeded"] for p in predictions if p["succeeded"])
    answered = sorted(r[2] for r in results)
    print(
        f"(b) creates reached the provider {created[0] - burst_started:.2f}..{created[-1] - burst_started:.2f} s "
        f"after the burst started; predictions succeeded {succeeded[0] - burst_started:.2f}.."
        f"{succeeded[-1] - burst_started:.2f} s; answers {answered[0] - burst_started:.2f}.."
        f"{answered[-1] - burst_started:.2f} s; CPU seconds used during the burst: {cpu_used}",
        flush=True,
    )
    window_max = max(sum(1 for c in created if t <= c < t + 60) for t in created)
    memory = memory_mb(pid)
    return {
        "calls": calls,
        "ready": sum(1 for _, s, _ in results if s == "ready"),
        "p50_s": pct(latencies, 50),
        "p99_s": pct(latencies, 99),
        "max_s": max(latencies),
        "rss_mb": memory["rss"],
        "peak_rss_mb": memory["peak_rss"],
        "with_helpers_pss_mb": memory["pss"],
        "memory_by_process_mb": memory["by_process"],
        "creates": len(created),
        "max_creates_in_60s": window_max,
        "cpu_seconds_during_burst": cpu_used,
    }


async def time_to_screen(base: str, key: str, fake: str, rounds: int) -> dict[str, Any]:
    from core.clock import SystemClock
    from core.viewers import ViewerTokens

    tokens = ViewerTokens(SECRET.encode(), SystemClock(), 3600)
    overheads: list[float] = []
    async with aiohttp.ClientSession() as http:
        await http.post(f"{fake}/bench/configure", json={"duration": 0.3})
        headers = {"Authorization": f"Bearer {key}"}
        for i in range(rounds):
            account = int(tokens.verify(tokens.mint(1, "x")[0]).account_id)
            token, _ = tokens.mint(account, f"tts{i}")
            async with http.ws_connect(f"{base}/ws/calls/tts{i}?token={token}") as ws:
                await ws.receive_json()
                request = asyncio.create_task(
                    http.post(
                        f"{base}/tools/generate_image",
                        headers=headers,
                        json={"prompt": f"quartz island {i}", "conversation_id": f"tts{i}"},
                    )
                )
                while True:
                    event = await ws.receive_json(timeout=30)
                    if event["type"] == "image_generated":
                        received = time.time()
                        break
                    if event["type"] == "generation_failed":
                        raise RuntimeError(f"generation failed: {event}")
                response = await request
                job_id = (await response.json())["job_id"]
            async with http.get(f"{base}/api/v1/generations/{job_id}", headers=headers) as r:
                prediction_id = (await r.json())["job"]["prediction_id"]
            async with http.get(f"{fake}/bench/predictions") as r:
                succeeded = next(p["succeeded"] for p in await r.json() if p["id"] == prediction_id)
            overheads.append((received - succeeded) * 1000)
    return {"rounds": rounds, "p50_ms": pct(overheads, 50), "p95_ms": pct(overheads, 95), "max_ms": max(overheads)}


async def fan_out(
    bases: list[str], key: str, account_id: int, viewers: int, rounds: int, processes: int = 4
) -> dict[str, Any]:
    """Viewers are spread over ``processes`` client processes: real viewers are separate browsers, and one
    Python client parsing 1,000 frames in a row would measure itself, not the server. With several replicas
    (``bases``), the client processes connect to them in turn and the tool calls go to the first: the other
    replicas' viewers get each event through Redis."""
    from core.clock import SystemClock
    from core.viewers import ViewerTokens

    token, _ = ViewerTokens(SECRET.encode(), SystemClock(), 3600).mint(account_id, "fan")
    urls = [base.replace("http://", "ws://") + f"/ws/calls/fan?token={token}" for base in bases]
    base = bases[0]
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.viewers", "--url", urls[i % len(urls)], "--count", str(viewers // processes),
            "--rounds", str(rounds), stdout=asyncio.subprocess.PIPE, cwd=REPO, preexec_fn=raise_nofile,
        )
        for i in range(processes)
    ]
    for child in children:
        assert child.stdout is not None
        assert (await child.stdout.readline()).startswith(b"READY")
    sent: list[float] = []
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {key}"}
        for _ in range(rounds):
            await asyncio.sleep(0.3)
            sent.append(time.time())
            async with http.post(
                f"{base}/tools/show_product_image",
                headers=headers,
                json={"query": "black granite countertop", "conversation_id": "fan"},
            ) as r:
                await r.read()
    delays: list[float] = []
    by_replica: dict[int, list[float]] = {}
    for i, child in enumerate(children):
        assert child.stdout is not None
        per_socket = json.loads(await child.stdout.readline())
        await child.wait()
        for times in per_socket:
            these = [(t - s) * 1000 for t, s in zip(times, sent, strict=True)]
            delays.extend(these)
            by_replica.setdefault(i % len(bases), []).extend(these)
    result: dict[str, Any] = {
        "viewers": viewers,
        "rounds": rounds,
        "received": len(delays),
        "client_processes": processes,
        "p50_ms": pct(delays, 50),
        "p99_ms": pct(delays, 99),
        "max_ms": max(delays),
    }
    if len(bases) > 1:
        result.update(replicas=len(bases), by_replica=_per_replica(by_replica, rounds))
    return result


def _per_replica(delays: dict[int, list[float]], rounds: int) -> list[dict[str, Any]]:
    """Fan-out delays (ms) of each replica's viewers; replica 0 took the tool calls."""
    return [
        {"replica": i, "tool_calls_here": i == 0, "viewers": len(values) // rounds, "p50_ms": pct(values, 50),
         "p99_ms": pct(values, 99), "max_ms": max(values)}
        for i, values in sorted(delays.items())
    ]


async def show_product_image(
    ports: dict[str, int], pids: dict[str, int], key: str, queries: list[str], quick: bool
) -> dict[str, Any]:
    """(a): wrk against the bare handlers and showme in alternating rounds; their combined figures."""
    base = f"http://127.0.0.1:{ports['showme']}"
    # Warm-up: each query once (a server in use has seen its agents' queries: the first search of a
    # query costs a full-text query and an ORM load, 5-10 ms of the event loop here, and a 2 s wrk run
    # alone did not reach all 200 on a slow day), then 2 s of load.
    await warm_searches(base, key, sorted(set(queries)))
    wrk(f"{base}/tools/show_product_image", key, queries, 2)
    # Alternating rounds, so a change in this shared machine's speed hits both sides alike.
    rounds: dict[str, list[dict[str, float]]] = {"bare": [], "bare_uvloop": [], "showme": []}
    targets = (
        ("bare", f"http://127.0.0.1:{ports['bare']}", pids["bare"]),
        ("showme", base, pids["showme"]),
        ("bare_uvloop", f"http://127.0.0.1:{ports['bare_uvloop']}", pids["bare_uvloop"]),
    )
    for _ in range(3 if quick else 5):
        for name, url, pid in targets:
            cpu_before = cpu_seconds(pid, tree=True)
            run = wrk(f"{url}/tools/show_product_image", key, queries, 2)
            # The server's own CPU per request (all its threads): unlike req/s, not moved by how the
            # two cores are shared with wrk.
            run["cpu_us_per_request"] = (cpu_seconds(pid, tree=True) - cpu_before) / run["requests"] * 1e6
            rounds[name].append(run)
            print(
                f"(a) {name}: {run['rps']:.0f} req/s, p99 {run['p99_ms']:.1f} ms, "
                f"{run['cpu_us_per_request']:.0f} µs CPU/request",
                flush=True,
            )
    bare, ours, bare_uvloop = combine(rounds["bare"]), combine(rounds["showme"]), combine(rounds["bare_uvloop"])
    return {
        "bare": bare,
        "showme": ours,
        "ratio": ours["rps"] / bare["rps"],
        "bare_uvloop": bare_uvloop,
        "ratio_to_bare_uvloop": ours["rps"] / bare_uvloop["rps"],
    }


async def video_downloads(
    base: str, key: str, fake: str, pid: int, queries: list[str], quick: bool, videos: int = 20
) -> dict[str, Any]:
    """(e): ``show_product_image`` under wrk alone, then again while ``videos`` video jobs download their 50 MB
    outputs (the fake's predictions take 0.5 s; the loaded wrk run starts a second after the jobs, when their
    downloads are under way, and ends before them at ``generation.video_download_megabytes_per_second``), then
    alone again once they are stored; the ratio is to the lower p99 of the two runs alone (the stricter
    reading). The server's RSS is sampled every 0.1 s while the videos download."""
    url = f"{base}/tools/show_product_image"
    seconds = 4 if quick else 6
    await warm_searches(base, key, sorted(set(queries)))
    await asyncio.to_thread(wrk, url, key, queries, 2)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http:
        await http.post(f"{fake}/bench/configure", json={"duration": 0.5})
        alone = await asyncio.to_thread(wrk, url, key, queries, seconds)
        samples: list[float] = []
        sampling = True

        async def sample() -> None:
            while sampling:
                samples.append(rss_mb(pid))
                await asyncio.sleep(0.1)

        async def video(i: int) -> tuple[float, str]:
            body = {"model": "seedance_lite", "prompt": f"a slow pan across kitchen {i}", "wait_seconds": 60}
            started = time.monotonic()
            async with http.post(f"{base}/api/v1/generations", json=body) as r:
                job = (await r.json()).get("job") or {}
            return time.monotonic() - started, str(job.get("status"))

        sampler = asyncio.create_task(sample())
        jobs = asyncio.gather(*(video(i) for i in range(videos)))
        await asyncio.sleep(1.0)
        loaded = await asyncio.to_thread(wrk, url, key, queries, seconds)
        outcomes = await jobs
        sampling = False
        await sampler
        # Alone again once every video is stored, so that a slow minute of this shared machine during the first
        # run alone does not flatter the ratio. The searches cached before the downloads have expired by then;
        # they are warmed again first, as before the first run.
        await warm_searches(base, key, sorted(set(queries)))
        await asyncio.to_thread(wrk, url, key, queries, 2)
        after = await asyncio.to_thread(wrk, url, key, queries, seconds)
    done = [seconds_taken for seconds_taken, status in outcomes if status == "succeeded"]
    return {
        "videos": videos,
        "succeeded": len(done),
        "video_mb": 50,
        "videos_done_after_s": round(max(done), 2) if done else None,
        "alone": alone,
        "during_downloads": loaded,
        "alone_after": after,
        "p99_ratio": loaded["p99_ms"] / min(alone["p99_ms"], after["p99_ms"]),
        "max_rss_mb": round(max(samples), 1),
        "peak_rss_mb": memory_mb(pid)["peak_rss"],
    }


def server_environment(
    tmp: Path, base: str, fake: str, database_url: str | None, server_env: dict[str, str] | None
) -> dict[str, str]:
    """The environment of every process the bench starts: this one's less its SHOWME_ settings, the fake
    provider, a fresh SQLite file (or ``database_url``) and media folder under ``tmp``, then ``server_env``."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("SHOWME_")},
        "PYTHONPATH": str(REPO),
        "REPLICATE_API_TOKEN": "r8_test_token",
        "REPLICATE_BASE_URL": fake,
        "SHOWME_SECRET_KEY": SECRET,
        "SHOWME_DATABASE__URL": database_url or f"sqlite+aiosqlite:///{tmp / 'bench.db'}",
        "SHOWME_MEDIA__ROOT": str(tmp / "media"),
        "SHOWME_SERVER__PUBLIC_URL": base,
        "SHOWME_SERVER__ACCESS_LOG": "false",
        "SHOWME_LOG_LEVEL": "WARNING",
        # Rate limits stay on (their cost is part of every request) at limits wrk from one address never meets.
        "SHOWME_RATE_LIMITS__PER_ADDRESS": "1000000000/minute",
        "SHOWME_RATE_LIMITS__TOOL_CALLS_PER_ACCOUNT": "1000000000/minute",
        "SHOWME_RATE_LIMITS__API_PER_ACCOUNT": "1000000000/minute",
        **(server_env or {}),
    }


async def upgrade(database_url: str) -> None:
    """Bring a PostgreSQL bench database to the code's migrations (SQLite upgrades itself)."""
    from storage import migrate
    from storage.db import create_engine

    engine = create_engine(database_url)
    await migrate.upgrade(engine)
    await engine.dispose()


def bench_queries() -> list[str]:
    """The 200 product queries (a) cycles through (fixed seeds: the same in every run)."""
    return [
        f"{c} {m} {p}"
        for c, m, p in zip(
            random.Random(1).choices(COLORS, k=200),
            random.Random(2).choices(MATERIALS, k=200),
            random.Random(3).choices(PRODUCTS, k=200),
            strict=True,
        )
    ]


def stop(procs: list[subprocess.Popen[bytes]], tmp: Path) -> None:
    """SIGINT every process (SIGKILL after 10 s) and remove ``tmp`` unless SHOWME_BENCH_KEEP is set."""
    for proc in procs:
        proc.send_signal(signal.SIGINT)
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    if not os.environ.get("SHOWME_BENCH_KEEP"):
        shutil.rmtree(tmp, ignore_errors=True)


async def measure(
    only: str, quick: bool, ports: dict[str, int], pids: dict[str, int], account_id: int, key: str
) -> dict[str, Any]:
    """Run the measurements named in ``only`` (a-e) against the started processes; their results."""
    base, fake = f"http://127.0.0.1:{ports['showme']}", f"http://127.0.0.1:{ports['fake']}"
    queries = bench_queries()
    results: dict[str, Any] = {}
    if "a" in only:
        processes = {"bare": pids["bare"], "showme": pids["server"], "bare_uvloop": pids["bare_uvloop"]}
        results["a_show_product_image"] = await show_product_image(ports, processes, key, queries, quick)
        print("a", json.dumps(results["a_show_product_image"]), flush=True)
    if "b" in only:
        burst_pids = {"server": pids["server"], "fake provider": pids["fake"], "bench client": os.getpid()}
        results["b_generate_burst"] = await burst(base, key, fake, burst_pids, 100)
        print("b", json.dumps(results["b_generate_burst"]), flush=True)
    if "c" in only:
        results["c_time_to_screen"] = await time_to_screen(base, key, fake, 10 if quick else 30)
        print("c", json.dumps(results["c_time_to_screen"]), flush=True)
    if "d" in only:
        results["d_viewer_fan_out"] = await fan_out([base], key, account_id, 1000, 5 if quick else 10)
        print("d", json.dumps(results["d_viewer_fan_out"]), flush=True)
    if "e" in only:
        results["e_video_downloads"] = await video_downloads(base, key, fake, pids["server"], queries, quick)
        print("e", json.dumps(results["e_video_downloads"]), flush=True)
    return results


async def main(
    quick: bool, only: str = "abcde", database_url: str | None = None, server_env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Start the fake provider, the bare handlers and showme, seed a library, and measure ``only``."""
    if not shutil.which("wrk"):
        sys.exit("bench needs wrk (apt-get install wrk)")
    raise_nofile()
    tmp = Path(tempfile.mkdtemp(prefix="showme-bench-"))
    ports = {name: free_port() for name in ("fake", "bare", "bare_uvloop", "showme")}
    base, fake = f"http://127.0.0.1:{ports['showme']}", f"http://127.0.0.1:{ports['fake']}"
    env = server_environment(tmp, base, fake, database_url, server_env)
    if database_url:
        await upgrade(database_url)
    account_id, key = await seed(env, 10_000)
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, *args], env=env, cwd=tmp, stdout=subprocess.DEVNULL, preexec_fn=raise_nofile
        )
        procs.append(proc)
        return proc

    try:
        fake_process = start(
            "-m", "bench.fake_replicate", "--port", str(ports["fake"]), "--duration", "2", "--size", "1024",
            "--video-mb", "50",
        )
        bare_process = start("-m", "bench.bare", "--port", str(ports["bare"]))
        bare_uvloop_process = start("-m", "bench.bare", "--port", str(ports["bare_uvloop"]), "--loop", "uvloop")
        profile = ["-m", "cProfile", "-o", os.environ["BENCH_CPROFILE"]] if os.environ.get("BENCH_CPROFILE") else []
        server = start(*profile, "-m", "tools.cli", "serve", "--port", str(ports["showme"]))
        print(f"showme pid {server.pid} at {base}, data in {tmp}", flush=True)
        bare_urls = [f"http://127.0.0.1:{ports[name]}/" for name in ("bare", "bare_uvloop")]
        for url in (f"{fake}/bench/predictions", *bare_urls, f"{base}/healthz"):
            await wait_http(url)
        pids = {"server": server.pid, "fake": fake_process.pid, "bare": bare_process.pid,
                "bare_uvloop": bare_uvloop_process.pid}  # fmt: skip
        return await measure(only, quick, ports, pids, account_id, key)
    finally:
        stop(procs, tmp)


async def main_replicas(
    replicas: int, quick: bool, database_url: str | None = None, server_env: dict[str, str] | None = None
) -> dict[str, Any]:
    """(d) across ``replicas`` showme processes sharing one database and Redis (``SHOWME_BENCH_REDIS_URL``,
    default redis://127.0.0.1:6379/0): 1,000 viewers spread over them, tool calls on the first."""
    raise_nofile()
    tmp = Path(tempfile.mkdtemp(prefix="showme-bench-replicas-"))
    ports = [free_port() for _ in range(replicas)]
    fake_port = free_port()
    bases, fake = [f"http://127.0.0.1:{port}" for port in ports], f"http://127.0.0.1:{fake_port}"
    shared = {
        "SHOWME_EVENTS__BACKEND": "redis",
        "SHOWME_REDIS__URL": os.environ.get("SHOWME_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
        "SHOWME_REDIS__KEY_PREFIX": f"showme-bench-{os.getpid()}:",
        **(server_env or {}),
    }
    env = server_environment(tmp, bases[0], fake, database_url, shared)
    if database_url:
        await upgrade(database_url)
    account_id, key = await seed(env, 1000)
    procs: list[subprocess.Popen[bytes]] = []

    def start(args: list[str], **extra: str) -> None:
        procs.append(subprocess.Popen([sys.executable, *args], env={**env, **extra}, cwd=tmp,
                                      stdout=subprocess.DEVNULL, preexec_fn=raise_nofile))  # fmt: skip

    try:
        start(["-m", "bench.fake_replicate", "--port", str(fake_port)])
        for port, base in zip(ports, bases, strict=True):
            start(["-m", "tools.cli", "serve", "--port", str(port)], SHOWME_SERVER__PUBLIC_URL=base)
        for base in bases:
            await wait_http(f"{base}/readyz")
        print(f"{replicas} replicas at {', '.join(bases)}, data in {tmp}", flush=True)
        return {"d_viewer_fan_out_replicas": await fan_out(bases, key, account_id, 1000, 5 if quick else 10)}
    finally:
        stop(procs, tmp)


def report(r: dict[str, Any]) -> str:
    from bench.library import report as library_report

    a, b, c, d = r["a_show_product_image"], r["b_generate_burst"], r["c_time_to_screen"], r["d_viewer_fan_out"]
    e = r["e_video_downloads"]
    ours, bare = a["showme"], a["bare"]
    return "\n".join(
        [
            f"(a) show_product_image, 50 connections, 10,000 assets: {ours['rps']:.0f} req/s vs bare aiohttp "
            f"{bare['rps']:.0f} req/s -> ratio {a['ratio']:.2f} (target >= 0.5); "
            f"p50 {ours['p50_ms']:.1f} ms, p99 {ours['p99_ms']:.1f} ms (target <= 25); non-2xx {ours['non_2xx']}; "
            f"server CPU {ours['cpu_us_per_request']:.0f} vs {bare['cpu_us_per_request']:.0f} µs/request; "
            f"the bare handler on uvloop: {a['bare_uvloop']['rps']:.0f} req/s "
            f"({a['bare_uvloop']['cpu_us_per_request']:.0f} µs/request), ratio to it {a['ratio_to_bare_uvloop']:.2f}",
            f"(b) 100 concurrent generate_image, provider 2 s: {b['ready']}/{b['calls']} ready, "
            f"p50 {b['p50_s']:.2f} s, p99 {b['p99_s']:.2f} s (target <= 2.2); "
            f"server RSS {b['rss_mb']:.0f} MB, peak {b['peak_rss_mb']:.0f} MB, with its helper processes "
            f"{b['with_helpers_pss_mb']:.0f} MB PSS (target <= 300); "
            f"{b['creates']} creates, at most {b['max_creates_in_60s']} in any 60 s (limit 600)",
            f"(c) time-to-screen overhead over {c['rounds']} images: "
            f"p50 {c['p50_ms']:.1f} ms, p95 {c['p95_ms']:.1f} ms (target <= 50), max {c['max_ms']:.1f} ms",
            f"(d) {d['viewers']} viewers x {d['rounds']} events: {d['received']} received, "
            f"p50 {d['p50_ms']:.1f} ms, p99 {d['p99_ms']:.1f} ms (target <= 100)",
            f"(e) show_product_image p99 {e['alone']['p99_ms']:.1f} / {e['alone_after']['p99_ms']:.1f} ms alone "
            f"(before / after), {e['during_downloads']['p99_ms']:.1f} ms "
            f"while {e['succeeded']}/{e['videos']} videos of {e['video_mb']} MB downloaded (all done after "
            f"{e['videos_done_after_s']} s): {e['p99_ratio']:.2f}x (target <= 2); server RSS at most "
            f"{e['max_rss_mb']:.0f} MB meanwhile (target < 300)",
            library_report(r["f_library_listing"]),
        ]
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="abcdef", help="which measurements, e.g. 'ab' (default: all)")
    parser.add_argument(
        "--database-url", help="a PostgreSQL database (default: a fresh SQLite file); each run seeds a new account"
    )
    parser.add_argument(
        "--server-env", action="append", default=[], metavar="KEY=VALUE",
        help="a setting for the server, e.g. SHOWME_DATABASE__WRITER_PROCESS=false (repeatable)",
    )  # fmt: skip
    parser.add_argument("--out", default=str(REPO / "bench" / "results.json"))
    parser.add_argument(
        "--replicas", type=int, default=1,
        help="measure (d) across this many replicas sharing Redis (needs a Redis server; the other measurements "
        "run with one)",
    )  # fmt: skip
    options = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in options.server_env)
    if options.replicas > 1:
        outcome = asyncio.run(main_replicas(options.replicas, options.quick, options.database_url, overrides))
        d = outcome["d_viewer_fan_out_replicas"]
        print(f"(d) {d['viewers']} viewers on {d['replicas']} replicas x {d['rounds']} events: {d['received']} "
              f"received, p50 {d['p50_ms']:.1f} ms, p99 {d['p99_ms']:.1f} ms (target <= 100); "
              + "; ".join(f"replica {r['replica']}{' (tool calls)' if r['tool_calls_here'] else ''}: "
                          f"p99 {r['p99_ms']:.1f} ms" for r in d["by_replica"]))  # fmt: skip
        Path(REPO / "bench" / "results-replicas.json").write_text(json.dumps(outcome, indent=2) + "\n")
        sys.exit(0)
    outcome = asyncio.run(main(options.quick, options.only, options.database_url, overrides)) if options.only.strip(
        "f"
    ) else {}
    if "f" in options.only:
        from bench.library import in_server_loop, run

        outcome["f_library_listing"] = in_server_loop(run(100_000, 100 if options.quick else 200, options.database_url))
        print("f", json.dumps(outcome["f_library_listing"]), flush=True)
    if options.database_url:
        outcome["database"] = "postgresql"
        options.out = options.out.replace("results.json", "results-postgresql.json")
    if options.only == "abcdef":
        print(report(outcome))
        Path(options.out).parent.mkdir(parents=True, exist_ok=True)
        Path(options.out).write_text(json.dumps(outcome, indent=2) + "\n")
