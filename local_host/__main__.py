"""`python -m local_host`: serve a Python Functions app locally, with Durable Functions.

    python -m local_host [--app-dir DIR] [--port 7071] [--state PATH]
                         [--max-activities N] [--function-key KEY] [--system-key KEY]
                         [--host 127.0.0.1]

Once listening, one line goes to stdout: `local_host listening on <base url>` (logs go to
stderr). SIGINT/SIGTERM stop the host cleanly; the state file keeps in-flight orchestrations.
The process exits within `--shutdown-grace` seconds of the signal even if user code ignores
cancellation or blocks a thread (that work runs again after a restart, as after a crash).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from .errors import LocalHostError
from .host import DEFAULT_STATE_PATH, FUNCTION_KEY_VARIABLE, SYSTEM_KEY_VARIABLE, LocalHost

logger = logging.getLogger("local_host")

READY_PREFIX = "local_host listening on "
DEFAULT_SHUTDOWN_GRACE_SECONDS = 10.0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m local_host",
        description="Run an Azure Functions Python (v2) app with Durable Functions locally.",
    )
    parser.add_argument(
        "--app-dir",
        type=Path,
        default=Path.cwd(),
        help="directory of function_app.py (default: cwd)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="HTTP port (default: Host.LocalHttpPort or 7071; 0 = any)",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1; another needs a function key)",
    )
    parser.add_argument(
        "--state",
        type=Path,
        default=None,
        help=f"SQLite state file (default: <app-dir>/{DEFAULT_STATE_PATH})",
    )
    parser.add_argument(
        "--max-activities", type=int, default=None, help="concurrent activity limit (default 16)"
    )
    parser.add_argument(
        "--function-key",
        default=None,
        help=f"require this key for FUNCTION/ADMIN routes (default: ${FUNCTION_KEY_VARIABLE})",
    )
    parser.add_argument(
        "--system-key",
        default=None,
        help=f"the durable management API's key (default: ${SYSTEM_KEY_VARIABLE}, else random)",
    )
    parser.add_argument(
        "--shutdown-grace",
        type=float,
        default=DEFAULT_SHUTDOWN_GRACE_SECONDS,
        help="seconds from SIGTERM to exit, however busy (default: 10)",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    args = parser.parse_args(argv)
    if args.shutdown_grace <= 0:
        parser.error("--shutdown-grace must be positive")
    if args.max_activities is not None and args.max_activities < 1:
        parser.error("--max-activities must be at least 1")
    if args.port is not None and not 0 <= args.port <= 65535:
        parser.error("--port must be between 0 and 65535")
    return args


async def serve(args: argparse.Namespace) -> None:
    host = LocalHost(
        args.app_dir,
        port=args.port,
        bind_host=args.host,
        state_path=args.state,
        function_key=args.function_key,
        system_key=args.system_key,
        max_activities=args.max_activities,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Not available on Windows: there Ctrl+C cancels serve() and the finally block stops the host.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    await host.start()
    try:
        print(f"{READY_PREFIX}{host.base_url}", flush=True)
        await stop.wait()
        logger.info("Shutting down")
        exit_at_the_latest_after(args.shutdown_grace)
    finally:
        await host.stop()


def exit_at_the_latest_after(seconds: float) -> None:
    """A deadline for the rest of the shutdown: the host stop is bounded, but asyncio.run then
    waits for every task to honour its cancellation and for executor threads, and Python for
    non-daemon threads, all without a limit; user code can hold any of them."""

    def force_exit() -> None:
        logger.warning("Not stopped %.1f s after the signal: exiting now", seconds)
        logging.shutdown()
        os._exit(1)

    timer = threading.Timer(seconds, force_exit)
    timer.daemon = True
    timer.start()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    app_dir = args.app_dir.resolve()
    if args.state is not None:
        args.state = args.state.resolve()
    args.app_dir = app_dir
    with contextlib.suppress(FileNotFoundError):
        os.chdir(app_dir)  # like Core Tools: the app runs from its own directory
    try:
        asyncio.run(serve(args))
    except LocalHostError as exc:
        logger.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        logger.info("Stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
