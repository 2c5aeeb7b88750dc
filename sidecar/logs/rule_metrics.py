"""The metric families ``logs.rules`` write, and the rules' own health counters, rendered at scrape.

Values live in plain dicts keyed by label values and are turned into Prometheus families only when
scraped, so a line that matches a rule costs a dict update, never a lock or a ``.labels()`` call (the
pipeline and the scrape both run on the event loop). Every family has a bound on its label sets
(``max_series``); what does not fit folds into one all-``_other`` series and is counted.

Both kinds of state are keyed by what defines them (a family's shape and the rules feeding it; a rule's
settings), so a reload that leaves a rule unchanged hands it the same objects and its counters go on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

OTHER = "_other"
Key = tuple[str, ...]


class Family:
    """One metric family: counter and gauge values, or histogram bucket counts plus sum, by label values."""

    __slots__ = (
        "bounds",
        "help",
        "kind",
        "label_names",
        "max_series",
        "name",
        "other",
        "overflowed",
        "series",
    )

    def __init__(
        self,
        name: str,
        kind: str,
        help_text: str,
        label_names: tuple[str, ...],
        bounds: tuple[float, ...],
        max_series: int,
    ) -> None:
        self.name = name
        self.kind = kind
        self.help = help_text
        self.label_names = label_names
        self.bounds = bounds  # histogram upper bounds, +Inf implied
        self.max_series = max_series
        # counter/gauge: key -> [value]; histogram: key -> [count per bucket..., count above, sum]
        self.series: dict[Key, list[float]] = {}
        self.other: Key = (OTHER,) * len(label_names)
        self.overflowed = 0

    def slot(self, key: Key) -> list[float]:
        """The series for ``key``, created while under ``max_series``, else the overflow series."""
        cells = self.series.get(key)
        if cells is not None:
            return cells
        if len(self.series) >= self.max_series:
            self.overflowed += 1
            key = self.other
            cells = self.series.get(key)
            if cells is not None:
                return cells
        cells = self.series[key] = [0.0] * (len(self.bounds) + 2) if self.kind == "histogram" else [0.0]
        return cells

    def render(self) -> Metric:
        names = list(self.label_names)
        if self.kind == "counter":
            counter = CounterMetricFamily(self.name, self.help, labels=names)
            for key, cells in self.series.items():
                counter.add_metric(list(key), cells[0])
            return counter
        if self.kind == "gauge":
            gauge = GaugeMetricFamily(self.name, self.help, labels=names)
            for key, cells in self.series.items():
                gauge.add_metric(list(key), cells[0])
            return gauge
        histogram = HistogramMetricFamily(self.name, self.help, labels=names)
        edges = [*(_float_text(b) for b in self.bounds), "+Inf"]
        for key, cells in self.series.items():
            running = 0.0
            buckets: list[tuple[str, float]] = []
            for edge, count in zip(edges, cells[:-1], strict=True):
                running += count
                buckets.append((edge, running))
            histogram.add_metric(list(key), buckets, cells[-1])
        return histogram


def _float_text(value: float) -> str:
    return str(int(value)) + ".0" if value == int(value) else repr(value)


class Overflowing(Protocol):
    """Anything that folds values into ``_other`` and counts it: a label, a family's series bound."""

    overflowed: int


class RuleStats:
    """One rule's own counters: lines matched, values it could not use by reason, and where its label
    values overflow (each label, and ``_series`` for its family's bound)."""

    __slots__ = ("errors", "matched", "overflow")

    def __init__(self) -> None:
        self.matched = 0
        self.errors: dict[str, int] = {}
        self.overflow: list[tuple[str, Overflowing]] = []


class RuleMetrics:
    """The registry collector for every rule family and the ``sidecar_log_rule_*`` families.

    ``families`` and ``stats`` are replaced as a whole on reload (``install``); scrapes read whatever is
    installed.
    """

    def __init__(self) -> None:
        self.families: dict[str, Family] = {}
        self.stats: dict[str, RuleStats] = {}

    def describe(self) -> list[Metric]:
        """No fixed names: the rules' families change on reload; config checks keep them from clashing."""
        return []

    def collect(self) -> Iterator[Metric]:
        for family in self.families.values():
            yield family.render()
        matched = CounterMetricFamily(
            "sidecar_log_rule_matches", "Log lines that matched each rule in logs.rules.", labels=["rule"]
        )
        errors = CounterMetricFamily(
            "sidecar_log_rule_errors",
            "Matched lines a rule could not use, by reason (missing_field, non_numeric, negative).",
            labels=["rule", "reason"],
        )
        overflow = CounterMetricFamily(
            "sidecar_log_rule_label_overflow",
            "Values folded into _other because a rule's label (or, as _series, its label sets) was full "
            "or the value was not allowed.",
            labels=["rule", "label"],
        )
        for rule, stats in self.stats.items():
            matched.add_metric([rule], stats.matched)
            for reason, count in stats.errors.items():
                errors.add_metric([rule, reason], count)
            for label, source in stats.overflow:
                overflow.add_metric([rule, label], source.overflowed)
        yield matched
        yield errors
        yield overflow
