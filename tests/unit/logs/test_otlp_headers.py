"""``logs.otlp.headers`` and the ``OTEL_EXPORTER_OTLP_(LOGS_)HEADERS`` variables are checked at start-up,
as ``tracing.headers`` is: a header that cannot be sent is a configuration error at its name, not an
export that fails on every batch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sidecar.config import ConfigError, load_settings

ON = "logs:\n  otlp:\n    endpoint: http://127.0.0.1:4318\n"


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith(("SIDECAR_", "OTEL_", "SENTRY_"))]:
        monkeypatch.delenv(name)


def problems(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> list[tuple[str, str]]:
    path = tmp_path / "sidecar.yaml"
    path.write_text("default_checks: false\n" + text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ=environ or {})
    return info.value.problems


def test_every_bad_configured_header_is_named(tmp_path: Path) -> None:
    found = problems(
        tmp_path, ON + "    headers: {'E F': x, G: ok, H: \"a\\r\\nX-Injected: 1\", 'I\\0': y}\n"
    )
    assert [where for where, _ in found] == [
        "logs.otlp.headers.E F",
        "logs.otlp.headers.H",
        "logs.otlp.headers.I\\0",  # YAML single quotes: a backslash and a zero
    ], found
    assert "'E F' is not an HTTP header name" in found[0][1]
    assert "contains a line break or NUL" in found[1][1]
    assert "X-Injected" not in " ".join(message for _, message in found)  # the value is a secret


@pytest.mark.parametrize("variable", ["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_LOGS_HEADERS"])
@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ("api-key=ok,bad%20name=x", "'bad name' is not an HTTP header name"),
        ("api-key=a%0D%0AX-Injected:%201", "the value of header 'api-key' contains a line break or NUL"),
    ],
)
def test_a_bad_header_in_the_environment_is_named_by_its_variable(
    tmp_path: Path, variable: str, pairs: str, message: str
) -> None:
    found = problems(tmp_path, ON, {variable: pairs})
    assert found == [(variable, message)], found


def test_good_headers_pass(tmp_path: Path) -> None:
    path = tmp_path / "sidecar.yaml"
    path.write_text("default_checks: false\n" + ON + "    headers: {api-key: 'a b', X-Tenant: shop}\n")
    settings = load_settings(path, environ={"OTEL_EXPORTER_OTLP_LOGS_HEADERS": "x-env=1"})
    assert settings.logs.otlp.headers is not None
    assert set(settings.logs.otlp.headers) == {"api-key", "X-Tenant"}
