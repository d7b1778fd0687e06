"""scripts/azd_secrets.py (the azd preprovision hook) makes the Scheduler's secrets once."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from agent.webhooks import decode_secret
from tests.infra.bicep import ROOT

_spec = importlib.util.spec_from_file_location("azd_secrets", ROOT / "scripts" / "azd_secrets.py")
assert _spec is not None and _spec.loader is not None
azd_secrets = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(azd_secrets)


def test_missing_secrets_are_made_and_the_webhook_secret_is_what_both_sides_accept():
    made = azd_secrets.missing_secrets({})
    assert set(made) == {"SCHEDULER_API_KEY", "SCHEDULER_WEBHOOK_SECRET"}
    assert len(decode_secret(made["SCHEDULER_WEBHOOK_SECRET"])) == 32
    assert len(made["SCHEDULER_API_KEY"]) >= 40


def test_secrets_already_in_the_environment_are_kept():
    environ = {"SCHEDULER_API_KEY": "kept", "SCHEDULER_WEBHOOK_SECRET": " "}
    assert set(azd_secrets.missing_secrets(environ)) == {"SCHEDULER_WEBHOOK_SECRET"}


def test_a_failing_azd_env_set_names_the_setting_but_never_prints_the_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # azd cannot run here: a stand-in that fails as a CLI does, echoing its arguments.
    fake_azd = tmp_path / "azd"
    fake_azd.write_text('#!/bin/sh\necho "azd: cannot set $*" >&2\nexit 3\n')
    fake_azd.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("SCHEDULER_API_KEY", raising=False)
    monkeypatch.setenv("SCHEDULER_WEBHOOK_SECRET", "whsec_kept")
    made = azd_secrets.missing_secrets(os.environ)["SCHEDULER_API_KEY"]
    monkeypatch.setattr(azd_secrets, "new_api_key", lambda: made)
    with pytest.raises(SystemExit) as failed:
        azd_secrets.main()
    printed = capsys.readouterr()
    assert "SCHEDULER_API_KEY" in str(failed.value) and "exit 3" in str(failed.value)
    assert made not in f"{failed.value}{printed.out}{printed.err}"
