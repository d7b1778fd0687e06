"""local.settings.json and host.json are read like Core Tools reads them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from local_host.errors import HostSettingsError
from local_host.settings import apply_values, read_host_config, read_local_settings


def _write(path: Path, data: object) -> None:
    path.write_text(json.dumps(data), encoding="utf-8")


def test_values_and_the_local_port_are_read(tmp_path: Path) -> None:
    _write(
        tmp_path / "local.settings.json", {"Values": {"A": "1"}, "Host": {"LocalHttpPort": 7199}}
    )
    settings = read_local_settings(tmp_path)
    assert settings.values == {"A": "1"}
    assert settings.local_http_port == 7199


def test_a_missing_file_means_no_values(tmp_path: Path) -> None:
    settings = read_local_settings(tmp_path)
    assert settings.values == {}
    assert settings.local_http_port is None


def test_an_environment_variable_already_set_wins_over_the_file() -> None:
    environ = {"A": "from-env"}
    apply_values({"A": "from-file", "B": "from-file"}, environ)
    assert environ == {"A": "from-env", "B": "from-file"}


def test_a_non_string_value_is_refused_with_its_name(tmp_path: Path) -> None:
    _write(tmp_path / "local.settings.json", {"Values": {"COUNT": 3}})
    with pytest.raises(HostSettingsError, match=r"Values\.COUNT"):
        read_local_settings(tmp_path)


def test_invalid_json_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "local.settings.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(HostSettingsError, match=r"local\.settings\.json"):
        read_local_settings(tmp_path)


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "local.settings.json").write_text('\ufeff{"Values": {"A": "1"}}', encoding="utf-8")
    assert read_local_settings(tmp_path).values == {"A": "1"}


def test_host_json_gives_route_prefix_hub_and_activity_limit(tmp_path: Path) -> None:
    _write(
        tmp_path / "host.json",
        {
            "version": "2.0",
            "extensions": {
                "http": {"routePrefix": "/v1/"},
                "durableTask": {"hubName": "MyHub", "maxConcurrentActivityFunctions": 4},
            },
        },
    )
    config = read_host_config(tmp_path)
    assert (config.route_prefix, config.hub_name, config.max_concurrent_activities) == (
        "v1",
        "MyHub",
        4,
    )


def test_host_json_defaults_match_the_functions_host(tmp_path: Path) -> None:
    config = read_host_config(tmp_path)
    assert (config.route_prefix, config.hub_name, config.max_concurrent_activities) == (
        "api",
        "TestHubName",
        None,
    )


def test_an_empty_route_prefix_is_allowed(tmp_path: Path) -> None:
    _write(tmp_path / "host.json", {"extensions": {"http": {"routePrefix": ""}}})
    assert read_host_config(tmp_path).route_prefix == ""
