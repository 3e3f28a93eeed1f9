"""A benchmark viewer process: opens N viewer sockets, prints READY, then prints, as one JSON line, the
wall-clock receipt times of the next R events on every socket."""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp


async def main(url: str, count: int, rounds: int) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        sockets = []
        for start in range(0, count, 50):
            batch = await asyncio.gather(*(http.ws_connect(url) for _ in range(start, min(count, start + 50))))
            await asyncio.gather(*(ws.receive_json() for ws in batch))  # history
            sockets.extend(batch)

        async def collect(ws: aiohttp.ClientWebSocketResponse) -> list[float]:
            times = []
            for _ in range(rounds):
                await ws.receive_str(timeout=30)
                times.append(time.time())
            return times

        tasks = [asyncio.create_task(collect(ws)) for ws in sockets]
        print("READY", flush=True)
        received = await asyncio.gather(*tasks)
        print(json.dumps(received), flush=True)
        await asyncio.gather(*(ws.close() for ws in sockets))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--rounds", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(main(args.url, args.count, args.rounds))
