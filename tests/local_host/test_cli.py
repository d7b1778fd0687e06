"""`python -m local_host`: options and start-up failures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from local_host.__main__ import parse_args

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_the_defaults_leave_port_state_and_limits_to_the_app_settings() -> None:
    args = parse_args([])
    assert (args.port, args.state, args.max_activities, args.host) == (
        None,
        None,
        None,
        "127.0.0.1",
    )


def test_options_are_read() -> None:
    args = parse_args(["--app-dir", "x", "--port", "0", "--state", "s.db", "--max-activities", "4"])
    assert (args.app_dir, args.port, args.state, args.max_activities) == (
        Path("x"),
        0,
        Path("s.db"),
        4,
    )


def test_an_invalid_activity_limit_is_refused() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--max-activities", "0"])


def test_a_directory_without_an_app_exits_with_a_clear_message(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    completed = subprocess.run(
        [sys.executable, "-m", "local_host", "--app-dir", str(tmp_path), "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=30,
        check=False,
    )
    assert completed.returncode == 1
    assert "function_app.py not found" in completed.stderr
    assert completed.stdout == ""
