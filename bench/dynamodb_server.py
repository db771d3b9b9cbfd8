"""`python -m bench.dynamodb_server`: moto's DynamoDB (`relay.local.serve_moto`) as a process of
its own, so that its CPU is measured apart from the harness's and relay's.

moto serves through werkzeug's development server, which closes the connection after every
answer (`Connection: close`, hard-coded in `werkzeug.serving`), so each table call would cost
its caller a new TCP connection, which DynamoDB (HTTP/1.1 keep-alive) does not. A keep-alive
front on 127.0.0.1 (aiohttp, in this process) passes each call on to moto unchanged, signed
headers and body as they came, and moto's answer back: relay's connections stay open as they
would against DynamoDB, and the front's CPU is counted with moto's (`--no-keep-alive` serves
moto directly, as before).

Prints `dynamodb listening on URL`; each `calls ID` line on stdin is answered with a line
`calls ID {"PutItem": n, ...}` (the calls served so far, by operation); exits when stdin closes.
"""

import argparse
import asyncio
import contextlib
import json
import sys
import threading
from collections.abc import Iterator
from typing import Final

import aiohttp
from aiohttp import web

from relay.local import HOST, serve_moto

KEPT_HEADERS: Final = frozenset({"content-type", "x-amzn-requestid", "x-amz-crc32"})


@contextlib.contextmanager
def keep_alive_front(target_url: str) -> Iterator[str]:
    """An aiohttp server on a free loopback port forwarding every POST to `target_url`."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    url: list[str] = []
    stop = asyncio.Event()

    async def serve() -> None:
        async with aiohttp.ClientSession() as client:

            async def forward(request: web.Request) -> web.Response:
                headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
                body = await request.read()
                async with client.post(target_url, data=body, headers=headers) as answer:
                    kept = {k: v for k, v in answer.headers.items() if k.lower() in KEPT_HEADERS}
                    return web.Response(
                        body=await answer.read(), status=answer.status, headers=kept
                    )

            app = web.Application()
            app.router.add_post("/", forward)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, HOST, 0)
            await site.start()
            url.append(f"http://{HOST}:{runner.addresses[0][1]}")
            started.set()
            await stop.wait()
            await runner.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    started.wait(timeout=30)
    try:
        yield url[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=5)


def main() -> None:
    """Serve until stdin closes."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-keep-alive", action="store_true", help="serve moto directly")
    options = parser.parse_args()
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(serve_moto("dynamodb"))
        url = server.url
        if not options.no_keep_alive:
            url = stack.enter_context(keep_alive_front(server.url))
        print(f"dynamodb listening on {url}", flush=True)
        for line in sys.stdin:
            command, _, ident = line.strip().partition(" ")
            if command == "calls":
                # Read between runs, when no call is being served: the counter is not changing.
                print(f"calls {ident} {json.dumps(dict(server.calls))}", flush=True)


if __name__ == "__main__":
    main()
