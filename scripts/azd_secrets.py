"""azd preprovision hook: make the Scheduler's secrets once per azd environment.

azd passes the environment's values to hooks as environment variables. A value already set (by an
earlier run, or by `azd env set` when rotating) is kept; a missing one is generated and stored
with `azd env set`, so every later provision writes the same value to Key Vault.
Values are never printed.
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
from collections.abc import Mapping

API_KEY = "SCHEDULER_API_KEY"
WEBHOOK_SECRET = "SCHEDULER_WEBHOOK_SECRET"


def new_api_key() -> str:
    return secrets.token_urlsafe(32)


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def missing_secrets(environ: Mapping[str, str]) -> dict[str, str]:
    """New values for the secrets the environment does not have yet (empty counts as missing)."""
    makers = {API_KEY: new_api_key, WEBHOOK_SECRET: new_webhook_secret}
    return {name: make() for name, make in makers.items() if not environ.get(name, "").strip()}


def store(name: str, value: str) -> None:
    """`azd env set` the value; a failure names the setting only (CalledProcessError's text
    would carry the command line, value included, into the azd or CI log)."""
    done = subprocess.run(["azd", "env", "set", name, value], capture_output=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"azd_secrets: `azd env set {name}` failed (exit {done.returncode})")


def main() -> None:
    for name, value in missing_secrets(os.environ).items():
        store(name, value)
        print(f"azd_secrets: generated {name}")


if __name__ == "__main__":
    main()
