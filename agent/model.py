"""The model client: one model call per `complete()` (chat completions, or the Responses API
with `MODEL_API=responses`: agent.model_responses), and the one place failures are classified
(`classify`), the same for both APIs.

Retries are not done here. The openai client is built with `max_retries=0` and each call makes
exactly one HTTP attempt; the orchestrator retries the activity (one retry layer: Durable's,
timed by agent.backoff), using the `TransientModelError` / `ContentFiltered` / `PermanentModelError`
split from `agent.errors`.

`openai` (~0.7 s to import) and `azure.identity` are imported inside the builder, not at module
level, so importing this module costs nothing at cold start.
"""

from __future__ import annotations

import datetime
import email.utils
import math
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from agent.errors import (
    ContentFiltered,
    ModelError,
    PermanentModelError,
    TransientModelError,
)
from agent.model_reply import REASONING_KEY as REASONING_KEY
from agent.model_reply import ModelReply as ModelReply
from agent.model_reply import ToolCall as ToolCall
from agent.model_reply import usage_from as usage_from
from agent.settings import ModelSettings

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential
    from openai import AsyncOpenAI

AZURE_OPENAI_SCOPE = "https://cognitiveservices.azure.com/.default"
CONNECT_TIMEOUT_SECONDS = 10.0
# An OpenAI-compatible server without auth (Ollama, vLLM) still needs *a* key for the client;
# passing one also stops openai from silently reading OPENAI_API_KEY from the environment.
NO_API_KEY = "no-key"
SERVICE_MESSAGE_LIMIT = 300
REDACTED = "[redacted]"

# --- the client ------------------------------------------------------------------------------


class ModelClient:
    """Long-lived: build once per worker with `build_model_client`, close with `aclose()`."""

    def __init__(
        self,
        openai_client: AsyncOpenAI,
        config: ModelSettings,
        *,
        owned_credential: AsyncTokenCredential | None = None,
    ) -> None:
        self._client = openai_client
        self.config = config
        self._owned_credential = owned_credential
        # Responses API: the model answered with reasoning items, so requests ask for them back
        # (`include` is refused by models that do not reason). Only with MODEL_REASONING=auto:
        # a fresh process learns it at the first reasoning step, whose items are then lost, so a
        # reasoning deployment sets `on`.
        self.reasoning_seen = False

    @property
    def uses_responses(self) -> bool:
        return self.config.model_api == "responses"

    async def complete(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        *,
        max_output_tokens: int | None = None,
    ) -> ModelReply:
        """One model call, one HTTP attempt. Raises a `ModelError` subclass on failure.
        `max_output_tokens` caps the completion below the configured cap (a run's budget)."""
        answer = await self._create(self._request(messages, tools, max_output_tokens))
        if self.uses_responses:
            return self.read_response(answer)
        return reply_from(answer, service=self.config.service_name)

    def read_response(self, response: Any) -> ModelReply:
        """A Responses API answer as our reply (noting whether the model reasons)."""
        from agent.model_responses import has_reasoning, reply_from_response

        self.reasoning_seen = self.reasoning_seen or has_reasoning(response)
        return reply_from_response(response, service=self.config.service_name)

    async def open_stream(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        *,
        max_output_tokens: int | None = None,
    ) -> Any:
        """Start a streamed answer (`stream: true`): a chat completion's chunks as JSON (usage
        in the last one) or a response's events, to read with `agent.model_stream`. A request the
        service refuses raises here, classified as `complete()`'s failures are."""
        request = self._request(messages, tools, max_output_tokens)
        request["stream"] = True
        if not self.uses_responses:
            request["stream_options"] = {"include_usage": True}
        return await self._create(request)

    async def _create(self, request: dict[str, Any]) -> Any:
        """The one call of the service; its failures become `ModelError`s."""
        try:
            if self.uses_responses:
                return await self._client.responses.create(**request)
            return await self._post_chat(request)
        except Exception as error:
            if not is_model_failure(error):
                raise
            # `from None`: the openai exception's text can carry request details, and Durable
            # stores the traceback; the original stays on __context__ for in-process debugging.
            raise classify(
                error, service=self.config.service_name, secrets=self._secrets()
            ) from None

    async def _post_chat(self, request: dict[str, Any]) -> Any:
        """`chat.completions.create(**request)` without its pass over the body: that pass
        walks every message and tool against the typed params (a union of six message types)
        to rename aliased keys and encode files, and chat params have neither, so on our plain
        JSON it returns the same body, for a cost that grows with the conversation. The same
        URL, headers and body (keys in create's order) as `create` (#16); a whole answer is
        openai's ChatCompletion, a streamed one chunks of JSON (agent.model_stream)."""
        from openai import AsyncStream
        from openai.types.chat import ChatCompletion

        return await self._client.post(
            "/chat/completions",
            body=in_create_order(request),
            cast_to=ChatCompletion,
            options={"security": {"bearer_auth": True}},  # what create asks for
            stream=bool(request.get("stream")),
            # Chunks as their JSON: agent.model_stream reads a few keys of each, and building
            # openai's typed chunk first (choices, delta, tool calls) cost more than the read.
            stream_cls=AsyncStream[object],
        )

    def _request(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        budget: int | None = None,
    ) -> dict[str, Any]:
        caps = [c for c in (self.config.max_output_tokens, budget) if c is not None]
        if self.uses_responses:
            from agent.model_responses import responses_request

            return responses_request(
                self.config.model,
                messages,
                tools,
                max_output_tokens=min(caps) if caps else None,
                temperature=self.config.temperature,
                reasoning=self._asks_for_reasoning(),
            )
        request: dict[str, Any] = {"model": self.config.model, "messages": chat_messages(messages)}
        if tools:
            # Only with tools: the service rejects parallel_tool_calls without them.
            request["tools"] = tools
            request["parallel_tool_calls"] = True
        if caps:
            # max_completion_tokens, not max_tokens: reasoning models reject the latter.
            # At least 1: the service refuses 0 (a run with nothing left stops before the step).
            request["max_completion_tokens"] = max(1, min(caps))
        if self.config.temperature is not None:
            request["temperature"] = self.config.temperature
        return request

    def _asks_for_reasoning(self) -> bool | None:
        """True: ask for reasoning items; False: never; None: if the history holds some."""
        if self.config.reasoning == "auto":
            return True if self.reasoning_seen else None
        return self.config.reasoning == "on"

    def _secrets(self) -> tuple[str, ...]:
        return (self.config.api_key.value,) if self.config.api_key else ()

    async def aclose(self) -> None:
        await self._client.close()
        if self._owned_credential is not None:
            await self._owned_credential.close()

    async def __aenter__(self) -> ModelClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


# The keys `chat.completions.create` writes, in the order it writes them (those we send).
CREATE_ORDER = (
    "model",
    "stream",
    "messages",
    "max_completion_tokens",
    "parallel_tool_calls",
    "stream_options",
    "temperature",
    "tools",
)


def in_create_order(request: dict[str, Any]) -> dict[str, Any]:
    """`request` with its keys in `create`'s order (any other key after them)."""
    ordered = {key: request[key] for key in CREATE_ORDER if key in request}
    ordered.update(request)
    return ordered


def chat_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages as chat completions takes them: without the Responses API's reasoning
    items (the service refuses keys it does not know)."""
    return [
        {k: v for k, v in m.items() if k != REASONING_KEY} if REASONING_KEY in m else m
        for m in messages
    ]


def build_model_client(
    config: ModelSettings, credential: AsyncTokenCredential | None = None
) -> ModelClient:
    """The client for `config` (its `{"secret": NAME}` key already read: see
    agent.secrets.resolve_model_key). Azure without an API key authenticates with Microsoft Entra
    ID through `credential` (an async credential; a DefaultAzureCredential is created, and owned
    by the client, when none is given). Azure's v1 API is the plain OpenAI client on
    `{endpoint}/openai/v1/`; `legacy` is AsyncAzureOpenAI with the api-version."""
    if config.api_key_secret is not None:
        # Else the client would quietly fall back to managed identity.
        raise ValueError("the model key names a secret that was not read yet")
    import openai  # lazily: see the module docstring

    options: dict[str, Any] = {
        "timeout": openai.Timeout(
            config.timeout_seconds, connect=min(CONNECT_TIMEOUT_SECONDS, config.timeout_seconds)
        ),
        "max_retries": 0,  # one retry layer: Durable's (see the module docstring)
    }
    if config.kind == "openai":
        client = openai.AsyncOpenAI(
            base_url=config.endpoint,
            api_key=config.api_key.value if config.api_key else NO_API_KEY,
            **options,
        )
        return ModelClient(client, config)
    if config.azure_api == "v1":
        return _azure_v1_client(openai, config, credential, options)
    if config.api_key:
        azure_client = openai.AsyncAzureOpenAI(
            azure_endpoint=config.endpoint,
            api_version=config.api_version,
            api_key=config.api_key.value,
            **options,
        )
        return ModelClient(azure_client, config)
    from azure.identity.aio import get_bearer_token_provider

    owned: AsyncTokenCredential | None = None
    if credential is None:
        from azure.identity.aio import DefaultAzureCredential

        credential = owned = DefaultAzureCredential()
    azure_client = openai.AsyncAzureOpenAI(
        azure_endpoint=config.endpoint,
        api_version=config.api_version,
        azure_ad_token_provider=get_bearer_token_provider(credential, AZURE_OPENAI_SCOPE),
        **options,
    )
    return ModelClient(azure_client, config, owned_credential=owned)


def _azure_v1_client(
    openai: Any,
    config: ModelSettings,
    credential: AsyncTokenCredential | None,
    options: dict[str, Any],
) -> ModelClient:
    """Azure's v1 API: no api-version, the deployment as `model`. A key goes in Azure's
    `api-key` header (and as the bearer key, which the client always sends and v1 accepts);
    without one, an Entra ID token from `credential`, asked for before each request (the
    provider caches it and refreshes it before it expires)."""
    base_url = config.endpoint.rstrip("/") + "/openai/v1/"
    if config.api_key:
        key = config.api_key.value
        client = openai.AsyncOpenAI(
            base_url=base_url, api_key=key, default_headers={"api-key": key}, **options
        )
        return ModelClient(client, config)
    from azure.identity.aio import get_bearer_token_provider

    owned: AsyncTokenCredential | None = None
    if credential is None:
        from azure.identity.aio import DefaultAzureCredential

        credential = owned = DefaultAzureCredential()
    client = openai.AsyncOpenAI(
        base_url=base_url,
        api_key=get_bearer_token_provider(credential, AZURE_OPENAI_SCOPE),
        **options,
    )
    return ModelClient(client, config, owned_credential=owned)


# --- reading a completion --------------------------------------------------------------------


def reply_from(completion: Any, *, service: str) -> ModelReply:
    """A `ModelReply` from an openai ChatCompletion; a filtered completion raises."""
    choices = getattr(completion, "choices", None)
    if not isinstance(choices, list) or not choices:
        raise PermanentModelError(
            f"{service} did not answer with a chat completion (no choices): check the endpoint URL"
        )
    choice = choices[0]
    if choice.finish_reason == "content_filter":
        categories = filtered_categories(getattr(choice, "content_filter_results", None))
        raise ContentFiltered(f"{service}'s content filter blocked the completion{categories}")
    return ModelReply(
        content=choice.message.content,
        tool_calls=[tool_call_from(call, service) for call in choice.message.tool_calls or []],
        finish_reason=str(choice.finish_reason),
        usage=usage_from(getattr(completion, "usage", None)),
        model=str(getattr(completion, "model", "") or ""),
    )


def tool_call_from(call: Any, service: str) -> ToolCall:
    if getattr(call, "type", None) != "function":
        raise PermanentModelError(f"{service} proposed an unsupported tool call type: {call.type}")
    return ToolCall(id=call.id, name=call.function.name, arguments=call.function.arguments)


def filtered_categories(results: Any) -> str:
    """ " (categories: hate, violence)" from Azure's content_filter_results, or ""."""
    if not isinstance(results, Mapping):
        return ""
    flagged = sorted(
        name
        for name, verdict in results.items()
        if isinstance(verdict, Mapping) and verdict.get("filtered")
    )
    return f" (categories: {', '.join(flagged)})" if flagged else ""


# --- failure classification: the one place -------------------------------------------------


def is_model_failure(error: BaseException) -> bool:
    """Errors `classify` understands: openai's, and Entra ID token failures."""
    import openai

    return isinstance(error, openai.OpenAIError) or is_token_failure(error)


def classify(
    error: BaseException, *, service: str = "the model endpoint", secrets: Iterable[str] = ()
) -> ModelError:
    """The `agent.errors.ModelError` for a failed model call. Messages are built here, never
    copied from the exception's str (it can include request details): no keys, no headers."""
    import openai

    if isinstance(error, ModelError):
        return error
    if isinstance(error, openai.APITimeoutError):
        return TransientModelError(f"{service} did not answer in time ({origin(error.request)})")
    if isinstance(error, openai.APIConnectionError):
        return TransientModelError(f"could not connect to {service} ({origin(error.request)})")
    if isinstance(error, openai.APIStatusError):
        return classify_status(
            error.status_code, error.body, error.response.headers, service=service, secrets=secrets
        )
    if isinstance(error, openai.ContentFilterFinishReasonError):
        return ContentFiltered(f"{service}'s content filter blocked the completion")
    if is_token_failure(error):
        return PermanentModelError(
            f"could not get a Microsoft Entra ID token for {service} ({type(error).__name__}): "
            "check the managed identity and its role assignment"
        )
    return PermanentModelError(f"the call to {service} failed ({type(error).__name__})")


def is_token_failure(error: BaseException) -> bool:
    try:
        from azure.core.exceptions import ClientAuthenticationError
    except ImportError:  # azure-core absent: no credential can have failed
        return False
    return isinstance(error, ClientAuthenticationError)


def classify_status(
    status: int,
    body: object,
    headers: Mapping[str, str],
    *,
    service: str = "the model endpoint",
    secrets: Iterable[str] = (),
) -> ModelError:
    """Classify an HTTP error answer. `body` is the `error` object (openai unwraps it)."""
    error = body if isinstance(body, Mapping) else {}
    code = str(error.get("code") or "")
    inner = error.get("innererror")
    inner = inner if isinstance(inner, Mapping) else {}
    said = service_message(error.get("message"), secrets)
    if status == 400 and (
        code == "content_filter" or inner.get("code") == "ResponsibleAIPolicyViolation"
    ):
        categories = filtered_categories(inner.get("content_filter_result"))
        return ContentFiltered(f"{service}'s content filter blocked the prompt{categories}")
    if status == 429:
        wait = retry_after_seconds(headers)
        hint = f"; retry after {wait:g} s" if wait is not None else ""
        return TransientModelError(f"{service} is rate limiting requests (429){hint}", wait)
    if status in (408, 409) or status >= 500:
        return TransientModelError(f"{service} failed ({status}{f' {code}' if code else ''})")
    if status == 401:
        # No service text: OpenAI's 401 quotes part of the key it received.
        return PermanentModelError(
            f"{service} rejected the credentials (401): check the API key or managed identity"
        )
    if status == 403:
        return PermanentModelError(f"{service} denied access (403): {said}")
    if status == 404:
        return PermanentModelError(
            f"{service}: deployment or model not found (404), or wrong endpoint or API "
            f"version: {said}"
        )
    return PermanentModelError(f"bad request ({status}) to {service}: {said}")


def service_message(message: object, secrets: Iterable[str]) -> str:
    """The service's own error text, truncated, with any secret we hold cut out."""
    text = str(message) if message else "no message"
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    if len(text) > SERVICE_MESSAGE_LIMIT:
        text = text[:SERVICE_MESSAGE_LIMIT] + "…"
    return text


def retry_after_seconds(
    headers: Mapping[str, str], now: Callable[[], float] = time.time
) -> float | None:
    """Seconds to wait, from `retry-after-ms` (Azure) or `retry-after` (seconds or HTTP date)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    milliseconds = parse_non_negative(lowered.get("retry-after-ms"))
    if milliseconds is not None:
        return milliseconds / 1000
    value = lowered.get("retry-after")
    if value is None:
        return None
    seconds = parse_non_negative(value)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" dates parse naive; HTTP dates are always UTC
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - now())


def parse_non_negative(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def origin(request: Any) -> str:
    """scheme://host:port of a request: where, without path, query or headers."""
    url = getattr(request, "url", None)
    if url is None:
        return "unknown host"
    port = f":{url.port}" if url.port else ""
    return f"{url.scheme}://{url.host}{port}"
