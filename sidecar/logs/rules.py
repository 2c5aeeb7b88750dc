"""``logs.rules`` compiled once into matchers, and applied to every normalised record.

Compilation does everything a line does not need to repeat: field paths become getters (a plain key is
one ``dict.get``), values to compare become frozensets of their text, regular expressions are compiled,
``level`` becomes the set of levels at or above it. Rules whose ``all`` holds an ``equals``/``one_of``
test are indexed by that field and value, so a line costs one lookup per distinct indexed field however
many rules there are, and only the rules the lookup names are tested further (what Vector's
``log_to_metric`` and mtail get from compiling their programs). Rules without such a test are tried on
every line.

A matched line updates a plain list in ``rule_metrics.Family``; a value that is missing or not a number
is counted by rule and reason, never raised. ``RuleSet.compile`` takes the previous set so that a reload
keeps the state (counters, label values seen) of rules whose settings did not change.

What runs on each line is ``RuleSet.apply``: the rules written out as one generated function
(``rule_codegen``). ``CompiledRule.offer`` and ``RuleSet.apply_reference`` are the same semantics
interpreted rule by rule, kept as the reference the tests hold the generated code to.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from sidecar.core.routes import RouteNormaliser
from sidecar.logs.parse import LogRecord
from sidecar.logs.rule_codegen import Apply, generate
from sidecar.logs.rule_metrics import OTHER, Family, RuleMetrics, RuleStats
from sidecar.logs.rule_settings import LEVEL_ORDER, LogRule, RuleCondition, RuleLabel, rule_keys

Getter = Callable[[LogRecord, dict[str, Any]], Any]
Test = Callable[[LogRecord, dict[str, Any]], bool]

MAX_LABEL_CHARS = 128
LABEL_CACHE = 4096  # raw texts remembered per label (their answers), beyond which each is worked out again
MISSING = "missing_field"
NON_NUMERIC = "non_numeric"
NEGATIVE = "negative"


def text_of(value: Any) -> str | None:
    """A field's value as the text rules compare and label with; objects and lists have none."""
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is float:
        return str(int(value)) if value.is_integer() else repr(value)
    return None


def _pseudo(name: str) -> Getter:  # noqa: PLR0911 (one getter per normalised field)
    """A getter of one of the parser's normalised fields."""
    if name == "@level":
        return lambda r, f: r.level
    if name == "@message":
        return lambda r, f: r.message
    if name == "@source":
        return lambda r, f: r.source
    if name == "@request_id":
        return lambda r, f: r.request_id
    if name == "@trace_id":
        return lambda r, f: r.trace_id
    if name == "@error_type":
        return lambda r, f: r.error.type if r.error is not None else None
    attribute = {
        "@method": "method",
        "@url": "url",
        "@route": "route",
        "@status": "status",
        "@duration": "duration_seconds",
        "@bytes": "bytes",
    }[name]

    def access_field(r: LogRecord, f: dict[str, Any]) -> Any:
        access = r.access
        return getattr(access, attribute) if access is not None else None

    return access_field


def getter(spec: str) -> Getter:
    """Compile a field path: ``@name`` (normalised), ``key`` or ``a.b.c`` (the literal dotted key wins)."""
    if spec.startswith("@"):
        return _pseudo(spec)
    parts = tuple(spec.split("."))
    if len(parts) == 1:
        return lambda r, f: f.get(spec)

    def nested(r: LogRecord, f: dict[str, Any]) -> Any:
        node: Any = f.get(spec)
        if node is not None:
            return node
        node = f
        for part in parts:
            if type(node) is not dict:
                return None
            node = node.get(part)
        return node

    return nested


def _accepted(condition: RuleCondition) -> frozenset[str] | None:
    if condition.equals is not None:
        return frozenset({text_of(condition.equals) or ""})
    if condition.one_of:
        return frozenset(text_of(v) or "" for v in condition.one_of)
    return None


def compile_test(condition: RuleCondition) -> Test:
    """One condition as a function of (record, fields)."""
    get = getter(condition.field)
    accepted = _accepted(condition)
    if accepted is not None:

        def is_in(r: LogRecord, f: dict[str, Any]) -> bool:
            value = get(r, f)
            if type(value) is str:
                return value in accepted
            text = text_of(value)
            return text is not None and text in accepted

        return is_in
    if condition.regex is not None:
        search = re.compile(condition.regex).search

        def matches(r: LogRecord, f: dict[str, Any]) -> bool:
            text = text_of(get(r, f))
            return text is not None and search(text) is not None

        return matches
    if condition.exists:
        return lambda r, f: get(r, f) is not None
    return lambda r, f: get(r, f) is None


def _status_class(text: str) -> str:
    return f"{text[0]}xx" if len(text) == 3 and text.isdigit() and "1" <= text[0] <= "5" else OTHER


class LabelValues:
    """One label of one rule: its value from each line, bounded to ``max_values`` distinct values.

    Answers are remembered by raw text (up to ``LABEL_CACHE``), so a repeated value costs one dict
    lookup; values beyond the bound, not allowed or too long fold into ``_other`` and are counted.
    """

    __slots__ = (
        "allow",
        "cache",
        "constant",
        "field",
        "get",
        "max_values",
        "missing",
        "normalise",
        "overflowed",
        "values",
    )

    def __init__(self, settings: RuleLabel, route_templates: Sequence[str]) -> None:
        self.constant = settings.value
        self.field = settings.field
        self.get: Getter | None = getter(settings.field) if settings.field is not None else None
        self.missing = settings.missing
        self.allow = frozenset(settings.allow)
        self.max_values = settings.max_values
        self.values: set[str] = set()
        self.cache: dict[str | int, str] = {}
        self.overflowed = 0
        self.normalise: Callable[[str], str] | None = None
        if settings.normalise == "lower":
            self.normalise = str.lower
        elif settings.normalise == "status_class":
            self.normalise = _status_class
        elif settings.normalise == "route":
            self.normalise = RouteNormaliser(route_templates, settings.max_values).route

    def resolve(self, record: LogRecord, fields: dict[str, Any]) -> str:
        get = self.get
        if get is None:
            return self.constant or ""
        value = get(record, fields)
        if type(value) is not str:
            value = text_of(value)
            if value is None:
                return self.missing
        out = self.cache.get(value)
        if out is None:
            return self._learn(value)
        if out is OTHER:
            self.overflowed += 1
        return out

    def learn(self, raw: str | int) -> str:
        """The label value for a text (or an integer) not answered from the cache, remembered under it
        while there is room."""
        if type(raw) is str:
            return self._learn(raw)
        out = self._learn(str(raw))
        if len(self.cache) < LABEL_CACHE:
            self.cache[raw] = out  # int keys beside str: the generated code checks type() first
        return out

    def _learn(self, text: str) -> str:
        out = self.normalise(text) if self.normalise is not None else text
        if len(out) > MAX_LABEL_CHARS or (self.allow and out not in self.allow):
            out = OTHER
        elif out not in self.values:
            if len(self.values) >= self.max_values or out == OTHER:
                out = OTHER
            else:
                self.values.add(out)
        if out == OTHER:
            out = OTHER  # the one constant, so the cached answer is recognised by identity
            self.overflowed += 1
        if len(self.cache) < LABEL_CACHE:
            self.cache[text] = out
        return out


class CompiledRule:
    """One rule ready to run: its tests, value getter, labels, family and counters."""

    __slots__ = (
        "all_conditions",
        "alls",
        "any_conditions",
        "anys",
        "family",
        "gate",
        "key",
        "kind",
        "labels",
        "levels",
        "scale",
        "sources",
        "stats",
        "value",
        "value_path",
    )

    def __init__(self, key: str, rule: LogRule, route_templates: Sequence[str]) -> None:
        self.key = key
        self.kind = rule.type
        match = rule.match
        gate = next((c for c in match.all if c.equals is not None or c.one_of), None)
        self.gate: tuple[str, frozenset[str]] | None = None
        if gate is not None:
            accepted = _accepted(gate)
            assert accepted is not None
            self.gate = (gate.field, accepted)
        self.all_conditions = tuple(c for c in match.all if c is not gate)
        self.any_conditions = tuple(match.any)
        self.alls = tuple(compile_test(c) for c in self.all_conditions)
        self.anys = tuple(compile_test(c) for c in self.any_conditions)
        self.value_path = rule.value
        self.levels = frozenset(LEVEL_ORDER[LEVEL_ORDER.index(match.level) :]) if match.level else None
        self.sources = frozenset(match.source) or None
        self.value: Getter | None = getter(rule.value) if rule.value is not None else None
        self.scale = rule.scale()
        self.labels = tuple(LabelValues(label, route_templates) for label in rule.labels.values())
        self.stats = RuleStats()
        self.stats.overflow = list(zip(rule.labels, self.labels, strict=True))
        self.family: Family | None = None

    def bind(self, family: Family) -> None:
        self.family = family
        self.stats.overflow = [(n, s) for n, s in self.stats.overflow if n != "_series"]
        self.stats.overflow.append(("_series", family))

    def offer(self, record: LogRecord, fields: dict[str, Any]) -> None:  # noqa: PLR0911, PLR0912 (one rule)
        """Test the line (its gate already passed) and, when it matches, record its value (the reference
        semantics; the generated code does the same inline)."""
        levels = self.levels
        if levels is not None and record.level not in levels:
            return
        sources = self.sources
        if sources is not None and record.source not in sources:
            return
        for test in self.alls:
            if not test(record, fields):
                return
        if self.anys:
            for test in self.anys:
                if test(record, fields):
                    break
            else:
                return
        stats = self.stats
        stats.matched += 1
        labels = self.labels
        if not labels:
            key: tuple[str, ...] = ()
        elif len(labels) == 1:
            key = (labels[0].resolve(record, fields),)
        else:
            key = tuple([label.resolve(record, fields) for label in labels])
        family = self.family
        assert family is not None
        get = self.value
        if get is None:  # a counter of lines
            family.slot(key)[0] += 1
            return
        raw = get(record, fields)
        kind = type(raw)
        if kind is int or kind is float:
            number: float = raw
        elif raw is None:
            stats.errors[MISSING] = stats.errors.get(MISSING, 0) + 1
            return
        elif kind is str:
            try:
                number = float(raw)
            except ValueError:
                stats.errors[NON_NUMERIC] = stats.errors.get(NON_NUMERIC, 0) + 1
                return
        else:
            stats.errors[NON_NUMERIC] = stats.errors.get(NON_NUMERIC, 0) + 1
            return
        if not math.isfinite(number):
            stats.errors[NON_NUMERIC] = stats.errors.get(NON_NUMERIC, 0) + 1
            return
        number *= self.scale
        if self.kind == "histogram":
            cells = family.slot(key)
            cells[bisect_left(family.bounds, number)] += 1
            cells[-1] += number
        elif self.kind == "gauge":
            family.slot(key)[0] = number
        elif number < 0:
            stats.errors[NEGATIVE] = stats.errors.get(NEGATIVE, 0) + 1
        else:
            family.slot(key)[0] += number


def _identity(rule: LogRule, route_templates: Sequence[str]) -> bytes:
    """What a rule is, as bytes: two rules with equal identities behave the same."""
    return msgspec.json.encode([rule, list(route_templates)])


class RuleSet:
    """Every compiled rule, indexed by gate; ``apply`` runs them on one record."""

    def __init__(
        self, rules: list[CompiledRule], identities: list[bytes], families: dict[str, tuple[bytes, Family]]
    ) -> None:
        self.rules = rules
        self._identities = identities
        self._families = families
        gates: dict[str, dict[str, list[CompiledRule]]] = {}
        ungated: list[CompiledRule] = []
        for rule in rules:
            if rule.gate is None:
                ungated.append(rule)
                continue
            spec, accepted = rule.gate
            table = gates.setdefault(spec, {})
            for text in sorted(accepted):
                table.setdefault(text, []).append(rule)
        self.gates = gates
        self.ungated = tuple(ungated)
        self.apply: Apply
        self.apply, self.source = generate(
            list(gates.items()),
            ungated,
            _accepted,
            text_of,
            {"MISSING": MISSING, "NON_NUMERIC": NON_NUMERIC, "NEGATIVE": NEGATIVE},
        )

    def __len__(self) -> int:
        return len(self.rules)

    @classmethod
    def compile(
        cls,
        rules: list[LogRule],
        metrics: RuleMetrics,
        route_templates: Sequence[str] = (),
        previous: RuleSet | None = None,
    ) -> RuleSet:
        """Compile ``rules`` and install their families in ``metrics``, reusing what did not change."""
        keys = rule_keys(rules)
        identities = [_identity(rule, route_templates) for rule in rules]
        old_rules: dict[tuple[str, bytes], CompiledRule] = {}
        old_families: dict[str, tuple[bytes, Family]] = {}
        if previous is not None:
            old_rules = {(r.key, i): r for r, i in zip(previous.rules, previous._identities, strict=True)}
            old_families = previous._families
        compiled = [
            old_rules.get((key, identity)) or CompiledRule(key, rule, route_templates)
            for key, rule, identity in zip(keys, rules, identities, strict=True)
        ]
        by_name: dict[str, list[int]] = {}
        for index, rule in enumerate(rules):
            by_name.setdefault(rule.name, []).append(index)
        families: dict[str, tuple[bytes, Family]] = {}
        for name, indexes in by_name.items():
            first = rules[indexes[0]]
            signature = msgspec.json.encode(
                [repr(first.shape()), first.max_series, [identities[i] for i in indexes]]
            )
            kept = old_families.get(name)
            if kept is not None and kept[0] == signature:
                family = kept[1]
            else:
                bounds = first.effective_buckets() if first.type == "histogram" else ()
                family = Family(name, first.type, first.help, tuple(first.labels), bounds, first.max_series)
            families[name] = (signature, family)
            for index in indexes:
                compiled[index].bind(family)
        metrics.families = {name: family for name, (_sig, family) in families.items()}
        metrics.stats = {rule.key: rule.stats for rule in compiled}
        return cls(compiled, identities, families)

    def apply_reference(self, record: LogRecord) -> None:
        """What the generated ``apply`` does, interpreted rule by rule (the semantics the tests hold)."""
        fields = record.fields
        for spec, table in self.gates.items():
            value = getter(spec)(record, fields)
            if value is not None:
                text = value if type(value) is str else text_of(value)
                hit = table.get(text) if text is not None else None
                if hit is not None:
                    for rule in hit:
                        rule.offer(record, fields)
        for rule in self.ungated:
            rule.offer(record, fields)
