"""`python -m samples.demo_mcp --transport {stdio,sse,streamable-http} [--host H] [--port N]`."""

from __future__ import annotations

import argparse

from samples.demo_mcp.server import build_server


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m samples.demo_mcp", description=__doc__)
    parser.add_argument("--transport", choices=("stdio", "sse", "streamable-http"), default="stdio")
    parser.add_argument("--host", default="127.0.0.1", help="interface for the HTTP transports")
    parser.add_argument("--port", type=int, default=8000, help="port for the HTTP transports")
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
