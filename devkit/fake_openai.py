"""A scripted Azure OpenAI on loopback, for tests that drive the real openai client.

    async with fake_openai() as fake:
        fake.brain.call_tools(("demo__add", {"a": 1, "b": 2})).answer("3")
        client = build_model_client(fake.azure_config())
        ...
        assert fake.chat_requests()[0].api_key == fake.api_key

Both Azure URL shapes are served (`/openai/deployments/{d}/chat/completions?api-version=`,
`/openai/v1/chat/completions`, `/openai/v1/responses`, `/openai/responses?api-version=`), and
every body is checked against the `openai` package's request types (offline_model.official):
a request the real service would refuse fails the test with a 400.

On a clean exit the context manager fails the test if a request found the script empty or the
brain raised (so a test cannot pass on a reply it never scripted).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from azure.core.credentials import AccessToken

from offline_model import Brain, ModelServer, RecordedRequest, ScriptedBrain

if TYPE_CHECKING:
    from agent.settings import ModelSettings

TEST_API_KEY = "test-key-0123456789abcdef"
TEST_DEPLOYMENT = "gpt-test"
TEST_API_VERSION = "2024-10-21"
TEST_RESPONSES_API_VERSION = "2025-04-01-preview"  # legacy + the Responses API (a preview)


def model_settings(*, api_key: str | None = None, **fields: Any) -> ModelSettings:
    """`ModelSettings` with a plain-text key (wrapped as the app's `Secret`)."""
    from agent.settings import ModelSettings, Secret

    return ModelSettings(api_key=None if api_key is None else Secret(api_key), **fields)


@dataclass
class FakeOpenAI:
    server: ModelServer
    brain: Any  # ScriptedBrain unless the test passed another brain
    api_key: str | None

    @property
    def base_url(self) -> str:
        """The Azure endpoint (what AZURE_OPENAI_ENDPOINT would be)."""
        return self.server.base_url

    @property
    def openai_base_url(self) -> str:
        """An OpenAI-compatible base URL (what OPENAI_BASE_URL would be)."""
        return self.server.openai_base_url

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every HTTP request received, rejected ones included."""
        return self.server.requests

    def chat_requests(self) -> list[RecordedRequest]:
        return self.server.chat_requests()

    def azure_config(self, **overrides: Any) -> ModelSettings:
        """Model settings for this server as Azure OpenAI (`api_key=None`: managed identity);
        `azure_api="v1"` (no api-version) or "legacy" (the default here), `model_api="chat"`
        or "responses"."""
        options = self._options(overrides)
        legacy = options.get("azure_api", "legacy") == "legacy"
        if legacy and options.get("model_api") == "responses":
            default_version = TEST_RESPONSES_API_VERSION
        else:
            default_version = TEST_API_VERSION if legacy else None
        return model_settings(
            kind="azure",
            endpoint=self.base_url,
            model=options.pop("deployment", TEST_DEPLOYMENT),
            api_version=options.pop("api_version", default_version),
            **options,
        )

    def openai_config(self, **overrides: Any) -> ModelSettings:
        """Model settings for this server as an OpenAI-compatible endpoint."""
        options = self._options(overrides)
        return model_settings(
            kind="openai",
            endpoint=options.pop("base_url", self.openai_base_url),
            model=options.pop("model", TEST_DEPLOYMENT),
            **options,
        )

    def _options(self, overrides: dict[str, Any]) -> dict[str, Any]:
        return {"api_key": self.api_key, "timeout_seconds": 5.0, **overrides}


@asynccontextmanager
async def fake_openai(
    brain: Brain | None = None,
    *,
    api_key: str | None = TEST_API_KEY,
    bearer_tokens: Iterable[str] | None = None,
    deployments: Iterable[str] | None = None,
) -> AsyncIterator[FakeOpenAI]:
    """Serve `brain` (a fresh ScriptedBrain by default) on an ephemeral loopback port."""
    brain = brain if brain is not None else ScriptedBrain()
    async with ModelServer(
        brain, api_key=api_key, bearer_tokens=bearer_tokens, deployments=deployments
    ) as server:
        yield FakeOpenAI(server=server, brain=brain, api_key=api_key)
        if server.brain_errors:
            raise server.brain_errors[0]
        unscripted = getattr(brain, "unscripted", 0)
        if unscripted:
            raise AssertionError(f"{unscripted} model request(s) found no scripted reply")


@dataclass
class FakeAsyncCredential:
    """Stands in for DefaultAzureCredential (Entra ID cannot run here): hands out `token`."""

    token: str = "entra-token-for-tests"
    scopes_requested: list[tuple[str, ...]] = field(default_factory=list)
    closed: bool = False

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes_requested.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)

    async def close(self) -> None:
        self.closed = True

    async def __aenter__(self) -> FakeAsyncCredential:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
