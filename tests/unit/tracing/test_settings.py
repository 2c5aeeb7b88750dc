"""When tracing is on, where it exports, and how the ``tracing:`` section meets the ``OTEL_*`` variables."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from sidecar.config import ConfigError, Settings, load_settings
from sidecar.tracing.settings import TracingConfigError, TracingSettings, plan_tracing, traces_url

ROOT = Path(__file__).resolve().parents[3]


def settings(**tracing: Any) -> Settings:
    return Settings(default_checks=False, tracing=tracing)


def test_off_without_an_endpoint() -> None:
    assert plan_tracing(settings(), {}) is None
    assert plan_tracing(settings(probes=True, sample_ratio=0.5), {}) is None


def test_a_configured_endpoint_turns_it_on_with_the_traces_path() -> None:
    plan = plan_tracing(settings(endpoint="http://collector:4318"), {})
    assert plan is not None
    assert (plan.protocol, plan.endpoint, plan.endpoint_source) == (
        "http/protobuf",
        "http://collector:4318/v1/traces",
        "tracing.endpoint",
    )
    assert traces_url("https://otlp.example.com/v1/traces") == "https://otlp.example.com/v1/traces"
    assert traces_url("https://gw.example.com/otlp/") == "https://gw.example.com/otlp/v1/traces"
    grpc = plan_tracing(settings(endpoint="http://collector:4317", protocol="grpc"), {})
    assert grpc is not None and grpc.endpoint == "http://collector:4317"


@pytest.mark.parametrize(
    ("env", "source"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        (
            {
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:4318/v1/traces",
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
            },
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ),
    ],
)
def test_the_standard_endpoint_variables_turn_it_on_and_the_sdk_reads_them(
    env: dict[str, str], source: str
) -> None:
    plan = plan_tracing(settings(), env)
    assert plan is not None
    assert plan.endpoint is None  # the exporter resolves the variable itself, as specified
    assert plan.endpoint_source == source


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_SDK_DISABLED": "true"},
        {"OTEL_SDK_DISABLED": "TRUE"},
        {"OTEL_TRACES_EXPORTER": "none"},
    ],
)
def test_the_kill_switches_win(env: dict[str, str]) -> None:
    configured = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", **env}
    assert plan_tracing(settings(endpoint="http://collector:4318"), configured) is None


def test_enabled_false_wins_and_enabled_true_needs_an_endpoint() -> None:
    assert plan_tracing(settings(enabled=False, endpoint="http://collector:4318"), {}) is None
    with pytest.raises(TracingConfigError) as info:
        plan_tracing(settings(enabled=True), {})
    assert info.value.field == "tracing.enabled"
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in str(info.value)


def test_protocol_from_the_variables_the_traces_one_first_and_config_over_both() -> None:
    base = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}
    assert _protocol(base | {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}) == "grpc"
    both = base | {
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
    }
    assert _protocol(both) == "grpc"
    plan = plan_tracing(settings(protocol="http/protobuf"), both)
    assert plan is not None and plan.protocol == "http/protobuf"
    with pytest.raises(TracingConfigError) as info:
        plan_tracing(settings(), base | {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"})
    assert info.value.field == "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
    # with no endpoint the protocol variables are not even looked at
    assert plan_tracing(settings(), {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}) is None


def _protocol(env: dict[str, str]) -> str:
    plan = plan_tracing(settings(), env)
    assert plan is not None
    return plan.protocol


def test_bad_variables_stop_start_up_naming_them() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"})
    assert info.value.problems[0][0] == "OTEL_EXPORTER_OTLP_ENDPOINT"
    assert "http://" in info.value.problems[0][1]


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"endpoint": "ftp://collector"}, "not an OTLP endpoint"),
        ({"endpoint": "http://user:pw@collector:4318"}, "cannot carry credentials"),
        ({"endpoint": "http://collector:4318?x=1"}, "no query"),
        ({"protocol": "http/json"}, "http/protobuf"),
        ({"sample_ratio": 1.5}, "less than or equal to 1"),
        ({"max_queue_size": 10, "max_export_batch_size": 20}, "max_export_batch_size (20) is larger"),
        ({"headers": {"x-key": "a\r\nb"}}, "line break"),
        ({"headers": {"bad name": "v"}}, "not an HTTP header name"),
        ({"endpont": "http://collector:4318"}, "unknown setting"),
    ],
)
def test_invalid_sections_are_refused(tmp_path: Path, section: dict[str, Any], message: str) -> None:
    import yaml

    path = tmp_path / "sidecar.yaml"
    path.write_text(yaml.safe_dump({"default_checks": False, "tracing": section}))
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert any(field.startswith("tracing") and message in text for field, text in info.value.problems), (
        info.value.problems
    )


def test_every_key_can_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "sidecar.yaml"
    path.write_text("tracing:\n  endpoint: http://from-file:4318\n  probes: true\n")
    monkeypatch.setenv("SIDECAR_TRACING__ENDPOINT", "http://from-env:4318")
    monkeypatch.setenv("SIDECAR_TRACING__SAMPLE_RATIO", "0.25")
    monkeypatch.setenv("SIDECAR_TRACING__TIMEOUT", "2s")
    loaded = load_settings(path, environ={})
    assert loaded.tracing == TracingSettings(
        endpoint="http://from-env:4318", probes=True, sample_ratio=0.25, timeout=2.0
    )


def test_service_name_precedence() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}
    plan = plan_tracing(settings(), env)
    assert plan is not None and (plan.service_name, plan.default_service_name) == (None, "app")
    explicit = Settings(default_checks=False, service_name="checkout")
    plan = plan_tracing(explicit, env)
    assert plan is not None and plan.service_name == "checkout"
    plan = plan_tracing(explicit, env | {"OTEL_SERVICE_NAME": "from-otel"})
    assert plan is not None and plan.service_name == "from-otel"


def test_tracing_off_imports_no_opentelemetry_sdk_or_exporter() -> None:
    """create_app with tracing off loads neither the SDK's tracing nor an exporter (nor grpcio).

    redis-py imports the OpenTelemetry API on its own when a redis check exists, so that case only
    asserts on the SDK's tracing and exporter modules.
    """
    script = textwrap.dedent(
        """
        import os, sys
        for name in list(os.environ):
            if name.startswith("OTEL_"):
                del os.environ[name]
        from sidecar.config import Settings, load_settings
        from sidecar.gateway.service import Gateway
        from sidecar.server import create_app
        settings = Settings(gateway={"upstream": "http://127.0.0.1:9"})
        app = create_app(settings)
        gateway = Gateway.for_app(settings.gateway, app)
        assert gateway.ctx.tracing is None and gateway.ctx.sample_new_trace is None
        print(sorted(m for m in sys.modules if m.startswith(("opentelemetry", "grpc", "sidecar.tracing"))))
        create_app(load_settings(environ={"REDIS_URL": "redis://127.0.0.1:1/0"}))
        print(sorted(m for m in sys.modules if m.startswith(("opentelemetry.sdk.trace", "opentelemetry.exporter",
                                                              "grpc", "sidecar.tracing.provider"))))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout.splitlines()
    assert (
        out[0]
        == "['sidecar.tracing', 'sidecar.tracing.runtime', 'sidecar.tracing.settings', 'sidecar.tracing.wiring']"
    )
    assert out[1] == "[]"
