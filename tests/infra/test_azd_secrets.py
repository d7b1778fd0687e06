"""scripts/azd_secrets.py (the azd preprovision hook) makes the Scheduler's secrets once."""

from __future__ import annotations

import importlib.util

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
