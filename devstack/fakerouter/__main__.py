"""``python -m devstack.fakerouter --host 127.0.0.1 --port N``: serve until SIGINT/SIGTERM.

Prints ``fakerouter listening on http://HOST:PORT/api/v1`` once ready (port 0 = a free one),
which is the line launchers wait for.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from .server import start_server


async def _serve(host: str, port: int, access_log: bool) -> None:
    runner, base_url = await start_server(host, port, access_log=access_log)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(f"fakerouter listening on {base_url}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.fakerouter", description="A local OpenRouter-compatible upstream for tests and the demo."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    parser.add_argument("--access-log", action="store_true", help="log one line per request (no bodies, no keys)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.access_log else logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(_serve(args.host, args.port, args.access_log))


if __name__ == "__main__":
    main()
