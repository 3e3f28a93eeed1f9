"""The baseline: a bare aiohttp handler that parses a JSON body and answers a small JSON object.

``--loop asyncio`` (the default: aiohttp as it comes, the issue's reference) or ``--loop uvloop`` (the event
loop ``showme serve`` runs on), so the bench can tell what uvloop gives any aiohttp server."""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web


async def handler(request: web.Request) -> web.Response:
    body = await request.json()
    return web.json_response(
        {"status": "shown", "query": body.get("query"), "asset_id": 1, "image_url": "http://127.0.0.1/media/x.webp"}
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    args = parser.parse_args()
    app = web.Application()
    app.router.add_post("/tools/show_product_image", handler)
    if args.loop == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None, loop=loop)


if __name__ == "__main__":
    main()
