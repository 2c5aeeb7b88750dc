"""Admin exposure rules, /metrics credentials, constant-time checks and TLS settings."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient

from sidecar.cli import main, masked_config
from sidecar.config import ConfigError, Settings, load_settings
from sidecar.probing.health import HealthModel
from sidecar.probing.results import ResultStore
from sidecar.server import create_app
from sidecar.serving.admin_api import create_admin_app
from sidecar.serving.security import basic_matches, bearer_matches, is_loopback_host
from tests.certs import self_signed

pytestmark = pytest.mark.timeout(60)
AiohttpClient = Callable[[web.Application], Any]
TOKEN = "admin-token-0123456789abcdef"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "DATABASE_URL",
        "REDIS_URL",
        "SIDECAR_LISTEN",
        "SIDECAR_ADMIN_LISTEN",
        "SIDECAR_ADMIN_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)


def settings_from(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "sidecar.yaml"
    path.write_text("default_checks: false\n" + text)
    return load_settings(path, environ={})


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# -- credential checks -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (f"Bearer {TOKEN}", True),
        (f"bearer {TOKEN}", True),
        (f"  BEARER   {TOKEN}  ", True),
        (f"Bearer {TOKEN}x", False),
        (f"Bearer {TOKEN[:-1]}", False),
        (f"Basic {TOKEN}", False),
        (TOKEN, False),
        ("", False),
        ("Bearer \udcff\udcfe", False),  # undecodable bytes arrive as surrogates: unequal, no crash
    ],
)
def test_bearer_matches(header: str, ok: bool) -> None:
    assert bearer_matches(header, TOKEN) is ok


def test_bearer_never_matches_an_empty_token() -> None:
    assert not bearer_matches("Bearer ", "")


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (basic("prom", "pässword:with:colons"), True),
        ("basic " + basic("prom", "pässword:with:colons").split()[1], True),
        (basic("prom", "wrong"), False),
        (basic("other", "pässword:with:colons"), False),
        (basic("prom", ""), False),
        ("Basic not-base64!!", False),
        ("Basic " + base64.b64encode(b"prom").decode(), False),
        ("Bearer " + base64.b64encode("prom:pässword:with:colons".encode()).decode(), False),
    ],
)
def test_basic_matches(header: str, ok: bool) -> None:
    assert basic_matches(header, "prom", "pässword:with:colons") is ok


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("10.0.0.5", False),
        ("my-host", False),
        ("localhost.example.com", False),
        ("::ffff:10.0.0.1", False),
    ],
)
def test_is_loopback_host(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


# -- admin exposure ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("listen", ["0.0.0.0:9798", "[::]:9798", "10.1.2.3:9798", ":9798", "admin-host:9798"])
def test_exposed_admin_without_token_is_a_configuration_error(tmp_path: Path, listen: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from(tmp_path, f"admin_listen: '{listen}'\n")
    (_field, message), *_ = info.value.problems
    assert "admin_token" in message and "127.0.0.1" in message


def test_exposed_admin_needs_a_long_token(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from(tmp_path, "admin_listen: 0.0.0.0:9798\nadmin_token: short\n")
    assert "16 characters" in info.value.problems[0][1]


@pytest.mark.parametrize("listen", ["127.0.0.1:9798", "[::1]:9798", "localhost:9798"])
def test_loopback_admin_needs_no_token(tmp_path: Path, listen: str) -> None:
    assert settings_from(tmp_path, f"admin_listen: '{listen}'\n").admin_token is None


def test_exposed_admin_with_token_is_fine(tmp_path: Path) -> None:
    settings = settings_from(tmp_path, f"admin_listen: 0.0.0.0:9798\nadmin_token: {TOKEN}\n")
    assert settings.admin_token is not None


def test_exposure_rule_applies_to_environment_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SIDECAR_ADMIN_LISTEN", "0.0.0.0:9798")
    assert main(["check-config"]) == 2
    assert "admin_token" in capsys.readouterr().err
    monkeypatch.setenv("SIDECAR_ADMIN_TOKEN", TOKEN)
    assert main(["check-config"]) == 0
    out = capsys.readouterr().out
    assert TOKEN not in out


# -- metrics_auth configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "section",
    [
        "metrics_auth: {}\n",
        "metrics_auth: {bearer_token: abc, basic: {username: u, password: p}}\n",
        "metrics_auth: {basic: {username: 'a:b', password: p}}\n",
        "metrics_auth: {basic: {username: u, password: ''}}\n",
        "metrics_auth: {bearer_token: '  '}\n",
    ],
)
def test_bad_metrics_auth_is_named(tmp_path: Path, section: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from(tmp_path, section)
    assert info.value.problems[0][0].startswith("metrics_auth")


def test_check_config_masks_metrics_credentials(tmp_path: Path) -> None:
    settings = settings_from(tmp_path, "metrics_auth: {basic: {username: prom, password: basic-pw-123456}}\n")
    dumped = yaml.safe_dump(masked_config(settings))
    assert "basic-pw-123456" not in dumped and "prom" in dumped
    settings = settings_from(tmp_path, "metrics_auth: {bearer_token: bearer-tok-123456}\n")
    assert "bearer-tok-123456" not in yaml.safe_dump(masked_config(settings))


# -- metrics_auth on the health app ------------------------------------------------------------------------------


@pytest.fixture
def auth_settings(tmp_path: Path) -> Settings:
    return settings_from(tmp_path, "metrics_auth: {basic: {username: prom, password: scrape-pw-123}}\n")


async def test_metrics_requires_basic_auth(auth_settings: Settings, aiohttp_client: AiohttpClient) -> None:
    client: TestClient[Any, Any] = await aiohttp_client(create_app(auth_settings))
    for path in ("/metrics", "/health"):
        response = await client.get(path)
        assert response.status == 401, path
        assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
        assert "metrics_auth" in await response.text()
        wrong = await client.get(path, headers={"Authorization": basic("prom", "nope")})
        assert wrong.status == 401
        right = await client.get(path, headers={"Authorization": basic("prom", "scrape-pw-123")})
        assert right.status in (200, 503), path
    for path in ("/livez", "/readyz", "/readyz?verbose", "/readyz/none"):
        response = await client.get(path)
        assert response.status != 401, path


async def test_metrics_bearer_and_open_health(tmp_path: Path, aiohttp_client: AiohttpClient) -> None:
    settings = settings_from(
        tmp_path, "metrics_auth: {bearer_token: scrape-token-123, protect_health: false}\n"
    )
    client: TestClient[Any, Any] = await aiohttp_client(create_app(settings))
    response = await client.get("/metrics")
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer realm=")
    ok = await client.get("/metrics", headers={"Authorization": "Bearer scrape-token-123"})
    assert ok.status == 200 and "sidecar_ready" in await ok.text()
    assert (await client.get("/health")).status != 401


async def test_admin_requires_its_token(tmp_path: Path, aiohttp_client: AiohttpClient) -> None:
    settings = settings_from(tmp_path, f"admin_token: {TOKEN}\n")
    store = ResultStore()
    client: TestClient[Any, Any] = await aiohttp_client(create_admin_app(settings, store, HealthModel(store)))
    for headers in ({}, {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": "Bearer \udcff"}):
        response = await client.get("/debug/checks", headers=headers)
        assert response.status == 401
        assert TOKEN not in await response.text()
    ok = await client.get("/debug/checks", headers={"Authorization": f"bearer {TOKEN}"})
    assert ok.status == 200


# -- TLS settings ---------------------------------------------------------------------------------------------------


def test_tls_settings_load_and_inherit(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    settings = settings_from(
        tmp_path, f"tls: {{cert_file: '{cert}', key_file: '{key}'}}\nlisten_tls: false\n"
    )
    assert settings.tls is not None and settings.listen_tls is False and settings.admin_tls is None


def test_missing_tls_file_is_named(tmp_path: Path) -> None:
    cert, _key = self_signed(tmp_path)
    with pytest.raises(ConfigError) as info:
        settings_from(tmp_path, f"admin_tls: {{cert_file: '{cert}', key_file: '{tmp_path}/nope.pem'}}\n")
    field, message = info.value.problems[0]
    assert field.startswith("admin_tls") and "key_file" in message and "nope.pem" in message


def test_mismatched_key_is_named(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    cert, _ = self_signed(tmp_path / "a")
    _, other_key = self_signed(tmp_path / "b")
    with pytest.raises(ConfigError) as info:
        settings_from(tmp_path, f"tls: {{cert_file: '{cert}', key_file: '{other_key}'}}\n")
    assert "key_file" in info.value.problems[0][1]


@pytest.mark.parametrize(
    ("section", "clash"),
    [
        ("admin_listen: 127.0.0.1:9797\n", "listen and admin_listen"),
        ("listen: 127.0.0.1:9000\nadmin_listen: '[::]:9000'\n", "listen and admin_listen"),
        (
            "gateway: {upstream: 'http://127.0.0.1:3000', listen: '0.0.0.0:9798'}\n",
            "admin_listen and gateway.listen",
        ),
    ],
)
def test_listeners_need_their_own_ports(tmp_path: Path, section: str, clash: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from(tmp_path, section)
    # reported with every other problem of the file (an exposed admin listener without a token too)
    assert any(clash in message and "own port" in message for _field, message in info.value.problems)


def test_same_port_on_different_specific_hosts_is_fine(tmp_path: Path) -> None:
    settings = settings_from(tmp_path, "listen: 127.0.0.2:9798\n")
    assert settings.listen == "127.0.0.2:9798"
