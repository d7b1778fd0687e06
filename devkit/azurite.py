"""Run the Azurite blob emulator (npm `azurite`) for tests and benchmarks.

    with start_azurite() as azurite:
        container = ContainerClient.from_connection_string(azurite.connection_string, "c")

Azurite listens on a port the OS picks (`--blobPort 0`); we read the port it reports and then
wait until it accepts connections. No fixed sleeps: both waits are bounded polls.
"""

from __future__ import annotations

import contextlib
import queue
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

REPO_ROOT = Path(__file__).resolve().parents[1]
AZURITE_BLOB = REPO_ROOT / "node_modules" / ".bin" / "azurite-blob"

ACCOUNT_NAME = "devstoreaccount1"
# The emulator's well-known, public account key (the same one azure-storage-blob ships).
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
HOST = "127.0.0.1"
STARTUP_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
_LISTENING = re.compile(rb"successfully listens on http://[^:]+:(\d+)")


class AzuriteError(RuntimeError):
    """Azurite could not be started."""


@dataclass
class AzuriteInstance:
    """A running Azurite blob service; use as a context manager or call `stop()`."""

    port: int
    process: subprocess.Popen[bytes]
    workdir: Path
    _output: list[bytes] = field(default_factory=list, repr=False)

    @property
    def blob_endpoint(self) -> str:
        return f"http://{HOST}:{self.port}/{ACCOUNT_NAME}"

    @property
    def connection_string(self) -> str:
        return (
            "DefaultEndpointsProtocol=http;"
            f"AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_endpoint};"
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        if self.process.stdout is not None:
            self.process.stdout.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> AzuriteInstance:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_azurite() -> AzuriteInstance:
    """Start Azurite's blob service in memory on a free loopback port and wait until it serves."""
    if not AZURITE_BLOB.exists():
        raise AzuriteError(f"{AZURITE_BLOB} is missing: run `npm ci` in {REPO_ROOT}")
    workdir = Path(tempfile.mkdtemp(prefix="azurite-"))
    process = subprocess.Popen(
        [
            str(AZURITE_BLOB),
            "--blobHost",
            HOST,
            "--blobPort",
            "0",
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--loose",
            # No access log: a line per request costs Azurite CPU, and this process's thread
            # that drains the pipe takes the GIL for each one (5-15% of a small request's CPU).
            "--silent",
        ],
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a Ctrl-C in the test run doesn't hit it before we stop it
    )
    instance = AzuriteInstance(port=0, process=process, workdir=workdir)
    try:
        instance.port = _wait_for_port(instance)
        _wait_until_accepting(instance)
    except BaseException:
        instance.stop()
        raise
    return instance


@contextlib.contextmanager
def azurite() -> Iterator[AzuriteInstance]:
    """`with azurite() as instance:` — started on entry, stopped on exit."""
    instance = start_azurite()
    try:
        yield instance
    finally:
        instance.stop()


def _wait_for_port(instance: AzuriteInstance) -> int:
    """Read Azurite's output (in a thread, so the wait is bounded) until it names its port."""
    lines: queue.Queue[bytes | None] = queue.Queue()
    stdout = instance.process.stdout
    assert stdout is not None

    def pump() -> None:
        # Keeps draining after startup too, so Azurite never blocks on a full pipe.
        for line in iter(stdout.readline, b""):
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, name="azurite-output", daemon=True).start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            break
        if line is None:
            raise AzuriteError(_failure("exited during startup", instance))
        instance._output.append(line)
        if match := _LISTENING.search(line):
            return int(match.group(1))
    raise AzuriteError(_failure(f"did not start within {STARTUP_TIMEOUT_SECONDS:.0f} s", instance))


def _wait_until_accepting(instance: AzuriteInstance) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if instance.process.poll() is not None:
            raise AzuriteError(_failure("exited during startup", instance))
        with contextlib.suppress(OSError), socket.create_connection((HOST, instance.port), 0.5):
            return
        time.sleep(0.02)  # bounded poll interval, not a wait for an event we could observe
    raise AzuriteError(_failure("never accepted connections", instance))


def _failure(problem: str, instance: AzuriteInstance) -> str:
    output = b"".join(instance._output).decode(errors="replace").strip()
    return f"Azurite ({AZURITE_BLOB}) {problem}. Its output:\n{output or '(none)'}"
