"""``logs.rules``: the user's own metrics from the app's log fields, declared in the configuration.

A rule says which lines it wants (``match``), what to measure (a ``counter`` of lines or of a numeric
field, a ``gauge`` set from a field, a ``histogram`` of a field) and which fields become labels, each
label with a bound on its distinct values. Everything that can be checked without a log line is checked
here, so a rule that could never work (a bad name, a clash with a built-in family, a unit in the wrong
place, a regular expression that does not compile) stops start-up with the rest of the configuration's
problems, one line each.

Field paths are top-level keys or dotted paths into nested objects (``req.method``); names starting with
``@`` are the parser's normalised fields (``@message``, ``@level``, ``@status``...), the same whatever
library wrote the line.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from sidecar.core.settings_model import (
    Meta,
    Model,
    ValidationError,
    ValidationInfo,
    field,
    field_validator,
    model_validator,
)

Loc = tuple[str | int, ...]

METRIC_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# Families the sidecar itself (and its collectors) exports: a rule may not write into them.
RESERVED_PREFIXES = (
    "sidecar_",
    "http_server_",
    "http_client_",
    "process_",
    "python_",
    "pg_",
    "mysql_",
    "redis_",
    "node_",
    "probe_",
    "rabbitmq_",
    "bullmq_",
    "celery_",
    "rq_",
    "scrape_",  # and ``up``: the series Prometheus adds to every target itself
)
RESERVED_SUFFIXES = ("_bucket", "_count", "_sum", "_created", "_info")
LEVEL_ORDER = ("trace", "debug", "info", "warn", "error", "fatal")
# Normalised fields a path may name with ``@``.
PSEUDO_FIELDS = (
    "@level",
    "@message",
    "@source",
    "@request_id",
    "@trace_id",
    "@error_type",
    "@method",
    "@url",
    "@route",
    "@status",
    "@duration",
    "@bytes",
)
TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
BYTE_UNITS = {"bytes": 1.0, "kb": 1e3, "kib": 1024.0, "mb": 1e6, "mib": 1024.0**2}
UNIT_SCALE = {**TIME_UNITS, **BYTE_UNITS, "percent": 0.01, "ratio": 1.0, "none": 1.0}
Unit = Literal["none", "s", "ms", "us", "ns", "bytes", "kb", "kib", "mb", "mib", "percent", "ratio"]
Scalar = str | int | float | bool
MAX_LABELS = 8
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def base_unit(unit: str) -> str | None:
    """The Prometheus base-unit suffix a metric measuring ``unit`` must carry, if any."""
    if unit in TIME_UNITS:
        return "seconds"
    if unit in BYTE_UNITS:
        return "bytes"
    if unit in {"percent", "ratio"}:
        return "ratio"
    return None


def _check_path(path: str) -> str:
    if not path or path.strip() != path:
        raise ValueError("a field path is a key such as `queue` or a dotted path such as `req.method`")
    if path.startswith("@"):
        if path not in PSEUDO_FIELDS:
            raise ValueError(f"unknown normalised field {path!r}; use one of: {', '.join(PSEUDO_FIELDS)}")
    elif any(not part for part in path.split(".")):
        raise ValueError(f"field path {path!r} has an empty part")
    return path


class RuleCondition(Model):
    """One test on one field: ``equals``, ``one_of``, ``regex`` or ``exists`` (false: the field is missing).

    Values are compared as text, so ``equals: 500`` matches the number 500 and the text "500".
    """

    field: Annotated[str, Meta(description="field path, e.g. queue, req.method or @message")]
    equals: Scalar | None = None
    one_of: list[Scalar] = []
    regex: Annotated[str | None, Meta(description="searched in the field's text")] = None
    exists: bool | None = None

    @field_validator("field")
    @classmethod
    def _path(cls, value: str) -> str:
        return _check_path(value)

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"regex {value!r} does not compile: {exc}") from None
        return value

    @model_validator(mode="fields")
    @classmethod
    def _one_test(cls, info: ValidationInfo) -> None:
        data = info.data
        tests = ("equals", "one_of", "regex", "exists")
        if any(name not in data for name in tests):
            return  # a test that is itself invalid: counting them would say nothing true
        given = [name for name in tests if data[name] not in (None, [])]
        if len(given) != 1:
            on = f" on {data['field']!r}" if "field" in data else ""
            raise ValueError(
                f"a condition{on} needs exactly one of equals, one_of, regex or exists "
                f"(got {', '.join(given) or 'none'})"
            )


class RuleMatch(Model):
    """Which lines a rule takes: every condition in ``all``, at least one in ``any``, and the level and
    source bounds when given. An empty match takes every line."""

    all: list[RuleCondition] = []
    any: list[RuleCondition] = []
    level: Annotated[
        Literal["trace", "debug", "info", "warn", "error", "fatal"] | None,
        Meta(description="lines at this level or above"),
    ] = None
    source: Annotated[list[str], Meta(description="only lines from these sources")] = []

    @field_validator("source", mode="before")
    @classmethod
    def _one_source(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


class RuleLabel(Model):
    """One label: from a field (bounded, optionally allow-listed or normalised) or a constant ``value``."""

    field: Annotated[str | None, Meta(description="field path the label's value comes from")] = None
    value: Annotated[str | None, Meta(description="a constant value instead of a field")] = None
    max_values: Annotated[
        int, Meta(ge=1, le=10_000, description="distinct values kept; later ones become _other")
    ] = 100
    allow: Annotated[list[str], Meta(description="only these values; any other becomes _other")] = []
    normalise: Annotated[
        Literal["none", "lower", "route", "status_class"],
        Meta(description="route: paths to route templates; status_class: 404 -> 4xx; lower: lower case"),
    ] = "none"
    missing: Annotated[str, Meta(description="the value when the field is absent")] = ""

    @field_validator("field")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        return None if value is None else _check_path(value)

    @model_validator(mode="fields")
    @classmethod
    def _field_or_value(cls, info: ValidationInfo) -> None:
        data = info.data
        if "field" in data and "value" in data and (data["field"] is None) == (data["value"] is None):
            raise ValueError("a label needs either `field` (read from each line) or `value` (a constant)")


class LogRule(Model):
    """One metric from log lines."""

    name: Annotated[str, Meta(description="the metric's name, e.g. app_jobs_total")]
    type: Literal["counter", "gauge", "histogram"]
    help: Annotated[str, Meta(min_length=1, description="the metric's HELP text")]
    match: RuleMatch = field(default_factory=RuleMatch)
    value: Annotated[
        str | None, Meta(description="numeric field: added (counter), set (gauge) or observed (histogram)")
    ] = None
    unit: Annotated[Unit, Meta(description="unit of `value` in the lines; converted to the base unit")] = (
        "none"
    )
    buckets: Annotated[list[float], Meta(description="histogram upper bounds, in the base unit")] = []
    labels: dict[str, RuleLabel] = {}
    max_series: Annotated[
        int, Meta(ge=1, le=100_000, description="label sets kept; later ones fold into all-_other")
    ] = 1000

    @field_validator("value")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        return None if value is None else _check_path(value)

    @model_validator(mode="fields")
    @classmethod
    def _consistent(cls, info: ValidationInfo) -> None:
        # label names are checked whatever their settings: a bad label does not hide another's name
        problems = rule_problems(info.data, info.keys.get("labels"))
        if problems:
            raise ValidationError(problems)

    def scale(self) -> float:
        """What a value in the lines is multiplied by to be in the metric's base unit."""
        return UNIT_SCALE[self.unit]

    def effective_buckets(self) -> tuple[float, ...]:
        return tuple(self.buckets) if self.buckets else DEFAULT_BUCKETS

    def shape(self) -> tuple[object, ...]:
        """What must agree between rules that feed the same metric family."""
        buckets = self.effective_buckets() if self.type == "histogram" else ()
        return (self.type, self.help, tuple(self.labels), buckets)


def rule_problems(  # noqa: PLR0912 (one check per rule of naming)
    rule: Mapping[str, Any], label_names: Sequence[str] | None = None
) -> list[tuple[Loc, str]]:
    """Every naming, unit and shape problem of one rule, each with the setting it is about.

    ``rule`` holds the rule's valid fields (``LogRule``'s ``fields`` validator): each check runs when
    the fields it compares are valid, so a rule with a bad ``unit`` still has its name checked.
    ``label_names``: the names of its labels, also when some label's own settings are invalid
    (``ValidationInfo.keys``); by default those of ``rule["labels"]``.
    """
    problems: list[tuple[Loc, str]] = []
    name: str | None = rule.get("name")
    kind: str | None = rule.get("type")
    unit: str | None = rule.get("unit")
    buckets: list[float] | None = rule.get("buckets")
    labels = list(label_names) if label_names is not None else rule.get("labels")

    def add(where: str, message: str) -> None:
        problems.append(((where,), message))

    if name is not None and (not METRIC_NAME.match(name) or name.startswith("__")):
        add(
            "name",
            f"{name!r} is not a Prometheus metric name: letters, digits and '_', not starting with a digit",
        )
    elif name is not None:
        reserved = next((p for p in RESERVED_PREFIXES if name.startswith(p)), None)
        if name == "up":
            add("name", "Prometheus adds `up` to every target itself: choose another name")
        elif reserved is not None:
            add(
                "name",
                f"names starting with {reserved!r} belong to the sidecar's own metrics: "
                "use your own prefix, e.g. app_",
            )
        suffix = next((s for s in RESERVED_SUFFIXES if name.endswith(s)), None)
        if suffix is not None:
            add(
                "name",
                f"{name!r} ends with {suffix!r}, which Prometheus reserves for histogram and info series",
            )
        if kind == "counter" and not name.endswith("_total"):
            add("name", f"a counter's name ends with _total: {name}_total")
        if kind is not None and kind != "counter" and name.endswith("_total"):
            add("name", f"only counters end with _total; rename this {kind}")
        base = base_unit(unit) if unit is not None else None
        stem = name.removesuffix("_total")
        if kind is not None and base is not None and not stem.endswith(f"_{base}"):
            add(
                "name",
                f"the value is converted from {unit} to {base}: the name must end with _{base}"
                + ("_total" if kind == "counter" else ""),
            )
        if re.search(
            r"_(milli|micro|nano)?(ms|us|ns|millis|milliseconds|microseconds|nanoseconds|minutes|hours|kb|mb|kilobytes|megabytes|percent)$",
            stem,
        ):
            add(
                "name",
                "use base units in the name (seconds, bytes, ratio) and `unit:` to convert the values",
            )
    if kind is not None and "value" in rule:
        if kind in {"gauge", "histogram"} and rule["value"] is None:
            add("value", f"a {kind} needs `value`: the field it reads")
        if kind == "counter" and rule["value"] is None and unit is not None and unit != "none":
            add("unit", "a counter of lines has no unit; give `value` to add a field's values")
    if kind is not None and buckets is not None:
        if buckets and kind != "histogram":
            add("buckets", "only a histogram has buckets")
        bounds = tuple(buckets) if buckets else DEFAULT_BUCKETS
        unordered = any(a >= b for a, b in itertools.pairwise(bounds))
        if kind == "histogram" and (any(not math.isfinite(b) for b in bounds) or unordered):
            add("buckets", "buckets are finite and strictly increasing (+Inf is added for you)")
    if labels is not None and len(labels) > MAX_LABELS:
        add("labels", f"at most {MAX_LABELS} labels per rule")
    for label in labels or {}:
        if not LABEL_NAME.match(label) or label.startswith("__"):
            problems.append((("labels", label), f"{label!r} is not a Prometheus label name"))
        elif label in {"le", "quantile"}:
            problems.append(
                (("labels", label), f"{label!r} is reserved by Prometheus for histograms and summaries")
            )
    return problems


def exposed_names(name: str, kind: str) -> set[str]:
    """The family and sample names a metric takes in the exposition (OpenMetrics and Prometheus text)."""
    if kind == "counter":
        base = name.removesuffix("_total")
        return {base, f"{base}_total", f"{base}_created"}
    if kind == "histogram":
        return {name, f"{name}_bucket", f"{name}_count", f"{name}_sum", f"{name}_created"}
    return {name}


def rules_problems(rules: list[tuple[int, LogRule]]) -> list[tuple[Loc, str]]:
    """Problems between rules: rules may share a metric only when they agree on its type, help, labels
    and buckets (e.g. cache hits and misses as one counter with a constant ``result`` label); metrics
    of different names may not produce the same family or sample name (``app_x_total`` and ``app_x``)."""
    problems: list[tuple[Loc, str]] = []
    first: dict[str, tuple[int, tuple[object, ...]]] = {}
    owners: dict[str, str] = {}
    for index, rule in rules:  # the valid rules, each with its position in logs.rules
        clash = next(
            (owners[n] for n in exposed_names(rule.name, rule.type) if owners.get(n, rule.name) != rule.name),
            None,
        )
        if clash is not None:
            problems.append(
                (
                    ("rules", index, "name"),
                    f"{rule.name!r} and {clash!r} would expose the same name in /metrics: rename one",
                )
            )
            continue
        for exposed in exposed_names(rule.name, rule.type):
            owners.setdefault(exposed, rule.name)
        seen = first.get(rule.name)
        if seen is None:
            first[rule.name] = (index, rule.shape())
        elif seen[1] != rule.shape():
            problems.append(
                (
                    ("rules", index, "name"),
                    f"logs.rules[{seen[0]}] also writes {rule.name!r} with another type, help, label "
                    "names or buckets: rules sharing a metric must agree on them, or use another name",
                )
            )
    return problems


def rule_keys(rules: list[LogRule]) -> list[str]:
    """How each rule is named in the sidecar's own metrics: its metric's name, numbered when shared."""
    counts: dict[str, int] = {}
    for rule in rules:
        counts[rule.name] = counts.get(rule.name, 0) + 1
    keys: list[str] = []
    seen: dict[str, int] = {}
    for rule in rules:
        if counts[rule.name] == 1:
            keys.append(rule.name)
        else:
            seen[rule.name] = seen.get(rule.name, 0) + 1
            keys.append(f"{rule.name}#{seen[rule.name]}")
    return keys
