"""Metric names: what the sidecar exports (from its code) and what a PromQL expression refers to.

Shared by the alert-rule, dashboard and Prometheus end-to-end tests, so that no rule or panel can name
a metric the sidecar does not export.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from functools import cache

import collectors
from collectors.base import MetricSpec

# Series Prometheus itself adds to every target.
SYNTHETIC = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_series_added"})

_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
}

# PromQL words that are not metric names: aggregation operators, keywords, functions.
KEYWORDS = frozenset(
    """
    sum min max avg group stddev stdvar count count_values bottomk topk quantile
    and or unless by without on ignoring group_left group_right bool offset atan2 inf nan
    abs absent absent_over_time ceil changes clamp clamp_max clamp_min day_of_month day_of_week
    day_of_year days_in_month delta deriv exp floor histogram_quantile holt_winters hour idelta
    increase irate label_join label_replace ln log2 log10 minute month predict_linear rate resets
    round scalar sgn sort sort_desc sqrt time timestamp vector year avg_over_time min_over_time
    max_over_time sum_over_time count_over_time quantile_over_time stddev_over_time stdvar_over_time
    last_over_time present_over_time acos acosh asin asinh atan atanh cos cosh sin sinh tan tanh
    deg pi rad
    """.split()  # noqa: SIM905 - a word list reads better than 90 quoted strings
)

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"' + r"|'(?:[^'\\]|\\.)*'")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_FUNCTION_CALL = re.compile(r"\b[a-zA-Z_][a-zA-Z0-9_]*\s*\(")
# An identifier not preceded by a digit, dot or another name character (so 5m, 1e3, 0.5 are skipped)
# and followed by a selector, a range, a closing parenthesis, whitespace, an operator or the end.
_IDENTIFIER = re.compile(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?=[\s{\[)+\-*/%^=!<>,]|$)")


def referenced_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (recording-rule names included: filter them out)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _FUNCTION_CALL.sub("(", text)
    return {name for name in _IDENTIFIER.findall(text) if name not in KEYWORDS}


def selectors(expr: str) -> list[str]:
    """Every vector selector of an expression, ``name{matchers}`` or a bare ``name``, as written."""
    found = []
    text = _STRING.sub(lambda m: "\0" * len(m.group()), expr)  # keep offsets, hide braces in strings
    grouping_spans = [m.span() for m in _GROUPING.finditer(text)]
    for match in re.finditer(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^{}]*\})?", text):
        name, start = match.group(1), match.start()
        if name in KEYWORDS or any(a <= start < b for a, b in grouping_spans):
            continue
        after = text[match.end() :].lstrip()
        if after.startswith("(") and match.group(2) is None:
            continue  # a function call
        if re.match(r"[\d.]", text[max(0, start - 1)]):
            continue
        found.append(expr[match.start() : match.end()].strip())
    return found


def collector_metric_names() -> set[str]:
    """Every ``MetricSpec`` constant of every collector module, and the families a module declares
    up front in ``GENERIC_FAMILIES`` (mysql_global_status_*, named after what the server reports)."""
    names = set()
    for module_info in pkgutil.iter_modules(collectors.__path__):
        module = importlib.import_module(f"collectors.{module_info.name}")
        names |= {v.name for v in vars(module).values() if isinstance(v, MetricSpec)}
        names |= {spec.name for spec in getattr(module, "GENERIC_FAMILIES", ())}
    return names


@cache
def exported_metric_names() -> frozenset[str]:
    """Every series name the sidecar can expose: collectors' specs and the app's registry, expanded.

    The registry is the one a fully wired ``Server`` builds (gateway on, listeners' rejection counter
    registered), so the gateway, log, Sentry and correlation families are in it.
    """
    from sidecar.app_keys import REGISTRY  # heavy imports only when asked
    from sidecar.config import Settings
    from sidecar.server import Server
    from sidecar.serving.listeners import rejection_recorder

    settings = Settings(default_checks=False, gateway={"upstream": "http://127.0.0.1:9"})
    server = Server(settings)
    registry = server.app[REGISTRY]
    rejection_recorder(registry, "health")
    names = set(collector_metric_names()) | SYNTHETIC
    for family in registry.collect():
        suffixes = _SUFFIXES.get(family.type)
        if suffixes is None:
            names.add(family.name)
        else:
            names |= {family.name + suffix for suffix in suffixes}
    return frozenset(names)
