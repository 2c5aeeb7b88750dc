"""The rule set as one generated Python function: what mtail and Vector get from compiling their programs.

Interpreting rules costs a call per rule, per condition and per label on every line; with ten rules
that is most of a line's time. So the compiled rules are also written out as Python source, every
test, label lookup and metric update inlined, and compiled once with ``compile``/``exec`` when the
rules are loaded (and on every reload). Indexed rules get one function per indexed value, reached
through a dict lookup on the line's field, so a line only runs the code of rules that can match it.

Nothing from the configuration is written into the source: every value (field names, accepted texts,
regular expressions, label caches, families) is passed in the function's namespace under a name this
module makes up (``k3``, ``acc7``...), so the source is made of this module's own text and numbers
only. ``CompiledRule.offer`` remains the reference semantics; the unit tests hold the two equal.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

from sidecar.logs.parse import LogRecord
from sidecar.logs.rule_metrics import OTHER, RuleStats
from sidecar.logs.rule_settings import RuleCondition

Apply = Callable[[LogRecord], None]

_ACCESS_ATTRIBUTES = {
    "@method": "method",
    "@url": "url",
    "@route": "route",
    "@status": "status",
    "@duration": "duration_seconds",
    "@bytes": "bytes",
}
_RECORD_ATTRIBUTES = {
    "@level": "level",
    "@message": "message",
    "@source": "source",
    "@request_id": "request_id",
    "@trace_id": "trace_id",
}


def count_error(stats: RuleStats, reason: str) -> None:
    """A matched line whose value could not be used (the rare path, so a call is fine)."""
    stats.errors[reason] = stats.errors.get(reason, 0) + 1


class Writer:
    """Lines of source plus the namespace their names refer to."""

    def __init__(self, namespace: dict[str, Any]) -> None:
        self.lines: list[str] = []
        self.namespace = namespace

    def name(self, prefix: str, value: Any) -> str:
        """A fresh name bound to ``value`` in the namespace (``prefix`` is always this module's text)."""
        assert prefix.isidentifier()
        made = f"{prefix}{len(self.namespace)}"
        self.namespace[made] = value
        return made

    def line(self, indent: int, text: str) -> None:
        self.lines.append("    " * indent + text)

    def get(self, indent: int, target: str, path: str) -> None:
        """``target = <the value at path>`` for a record ``r`` with fields ``f``."""
        if path in _RECORD_ATTRIBUTES:
            self.line(indent, f"{target} = r.{_RECORD_ATTRIBUTES[path]}")
        elif path == "@error_type":
            self.line(indent, f"{target} = r.error.type if r.error is not None else None")
        elif path in _ACCESS_ATTRIBUTES:
            attribute = _ACCESS_ATTRIBUTES[path]
            self.line(indent, f"{target} = r.access.{attribute} if r.access is not None else None")
        else:
            parts = path.split(".")
            self.line(indent, f"{target} = f.get({self.name('k', path)})")
            if len(parts) > 1:  # the literal dotted key first, then the nested path
                self.line(indent, f"if {target} is None:")
                self.line(indent + 1, f"{target} = f.get({self.name('k', parts[0])})")
                for part in parts[1:]:
                    self.line(indent + 1, f"if type({target}) is dict:")
                    self.line(indent + 2, f"{target} = {target}.get({self.name('k', part)})")
                    self.line(indent + 1, "else:")
                    self.line(indent + 2, f"{target} = None")

    def text(self, indent: int, target: str) -> None:
        """``target`` (a field's value) as the text rules compare, or None."""
        self.line(indent, f"if type({target}) is not str:")
        self.line(indent + 1, f"{target} = text_of({target})")


def _condition(w: Writer, indent: int, condition: RuleCondition, accepted: frozenset[str] | None) -> str:
    """Statements that leave ``x`` tested; returns the expression true when the condition holds."""
    w.get(indent, "x", condition.field)
    if accepted is not None:
        w.text(indent, "x")
        return f"x in {w.name('acc', accepted)}"
    if condition.regex is not None:
        w.text(indent, "x")
        search = w.name("rx", re.compile(condition.regex).search)
        return f"(x is not None and {search}(x) is not None)"
    return "x is not None" if condition.exists else "x is None"


def rule_block(  # noqa: PLR0912, PLR0915 (one block of source, top to bottom)
    w: Writer, indent: int, rule: Any, accepted_of: Callable[[RuleCondition], frozenset[str] | None]
) -> None:
    """One rule inlined: ``while True:`` so that any failed test can ``break`` out of it."""
    w.line(indent, "while True:")
    body = indent + 1
    if rule.levels is not None:
        w.line(body, f"if r.level not in {w.name('lv', rule.levels)}:")
        w.line(body + 1, "break")
    if rule.sources is not None:
        w.line(body, f"if r.source not in {w.name('src', rule.sources)}:")
        w.line(body + 1, "break")
    for condition in rule.all_conditions:
        holds = _condition(w, body, condition, accepted_of(condition))
        w.line(body, f"if not ({holds}):")
        w.line(body + 1, "break")
    if rule.any_conditions:
        w.line(body, "anyok = False")
        for condition in rule.any_conditions:
            w.line(body, "if not anyok:")
            holds = _condition(w, body + 1, condition, accepted_of(condition))
            w.line(body + 1, f"anyok = {holds}")
        w.line(body, "if not anyok:")
        w.line(body + 1, "break")
    stats = w.name("st", rule.stats)
    w.line(body, f"{stats}.matched += 1")
    names: list[str] = []
    for position, label in enumerate(rule.labels):
        target = f"l{position}"
        names.append(target)
        if label.field is None:
            w.line(body, f"{target} = {w.name('cv', label.constant or '')}")
            continue
        # Texts and integers (a status, a count) are looked up as they are; anything else as text.
        w.get(body, "x", label.field)
        learn = w.name("learn", label.learn)
        missing = w.name("miss", label.missing)
        w.line(body, "t = type(x)")
        w.line(body, "if t is str or t is int:")
        w.line(body + 1, f"{target} = {w.name('cache', label.cache)}.get(x)")
        w.line(body + 1, f"if {target} is None:")
        w.line(body + 2, f"{target} = {learn}(x)")
        w.line(body + 1, f"elif {target} is OTHER:")
        w.line(body + 2, f"{w.name('lab', label)}.overflowed += 1")
        w.line(body, "elif x is None:")
        w.line(body + 1, f"{target} = {missing}")
        w.line(body, "else:")
        w.line(body + 1, "x = text_of(x)")
        w.line(body + 1, f"{target} = {missing} if x is None else {learn}(x)")
    key = "()" if not names else f"({names[0]},)" if len(names) == 1 else f"({', '.join(names)})"
    family = rule.family
    series = w.name("ser", family.series)
    slot = w.name("slot", family.slot)
    w.line(body, f"key = {key}")
    if rule.value_path is None:
        _cells(w, body, series, slot)
        w.line(body, "cells[0] += 1")
        w.line(body, "break")
        return
    # The value is read after the labels, as the reference does, so a bad value still counts its match.
    w.get(body, "x", rule.value_path)
    w.line(body, "t = type(x)")
    w.line(body, "if t is int or t is float:")
    w.line(body + 1, "n = x")
    w.line(body, "elif x is None:")
    w.line(body + 1, f"count_error({stats}, MISSING)")
    w.line(body + 1, "break")
    w.line(body, "elif t is str:")
    w.line(body + 1, "try:")
    w.line(body + 2, "n = float(x)")
    w.line(body + 1, "except ValueError:")
    w.line(body + 2, f"count_error({stats}, NON_NUMERIC)")
    w.line(body + 2, "break")
    w.line(body, "else:")
    w.line(body + 1, f"count_error({stats}, NON_NUMERIC)")
    w.line(body + 1, "break")
    w.line(body, "if n - n != 0:")  # nan and +-inf
    w.line(body + 1, f"count_error({stats}, NON_NUMERIC)")
    w.line(body + 1, "break")
    if rule.scale != 1.0:
        w.line(body, f"n *= {w.name('scale', rule.scale)}")
    if rule.kind == "counter":  # a negative amount is refused before it makes a series
        w.line(body, "if n < 0:")
        w.line(body + 1, f"count_error({stats}, NEGATIVE)")
        w.line(body + 1, "break")
    _cells(w, body, series, slot)
    if rule.kind == "histogram":
        w.line(body, f"cells[bisect_left({w.name('bounds', family.bounds)}, n)] += 1")
        w.line(body, "cells[-1] += n")
    elif rule.kind == "gauge":
        w.line(body, "cells[0] = n")
    else:
        w.line(body, "cells[0] += n")
    w.line(body, "break")


def _cells(w: Writer, indent: int, series: str, slot: str) -> None:
    """``cells``: the series for ``key``, made (within the family's bound) when new."""
    w.line(indent, f"cells = {series}.get(key)")
    w.line(indent, "if cells is None:")
    w.line(indent + 1, f"cells = {slot}(key)")


def generate(
    gates: list[tuple[str, dict[str, list[Any]]]],
    ungated: list[Any],
    accepted_of: Callable[[RuleCondition], frozenset[str] | None],
    text_of: Callable[[Any], str | None],
    reasons: dict[str, str],
) -> tuple[Apply, str]:
    """The ``apply(record)`` function for these rules, and its source (for tests and debugging)."""
    namespace: dict[str, Any] = {
        "OTHER": OTHER,
        "text_of": text_of,
        "bisect_left": bisect_left,
        "count_error": count_error,
        **reasons,
    }
    w = Writer(namespace)
    tables: list[tuple[str, str]] = []
    sources: list[str] = []
    for path, by_value in gates:
        handlers: dict[str, Callable[..., None]] = {}
        shared: dict[tuple[int, ...], Callable[..., None]] = {}  # one function per list of rules
        for value, rules in by_value.items():
            same = tuple(id(rule) for rule in rules)
            handler = shared.get(same)
            if handler is None:
                fw = Writer(namespace)
                fw.line(0, "def handler(r, f):")
                for rule in rules:
                    rule_block(fw, 1, rule, accepted_of)
                handler = shared[same] = _build(fw, "handler")
                sources.append("\n".join(fw.lines))
            handlers[value] = handler
        tables.append((path, w.name("gate", handlers)))
    w.line(0, "def apply(r):")
    w.line(1, "f = r.fields")
    for path, table in tables:
        w.get(1, "x", path)
        w.line(1, "if x is not None:")
        w.text(2, "x")
        w.line(2, f"h = {table}.get(x)")
        w.line(2, "if h is not None:")
        w.line(3, "h(r, f)")
    for rule in ungated:
        rule_block(w, 1, rule, accepted_of)
    w.line(1, "return None")
    sources.append("\n".join(w.lines))
    apply: Apply = _build(w, "apply")
    return apply, "\n\n".join(sources)


def _build(w: Writer, name: str) -> Any:
    source = "\n".join(w.lines) + "\n"
    code = compile(source, f"<logs.rules {name}>", "exec")
    local: dict[str, Any] = {}
    exec(code, w.namespace, local)  # noqa: S102 (our own generated source; config values are only in the namespace)
    return local[name]
