"""``logs.rules``: config-time checks, matching, values, labels and their bounds, reload."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from sidecar.config import ConfigError, load_settings
from sidecar.logs.metrics import LogMetrics
from sidecar.logs.parse import LogParser
from sidecar.logs.pipeline import LogPipeline
from sidecar.logs.rule_metrics import RuleMetrics
from sidecar.logs.rules import RuleSet
from sidecar.logs.settings import LogSettings

pytestmark = pytest.mark.timeout(10)


class Rig:
    """A pipeline with rules on a fresh registry."""

    def __init__(self, rules: list[dict[str, Any]], templates: tuple[str, ...] = ()) -> None:
        self.registry = CollectorRegistry()
        self.metrics = RuleMetrics()
        self.registry.register(self.metrics)
        self.templates = templates
        self.pipeline = LogPipeline(LogParser(), LogMetrics(self.registry))
        self.rules = RuleSet.compile(self.settings(rules), self.metrics, templates)
        self.pipeline.rules = self.rules

    @staticmethod
    def settings(rules: list[dict[str, Any]]) -> Any:
        return LogSettings.model_validate({"rules": rules}).rules

    def reload(self, rules: list[dict[str, Any]]) -> None:
        self.rules = RuleSet.compile(self.settings(rules), self.metrics, self.templates, previous=self.rules)
        self.pipeline.rules = self.rules

    def feed(self, *lines: dict[str, Any] | bytes, source: str = "app") -> None:
        raw = [line if isinstance(line, bytes) else orjson.dumps(line) for line in lines]
        self.pipeline.feed(source, raw)

    def value(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


def problems_of(rules: list[dict[str, Any]], tmp_path: Any) -> list[tuple[str, str]]:
    path = tmp_path / "sidecar.yaml"
    path.write_text(orjson.dumps({"default_checks": False, "logs": {"rules": rules}}).decode())
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    return caught.value.problems


def test_every_naming_problem_is_reported_at_once_with_its_place(tmp_path: Any) -> None:
    problems = problems_of(
        [
            {"name": "sidecar_log_lines_total", "type": "counter", "help": "x"},
            {"name": "app_jobs", "type": "counter", "help": "x"},
            {"name": "app_job_duration_ms", "type": "histogram", "help": "x", "value": "d", "unit": "ms"},
            {"name": "app-bad", "type": "gauge", "help": "x", "value": "v"},
            {"name": "app_depth", "type": "gauge", "help": "x"},
            {"name": "app_hits_total", "type": "counter", "help": "x", "labels": {"le": {"field": "a"}}},
            {
                "name": "app_x_total",
                "type": "counter",
                "help": "x",
                "match": {"all": [{"field": "a", "regex": "("}]},
            },
            {"name": "app_y_total", "type": "counter", "help": "x", "match": {"all": [{"field": "a"}]}},
            {"name": "app_z_seconds", "type": "histogram", "help": "x", "value": "d", "buckets": [1, 0.5]},
        ],
        tmp_path,
    )
    where = [place for place, _ in problems]
    text = "\n".join(f"{p}: {m}" for p, m in problems)
    assert "logs.rules[0].name" in where and "belong to the sidecar's own metrics" in text
    assert "logs.rules[1].name" in where and "app_jobs_total" in text
    assert "logs.rules[2].name" in where and "must end with _seconds" in text
    assert "logs.rules[3].name" in where
    assert "logs.rules[4].value" in where
    assert "logs.rules[5].labels.le" in where
    assert "logs.rules[6].match.all[0].regex" in where
    assert "logs.rules[7].match.all[0]" in where and "exactly one of" in text
    assert "logs.rules[8].buckets" in where
    assert len(problems) >= 9


def test_rules_sharing_a_metric_must_agree(tmp_path: Any) -> None:
    problems = problems_of(
        [
            {"name": "app_cache_total", "type": "counter", "help": "x", "labels": {"r": {"value": "hit"}}},
            {"name": "app_cache_total", "type": "counter", "help": "x"},
        ],
        tmp_path,
    )
    assert problems[0][0] == "logs.rules[1].name"


def test_metrics_whose_exposed_names_collide_are_refused(tmp_path: Any) -> None:
    problems = problems_of(
        [
            {"name": "app_x_total", "type": "counter", "help": "x"},
            {"name": "app_x", "type": "gauge", "help": "x", "value": "v"},
            {"name": "app_y", "type": "histogram", "help": "x", "value": "v"},
            {"name": "app_y_bucket_total", "type": "counter", "help": "x"},
        ],
        tmp_path,
    )
    assert [p for p, _ in problems] == ["logs.rules[1].name", "logs.rules[3].name"]


def test_counter_of_lines_with_labels_from_nested_fields_and_bounds() -> None:
    rig = Rig(
        [
            {
                "name": "app_events_total",
                "type": "counter",
                "help": "Business events by type.",
                "match": {"all": [{"field": "msg", "equals": "business event"}]},
                "labels": {
                    "type": {"field": "event.type", "max_values": 2},
                    "plan": {"field": "user.plan", "allow": ["free", "pro"]},
                },
            }
        ]
    )
    for kind, plan in [("signup", "free"), ("signup", "pro"), ("order", "gold"), ("refund", "free")]:
        rig.feed({"level": 30, "msg": "business event", "event": {"type": kind}, "user": {"plan": plan}})
    rig.feed({"level": 30, "msg": "something else", "event": {"type": "signup"}})
    assert rig.value("app_events_total", type="signup", plan="free") == 1
    assert rig.value("app_events_total", type="signup", plan="pro") == 1
    assert rig.value("app_events_total", type="order", plan="_other") == 1  # not allowed
    assert rig.value("app_events_total", type="_other", plan="free") == 1  # past max_values
    assert rig.value("sidecar_log_rule_matches_total", rule="app_events_total") == 4
    assert rig.value("sidecar_log_rule_label_overflow_total", rule="app_events_total", label="type") == 1
    assert rig.value("sidecar_log_rule_label_overflow_total", rule="app_events_total", label="plan") == 1


def test_counter_adding_a_field_counts_unusable_values_by_reason() -> None:
    rig = Rig(
        [
            {
                "name": "app_order_amount_total",
                "type": "counter",
                "help": "Order amounts.",
                "value": "amount",
                "match": {"all": [{"field": "@message", "equals": "order created"}]},
            }
        ]
    )
    rig.feed(
        {"message": "order created", "amount": 10.5},
        {"message": "order created", "amount": "4.5"},
        {"message": "order created", "amount": "lots"},
        {"message": "order created", "amount": {"v": 1}},
        {"message": "order created"},
        {"message": "order created", "amount": -3},
        {"message": "order created", "amount": "nan"},
    )
    assert rig.value("app_order_amount_total") == 15.0
    errors = {
        reason: rig.value("sidecar_log_rule_errors_total", rule="app_order_amount_total", reason=reason)
        for reason in ("non_numeric", "missing_field", "negative")
    }
    assert errors == {"non_numeric": 3, "missing_field": 1, "negative": 1}


def test_histogram_converts_milliseconds_and_gauge_sets() -> None:
    rig = Rig(
        [
            {
                "name": "app_job_duration_seconds",
                "type": "histogram",
                "help": "Job durations by queue.",
                "value": "durationMs",
                "unit": "ms",
                "buckets": [0.1, 1, 10],
                "match": {"all": [{"field": "event", "equals": "job completed"}]},
                "labels": {"queue": {"field": "queue"}},
            },
            {
                "name": "app_job_last_duration_seconds",
                "type": "gauge",
                "help": "Last job duration by queue.",
                "value": "durationMs",
                "unit": "ms",
                "match": {"all": [{"field": "event", "equals": "job completed"}]},
                "labels": {"queue": {"field": "queue"}},
            },
        ]
    )
    rig.feed(
        *({"event": "job completed", "queue": "email", "durationMs": ms} for ms in (50, 100, 900, 20_000))
    )
    labels = {"queue": "email"}
    assert rig.value("app_job_duration_seconds_bucket", le="0.1", **labels) == 2  # 0.05 and exactly 0.1
    assert rig.value("app_job_duration_seconds_bucket", le="1.0", **labels) == 3
    assert rig.value("app_job_duration_seconds_bucket", le="10.0", **labels) == 3
    assert rig.value("app_job_duration_seconds_bucket", le="+Inf", **labels) == 4
    assert rig.value("app_job_duration_seconds_sum", **labels) == pytest.approx(21.05)
    assert rig.value("app_job_last_duration_seconds", **labels) == 20.0
    body = generate_latest(rig.registry).decode()
    assert "# HELP app_job_duration_seconds Job durations by queue." in body
    assert "# TYPE app_job_duration_seconds histogram" in body


def test_conditions_level_source_any_regex_exists_and_normalisers() -> None:
    rig = Rig(
        [
            {
                "name": "app_http_errors_total",
                "type": "counter",
                "help": "Server errors from access lines.",
                "match": {
                    "level": "warn",
                    "source": "api",
                    "all": [{"field": "@status", "regex": "^5"}, {"field": "req.id", "exists": True}],
                    "any": [
                        {"field": "req.method", "one_of": ["GET", "POST"]},
                        {"field": "retry", "equals": True},
                    ],
                },
                "labels": {
                    "route": {"field": "@url", "normalise": "route"},
                    "class": {"field": "@status", "normalise": "status_class"},
                    "method": {"field": "req.method", "normalise": "lower"},
                },
            }
        ],
        templates=("/users/{id}",),
    )

    def access(status: int, method: str = "GET", level: int = 50, rid: str | None = "r1") -> dict[str, Any]:
        req: dict[str, Any] = {"method": method, "url": "/users/42?x=1"}
        if rid:
            req["id"] = rid
        return {"level": level, "req": req, "res": {"statusCode": status}, "responseTime": 3, "msg": "done"}

    rig.feed(
        access(503),
        access(500, "PUT"),
        access(404),
        access(502, level=30),
        access(500, rid=None),
        source="api",
    )
    rig.feed(access(500), source="worker")
    assert rig.value("app_http_errors_total", route="/users/{id}", **{"class": "5xx"}, method="get") == 1
    assert rig.value("sidecar_log_rule_matches_total", rule="app_http_errors_total") == 1


def test_plain_text_and_logfmt_lines_reach_rules_through_normalised_fields() -> None:
    rig = Rig(
        [
            {
                "name": "app_login_failures_total",
                "type": "counter",
                "help": "Failed logins.",
                "match": {"all": [{"field": "@message", "regex": "login failed"}], "level": "warn"},
            }
        ]
    )
    rig.feed(b"2024-05-01 10:00:00 WARN login failed for user=7", b'level=warn msg="login failed" user=8')
    rig.feed(b"2024-05-01 10:00:00 INFO login failed for user=9")
    assert rig.value("app_login_failures_total") == 2


def test_series_bound_folds_into_other_and_memory_stays_flat() -> None:
    rig = Rig(
        [
            {
                "name": "app_users_total",
                "type": "counter",
                "help": "x",
                "labels": {"user": {"field": "user", "max_values": 10_000}},
                "max_series": 50,
            }
        ]
    )
    rig.feed(*({"user": f"u{i}"} for i in range(5000)))
    family = rig.metrics.families["app_users_total"]
    assert len(family.series) == 51
    assert rig.value("app_users_total", user="_other") == 4950
    assert rig.value("sidecar_log_rule_label_overflow_total", rule="app_users_total", label="_series") == 4950
    label = rig.rules.rules[0].labels[0]
    assert len(label.cache) <= 4096


def test_shared_family_with_constant_labels_and_reload_keeps_unchanged_rules() -> None:
    cache = [
        {
            "name": "app_cache_lookups_total",
            "type": "counter",
            "help": "Cache lookups by result.",
            "match": {"all": [{"field": "msg", "equals": f"cache {result}"}]},
            "labels": {"result": {"value": result}},
        }
        for result in ("hit", "miss")
    ]
    jobs = {
        "name": "app_jobs_total",
        "type": "counter",
        "help": "Jobs.",
        "match": {"all": [{"field": "msg", "equals": "job done"}]},
    }
    rig = Rig([*cache, jobs])
    rig.feed({"msg": "cache hit"}, {"msg": "cache hit"}, {"msg": "cache miss"}, {"msg": "job done"})
    assert rig.value("app_cache_lookups_total", result="hit") == 2
    assert rig.value("app_cache_lookups_total", result="miss") == 1
    assert rig.value("sidecar_log_rule_matches_total", rule="app_cache_lookups_total#2") == 1

    changed_jobs = {**jobs, "match": {"all": [{"field": "msg", "one_of": ["job done", "job ok"]}]}}
    rig.reload([*cache, changed_jobs])
    assert rig.value("app_cache_lookups_total", result="hit") == 2  # unchanged: kept
    assert rig.value("app_jobs_total") is None  # changed: starts again
    rig.feed({"msg": "cache hit"}, {"msg": "job ok"})
    assert rig.value("app_cache_lookups_total", result="hit") == 3
    assert rig.value("app_jobs_total") == 1

    rig.reload([jobs])
    assert rig.value("app_cache_lookups_total", result="hit") is None  # removed
    assert rig.value("sidecar_log_rule_matches_total", rule="app_cache_lookups_total#1") is None


def test_an_empty_match_takes_every_parsed_line() -> None:
    rig = Rig(
        [{"name": "app_lines_total", "type": "counter", "help": "x", "labels": {"l": {"field": "@level"}}}]
    )
    rig.feed({"level": "error", "msg": "a"}, b"not json at all", b"{broken")
    assert rig.value("app_lines_total", l="error") == 1
    assert rig.value("app_lines_total", l="unknown") == 1


def _families(metrics: RuleMetrics) -> dict[str, dict[tuple[str, ...], list[float]]]:
    return {name: {k: list(v) for k, v in f.series.items()} for name, f in metrics.families.items()}


def test_generated_code_does_what_the_reference_does_on_varied_lines() -> None:
    """The generated ``apply`` and the interpreted ``apply_reference`` on the same lines agree exactly:
    matches, label values (including overflow), values, errors by reason."""
    import random

    rules = [
        {
            "name": "app_a_total",
            "type": "counter",
            "help": "x",
            "match": {
                "all": [{"field": "msg", "one_of": ["a", "b", 3]}],
                "any": [{"field": "n", "regex": "^[0-4]"}, {"field": "z", "exists": False}],
            },
            "labels": {"k": {"field": "k", "max_values": 3}, "c": {"value": "x"}},
            "value": "n",
        },
        {
            "name": "app_b_seconds",
            "type": "histogram",
            "help": "x",
            "unit": "ms",
            "buckets": [0.001, 0.01, 0.1],
            "match": {"all": [{"field": "@status", "equals": 200}], "level": "info"},
            "labels": {"route": {"field": "@url", "normalise": "route", "max_values": 4}},
            "value": "@duration",
        },
        {
            "name": "app_c",
            "type": "gauge",
            "help": "x",
            "match": {"all": [{"field": "deep.er.key", "exists": True}], "source": ["s1"]},
            "labels": {"v": {"field": "deep.er.key", "allow": ["1", "2", "true"]}},
            "value": "deep.er.val",
        },
    ]
    rng = random.Random(7)
    values: list[Any] = [None, 1, 2, 3, 4.5, -2, "5", "x", True, {"o": 1}, [1], "nan", 1e309]

    def line() -> dict[str, Any]:
        d: dict[str, Any] = {"level": rng.choice([20, 30, 50])}
        for key in ("msg", "n", "z", "k"):
            if rng.random() < 0.7:
                d[key] = rng.choice([*values, "a", "b", "k1", "k2", "k3", "k4", "k5"])
        if rng.random() < 0.3:
            d["req"] = {"method": "GET", "url": f"/u/{rng.randint(1, 9)}/p{rng.randint(1, 9)}"}
            d["res"] = {"statusCode": rng.choice([200, 500])}
            d["responseTime"] = rng.choice([0.5, 3, 50, 500])
        if rng.random() < 0.5:
            d["deep"] = {"er": {"key": rng.choice(values), "val": rng.choice(values)}}
        return d

    lines = [orjson.dumps(line(), option=orjson.OPT_SERIALIZE_NUMPY) for _ in range(3000)]
    generated, reference = Rig(rules), Rig(rules)
    reference.rules.apply = reference.rules.apply_reference  # type: ignore[method-assign]
    for rig in (generated, reference):
        for source in ("s1", "s2"):
            rig.pipeline.feed(source, lines)
    assert _families(generated.metrics) == _families(reference.metrics)
    assert generated.metrics.families["app_a_total"].series  # the lines did exercise the rules
    for key, stats in generated.metrics.stats.items():
        other = reference.metrics.stats[key]
        assert (stats.matched, stats.errors) == (other.matched, other.errors), key
        assert [s.overflowed for _, s in stats.overflow] == [s.overflowed for _, s in other.overflow], key


def test_configuration_text_never_becomes_source() -> None:
    """Field names, values and patterns that look like Python stay data in the generated function."""
    hostile = "x'); import os; os._exit(3) #"
    rig = Rig(
        [
            {
                "name": "app_h_total",
                "type": "counter",
                "help": hostile,
                "match": {
                    "all": [
                        {"field": hostile, "equals": hostile},
                        {"field": "a.b", "regex": re.escape(hostile)},
                    ]
                },
                "labels": {"l": {"field": hostile, "missing": hostile}},
            }
        ]
    )
    assert hostile not in rig.rules.source and "os._exit" not in rig.rules.source
    rig.feed({hostile: hostile, "a.b": hostile})
    assert rig.value("app_h_total", l=hostile) == 1


def test_python_json_logger_lines_from_the_real_library() -> None:
    """``logging`` + python-json-logger: ``message`` and ``levelname``, extra fields at the top."""
    import io
    import logging

    from pythonjsonlogger.json import JsonFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("test_rules.python_json_logger")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.info("job completed", extra={"queue": "email", "duration_ms": 250})
    logger.warning("login failed", extra={"reason": "locked"})
    logger.info("login failed", extra={"reason": "locked"})
    rig = Rig(
        [
            {
                "name": "app_job_duration_seconds",
                "type": "histogram",
                "help": "x",
                "value": "duration_ms",
                "unit": "ms",
                "match": {"all": [{"field": "@message", "equals": "job completed"}]},
                "labels": {"queue": {"field": "queue"}},
            },
            {
                "name": "app_login_failures_total",
                "type": "counter",
                "help": "x",
                "match": {"all": [{"field": "@message", "equals": "login failed"}], "level": "warn"},
                "labels": {"reason": {"field": "reason"}},
            },
        ]
    )
    rig.feed(*(line.encode() for line in stream.getvalue().splitlines()))
    assert rig.value("app_job_duration_seconds_sum", queue="email") == 0.25
    assert rig.value("app_login_failures_total", reason="locked") == 1


def test_bunyan_and_nestjs_shapes() -> None:
    rig = Rig(
        [
            {
                "name": "app_errors_total",
                "type": "counter",
                "help": "x",
                "match": {"level": "error"},
                "labels": {"where": {"field": "context", "missing": "none"}, "err": {"field": "@error_type"}},
            }
        ]
    )
    rig.feed(
        {
            "name": "api",
            "hostname": "h",
            "pid": 1,
            "level": 50,
            "msg": "boom",
            "err": {"name": "TypeError", "message": "x", "stack": "TypeError: x"},
            "v": 0,
        },
        {
            "level": "error",
            "context": "OrdersService",
            "message": "failed",
            "stack": ["Error: failed\n    at f (a.js:1:1)"],
        },
        {"level": "log", "context": "OrdersService", "message": "ok"},
    )
    assert rig.value("app_errors_total", where="none", err="TypeError") == 1
    assert rig.value("app_errors_total", where="OrdersService", err="Error") == 1


def test_a_long_one_of_shares_one_handler() -> None:
    values = [f"event-{i}" for i in range(500)]
    rig = Rig(
        [
            {
                "name": "app_known_events_total",
                "type": "counter",
                "help": "x",
                "match": {"all": [{"field": "msg", "one_of": values}]},
            }
        ]
    )
    assert rig.rules.source.count("def handler") == 1
    rig.feed({"msg": "event-7"}, {"msg": "event-499"}, {"msg": "event-500"})
    assert rig.value("app_known_events_total") == 2


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
_KEYS = st.sampled_from(["msg", "queue", "n", "req", "level", "k", "x.y"])


@pytest.mark.timeout(180)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.dictionaries(_KEYS, _JSON, max_size=6), min_size=1, max_size=20))
def test_any_json_lines_never_raise_and_generated_equals_reference(lines: list[dict[str, Any]]) -> None:
    rules = [
        {
            "name": "app_p_total",
            "type": "counter",
            "help": "x",
            "value": "n",
            "match": {"any": [{"field": "msg", "regex": "a"}, {"field": "x.y", "exists": True}]},
            "labels": {
                "q": {"field": "queue", "max_values": 2},
                "r": {"field": "req.url", "normalise": "route"},
            },
        },
        {
            "name": "app_p_seconds",
            "type": "histogram",
            "help": "x",
            "unit": "ms",
            "value": "n",
            "match": {"all": [{"field": "k", "one_of": ["a", 1, True]}], "level": "info"},
            "labels": {
                "s": {"field": "@status", "normalise": "status_class"},
                "l": {"field": "level", "normalise": "lower"},
            },
        },
    ]
    encoded = [orjson.dumps(line, option=orjson.OPT_NON_STR_KEYS) for line in lines]
    generated, reference = Rig(rules), Rig(rules)
    reference.rules.apply = reference.rules.apply_reference  # type: ignore[method-assign]
    for rig in (generated, reference):
        rig.pipeline.feed("app", encoded)
    assert _families(generated.metrics) == _families(reference.metrics)
    for key, stats in generated.metrics.stats.items():
        assert (stats.matched, stats.errors) == (
            reference.metrics.stats[key].matched,
            reference.metrics.stats[key].errors,
        )
