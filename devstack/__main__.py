"""`python -m devstack`: start everything the app needs locally, stop it all on Ctrl-C.

Starts Azurite (Blob), the demo MCP server (streamable HTTP on :8000), the offline model (:8099,
only when local.settings.json configures no other model) and the local Functions host (:7071).
Each is a child process; a port already in use is reported, not fought over.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".local"
OFFLINE_MODEL_URL = "http://127.0.0.1:8099/v1"
# Message lines the offline model turns into calls of the demo server's tools (seed 004's).
DEMO_TOOL_LINES = (
    '/tool demo__calculate {"operation": "multiply", "a": 15, "b": 8}',
    "/tool demo__get_weather {}",
    '/tool demo__save_text_file {"filename": "notes.txt", "content": "15 * 8 = 120"}',
    '/tool demo__get_knowledge_base {"question": "How many vacation days do I get?"}',
)


@dataclass
class Service:
    name: str
    port: int
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)


def local_settings() -> dict[str, str]:
    path = ROOT / "local.settings.json"
    if not path.exists():
        shutil.copy(ROOT / "local.settings.example.json", path)
        print(f"devstack: created {path.name} from local.settings.example.json")
    values = json.loads(path.read_text()).get("Values", {})
    return {**values, **{k: v for k, v in os.environ.items() if k in values}}


def uses_offline_model(values: dict[str, str]) -> bool:
    if values.get("AZURE_OPENAI_ENDPOINT"):
        return False
    return values.get("OPENAI_BASE_URL", "").rstrip("/") in ("", OFFLINE_MODEL_URL)


def services(port: int, values: dict[str, str]) -> list[Service]:
    py = sys.executable
    azurite = ROOT / "node_modules" / ".bin" / "azurite-blob"
    stack = [
        Service(
            "azurite",
            10000,
            [
                str(azurite),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                "10000",
                "--location",
                str(STATE / "azurite"),
                "--skipApiVersionCheck",
                "--disableTelemetry",
                "--loose",
            ],
        ),
        Service(
            "demo MCP server",
            8000,
            [py, "-m", "samples.demo_mcp", "--transport", "streamable-http", "--port", "8000"],
            {"DEMO_MCP_SANDBOX": str(STATE / "demo-sandbox")},
        ),
    ]
    if uses_offline_model(values):
        stack.append(Service("offline model", 8099, [py, "-m", "offline_model", "--port", "8099"]))
    stack.append(
        Service(
            "functions host",
            port,
            [
                py,
                "-m",
                "local_host",
                "--port",
                str(port),
                "--state",
                str(STATE / "durable.sqlite3"),
            ],
        )
    )
    return stack


def port_is_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for_port(service: Service, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not port_is_open(service.port):
        if process.poll() is not None:
            raise SystemExit(f"devstack: {service.name} exited with code {process.returncode}")
        if time.monotonic() > deadline:
            raise SystemExit(f"devstack: {service.name} did not listen on :{service.port}")
        time.sleep(0.1)


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in reversed(processes):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in reversed(processes):
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def chat_page_url(port: int) -> str:
    """The chat page (GET /api/ui): what a person opens first, so it is printed first."""
    return f"http://localhost:{port}/api/ui"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument("--port", type=int, default=7071, help="the Functions host's port")
    args = parser.parse_args()
    print(f"devstack: the chat page will be at {chat_page_url(args.port)}")
    STATE.mkdir(exist_ok=True)
    values = local_settings()
    stack = services(args.port, values)
    busy = [f"{s.name} (:{s.port})" for s in stack if port_is_open(s.port)]
    if busy:
        raise SystemExit(f"devstack: ports already in use: {', '.join(busy)}; stop what holds them")
    processes: list[subprocess.Popen[bytes]] = []
    # SIGTERM (e.g. from a process manager) stops everything too, like Ctrl-C.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        for service in stack:
            print(f"devstack: starting {service.name} on :{service.port}")
            # The venv first on PATH, so stdio MCP servers configured as `python -m ...` find
            # the packages installed by scripts/bootstrap.sh.
            path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
            env = {**os.environ, "PATH": path, **service.env}
            process = subprocess.Popen(service.command, cwd=ROOT, env=env)
            processes.append(process)
            wait_for_port(service, process, timeout=60)
        base = f"http://127.0.0.1:{args.port}/api"
        print(
            f"\nChat page: {chat_page_url(args.port)}\n"
            f"\nReady: {base}  (Ctrl-C stops everything)\n\n"
            f"  curl -s -X POST {base}/conversations\n"
            f"  curl -s -X POST {base}/conversations/<id>/messages \\\n"
            "       -H 'content-type: application/json' \\\n"
            '       -d \'{"content": "/tool demo__greet {\\"name\\": \\"Ada\\"}", "wait_seconds": 30}\'\n'
            "\n  Other demo tools, one line each in the message's content:\n"
            + "".join(f"    {line}\n" for line in DEMO_TOOL_LINES)
        )
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
        failed = next(s for s, p in zip(stack, processes, strict=False) if p.poll() is not None)
        print(f"devstack: {failed.name} stopped; stopping the rest")
    except KeyboardInterrupt:
        print("\ndevstack: stopping")
    finally:
        stop(processes)


if __name__ == "__main__":
    main()
