"""Peer of the gateway benchmark: an aiohttp server whose webhook handler reads the body and
answers 200, nothing else (the ceiling of the HTTP stack). Usage: bare_aiohttp.py PORT"""

from __future__ import annotations

import sys

from aiohttp import web


async def accept(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"accepted": 1})


async def ready(request: web.Request) -> web.Response:
    return web.json_response({"status": "ready"})


def main() -> int:
    app = web.Application()
    app.router.add_post("/webhooks/{channel}", accept)
    app.router.add_get("/readyz", ready)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
