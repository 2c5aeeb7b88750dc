"""Gateway configuration: the YAML section, SIDECAR_GATEWAY__*, the two short aliases, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.config import ConfigError, load_settings
from sidecar.gateway.settings import GatewaySettings, parse_upstream


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "SIDECAR_UPSTREAM",
        "SIDECAR_GATEWAY_LISTEN",
        "SIDECAR_GATEWAY__UPSTREAM",
        "SIDECAR_GATEWAY__LISTEN",
    ):
        monkeypatch.delenv(name, raising=False)


def test_gateway_is_off_until_an_upstream_is_configured() -> None:
    settings = load_settings(None, environ={})
    assert not settings.gateway.enabled
    assert settings.gateway.listen == "0.0.0.0:8080"


def test_short_environment_aliases_enable_the_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"SIDECAR_UPSTREAM": "http://127.0.0.1:3000", "SIDECAR_GATEWAY_LISTEN": "127.0.0.1:9000"}
    settings = load_settings(None, environ=env)
    assert settings.gateway.enabled
    assert settings.gateway.upstream == "http://127.0.0.1:3000"
    assert settings.gateway.listen == "127.0.0.1:9000"


def test_yaml_section_nested_env_and_aliases_in_order_of_precedence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "sidecar.yaml"
    config.write_text(
        "gateway:\n  upstream: http://127.0.0.1:1111\n  listen: 127.0.0.1:2222\n"
        "  drain_period: 3s\n  access_log: {sample_success: 0.25}\n  trusted_proxies: [10.0.0.0/8]\n"
    )
    settings = load_settings(config, environ={})
    assert settings.gateway.upstream == "http://127.0.0.1:1111"
    assert settings.gateway.drain_period == 3.0
    assert settings.gateway.access_log.sample_success == 0.25
    assert [str(n) for n in settings.gateway.trusted_proxies] == ["10.0.0.0/8"]
    # the short alias wins over the file ...
    settings = load_settings(config, environ={"SIDECAR_UPSTREAM": "http://127.0.0.1:3333"})
    assert settings.gateway.upstream == "http://127.0.0.1:3333"
    assert settings.gateway.listen == "127.0.0.1:2222"
    # ... and the full SIDECAR_GATEWAY__ form wins over both
    monkeypatch.setenv("SIDECAR_GATEWAY__UPSTREAM", "http://127.0.0.1:4444")
    settings = load_settings(config, environ={"SIDECAR_UPSTREAM": "http://127.0.0.1:3333"})
    assert settings.gateway.upstream == "http://127.0.0.1:4444"


@pytest.mark.parametrize(
    ("value", "fix"),
    [
        ("https://app:443", "TLS to the app is not supported"),
        ("http://127.0.0.1:3000/api", "remove the path"),
        ("http://user:pw@127.0.0.1:3000", "cannot carry credentials"),
        ("unix:relative.sock", "unix:/absolute/path.sock"),
        ("http://127.0.0.1:99999", "is not host:port"),
    ],
)
def test_bad_upstream_stops_start_up_naming_the_field_and_the_fix(
    tmp_path: Path, value: str, fix: str
) -> None:
    config = tmp_path / "sidecar.yaml"
    config.write_text(f"gateway:\n  upstream: '{value}'\n")
    with pytest.raises(ConfigError) as info:
        load_settings(config, environ={})
    (field, message), *_ = info.value.problems
    assert field == "gateway.upstream"
    assert fix in message


def test_unknown_gateway_key_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "sidecar.yaml"
    config.write_text("gateway:\n  upstreem: http://127.0.0.1:3000\n")
    with pytest.raises(ConfigError) as info:
        load_settings(config, environ={})
    assert info.value.problems[0][0] == "gateway.upstreem"


def test_upstream_forms() -> None:
    tcp = parse_upstream("http://127.0.0.1:3000")
    assert (tcp.host, tcp.port, tcp.unix_path, tcp.host_header) == (
        "127.0.0.1",
        3000,
        None,
        b"127.0.0.1:3000",
    )
    bare = parse_upstream("localhost:8000")
    assert (bare.host, bare.port) == ("localhost", 8000)
    default_port = parse_upstream("http://app")
    assert default_port.port == 80
    v6 = parse_upstream("http://[::1]:3000")
    assert (v6.host, v6.port) == ("::1", 3000)
    unix = parse_upstream("unix:/run/app.sock")
    assert unix.unix_path == "/run/app.sock"
    assert parse_upstream("unix:///run/app.sock").unix_path == "/run/app.sock"


def test_timeouts_must_be_positive() -> None:
    with pytest.raises(ValueError, match="read_timeout: must be greater than zero"):
        GatewaySettings(upstream="http://127.0.0.1:1", read_timeout=0)


def test_listen_port_zero_lets_the_kernel_pick() -> None:
    assert GatewaySettings(listen="127.0.0.1:0").listen == "127.0.0.1:0"
