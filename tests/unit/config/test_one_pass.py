"""One run of ``check-config`` (or ``run``) names every mistake of a file and its environment, in file order.

Before, a file with eleven mistakes took four runs: unknown options and duplicate names only came out
once everything else was fixed, and a check across the fields of one section (a timeout against an
interval, a batch against a queue) once every field of that section was valid. The file below has
mistakes of every kind, checks across fields in sections with mistakes of their own, a check across
sections (a port shared by two listeners) next to a mistake of the gateway, and mappings (a check's
``warn``, a rule's ``labels``, ``logs.fields.levels``) with several bad entries and checks of their
names beside them; all come out at once, in field order.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sidecar.cli import main
from sidecar.config import ConfigError, load_settings, unknown_environment

MISTAKES = """\
listen: nope
log_levle: debug
shutdown_timeout: soon
checks:
  - name: db
    kind: postgres
    target: "postgres://"
    interval: 0
    warn: {responseTme: 0.2, responseTime: lots}
  - name: db
    kind: tcp
    target: 127.0.0.1:6379
    interval: 1s
    timeout: 5s
  - name: api
    kind: http
    target: http://127.0.0.1:8000/health
    options: {expect_staus: [200], json_field: status}
  - name: cache
    kind: redis
    fail: {memoryUsed: 0.9}
  - name: worker
    kind: celerry
gateway:
  upstream: http://127.0.0.1:3000
  read_timout: 30s
  listen: 127.0.0.1:9798
  rate_limits:
    - {name: api, limit: 100, window: 1m, backend: redis}
    - {name: login, limit: 0, window: 1m}
    - {name: login, limit: 5, window: 1m, algorithm: sliding_window, burst: 10}
app_check:
  interval: 2s
  timeout: 5s
  outlier: {min_requests: many, base_ejection_time: 1m, max_ejection_time: 30s}
routes:
  max_routes: 0
metrics_auth:
  basic: {username: prometheus, password: secret}
  bearer_token: also-a-token
  protect_health: sometimes
sentry:
  dedupe_window: later
  backoff_initial: 2m
tracing:
  sample_ratio: 2
  max_queue_size: 100
  max_export_batch_size: 500
logs:
  fields: {levels: {warning: warnn, crit: fatal, critical: critical}}
  otlp: {flush_interval: soon, max_queue: 1000, max_batch: 5000}
  rules:
    - {name: app_jobs_total, type: counter, help: jobs done}
    - {name: app_jobs_total, type: counter, help: jobs finished}
    - {name: app_queue_depth, type: gauge, help: waiting, value: depth, unit: ms}
    - {name: app_other, type: countr, help: x}
    - name: app_requests_total
      type: counter
      help: ""
      labels: {le: {field: status}, path: {field: "@pathh"}, method: {field: method}}
"""

# Every section with a check across its fields (marked "across") also has a mistake of its own: the
# check across fields still runs on what is valid, in the same run, in field order.
EXPECTED = [
    ("listen", "host:port"),
    ("log_levle", "unknown setting (did you mean 'log_level'?)"),
    ("shutdown_timeout", "not a duration"),
    ("checks[0].target", "postgres target has no host"),
    ("checks[0].interval", "interval must be greater than zero"),
    ("checks[0].warn.responseTme", "measures no 'responseTme' (did you mean 'responseTime'?)"),  # across
    ("checks[0].warn.responseTime", "'lots' is not a threshold"),  # an entry of the same mapping
    ("checks[1].name", "'db' is also the name of checks[0]: check names must be unique"),
    ("checks[1].timeout", "shorten the timeout"),
    ("checks[2].options.expect_staus", "unknown setting (did you mean 'expect_status'?)"),
    ("checks[2].options.json_status_map", "json_field and json_status_map go together"),  # across
    ("checks[3].fail.memoryUsed", "(did you mean 'memoryUsedRatio'?)"),
    ("checks[3].target", "a redis check needs a target URL"),  # missing: after what the item has
    ("checks[4].kind", "unknown kind 'celerry' (did you mean 'celery'?)"),
    ("gateway.read_timout", "unknown setting (did you mean 'read_timeout'?)"),
    ("gateway.listen", "admin_listen and gateway.listen both use port 9798"),  # across sections
    ("gateway.rate_limits[1].limit", "greater than or equal to 1"),
    ("gateway.rate_limits[2].name", "'login' is also the name of gateway.rate_limits[1]"),
    ("gateway.rate_limits[2].burst", "burst applies to algorithm: token_bucket only"),  # across
    ("gateway.rate_limit_redis", "gateway.rate_limits[0] ('api') has backend: redis"),  # across
    ("app_check.timeout", "timeout (5s) is longer than interval (2s)"),  # across
    ("app_check.outlier.min_requests", "expected an integer"),
    ("app_check.outlier.max_ejection_time", "shorter than base_ejection_time (60s)"),  # across
    ("routes.max_routes", "greater than or equal to 1"),
    ("metrics_auth.protect_health", "expected true or false"),
    ("metrics_auth", "set exactly one of metrics_auth.basic or metrics_auth.bearer_token"),  # across
    ("sentry.dedupe_window", "not a duration"),
    ("sentry.backoff_max", "sentry.backoff_initial (120s) is above sentry.backoff_max (60s)"),  # across
    ("tracing.sample_ratio", "less than or equal to 1.0"),
    ("tracing.max_export_batch_size", "is larger than max_queue_size (100)"),  # across
    ("logs.fields.levels.warning", "level 'warning' maps to 'warnn'"),  # every bad entry
    ("logs.fields.levels.critical", "level 'critical' maps to 'critical'"),
    ("logs.otlp.flush_interval", "not a duration"),
    ("logs.otlp.max_batch", "max_batch (5000) cannot be larger than logs.otlp.max_queue (1000)"),  # across
    ("logs.rules[1].name", "logs.rules[0] also writes 'app_jobs_total'"),  # across rules
    ("logs.rules[2].name", "converted from ms to seconds: the name must end with _seconds"),  # across
    ("logs.rules[3].type", "'countr' is not allowed"),
    ("logs.rules[4].help", "at least 1 character"),
    ("logs.rules[4].labels.le", "'le' is reserved by Prometheus"),  # across entries, next to a bad one
    ("logs.rules[4].labels.path.field", "unknown normalised field '@pathh'"),
    ("SIDECAR_LOG_LEVLE", "no setting is named so (did you mean 'SIDECAR_LOG_LEVEL'?)"),
    ("DATABASE_URL", "scheme 'sqlite' is not supported"),
]


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("SIDECAR_") or n in ("DATABASE_URL", "REDIS_URL")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SIDECAR_LOG_LEVLE", "debug")
    monkeypatch.setenv("DATABASE_URL", "sqlite:///srv/app.db")


@pytest.mark.usefixtures("environment")
def test_check_config_names_every_mistake_in_one_run_in_file_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "sidecar.yaml"
    path.write_text(MISTAKES)
    assert main(["check-config", "--config", str(path)]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("  - ")]
    assert len(lines) == len(EXPECTED), "\n".join(lines)
    for line, (where, what) in zip(lines, EXPECTED, strict=True):
        assert line.startswith(f"  - {where}: ") and what in line, (line, where, what)


@pytest.mark.usefixtures("environment")
def test_run_names_the_same_mistakes_in_one_run_and_starts_nothing(tmp_path: Path) -> None:
    path = tmp_path / "sidecar.yaml"
    path.write_text(MISTAKES)
    done = subprocess.run(
        [sys.executable, "-m", "sidecar", "run", "--config", str(path)],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("  - ")]
    # `run` only warns about an unknown SIDECAR_* variable: other tools may share the prefix
    expected = [(where, what) for where, what in EXPECTED if where != "SIDECAR_LOG_LEVLE"]
    assert len(lines) == len(expected), done.stderr
    for line, (where, what) in zip(lines, expected, strict=True):
        assert line.startswith(f"  - {where}: ") and what in line, (line, where, what)
    assert "SIDECAR_LOG_LEVLE" in done.stderr  # the warning


@pytest.mark.usefixtures("environment")
def test_run_only_warns_about_an_unknown_sidecar_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("DATABASE_URL")
    settings = load_settings(None)  # what `run` does: other tools may share the prefix
    assert settings.listen == "0.0.0.0:9797"
    assert "SIDECAR_LOG_LEVLE" in caplog.text and "SIDECAR_LOG_LEVEL" in caplog.text
    with pytest.raises(ConfigError) as info:
        load_settings(None, strict_environment=True)  # what `check-config` does
    assert [field for field, _ in info.value.problems] == ["SIDECAR_LOG_LEVLE"]


def test_variables_the_sidecar_reads_are_not_unknown() -> None:
    env = {
        "SIDECAR_CONFIG": "/etc/sidecar.yaml",
        "SIDECAR_UPSTREAM": "http://127.0.0.1:3000",
        "SIDECAR_GATEWAY_LISTEN": "0.0.0.0:8080",
        "SIDECAR_GATEWAY__UPSTREAM": "http://127.0.0.1:3000",
        "SIDECAR_log_level": "debug",
        "SIDECAR_APP_CHECK__PATH": "/health",
        "OTHER_TOOL": "x",
    }
    assert unknown_environment(env) == []
    assert [name for name, _ in unknown_environment({"SIDECAR_LISTN": "x", "SIDECAR_WHATEVER": "y"})] == [
        "SIDECAR_LISTN",
        "SIDECAR_WHATEVER",
    ]


@pytest.mark.parametrize(
    ("target", "fix"),
    [
        ("postgres://", "has no host"),
        ("postgresql://db.internal:5432", "has no database"),
        ("postgresql://db.internal:5432/", "has no database"),
        ("redis://", "needs a host"),
        ("mysql://", "needs a host"),
        ("amqp://", "needs a host"),
    ],
)
def test_targets_without_host_or_database_are_errors_with_the_fix(
    tmp_path: Path, target: str, fix: str
) -> None:
    kind = {"postgres": "postgres", "postgresql": "postgres", "redis": "redis", "mysql": "mysql"}.get(
        target.split(":", maxsplit=1)[0], "rabbitmq"
    )
    path = tmp_path / "sidecar.yaml"
    path.write_text(f"checks:\n  - {{name: x, kind: {kind}, target: '{target}'}}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    (field, message), *_ = info.value.problems
    assert field == "checks[0].target" and fix in message and "e.g." in message


def test_targets_with_a_socket_host_or_a_database_parameter_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "sidecar.yaml"
    path.write_text(
        "default_checks: false\nchecks:\n"
        "  - {name: a, kind: postgres, target: 'postgresql:///app?host=/var/run/postgresql'}\n"
        "  - {name: b, kind: postgres, target: 'postgresql://db.internal/?dbname=app'}\n"
    )
    assert [c.name for c in load_settings(path, environ={}).checks] == ["a", "b"]


def test_a_check_of_your_own_named_app_is_the_app_check(tmp_path: Path) -> None:
    path = tmp_path / "sidecar.yaml"
    path.write_text(
        "default_checks: false\ngateway: {upstream: 'http://127.0.0.1:3000'}\n"
        "checks:\n  - {name: app, kind: http, target: 'http://127.0.0.1:3000/healthz'}\n"
    )
    (check,) = load_settings(path, environ={}).checks
    assert (check.kind, check.target, check.startup_grace) == ("http", "http://127.0.0.1:3000/healthz", 60.0)
    path.write_text("default_checks: false\ngateway: {upstream: 'http://127.0.0.1:3000'}\n")
    (check,) = load_settings(path, environ={}).checks
    assert (check.name, check.kind, check.target) == ("app", "tcp", "127.0.0.1:3000")
    path.write_text("gateway: {upstream: 'http://127.0.0.1:3000'}\napp_check: {enabled: false}\n")
    assert "app" not in [c.name for c in load_settings(path, environ={}).checks]
