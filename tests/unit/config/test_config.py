"""Configuration: every bad field named with its fix, environment over file, conventional variables."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sidecar.cli import main, masked_config
from sidecar.config import ConfigError, load_settings
from sidecar.core.durations import parse_duration
from sidecar.gateway import compiled, native_heads
from sidecar.probing.settings import Threshold


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sidecar.yaml"
    path.write_text(text)
    return path


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "REDIS_URL", "SIDECAR_LISTEN", "SIDECAR_LOG_LEVEL", "SIDECAR_CONFIG"):
        monkeypatch.delenv(name, raising=False)


def test_nothing_configured_gives_embedded_host_and_process_checks() -> None:
    settings = load_settings(None)
    assert [(c.name, c.kind) for c in settings.checks] == [("host", "host"), ("sidecar-process", "process")]
    assert settings.listen == "0.0.0.0:9797"
    assert settings.admin_listen == "127.0.0.1:9798"
    assert not any(c.is_critical for c in settings.checks)


def test_database_and_redis_urls_add_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:s3cret-pw@127.0.0.1:5432/app?schema=public")
    monkeypatch.setenv("REDIS_URL", "redis://:r3dis-pw@127.0.0.1:6379/0")
    settings = load_settings(None)
    by_name = {c.name: c for c in settings.checks}
    assert by_name["database"].kind == "postgres"
    assert by_name["redis"].kind == "redis"
    assert by_name["database"].is_critical and by_name["redis"].is_critical


def test_mysql_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://root@127.0.0.1:3306/test")
    assert {c.name: c.kind for c in load_settings(None).checks}["database"] == "mysql"


def test_unsupported_database_url_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "sqlserver://x@y/z")
    with pytest.raises(ConfigError) as info:
        load_settings(None)
    assert info.value.problems[0][0] == "DATABASE_URL"


def test_environment_wins_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "listen: 127.0.0.1:1111\nlog_level: debug\n")
    monkeypatch.setenv("SIDECAR_LISTEN", "127.0.0.1:2222")
    settings = load_settings(path)
    assert settings.listen == "127.0.0.1:2222"
    assert settings.log_level == "debug"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("on", True), ("YES", True), ("true", True), ("1", True), ("off", False), ("no", False), ("0", False)],
)
def test_boolean_settings_accept_the_usual_spellings(
    text: str, expected: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIDECAR_DEFAULT_CHECKS", text)
    monkeypatch.setenv("SIDECAR_GATEWAY__WEBSOCKETS", text)
    settings = load_settings(write(tmp_path, f"logs:\n  correlate: {text!r}\n"))
    assert (settings.default_checks, settings.gateway.websockets, settings.logs.correlate) == (expected,) * 3


def test_a_boolean_setting_refuses_other_words(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIDECAR_DEFAULT_CHECKS", "maybe")
    with pytest.raises(ConfigError) as info:
        load_settings(None)
    assert info.value.problems[0][0] == "default_checks"
    assert "true or false" in info.value.problems[0][1]


def test_every_bad_field_is_named_with_a_fix(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
listen: nope
xyzzy: 1
checks:
  - name: db
    kind: postgress
  - name: cache
    kind: tcp
    target: 127.0.0.1:6379
    intervall: 5
  - name: slow
    kind: tcp
    target: 127.0.0.1:6379
    interval: 1s
    timeout: 5s
  - name: t
    kind: tcp
    target: 127.0.0.1:6379
    interval: soon
""",
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    problems = dict(info.value.problems)
    assert "host:port" in problems["listen"]
    assert "did you mean" not in problems["xyzzy"] and "unknown setting" in problems["xyzzy"]
    assert "did you mean 'postgres'" in problems["checks[0].kind"]
    assert "did you mean 'interval'" in problems["checks[1].intervall"]
    assert "shorten the timeout" in problems["checks[2].timeout"]
    assert "not a duration" in problems["checks[3].interval"]


def test_duplicate_names_and_missing_target(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "checks:\n  - {name: a, kind: tcp, target: '127.0.0.1:1'}\n  - {name: a, kind: tcp, target: '127.0.0.1:2'}\n",
    )
    with pytest.raises(ConfigError, match="unique"):
        load_settings(path)
    with pytest.raises(ConfigError, match="needs a target"):
        load_settings(write(tmp_path, "checks:\n  - {name: a, kind: redis}\n"))


def test_broken_yaml_says_where(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, "checks:\n  - name: [unclosed\n"))
    assert "line" in info.value.problems[0][1]
    with pytest.raises(ConfigError, match="mapping"):
        load_settings(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml")


def test_thresholds_and_durations() -> None:
    assert Threshold.model_validate(0.8).crossed(0.9)
    below = Threshold.model_validate("<14")
    assert below.crossed(3) and not below.crossed(30)
    with pytest.raises(ValueError, match="threshold"):
        Threshold.model_validate("about 3")
    assert parse_duration("1m30s") == 90
    assert parse_duration("250ms") == 0.25
    assert parse_duration(2) == 2.0
    for bad in ("5 parsecs", "-1", True, "1x"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)


def test_check_config_masks_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(
        tmp_path,
        "admin_token: tok-abcdef123\nchecks:\n"
        "  - {name: db, kind: postgres, target: 'postgres://app:pg-s3cret@127.0.0.1:5432/app'}\n",
    )
    assert main(["check-config", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "pg-s3cret" not in out and "tok-abcdef123" not in out
    assert "postgres://app:***@127.0.0.1:5432/app" in out
    assert masked_config(load_settings(path))["admin_token"] == "***"


def test_invalid_config_exits_2_and_starts_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, "checks:\n  - {name: x, kind: nope}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "sidecar", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert "checks[0].kind" in proc.stderr
    assert "listening" not in proc.stderr


def test_version() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sidecar", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0 and proc.stdout.startswith("sidecar ")
    # what this build holds: the test process imports the same package
    assert ("gateway: compiled;" if compiled() else "gateway: pure Python;") in proc.stdout
    assert ("; native head scanner)" if native_heads() else "; no native head scanner") in proc.stdout


def test_runtime_with_default_features_imports_no_heavy_modules() -> None:
    """The resident set is budgeted (bench/health.py, < 58 MB): the configuration must not pull pydantic
    back in, redis-py must not import the OpenTelemetry SDK (its 7.2+ releases do), and the gateway's
    proxy modules load only when an upstream is configured."""
    script = textwrap.dedent(
        """
        import os, sys
        for name in list(os.environ):
            if name.startswith(("OTEL_", "SIDECAR_", "SENTRY_")):
                del os.environ[name]
        from sidecar.config import load_settings
        from sidecar.server import Server
        settings = load_settings(environ={"REDIS_URL": "redis://127.0.0.1:1/0"})
        Server(settings)
        assert "redis.asyncio" in sys.modules  # the Redis collector was really loaded
        heavy = ("pydantic", "pydantic_core", "pydantic_settings", "opentelemetry.sdk",
                 "sidecar.gateway.proxy", "sidecar.gateway.upstream", "sidecar.gateway.service")
        print(sorted(m for m in sys.modules if m.startswith(heavy)))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    ).stdout.splitlines()
    assert out == ["[]"]
