"""The test fake of Replicate as a standalone plain-http server for benchmarks.

``python -m bench.fake_replicate --port P --duration 2 --size 1024 --video-mb 50``; ``GET /bench/predictions``
lists each prediction's create time and the wall-clock moment it succeeded."""

from __future__ import annotations

import argparse

from aiohttp import web

from tests.fakes.media import large_video
from tests.fakes.replicate import FakeReplicate, pooled_image


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--video-mb", type=int, default=50, help="size of every video output (MB)")
    args = parser.parse_args()
    fake = FakeReplicate(duration=args.duration, image_size=(args.size, args.size), plain_http_outputs=True)
    fake.video_bytes = large_video(args.video_mb)
    fake.base_url = fake.http_url = f"http://127.0.0.1:{args.port}"
    app = fake.app()
    pooled_image("warm-up", 0, "webp", fake.image_size)  # encode the pool before the clock starts

    async def predictions(request: web.Request) -> web.Response:
        return web.json_response(
            [{"id": p.id, "created": p.created_wall, "succeeded": p.succeeded_wall} for p in fake.predictions.values()]
        )

    async def configure(request: web.Request) -> web.Response:
        fake.duration = float((await request.json())["duration"])
        return web.json_response({"duration": fake.duration})

    app.router.add_get("/bench/predictions", predictions)
    app.router.add_post("/bench/configure", configure)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
