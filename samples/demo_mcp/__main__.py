"""`python -m samples.demo_mcp --transport {stdio,sse,streamable-http} [--host H] [--port N]
[--allow-remote]`.

SSE serves `/sse` (+ `/messages/`), streamable HTTP serves `/mcp`. The seed's `MCP_SSE_HOST` and
`MCP_SSE_PORT` environment variables set the defaults of `--host` and `--port`. The server has no
authentication and its file tools write to disk, so a host other than a loopback address (the
seeds set `MCP_SSE_HOST=0.0.0.0`) is refused unless `--allow-remote` is given.
"""

from __future__ import annotations

import argparse
import ipaddress
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
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="serve on a non-loopback host (the server authenticates no one: put it behind "
        "something that does)",
    )
    args = parser.parse_args(argv)
    if args.transport != "stdio" and not args.allow_remote and not is_loopback(args.host):
        parser.error(
            f"refusing to serve on {args.host!r} (from --host or ${HOST_ENV}): the demo server "
            "has no authentication and its save_text_file tool writes files, so anyone who can "
            "reach that interface could use it. Use 127.0.0.1, or pass --allow-remote if "
            "something in front of it authenticates callers."
        )
    return args


def is_loopback(host: str) -> bool:
    """Only this machine can reach the interface: `localhost` or a loopback address."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # another name: it may resolve to any interface


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
