"""scripts/run.sh: the first thing it prints is the chat page's URL."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def first_line_of_run_sh(tmp_path: Path, *args: str) -> str:
    """run.sh from a copy whose bootstrap fails at once: what it printed before that."""
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    shutil.copy(ROOT / "scripts" / "run.sh", scripts / "run.sh")
    (scripts / "bootstrap.sh").write_text("#!/usr/bin/env bash\nexit 3\n")
    (scripts / "bootstrap.sh").chmod(0o755)
    done = subprocess.run(
        ["bash", str(scripts / "run.sh"), *args], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 3  # it stopped at the (fake) bootstrap, as set -e says
    return done.stdout.splitlines()[0]


@pytest.mark.parametrize(
    ("args", "url"),
    [
        ((), "http://localhost:7071/api/ui"),
        (("--port", "8123"), "http://localhost:8123/api/ui"),
        (("--port=9000",), "http://localhost:9000/api/ui"),
    ],
)
def test_run_sh_prints_the_chat_pages_url_first(tmp_path: Path, args: tuple[str, ...], url: str):
    assert first_line_of_run_sh(tmp_path, *args).startswith(f"Chat page: {url}")
