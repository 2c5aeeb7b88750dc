"""A check across the fields of one section runs on the fields that are valid, in the same run.

Before, each of these sections compared its fields in a validator of the whole section, which only ran
once every field of it was valid: a file with a bad field and a cross-field mistake in the same section
took two runs of ``check-config``. Each case below has both; one run names both, in field order, and a
comparison whose inputs are themselves invalid is skipped rather than reported on a guess.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sidecar.config import ConfigError, load_settings
from tests.certs import self_signed


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith(("SIDECAR_", "OTEL_", "SENTRY_"))]:
        monkeypatch.delenv(name)


def problems(tmp_path: Path, text: str) -> list[tuple[str, str]]:
    path = tmp_path / "sidecar.yaml"
    path.write_text("default_checks: false\n" + text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    return info.value.problems


def check(tmp_path: Path, text: str, expected: list[tuple[str, str]]) -> None:
    found = problems(tmp_path, text)
    assert [where for where, _ in found] == [where for where, _ in expected], found
    for (where, message), (_, part) in zip(found, expected, strict=True):
        assert part in message, (where, message, part)


CASES = {
    "gateway timeouts": (
        "gateway: {upstreem: 'http://127.0.0.1:3000', read_timeout: 0, idle_timeout: 0}\n",
        [
            ("gateway.upstreem", "did you mean 'upstream'"),
            ("gateway.read_timeout", "must be greater than zero"),
            ("gateway.idle_timeout", "must be greater than zero"),
        ],
    ),
    "rate-limit rule: burst without a bucket, and a bad limit": (
        "gateway:\n  rate_limits: [{name: api, limit: 0, window: 1s, burst: 5}]\n",
        [
            ("gateway.rate_limits[0].limit", "greater than or equal to 1"),
            ("gateway.rate_limits[0].burst", "rule 'api': burst applies to algorithm: token_bucket only"),
        ],
    ),
    "rate-limit rule: failed_statuses without count: failed, and a bad window": (
        "gateway:\n  rate_limits: [{name: api, limit: 5, window: 0.5s, failed_statuses: [401]}]\n",
        [
            ("gateway.rate_limits[0].window", "window must be between 1s and 30 days"),
            ("gateway.rate_limits[0].failed_statuses", "failed_statuses needs count: failed"),
        ],
    ),
    "a redis rule without rate_limit_redis, next to a broken rule and a repeated name": (
        "gateway:\n  rate_limits:\n"
        "    - {name: api, limit: 5, window: 1s, backend: redis}\n"
        "    - {name: web, limit: five, window: 1s}\n"
        "    - {name: api, limit: 5, window: 1s}\n",
        [
            ("gateway.rate_limits[1].limit", "expected an integer"),
            ("gateway.rate_limits[2].name", "'api' is also the name of gateway.rate_limits[0]"),
            ("gateway.rate_limit_redis", "gateway.rate_limits[0] ('api') has backend: redis"),
        ],
    ),
    "rate_limit_redis: a bad URL and bounds": (
        "gateway:\n  rate_limit_redis: {url: 'http://cache:6379', timeout: 1m, key_prefix: 'a b'}\n",
        [
            ("gateway.rate_limit_redis.url", "must start with redis://"),
            ("gateway.rate_limit_redis.timeout", "between 1ms and 10s"),
            ("gateway.rate_limit_redis.key_prefix", "ASCII without spaces"),
        ],
    ),
    "security_headers route with nothing to select and a bad field": (
        "gateway:\n  security_headers: {routes: [{enabled: sometimes}]}\n",
        [
            ("gateway.security_headers.routes[0].enabled", "expected true or false"),
            ("gateway.security_headers.routes[0].path_prefixes", "needs routes or path_prefixes"),
        ],
    ),
    "app_check timeout over interval, a bad status and outlier times": (
        "gateway: {upstream: 'http://127.0.0.1:3000'}\n"
        "app_check:\n  expect_status: [abc]\n  interval: 1s\n  timeout: 2s\n"
        "  outlier: {window: 0, base_ejection_time: 1m, max_ejection_time: 10s}\n",
        [
            ("app_check.expect_status", "'abc' is not a status"),
            ("app_check.timeout", "timeout (2s) is longer than interval (1s)"),
            ("app_check.outlier.window", "must be greater than zero"),
            ("app_check.outlier.max_ejection_time", "shorter than base_ejection_time (60s)"),
        ],
    ),
    "metrics_auth: both kinds given, and a bad field": (
        "metrics_auth: {basic: {username: p, password: s}, bearer_token: t, protect_health: often}\n",
        [
            ("metrics_auth.protect_health", "expected true or false"),
            ("metrics_auth", "set exactly one of metrics_auth.basic or metrics_auth.bearer_token"),
        ],
    ),
    "basic auth: a colon in the name and an empty password": (
        "metrics_auth: {basic: {username: 'a:b', password: ''}}\n",
        [
            ("metrics_auth.basic.username", "cannot contain ':'"),
            ("metrics_auth.basic.password", "password is empty"),
        ],
    ),
    "sentry backoffs the wrong way round, and a bad field": (
        "sentry: {send_timeout: 0, backoff_initial: 2m, backoff_max: 1m}\n",
        [
            ("sentry.send_timeout", "must be greater than zero"),
            ("sentry.backoff_max", "sentry.backoff_initial (120s) is above sentry.backoff_max (60s)"),
        ],
    ),
    "tracing batch over queue, and a bad timeout": (
        "tracing: {timeout: 0, max_queue_size: 10, max_export_batch_size: 20}\n",
        [
            ("tracing.timeout", "must be greater than zero"),
            (
                "tracing.max_export_batch_size",
                "max_export_batch_size (20) is larger than max_queue_size (10)",
            ),
        ],
    ),
    "tracing enabled with no endpoint, next to a mistake in another section": (
        "tracing: {enabled: true}\nroutes: {max_routes: 0}\n",
        [
            ("routes.max_routes", "greater than or equal to 1"),
            ("tracing.enabled", "no OTLP endpoint is set"),
        ],
    ),
    "OTLP log export: batch over queue, and bad durations": (
        "logs:\n  poll_interval: 0\n  otlp: {retry_max: 0, max_queue: 100, max_batch: 500}\n",
        [
            ("logs.poll_interval", "must be greater than zero"),
            ("logs.otlp.retry_max", "must be greater than zero"),
            ("logs.otlp.max_batch", "max_batch (500) cannot be larger than logs.otlp.max_queue (100)"),
        ],
    ),
    "log rule: naming against type and unit, with an empty help": (
        "logs:\n  rules: [{name: app_jobs, type: counter, help: '', unit: ms, value: took}]\n",
        [
            ("logs.rules[0].name", "a counter's name ends with _total"),
            ("logs.rules[0].name", "the name must end with _seconds_total"),
            ("logs.rules[0].help", "at least 1 character"),
        ],
    ),
    "log rules sharing a metric, next to a broken rule": (
        "logs:\n  rules:\n"
        "    - {name: app_jobs_total, type: counter, help: done}\n"
        "    - {name: app_x_total, type: countr, help: x}\n"
        "    - {name: app_jobs_total, type: counter, help: finished}\n",
        [
            ("logs.rules[1].type", "'countr' is not allowed"),
            ("logs.rules[2].name", "rules[0] also writes 'app_jobs_total'"),
        ],
    ),
    "rule condition with two tests and a bad field path": (
        "logs:\n  rules:\n    - name: app_x_total\n      type: counter\n      help: x\n"
        "      match: {all: [{field: '@nope', equals: 1, regex: a, exists: maybe}]}\n",
        [
            ("logs.rules[0].match.all[0].field", "unknown normalised field '@nope'"),
            ("logs.rules[0].match.all[0].exists", "expected true or false"),
        ],
    ),
    "rule condition with two valid tests and a bad field path": (
        "logs:\n  rules:\n    - name: app_x_total\n      type: counter\n      help: x\n"
        "      match: {all: [{field: '@nope', equals: 1, regex: a}]}\n",
        [
            ("logs.rules[0].match.all[0].field", "unknown normalised field '@nope'"),
            (
                "logs.rules[0].match.all[0]",
                "needs exactly one of equals, one_of, regex or exists (got equals, regex)",
            ),
        ],
    ),
    "rule label with field and value, and a bad bound": (
        "logs:\n  rules:\n    - name: app_x_total\n      type: counter\n      help: x\n"
        "      labels: {queue: {field: q, value: v, max_values: 0}}\n",
        [
            ("logs.rules[0].labels.queue.max_values", "greater than or equal to 1"),
            ("logs.rules[0].labels.queue", "needs either `field`"),
        ],
    ),
    "http check options: pairs that do not go together, and a bad method": (
        "checks:\n  - name: api\n    kind: http\n    target: http://127.0.0.1:8000/\n"
        "    options: {method: FETCH, json_field: status, tls_verify: false, ca_file: /ca.pem}\n",
        [
            ("checks[0].options.method", "unknown method 'FETCH'"),
            ("checks[0].options.ca_file", "ca_file has no effect with tls_verify: false"),
            ("checks[0].options.json_status_map", "json_field and json_status_map go together"),
        ],
    ),
    "process check options: both selectors, and a bad field": (
        "checks:\n  - name: app\n    kind: process\n    options: {pid_file: /run/app.pid, name: node, pid: 1}\n",
        [
            ("checks[0].options.name", "give pid_file or name, not both"),
            ("checks[0].options.pid", "unknown setting"),
        ],
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_check_across_fields_comes_out_with_the_sections_other_mistakes(tmp_path: Path, case: str) -> None:
    text, expected = CASES[case]
    check(tmp_path, text, expected)


def test_a_comparison_with_an_invalid_input_is_skipped_not_guessed(tmp_path: Path) -> None:
    # base_ejection_time is invalid: max_ejection_time is not compared with its default instead
    check(
        tmp_path,
        "app_check: {outlier: {base_ejection_time: soon, max_ejection_time: 5s}}\n",
        [("app_check.outlier.base_ejection_time", "not a duration")],
    )
    # basic is invalid: whether exactly one kind is given cannot be told
    check(
        tmp_path,
        "metrics_auth: {basic: {username: 'a:b', password: s}}\n",
        [("metrics_auth.basic.username", "cannot contain ':'")],
    )
    # the tracing section has a mistake of its own: its environment step is not run on defaults
    check(
        tmp_path,
        "tracing: {enabled: true, timeout: 0}\n",
        [("tracing.timeout", "must be greater than zero")],
    )


def test_tls_files_and_the_pair_are_checked_with_the_rest(tmp_path: Path) -> None:
    check(
        tmp_path,
        f"tls: {{cert_file: '{tmp_path}/a.pem', key_file: '{tmp_path}/b.pem', min_version: TLSv1.0}}\n",
        [
            ("tls.cert_file", "is not a readable file"),
            ("tls.key_file", "is not a readable file"),
            ("tls.min_version", "'TLSv1.0' is not allowed"),
        ],
    )
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    cert, _key = self_signed(tmp_path / "one")
    _cert, other_key = self_signed(tmp_path / "two")
    check(
        tmp_path,
        f"tls: {{cert_file: '{cert}', key_file: '{other_key}', min_version: TLSv1.0}}\n",
        [
            ("tls.key_file", "cannot load the certificate and key"),
            ("tls.min_version", "'TLSv1.0' is not allowed"),
        ],
    )
