"""The ``sentry:`` section: file, SIDECAR_SENTRY__*, the SENTRY_* fallbacks, errors named, secrets masked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sidecar.cli import masked_config
from sidecar.config import ConfigError, load_settings

pytestmark = pytest.mark.timeout(30)

DSN = "https://abcdef0123456789@o1.ingest.sentry.io/42"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "SENTRY_DSN",
        "SENTRY_ENVIRONMENT",
        "SENTRY_RELEASE",
        "SIDECAR_SENTRY__APP_DSN",
        "SIDECAR_CONFIG",
    ):
        monkeypatch.delenv(name, raising=False)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sidecar.yaml"
    path.write_text(text)
    return path


def test_defaults_are_off() -> None:
    sentry = load_settings(None, {}).sentry
    assert sentry.dsn is None and sentry.app_dsn is None and sentry.app is None
    assert sentry.relay.enabled and sentry.forward_log_errors and not sentry.forward_gateway_5xx


def test_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(
        tmp_path,
        f"""
sentry:
  app_dsn: {DSN}
  dedupe_window: 2m
  relay: {{max_body_bytes: 2097152, opaque_items: forward}}
  spool: {{dir: {tmp_path / "spool"}, max_events: 500}}
  scrub: {{extra_keys: [ssn], allow_keys: [session_id]}}
""",
    )
    monkeypatch.setenv("SIDECAR_SENTRY__FORWARD_GATEWAY_5XX", "true")
    sentry = load_settings(path, {}).sentry
    assert sentry.app is not None and sentry.app.project_id == "42"
    assert sentry.dedupe_window == 120.0
    assert sentry.relay.opaque_items == "forward"
    assert sentry.spool.max_events == 500
    assert sentry.scrub.extra_keys == ["ssn"]
    assert sentry.forward_gateway_5xx


def test_conventional_variables_are_a_fallback(tmp_path: Path) -> None:
    env = {"SENTRY_DSN": DSN, "SENTRY_ENVIRONMENT": "production", "SENTRY_RELEASE": "app@1.0.0"}
    sentry = load_settings(None, env).sentry
    assert sentry.dsn is not None and sentry.dsn.get_secret_value() == DSN
    assert (sentry.environment, sentry.release) == ("production", "app@1.0.0")
    own = "https://0000@own.example/7"
    path = write(tmp_path, f"sentry:\n  dsn: {own}\n  environment: staging\n")
    explicit = load_settings(path, env).sentry
    assert explicit.dsn is not None and explicit.dsn.get_secret_value() == own
    assert (explicit.environment, explicit.release) == ("staging", "app@1.0.0")


def test_bad_values_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, "sentry:\n  app_dsn: https://o1.ingest.sentry.io/42\n"), {})
    assert info.value.problems[0][0] == "sentry.app_dsn"
    assert "public key" in info.value.problems[0][1]
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, "sentry:\n  spool:\n    max_event: 3\n"), {})
    assert info.value.problems[0][0] == "sentry.spool.max_event"
    with pytest.raises(ConfigError) as info:
        load_settings(None, {"SENTRY_DSN": "not a dsn"})
    assert info.value.problems[0][0] == "SENTRY_DSN"


def test_check_config_masks_both_dsns(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, f"sentry:\n  app_dsn: {DSN}\n"), {"SENTRY_DSN": DSN})
    dumped = yaml.safe_dump(masked_config(settings))
    assert "abcdef0123456789" not in dumped
    assert "sentry:" in dumped


def test_sentry_sdk_is_not_imported_unless_configured() -> None:
    code = (
        "import sys; from sidecar.config import load_settings; from sidecar.server import create_app;"
        "create_app(load_settings(None, {}));"
        "assert 'sentry_sdk' not in sys.modules, sorted(m for m in sys.modules if 'sentry' in m)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
