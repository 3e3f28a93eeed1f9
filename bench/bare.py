"""The baseline: a bare aiohttp handler that parses a JSON body and answers a small JSON object."""

from __future__ import annotations

import argparse

from aiohttp import web


async def handler(request: web.Request) -> web.Response:
    body = await request.json()
    return web.json_response(
        {"status": "shown", "query": body.get("query"), "asset_id": 1, "image_url": "http://127.0.0.1/media/x.webp"}
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_post("/tools/show_product_image", handler)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
