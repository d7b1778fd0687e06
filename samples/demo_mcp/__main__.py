"""`python -m samples.demo_mcp --transport {stdio,sse,streamable-http} [--host H] [--port N]`.

SSE serves `/sse` (+ `/messages/`), streamable HTTP serves `/mcp`. The seed's `MCP_SSE_HOST` and
`MCP_SSE_PORT` environment variables set the defaults of `--host` and `--port`.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping

from samples.demo_mcp.server import build_server

HOST_ENV, PORT_ENV = "MCP_SSE_HOST", "MCP_SSE_PORT"


def parse_args(
    argv: list[str] | None = None, environ: Mapping[str, str] | None = None
) -> argparse.Namespace:
    env = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(prog="python -m samples.demo_mcp", description=__doc__)
    parser.add_argument("--transport", choices=("stdio", "sse", "streamable-http"), default="stdio")
    parser.add_argument(
        "--host",
        default=env.get(HOST_ENV, "127.0.0.1"),
        help=f"interface for the HTTP transports (default ${HOST_ENV} or 127.0.0.1)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=env.get(PORT_ENV, "8000"),
        help=f"port for the HTTP transports (default ${PORT_ENV} or 8000)",
    )
    parser.add_argument("--sandbox", default=None, help="directory for the file tools")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    server = build_server(sandbox_dir=args.sandbox)
    if args.transport == "stdio":
        server.run()
    elif args.transport == "sse":
        server.run("sse", host=args.host, port=args.port)
    else:
        server.run("streamable-http", host=args.host, port=args.port)


if __name__ == "__main__":
    main()
