"""`python -m samples.scheduler_mcp [--host H] [--port 5146] [--state PATH] [options]`.

Secrets come from the environment (`SCHEDULER_CLIENT_ID`, `SCHEDULER_API_KEY`,
`SCHEDULER_WEBHOOK_SECRET`); the flags of the same name override them, but a command line is
visible to other users of the machine, so prefer the environment.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import uvicorn

from samples.scheduler_mcp.config import SchedulerConfig
from samples.scheduler_mcp.errors import SettingsError
from samples.scheduler_mcp.server import Scheduler


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m samples.scheduler_mcp", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--port", type=int, default=5146)
    parser.add_argument("--state", type=Path, default=Path("scheduler.sqlite3"), help="SQLite file")
    parser.add_argument("--client-id", help="overrides SCHEDULER_CLIENT_ID")
    parser.add_argument("--api-key", help="overrides SCHEDULER_API_KEY")
    parser.add_argument("--webhook-secret", help="overrides SCHEDULER_WEBHOOK_SECRET (whsec_...)")
    parser.add_argument("--batch-size", type=int, default=50, help="items per callback")
    parser.add_argument("--tick-seconds", type=float, default=0.5, help="dispatcher interval")
    parser.add_argument("--max-attempts", type=int, default=8, help="before dead-lettering")
    parser.add_argument("--backoff-base-seconds", type=float, default=1.0)
    parser.add_argument("--backoff-cap-seconds", type=float, default=300.0)
    parser.add_argument("--request-timeout-seconds", type=float, default=10.0)
    parser.add_argument(
        "--log-level", default="info", choices=("debug", "info", "warning", "error")
    )
    return parser.parse_args(argv)


def config_from(args: argparse.Namespace) -> SchedulerConfig:
    return SchedulerConfig.from_env(
        os.environ,
        args.state,
        client_id=args.client_id,
        api_key=args.api_key,
        webhook_secret=args.webhook_secret,
        host=args.host,
        port=args.port,
        batch_size=args.batch_size,
        tick_seconds=args.tick_seconds,
        max_attempts=args.max_attempts,
        backoff_base_seconds=args.backoff_base_seconds,
        backoff_cap_seconds=args.backoff_cap_seconds,
        request_timeout_seconds=args.request_timeout_seconds,
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    # httpx2 logs every request URL at INFO, and a callback URL can carry a key (`?code=`).
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    try:
        config = config_from(args)
    except SettingsError as exc:
        sys.exit(f"scheduler: {exc}")
    scheduler = Scheduler(config)
    uvicorn.run(scheduler.app, host=config.host, port=config.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
