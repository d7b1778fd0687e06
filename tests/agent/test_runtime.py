"""The runtime: built from the settings (a model key secret read first), and degraded mode."""

from __future__ import annotations

import base64
import gc
import logging
import warnings
from collections.abc import Iterator

import pytest
from azure.core.exceptions import HttpResponseError

from agent import runtime
from agent.errors import InvalidSettings
from agent.runtime import build_runtime
from agent.settings import Settings
from devkit.azurite import ACCOUNT_KEY, AzuriteInstance
from devkit.fake_openai import TEST_API_KEY, TEST_DEPLOYMENT, fake_openai


async def test_the_runtime_reads_a_model_key_secret_before_it_builds_the_model_client(
    azurite: AzuriteInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODEL_KEY", TEST_API_KEY)  # no KEYVAULT_URI: the environment variable
    async with fake_openai() as model:
        model.brain.answer("hello")
        config = Settings.from_env(
            {
                "CONVERSATIONS_STORAGE": azurite.connection_string,
                "CONVERSATIONS_CONTAINER": "runtime-test",
                "OPENAI_BASE_URL": model.openai_base_url,
                "OPENAI_MODEL": TEST_DEPLOYMENT,
                "OPENAI_API_KEY": '{"secret": "MODEL-KEY"}',
            }
        )
        rt = await build_runtime(config)
        try:
            await rt.model.complete([{"role": "user", "content": "hi"}], [])
        finally:
            await rt.aclose()
    assert [r.bearer_token for r in model.chat_requests()] == [TEST_API_KEY]


@pytest.mark.parametrize(("setting", "lean"), [("lean", True), ("sdk", False)])
async def test_blob_requests_chooses_the_conversation_stores_request_path(
    azurite: AzuriteInstance, setting: str, lean: bool
) -> None:
    config = Settings.from_env(
        {
            "CONVERSATIONS_STORAGE": azurite.connection_string,
            "CONVERSATIONS_CONTAINER": "runtime-test",
            "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
            "OPENAI_MODEL": TEST_DEPLOYMENT,
            "OPENAI_API_KEY": TEST_API_KEY,
            "BLOB_REQUESTS": setting,
        }
    )
    rt = await build_runtime(config)
    try:
        assert rt.container.lean is lean  # type: ignore[attr-defined]
    finally:
        await rt.aclose()


@pytest.fixture
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Settings parsed anew from this test's environment, and forgotten afterwards."""
    runtime.use_runtime(None)
    yield monkeypatch
    runtime.use_runtime(None)


async def test_in_degraded_mode_the_runtime_is_never_built_and_says_what_is_wrong(
    fresh_settings: pytest.MonkeyPatch,
) -> None:
    fresh_settings.setenv("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    fresh_settings.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    fresh_settings.delenv("OPENAI_MODEL", raising=False)
    fresh_settings.delenv("AZURE_OPENAI_ENDPOINT", raising=False)
    assert runtime.check_settings() is None  # logged, not raised
    problem = runtime.settings_problem()
    assert problem is not None and problem.names == ("OPENAI_MODEL",)
    with pytest.raises(InvalidSettings, match="OPENAI_MODEL"):
        await runtime.runtime()
    assert runtime.current() is None


async def test_a_runtime_that_fails_to_build_leaves_no_client_open(
    azurite: AzuriteInstance,
) -> None:
    # A wrong account key: Azurite answers 403, as Azure does while a role assignment spreads.
    wrong_key = base64.b64encode(b"not the account key").decode()
    connection_string = azurite.connection_string.replace(ACCOUNT_KEY, wrong_key)
    config = Settings.from_env(
        {
            "CONVERSATIONS_STORAGE": connection_string,
            "CONVERSATIONS_CONTAINER": "runtime-fails",
            "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
            "OPENAI_MODEL": TEST_DEPLOYMENT,
            "OPENAI_API_KEY": TEST_API_KEY,
        }
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        failed = False
        try:
            await build_runtime(config)
        except HttpResponseError:
            failed = True  # the traceback (and whatever it holds) goes at the end of `except`
        gc.collect()  # a client left open says so when it is collected
    assert failed
    assert [str(w.message) for w in caught if "nclosed" in str(w.message)] == []


def test_a_seed_alias_set_beside_our_setting_is_warned_about_once_at_startup(
    fresh_settings: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fresh_settings.setenv("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    fresh_settings.setenv("AZURE_OPENAI_ENDPOINT", "https://example.openai.azure.com")
    fresh_settings.setenv("AZURE_OPENAI_DEPLOYMENT", "ours")
    fresh_settings.setenv("AZURE_OPENAI_DEPLOYMENT_NAME", "theirs")
    fresh_settings.delenv("OPENAI_BASE_URL", raising=False)
    fresh_settings.delenv("MCP_SERVERS", raising=False)
    caplog.set_level(logging.WARNING, logger="agent.runtime")

    config = runtime.check_settings()
    runtime.settings()  # later reads are quiet: the warning belongs to startup

    assert config is not None and config.model.model == "ours"
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(said) == 1 and "AZURE_OPENAI_DEPLOYMENT_NAME" in said[0]
