"""Checks across sections and across the entries of a mapping run on whatever is valid, in the same run.

Before, a check across sections (a port shared by ``listen`` and ``gateway.listen``) only ran once the
whole gateway section was valid, and a mapping (a rule's ``labels``, a check's ``warn``) was all or
nothing: one bad entry hid every check of the others' names. Each case below has such a check next to
a mistake of its section or mapping; one run names both, in field order.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sidecar.config import ConfigError, load_settings


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


def check(found: list[tuple[str, str]], expected: list[tuple[str, str]]) -> None:
    assert [where for where, _ in found] == [where for where, _ in expected], found
    for (where, message), (_, part) in zip(found, expected, strict=True):
        assert part in message, (where, message, part)


CASES = {
    "a port clash across sections, the gateway with a mistake of its own": (
        "listen: 127.0.0.1:9797\n"
        "gateway: {upstream: 'http://127.0.0.1:3000', read_timeout: 0, listen: '0.0.0.0:9797', idle: 5}\n",
        [
            ("gateway.read_timeout", "must be greater than zero"),
            ("gateway.listen", "listen and gateway.listen both use port 9797: give each its own port"),
            ("gateway.idle", "unknown setting"),
        ],
    ),
    "a port clash with a gateway whose upstream is itself wrong (given, so the gateway is meant on)": (
        "admin_listen: 127.0.0.1:9000\ngateway: {upstream: 'ftp://x', listen: '127.0.0.1:9000'}\n",
        [
            ("gateway.upstream", "ftp"),
            ("gateway.listen", "admin_listen and gateway.listen both use port 9000"),
        ],
    ),
    "a reserved label name next to a broken label of the same rule": (
        "logs:\n  rules:\n    - name: app_jobs_total\n      type: counter\n      help: jobs\n"
        "      labels: {queue: {field: '', max_values: 0}, le: {field: bucket}, quantile: {value: q}}\n",
        [
            ("logs.rules[0].labels.queue.field", "a field path is a key"),
            ("logs.rules[0].labels.queue.max_values", "greater than or equal to 1"),
            ("logs.rules[0].labels.le", "'le' is reserved by Prometheus"),
            ("logs.rules[0].labels.quantile", "'quantile' is reserved by Prometheus"),
        ],
    ),
    "too many labels, one of them broken": (
        "logs:\n  rules:\n    - name: app_jobs_total\n      type: counter\n      help: jobs\n      labels: {"
        + ", ".join(f"l{i}: {{value: x}}" for i in range(8))
        + ", l8: {field: '@nope'}}\n",
        [
            ("logs.rules[0].labels", "at most 8 labels per rule"),
            ("logs.rules[0].labels.l8.field", "unknown normalised field '@nope'"),
        ],
    ),
    "a misspelt measurement next to a bad threshold, in warn and in fail": (
        "checks:\n  - name: api\n    kind: tcp\n    target: 127.0.0.1:9\n"
        "    warn: {responseTime: lots, responseTme: 0.2}\n    fail: {respTime: '>x'}\n",
        [
            ("checks[0].warn.responseTime", "'lots' is not a threshold"),
            ("checks[0].warn.responseTme", "measures no 'responseTme' (did you mean 'responseTime'?)"),
            ("checks[0].fail.respTime", "is not a threshold"),
            ("checks[0].fail.respTime", "measures no 'respTime'"),
        ],
    ),
    "every bad entry of a mapping checked as a whole": (
        "logs:\n  fields: {levels: {warning: warnn, crit: fatal, critical: critical}}\n",
        [
            ("logs.fields.levels.warning", "level 'warning' maps to 'warnn'"),
            ("logs.fields.levels.critical", "level 'critical' maps to 'critical'"),
        ],
    ),
    "every bad header, and every bad item of the lists beside them": (
        "gateway:\n  security_headers:\n    enabled: true\n"
        "    headers: {'Bad Name': x, Connection: close, X-Ok: fine, X-Empty: ''}\n"
        "    remove: [X-Powered-By, 'a b', 'c d']\n",
        [
            ("gateway.security_headers.headers.Bad Name", "'Bad Name' is not a header name"),
            ("gateway.security_headers.headers.Connection", "cannot be set here"),
            ("gateway.security_headers.headers.X-Empty", "is empty"),
            ("gateway.security_headers.remove[1]", "'a b' is not a header name"),
            ("gateway.security_headers.remove[2]", "'c d' is not a header name"),
        ],
    ),
    "every bad route template and method of a rate-limit rule": (
        "routes: {templates: [/ok, users, orders]}\n"
        "gateway:\n  rate_limits:\n    - name: api\n      limit: 5\n      window: 1m\n"
        "      match: {methods: [get, 'P OST', 'DE LETE'], path_prefixes: [api, /x]}\n",
        [
            ("routes.templates[1]", "route template 'users' must start with '/'"),
            ("routes.templates[2]", "route template 'orders' must start with '/'"),
            ("gateway.rate_limits[0].match.methods[1]", "'P OST' is not an HTTP method"),
            ("gateway.rate_limits[0].match.methods[2]", "'DE LETE' is not an HTTP method"),
            ("gateway.rate_limits[0].match.path_prefixes[0]", "path prefix 'api' must be ASCII"),
        ],
    ),
    "every bad header and queue name of a check's options, and of the tracing headers": (
        "checks:\n  - name: api\n    kind: http\n    target: http://127.0.0.1:9/\n"
        "    options: {headers: {'A B': x, X-Ok: fine, 'C D': y}}\n"
        "  - name: jobs\n    kind: bullmq\n    target: redis://127.0.0.1:6379/0\n"
        "    options: {queues: [mail, '', pdf, \"a\\tb\", mail]}\n"
        "tracing:\n  headers: {'E F': x, G: ok, 'H I': y}\n",
        [
            ("checks[0].options.headers.A B", "'A B' is not a valid header name"),
            ("checks[0].options.headers.C D", "'C D' is not a valid header name"),
            ("checks[1].options.queues[1]", "queue name '' must be"),
            ("checks[1].options.queues[3]", "queue name 'a\\tb' must be"),
            ("checks[1].options.queues", "queue names must be unique"),
            ("tracing.headers.E F", "'E F' is not an HTTP header name"),
            ("tracing.headers.H I", "'H I' is not an HTTP header name"),
        ],
    ),
    "rules sharing a metric name each other by their full place": (
        "logs:\n  rules:\n    - {name: app_jobs_total, type: counter, help: done}\n"
        "    - {name: app_jobs_total, type: counter, help: finished}\n",
        [("logs.rules[1].name", "logs.rules[0] also writes 'app_jobs_total'")],
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_check_across_sections_or_entries_comes_out_with_their_own_mistakes(
    tmp_path: Path, case: str
) -> None:
    text, expected = CASES[case]
    check(problems(tmp_path, text), expected)


def test_a_comparison_across_sections_with_an_invalid_input_is_skipped(tmp_path: Path) -> None:
    # the gateway's listener is itself invalid: no clash is guessed from it
    found = problems(
        tmp_path,
        "listen: 127.0.0.1:9797\ngateway: {upstream: 'http://127.0.0.1:3000', listen: '0.0.0.0:nine'}\n",
    )
    assert [where for where, _ in found] == ["gateway.listen"]
    assert "both use port" not in found[0][1]


def test_a_step_after_validation_runs_on_the_valid_fields_of_a_section_with_a_mistake(tmp_path: Path) -> None:
    # logs.files has a mistake; log export reads logs.otlp, which is valid: its problem comes out too
    found = problems(tmp_path, "logs:\n  files: [{path: ''}]\n  otlp: {enabled: true}\n")
    check(
        found,
        [
            ("logs.files[0].path", "a file source needs a path or glob"),
            ("logs.otlp.enabled", "OTLP log export is enabled but no endpoint is set"),
        ],
    )


def test_a_step_is_skipped_when_a_setting_it_reads_is_invalid(tmp_path: Path) -> None:
    # logs.otlp itself has a mistake: the export plan is not made from its defaults
    found = problems(tmp_path, "logs:\n  otlp: {enabled: true, max_queue: 0}\n")
    assert [where for where, _ in found] == ["logs.otlp.max_queue"], found


# logs.otlp.headers and the OTEL_EXPORTER_OTLP_(LOGS_)HEADERS variables go through tracing.headers' check:
# a header that cannot be sent is a problem at its name (or its variable) at start-up, not an export
# that fails on every batch.
OTLP_ON = "logs:\n  otlp:\n    endpoint: http://127.0.0.1:4318\n"


def test_every_bad_configured_header_is_named(tmp_path: Path) -> None:
    found = problems(
        tmp_path, OTLP_ON + "    headers: {'E F': x, G: ok, H: \"a\\r\\nX-Injected: 1\", 'I\\0': y}\n"
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
    found = problems(tmp_path, OTLP_ON, {variable: pairs})
    assert found == [(variable, message)], found


def test_good_otlp_headers_pass(tmp_path: Path) -> None:
    path = tmp_path / "sidecar.yaml"
    path.write_text("default_checks: false\n" + OTLP_ON + "    headers: {api-key: 'a b', X-Tenant: shop}\n")
    settings = load_settings(path, environ={"OTEL_EXPORTER_OTLP_LOGS_HEADERS": "x-env=1"})
    assert settings.logs.otlp.headers is not None
    assert set(settings.logs.otlp.headers) == {"api-key", "X-Tenant"}
