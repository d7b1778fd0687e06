"""`python -m offline_model --port 8099`: serve the offline model until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os

from offline_model.brains import OfflineBrain
from offline_model.server import ModelServer

DEFAULT_DEPLOYMENT = "offline"
DEFAULT_API_VERSION = "2024-10-21"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m offline_model",
        description="A local, deterministic model in Azure OpenAI's REST shapes (chat, responses).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default loopback)")
    parser.add_argument("--port", type=int, default=8099, help="port (0 picks a free one)")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("OFFLINE_MODEL_API_KEY"),
        help="the only key accepted (default: env OFFLINE_MODEL_API_KEY, else any key)",
    )
    return parser.parse_args(argv)


def banner(server: ModelServer) -> str:
    # Printed settings use the names the app reads (see local.settings.example.json).
    key = "<the --api-key value>" if server.api_key else "<any value>"
    return "\n".join(
        [
            f"offline model listening on {server.base_url}",
            "Point the app at it with either:",
            f"  AZURE_OPENAI_ENDPOINT={server.base_url}  AZURE_OPENAI_DEPLOYMENT="
            f"{DEFAULT_DEPLOYMENT}  AZURE_OPENAI_API=v1  AZURE_OPENAI_API_KEY={key}",
            "  (MODEL_API=responses for the Responses API; AZURE_OPENAI_API=legacy with "
            f"AZURE_OPENAI_API_VERSION={DEFAULT_API_VERSION} for the api-version'd routes)",
            f"  OPENAI_BASE_URL={server.openai_base_url}  OPENAI_MODEL={DEFAULT_DEPLOYMENT}",
            "Press Ctrl+C to stop.",
        ]
    )


async def serve(args: argparse.Namespace) -> None:
    async with ModelServer(
        OfflineBrain(), api_key=args.api_key, host=args.host, port=args.port
    ) as server:
        print(banner(server), flush=True)
        await asyncio.Event().wait()  # until cancelled by Ctrl+C / SIGTERM


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
