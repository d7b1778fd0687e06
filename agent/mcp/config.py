"""`MCP_SERVERS`: which MCP servers the agent uses, how to reach them, and what the model may call.

    {"mcp_servers": [{"name": "scheduler",
                      "transport": {"type": "streamable_http", "url": "http://127.0.0.1:5146/mcp"},
                      "auth": {"type": "api_key", "client_id": {"secret": "SCHEDULER-CLIENT-ID"},
                               "api_key": {"secret": "SCHEDULER-API-KEY"}},
                      "tools": {"allow": ["schedule_conversation"], "require_approval": []},
                      "pinned_arguments": {"schedule_conversation": {"endpoint": "${callback_url}"}},
                      "timeout_seconds": 30, "output_limit_chars": 16000,
                      "scheduling_requires_approval": true,
                      "destructive_requires_approval": true,
                      "idempotent_calls": false}]}

Parsing is strict: an unknown key, a wrong type or a bad value fails with a `SettingsError` that
names `MCP_SERVERS` and the place (`mcp_servers[0].auth.api_key`). Secret values are never read
here: `{"secret": NAME}` stays a reference, resolved at connect time through a `SecretResolver`.

The seed documents' shape is accepted too and normalised here into the same typed config, so
nothing downstream knows which shape was written:

    {"mcp": {"mcp_servers": [{"name": "Scheduler",
                              "transport": {"type": "http", "url": "https://host/mcp",
                                            "auth": {"client_id": "...", "api_key": "..."}}}]}}

`auth` inside `transport` takes the seeds' keys (`client_id` + `api_key`, or
`use_managed_identity: true` with a `scope`); one server giving `auth` in both places is refused.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from agent.errors import SettingsError

SETTING = "MCP_SERVERS"
SERVER_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,40}$")
HEADER_NAME_PATTERN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP token
PLACEHOLDER_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_OUTPUT_LIMIT_CHARS = 16_000
MIN_OUTPUT_LIMIT_CHARS = 200  # room for the truncation marker and some output
DEFAULT_CLIENT_ID_HEADER = "X-Client-ID"
DEFAULT_API_KEY_HEADER = "X-API-Key"
TRANSPORT_ALIASES = {
    "streamable_http": "streamable_http",
    "streamable-http": "streamable_http",
    "http": "streamable_http",
    "sse": "sse",
    "stdio": "stdio",
}


# --- secrets ---------------------------------------------------------------------------------


class SecretResolver(Protocol):
    """Looks a secret up by name (environment, Key Vault, ...)."""

    async def get(self, name: str) -> str: ...


class EnvSecretResolver:
    """Secrets from environment variables: `SCHEDULER-API-KEY` is read from `SCHEDULER_API_KEY`."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    async def get(self, name: str) -> str:
        variable = name.replace("-", "_")
        value = self._environ.get(variable)
        if not value:
            raise SettingsError(
                variable, f"secret {name!r} named in {SETTING} is not set (environment variable)"
            )
        return value


@dataclass(frozen=True)
class SecretValue:
    """A config string that may be secret: given inline, or `{"secret": NAME}` resolved later.

    Its repr never shows an inline value, so a config can be logged or put in an exception.
    """

    secret_name: str | None = None
    inline: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        if self.secret_name is not None:
            return f"SecretValue(secret={self.secret_name!r})"
        return "SecretValue(<inline, hidden>)"

    async def resolve(self, resolver: SecretResolver) -> str:
        if self.secret_name is not None:
            return await resolver.get(self.secret_name)
        assert self.inline is not None  # the parser sets exactly one of the two
        return self.inline


@runtime_checkable
class RefreshableSecretResolver(Protocol):
    """A resolver that caches, and can be told to forget a value (e.g. after a 401 with it)."""

    async def get(self, name: str) -> str: ...

    def invalidate(self, name: str) -> None: ...


def secret_names(config: McpServerConfig) -> frozenset[str]:
    """Every `{"secret": NAME}` the server's config uses (auth headers, keys, tokens, stdio env)."""
    values: list[SecretValue] = []
    auth = config.auth
    if isinstance(auth, HeadersAuth):
        values.extend(auth.headers.values())
    elif isinstance(auth, ApiKeyAuth):
        values.append(auth.api_key)
        if auth.client_id is not None:
            values.append(auth.client_id)
    elif isinstance(auth, BearerAuth):
        values.append(auth.token)
    if isinstance(config.transport, StdioTransport):
        values.extend(config.transport.env.values())
    return frozenset(v.secret_name for v in values if v.secret_name is not None)


def forget_secrets(resolver: SecretResolver, config: McpServerConfig) -> frozenset[str]:
    """Make the resolver re-read the server's secrets on the next connect; returns their names."""
    names = secret_names(config)
    if isinstance(resolver, RefreshableSecretResolver):
        for name in names:
            resolver.invalidate(name)
    return names


# --- transports ------------------------------------------------------------------------------


def _url_without_query(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{':' + str(parts.port) if parts.port else ''}{parts.path}"


@dataclass(frozen=True)
class StreamableHttpTransport:
    url: str

    def __repr__(self) -> str:  # a query string may carry a key: keep it out of logs
        return f"StreamableHttpTransport(url={_url_without_query(self.url)!r})"


@dataclass(frozen=True)
class SseTransport:
    url: str

    def __repr__(self) -> str:
        return f"SseTransport(url={_url_without_query(self.url)!r})"


@dataclass(frozen=True)
class StdioTransport:
    command: str
    args: tuple[str, ...] = ()
    env: Mapping[str, SecretValue] = field(default_factory=lambda: MappingProxyType({}))
    cwd: str | None = None


Transport = StreamableHttpTransport | SseTransport | StdioTransport


# --- auth ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoAuth:
    pass


@dataclass(frozen=True)
class HeadersAuth:
    headers: Mapping[str, SecretValue]


@dataclass(frozen=True)
class ApiKeyAuth:
    api_key: SecretValue
    client_id: SecretValue | None = None
    client_id_header: str = DEFAULT_CLIENT_ID_HEADER
    api_key_header: str = DEFAULT_API_KEY_HEADER


@dataclass(frozen=True)
class BearerAuth:
    token: SecretValue


@dataclass(frozen=True)
class ManagedIdentityAuth:
    scope: str


Auth = NoAuth | HeadersAuth | ApiKeyAuth | BearerAuth | ManagedIdentityAuth


# --- server ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolPolicy:
    allow: frozenset[str] | None = None  # None: every tool the server lists
    require_approval: frozenset[str] = frozenset()

    def allows(self, tool: str) -> bool:
        return self.allow is None or tool in self.allow


@dataclass(frozen=True)
class McpServerConfig:
    name: str
    transport: Transport
    auth: Auth = NoAuth()
    tools: ToolPolicy = ToolPolicy()
    # tool → argument → JSON value; strings may hold ${placeholders} filled per call.
    pinned_arguments: Mapping[str, Mapping[str, Any]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    output_limit_chars: int = DEFAULT_OUTPUT_LIMIT_CHARS
    # `circuit_breaker: {failures, cooldown_seconds}`; None: the pool's defaults.
    breaker_failures: int | None = None
    breaker_cooldown_seconds: float | None = None
    # The server applies a tool call at most once per idempotency key (the request's
    # `_meta.idempotency_key`), so a call cut off by a crash may be sent again.
    idempotent_calls: bool = False
    # A tool the server annotates `destructiveHint: true` needs a person's yes before it runs,
    # unless the operator turns that off for this server (`destructive_requires_approval`).
    destructive_requires_approval: bool = True

    def pinned_for(self, tool: str) -> Mapping[str, Any]:
        return self.pinned_arguments.get(tool, MappingProxyType({}))


# --- parsing ---------------------------------------------------------------------------------


def _fail(where: str, problem: str) -> SettingsError:
    return SettingsError(SETTING, f"{where}: {problem}")


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(where, f"must be a JSON object, not {_json_type(value)}")
    return value


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


def _only_keys(value: dict[str, Any], where: str, allowed: set[str]) -> None:
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise _fail(
            where, f"unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(allowed))}"
        )


def _required(value: dict[str, Any], key: str, where: str) -> Any:
    if key not in value:
        raise _fail(where, f"'{key}' is required")
    return value[key]


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(where, f"must be a non-empty string, not {_json_type(value)}")
    return value


def _secret(value: Any, where: str) -> SecretValue:
    if isinstance(value, dict):
        _only_keys(value, where, {"secret"})
        return SecretValue(secret_name=_text(_required(value, "secret", where), f"{where}.secret"))
    if isinstance(value, str) and value:
        return SecretValue(inline=value)
    raise _fail(where, 'must be a non-empty string or {"secret": NAME}')


def _string_list(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _fail(where, f"must be an array of strings, not {_json_type(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise _fail(f"{where}[{index}]", f"must be a string, not {_json_type(item)}")
    return tuple(value)


def _http_url(value: Any, where: str) -> str:
    url = _text(value, where)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _fail(where, "must be an http:// or https:// URL with a host")
    return url


def _private_channel(transport: Transport) -> bool:
    """HTTPS, or a loopback address: where a credential is not sent over a network in clear."""
    if isinstance(transport, StdioTransport):
        return True
    parts = urlsplit(transport.url)
    return parts.scheme == "https" or parts.hostname in ("localhost", "127.0.0.1", "::1")


def _parse_transport(value: Any, where: str) -> Transport:
    spec = _object(value, where)
    kind = _required(spec, "type", where)
    if kind not in TRANSPORT_ALIASES:
        raise _fail(f"{where}.type", f"{kind!r} is not one of streamable_http, sse, stdio")
    kind = TRANSPORT_ALIASES[kind]
    if kind in ("streamable_http", "sse"):
        _only_keys(spec, where, {"type", "url"})
        url = _http_url(_required(spec, "url", where), f"{where}.url")
        return StreamableHttpTransport(url) if kind == "streamable_http" else SseTransport(url)
    _only_keys(spec, where, {"type", "command", "args", "env", "cwd"})
    env = _object(spec.get("env", {}), f"{where}.env")
    cwd = spec.get("cwd")
    return StdioTransport(
        command=_text(_required(spec, "command", where), f"{where}.command"),
        args=_string_list(spec.get("args", []), f"{where}.args"),
        env=MappingProxyType({k: _secret(v, f"{where}.env.{k}") for k, v in env.items()}),
        cwd=None if cwd is None else _text(cwd, f"{where}.cwd"),
    )


def _header_name(value: Any, where: str) -> str:
    name = _text(value, where)
    if not HEADER_NAME_PATTERN.match(name):
        raise _fail(where, f"{name!r} is not a valid HTTP header name")
    return name


def _parse_auth(value: Any, where: str) -> Auth:
    if value is None:
        return NoAuth()
    spec = _object(value, where)
    kind = _required(spec, "type", where)
    if kind == "none":
        _only_keys(spec, where, {"type"})
        return NoAuth()
    if kind == "headers":
        _only_keys(spec, where, {"type", "headers"})
        headers = _object(_required(spec, "headers", where), f"{where}.headers")
        if not headers:
            raise _fail(f"{where}.headers", "must name at least one header")
        return HeadersAuth(
            MappingProxyType(
                {
                    _header_name(k, f"{where}.headers"): _secret(v, f"{where}.headers.{k}")
                    for k, v in headers.items()
                }
            )
        )
    if kind == "api_key":
        _only_keys(
            spec, where, {"type", "client_id", "api_key", "client_id_header", "api_key_header"}
        )
        client_id = spec.get("client_id")
        return ApiKeyAuth(
            api_key=_secret(_required(spec, "api_key", where), f"{where}.api_key"),
            client_id=None if client_id is None else _secret(client_id, f"{where}.client_id"),
            client_id_header=_header_name(
                spec.get("client_id_header", DEFAULT_CLIENT_ID_HEADER), f"{where}.client_id_header"
            ),
            api_key_header=_header_name(
                spec.get("api_key_header", DEFAULT_API_KEY_HEADER), f"{where}.api_key_header"
            ),
        )
    if kind == "bearer":
        _only_keys(spec, where, {"type", "token"})
        return BearerAuth(_secret(_required(spec, "token", where), f"{where}.token"))
    if kind == "managed_identity":
        _only_keys(spec, where, {"type", "scope"})
        return ManagedIdentityAuth(_text(_required(spec, "scope", where), f"{where}.scope"))
    raise _fail(
        f"{where}.type",
        f"{kind!r} is not one of none, headers, api_key, bearer, managed_identity",
    )


def _parse_tools(value: Any, where: str) -> ToolPolicy:
    if value is None:
        return ToolPolicy()
    spec = _object(value, where)
    _only_keys(spec, where, {"allow", "require_approval"})
    allow = spec.get("allow")
    allowed = None if allow is None else frozenset(_string_list(allow, f"{where}.allow"))
    approval = frozenset(
        _string_list(spec.get("require_approval", []), f"{where}.require_approval")
    )
    if allowed is not None and not approval <= allowed:
        missing = ", ".join(sorted(approval - allowed))
        raise _fail(f"{where}.require_approval", f"names tools that are not allowed: {missing}")
    return ToolPolicy(allowed, approval)


def _scheduling_approval(tools: ToolPolicy, value: Any, where: str) -> ToolPolicy:
    """Add `schedule_conversation` to the tools that need approval, unless turned off."""
    if not isinstance(value, bool):
        raise _fail(where, f"must be true or false, not {_json_type(value)}")
    if not value or not tools.allows(SCHEDULING_TOOL):
        return tools
    return ToolPolicy(tools.allow, tools.require_approval | {SCHEDULING_TOOL})


def placeholders_in(value: Any) -> set[str]:
    """The `${name}` placeholders used anywhere inside a pinned argument value."""
    if isinstance(value, str):
        return set(PLACEHOLDER_PATTERN.findall(value))
    if isinstance(value, Mapping):
        return set().union(*(placeholders_in(v) for v in value.values()))
    if isinstance(value, list | tuple):
        return set().union(*(placeholders_in(v) for v in value))
    return set()


def _check_placeholders(value: Any, where: str) -> None:
    if isinstance(value, str):
        stray = PLACEHOLDER_PATTERN.sub("", value)
        if "${" in stray:
            raise _fail(where, "has a malformed placeholder; write ${name} with a plain name")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_placeholders(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_placeholders(item, f"{where}[{index}]")


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _parse_pinned(value: Any, where: str, tools: ToolPolicy) -> Mapping[str, Mapping[str, Any]]:
    if value is None:
        return MappingProxyType({})
    spec = _object(value, where)
    pinned: dict[str, Mapping[str, Any]] = {}
    for tool, arguments in spec.items():
        if not tools.allows(tool):
            raise _fail(f"{where}.{tool}", "pins arguments of a tool that is not allowed")
        arguments = _object(arguments, f"{where}.{tool}")
        for argument, argument_value in arguments.items():
            _check_placeholders(argument_value, f"{where}.{tool}.{argument}")
        pinned[tool] = _freeze(arguments)
    return MappingProxyType(pinned)


def _positive_number(value: Any, where: str, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(where, f"must be a number, not {_json_type(value)}")
    if not math.isfinite(value) or value <= 0:
        raise _fail(where, "must be a positive number")
    return float(value)


def _output_limit(value: Any, where: str) -> int:
    if value is None:
        return DEFAULT_OUTPUT_LIMIT_CHARS
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(where, f"must be an integer, not {_json_type(value)}")
    if value < MIN_OUTPUT_LIMIT_CHARS:
        raise _fail(where, f"must be at least {MIN_OUTPUT_LIMIT_CHARS}")
    return value


SERVER_KEYS = {
    "name",
    "transport",
    "auth",
    "tools",
    "pinned_arguments",
    "timeout_seconds",
    "circuit_breaker",
    "output_limit_chars",
    "scheduling_requires_approval",
    "destructive_requires_approval",
    "idempotent_calls",
}
# A conversation scheduled by the model comes back later as a message in its conversation, so
# text injected into any tool result could return as an instruction: a person approves each
# scheduling by default. `"scheduling_requires_approval": false` on the server turns that off.
SCHEDULING_TOOL = "schedule_conversation"


# --- the seeds' shape ------------------------------------------------------------------------
# The seed documents wrap the list as {"mcp": {"mcp_servers": [...]}} and put a typeless `auth`
# inside `transport`. Each of their keys maps onto ours or is refused naming it: none is dropped.
SEED_WRAPPER = "mcp"
SEED_AUTH_KEYS = {"client_id", "api_key", "use_managed_identity", "scope"}
# Blocks that sit beside `mcp` in the seeds' config.json: app settings here. They are accepted
# (the seeds' file parses as written) but not read, and startup says so once with what to set
# instead (`read_mcp_servers`): a second source for the model or Key Vault would disagree.
SEED_APP_BLOCKS = {
    "model": "the model is set by app settings here: AZURE_OPENAI_ENDPOINT, AZURE_OPENAI_DEPLOYMENT "
    "(model_id), AZURE_OPENAI_API (v1, or legacy with AZURE_OPENAI_API_VERSION), "
    "AZURE_OPENAI_API_KEY (none: managed identity), MODEL_TEMPERATURE",
    "azure": "these are app settings here: key_vault_name -> KEYVAULT_URI "
    "(https://<name>.vault.azure.net), application_insights_connection_string -> "
    "APPLICATIONINSIGHTS_CONNECTION_STRING, use_managed_identity -> on whenever no key is set "
    "(AZURE_CLIENT_ID picks a user-assigned identity)",
}
# The seeds' scope rule: `use_managed_identity` sends an Azure Resource Manager token. That is
# what a seed user's server expects, so it is the default; but the server could replay the token
# against ARM, acting on Azure as this app, so startup warns and names the fix (`scope`).
SEED_MANAGED_IDENTITY_SCOPE = "https://management.azure.com/.default"


def _server_list(document: dict[str, Any]) -> tuple[Any, str]:
    """The servers array and where it sits: `mcp_servers`, or the seeds' `mcp.mcp_servers`."""
    if SEED_WRAPPER not in document:
        _only_keys(document, "the top level", {"mcp_servers"})
        return _required(document, "mcp_servers", "the top level"), "mcp_servers"
    if "mcp_servers" in document:
        raise _fail(
            "the top level",
            "gives 'mcp_servers' both at the top level and inside 'mcp' (the seeds' wrapper); "
            "keep one list",
        )
    _only_keys(document, "the top level", {SEED_WRAPPER, *SEED_APP_BLOCKS})
    wrapper = _object(document[SEED_WRAPPER], SEED_WRAPPER)
    _only_keys(wrapper, SEED_WRAPPER, {"mcp_servers"})
    return _required(wrapper, "mcp_servers", SEED_WRAPPER), "mcp.mcp_servers"


def _parse_seed_auth(value: Any, where: str) -> Auth:
    """The seeds' `transport.auth`: `client_id` + `api_key`, or `use_managed_identity: true`."""
    spec = _object(value, where)
    if "type" in spec:
        raise _fail(
            where,
            "mixes the two shapes: an auth with a 'type' goes beside 'transport' as 'auth'; "
            "inside 'transport' write the seeds' keys (client_id, api_key, use_managed_identity)",
        )
    _only_keys(spec, where, SEED_AUTH_KEYS)
    if _flag(spec.get("use_managed_identity"), f"{where}.use_managed_identity"):
        return _seed_managed_identity(spec, where)
    if "scope" in spec:
        raise _fail(f"{where}.scope", "applies only with use_managed_identity: true")
    if "api_key" in spec:
        client_id = spec.get("client_id")
        return ApiKeyAuth(
            api_key=_secret(spec["api_key"], f"{where}.api_key"),
            client_id=None if client_id is None else _secret(client_id, f"{where}.client_id"),
        )
    if "client_id" in spec:
        raise _fail(where, "has 'client_id' without 'api_key'")
    return NoAuth()


def _seed_managed_identity(spec: dict[str, Any], where: str) -> ManagedIdentityAuth:
    both = sorted({"client_id", "api_key"} & set(spec))
    if both:
        # The seeds choose between the two at run time (USE_AZURE_SERVICES); here one is chosen.
        raise _fail(
            where,
            f"has use_managed_identity: true and {', '.join(both)}; keep one way to authenticate",
        )
    scope = spec.get("scope", SEED_MANAGED_IDENTITY_SCOPE)  # the seeds' rule, warned at startup
    return ManagedIdentityAuth(_text(scope, f"{where}.scope"))


def _parse_server_auth(spec: dict[str, Any], where: str) -> tuple[Auth, str]:
    """The server's auth, from `auth` (ours) or `transport.auth` (the seeds'), never both."""
    transport = spec.get("transport")
    if not isinstance(transport, dict) or "auth" not in transport:
        outer = spec.get("auth")
        if isinstance(outer, dict) and "type" not in outer and set(outer) & SEED_AUTH_KEYS:
            raise _fail(
                f"{where}.auth",
                "mixes the two shapes: the seeds' keys (client_id, api_key, "
                "use_managed_identity) go inside 'transport' as 'auth'; beside 'transport' "
                "write this app's auth with a 'type'",
            )
        return _parse_auth(outer, f"{where}.auth"), f"{where}.auth"
    if "auth" in spec:
        raise _fail(
            where,
            "gives 'auth' both beside 'transport' (this app's shape) and inside it (the seeds' "
            "shape); keep one",
        )
    return _parse_seed_auth(transport["auth"], f"{where}.transport.auth"), f"{where}.transport.auth"


def _without_auth(transport: Any) -> Any:
    """The transport spec without the seeds' `auth` (parsed on its own)."""
    if isinstance(transport, dict):
        return {key: value for key, value in transport.items() if key != "auth"}
    return transport


def _parse_server(value: Any, where: str) -> McpServerConfig:
    spec = _object(value, where)
    name = spec.get("name")
    if isinstance(name, str) and name:
        where = f"{where} ({name})"
    _only_keys(spec, where, SERVER_KEYS)
    name = _text(_required(spec, "name", where), f"{where}.name")
    if not SERVER_NAME_PATTERN.match(name):
        raise _fail(f"{where}.name", "must be 1-40 characters from a-z, A-Z, 0-9, '_' and '-'")
    transport = _parse_transport(
        _without_auth(_required(spec, "transport", where)), f"{where}.transport"
    )
    auth, auth_where = _parse_server_auth(spec, where)
    if isinstance(transport, StdioTransport) and not isinstance(auth, NoAuth):
        raise _fail(
            auth_where,
            "applies to HTTP transports; give a stdio server its credentials in transport.env",
        )
    if isinstance(auth, ManagedIdentityAuth) and not _private_channel(transport):
        # An Entra token sent in the clear can be replayed by whoever sees it (an ARM token,
        # the seeds' default scope, acts on Azure as this app).
        raise _fail(
            auth_where,
            "sends a managed identity token: its URL must be https:// (or http:// on loopback)",
        )
    tools = _scheduling_approval(
        _parse_tools(spec.get("tools"), f"{where}.tools"),
        spec.get("scheduling_requires_approval", True),
        f"{where}.scheduling_requires_approval",
    )
    return McpServerConfig(
        name=name,
        transport=transport,
        auth=auth,
        tools=tools,
        pinned_arguments=_parse_pinned(
            spec.get("pinned_arguments"), f"{where}.pinned_arguments", tools
        ),
        timeout_seconds=_positive_number(
            spec.get("timeout_seconds"), f"{where}.timeout_seconds", DEFAULT_TIMEOUT_SECONDS
        ),
        output_limit_chars=_output_limit(
            spec.get("output_limit_chars"), f"{where}.output_limit_chars"
        ),
        **_parse_breaker(spec.get("circuit_breaker"), f"{where}.circuit_breaker"),
        idempotent_calls=_flag(spec.get("idempotent_calls"), f"{where}.idempotent_calls"),
        destructive_requires_approval=_on_unless_false(
            spec.get("destructive_requires_approval", True),
            f"{where}.destructive_requires_approval",
        ),
    )


def _flag(value: Any, where: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _fail(where, f"must be true or false, not {_json_type(value)}")
    return value


def _on_unless_false(value: Any, where: str) -> bool:
    """A safety switch that is on by default: only an explicit `false` turns it off (a `null`
    is refused rather than read as off)."""
    if not isinstance(value, bool):
        raise _fail(where, f"must be true or false, not {_json_type(value)}")
    return value


def _parse_breaker(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    spec = _object(value, where)
    _only_keys(spec, where, {"failures", "cooldown_seconds"})
    parsed: dict[str, Any] = {}
    if "failures" in spec:
        failures = spec["failures"]
        if isinstance(failures, bool) or not isinstance(failures, int) or failures < 1:
            raise _fail(f"{where}.failures", "must be a whole number of at least 1")
        parsed["breaker_failures"] = failures
    if "cooldown_seconds" in spec:
        parsed["breaker_cooldown_seconds"] = _positive_number(
            spec["cooldown_seconds"], f"{where}.cooldown_seconds", 0.0
        )
    return parsed


def _json_text(raw: str) -> str:
    """`MCP_SERVERS`' JSON text: the value itself, or the file it names."""
    if raw.lstrip().startswith(("{", "[")):
        return raw
    try:
        return Path(raw.strip()).read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(
            SETTING, f"is neither JSON nor a readable file ({exc.strerror})"
        ) from None


def _read_json(raw: str) -> Any:
    text = _json_text(raw)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsError(
            SETTING, f"is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None


def parse_mcp_servers(raw: str | None) -> tuple[McpServerConfig, ...]:
    """Parse `MCP_SERVERS` (JSON text, or the path of a JSON file); empty or None → no servers."""
    return read_mcp_servers(raw)[0]


def read_mcp_servers(raw: str | None) -> tuple[tuple[McpServerConfig, ...], tuple[str, ...]]:
    """The servers of `MCP_SERVERS`, and what startup says once about them (the seeds' blocks
    it does not read, servers sent an Azure Resource Manager token): one reading of the JSON."""
    if raw is None or not raw.strip():
        return (), ()
    document = _object(_read_json(raw), "the top level")
    servers = _servers_of(document)
    return servers, _notices(document, servers)


def _servers_of(document: dict[str, Any]) -> tuple[McpServerConfig, ...]:
    servers, where = _server_list(document)
    if not isinstance(servers, list):
        raise _fail(where, f"must be an array, not {_json_type(servers)}")
    configs = tuple(_parse_server(item, f"{where}[{i}]") for i, item in enumerate(servers))
    seen: set[str] = set()
    for index, config in enumerate(configs):
        if config.name in seen:
            raise _fail(f"{where}[{index}].name", f"{config.name!r} is used by another server")
        seen.add(config.name)
    return configs


def _notices(document: dict[str, Any], servers: tuple[McpServerConfig, ...]) -> tuple[str, ...]:
    notices = [
        f"{SETTING}: '{block}' is not read: {SEED_APP_BLOCKS[block]}"
        for block in sorted(set(document) & set(SEED_APP_BLOCKS))
    ]
    notices += [
        f"{SETTING}: server {config.name!r} is sent an Azure Resource Manager token "
        f"({SEED_MANAGED_IDENTITY_SCOPE}, the seeds' scope), which it could use to act on Azure "
        "as this app; set its transport.auth.scope to the server's own audience "
        "(e.g. 'api://<client-id>/.default')"
        for config in servers
        if config.auth == ManagedIdentityAuth(SEED_MANAGED_IDENTITY_SCOPE)
    ]
    return tuple(notices)
