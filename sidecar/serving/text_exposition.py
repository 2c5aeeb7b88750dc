"""Prometheus text (0.0.4) and OpenMetrics exposition that never holds the event loop for long.

client_python's ``generate_latest`` builds a ``Sample`` and a label dict per line, sorts and escapes
every label set and formats every line from scratch, all in one go on the loop that also proxies the
app's traffic: 8-13 us per line, so a 10,000-line scrape held proxied requests for over 100 ms. Here:

- the bytes in front of each value (name, sorted and escaped labels, the space) are built once per
  series and kept across scrapes, keyed by the series' label values; a scrape only formats values;
- client_python's own metric classes (Counter, Gauge, Histogram, Summary) are read directly from
  their children, without ``collect()``'s per-sample objects; every other collector (custom ones such
  as the check metrics, the process collector) goes through ``collect()`` and the same prefix cache;
- the render is a series of steps of at most ``STEP_SECONDS`` (tens of microseconds) each; the async
  render yields to the loop between steps, so a proxied request waits for one short step at most,
  never for the whole scrape.

Why short fixed steps rather than long ones, or rendering only when the loop is idle: a request that
arrives during a step waits for the rest of it, so the step is what a scrape adds to a request's
latency. The gateway's p99 at one connection is about 0.4 ms, so staying within 10 % of it leaves some
40 us; a yield (``asyncio.sleep(0)``, one loop turn) costs about 1 us on uvloop, so 25 us steps add a
few per cent to the render's CPU time. A yield only when other work is waiting would save that, but
neither loop offers a cheap public look at pending I/O (uvloop hides its poller), and a fixed step
is already within the goal. (A busy loop lets the render take a share of its turns instead,
``LOOP_SHARE``, so a scrape still ends in a few hundred milliseconds when the gateway saturates it.)
Every piece of work between two clock reads is kept well below the step: a series (a histogram's
buckets, count and sum are read together, about 10 us), a few samples of a custom family, a piece of a
collector that hands over rows (``RowsCollector``; the process metrics read ``/proc`` piece by piece),
the compression of one step's text (a small deflate block buffer, so no compress call emits a large
block at once). Each custom collector's ``collect()`` still runs in one go: they are kept small
(microseconds) or turned into row collectors.

The output is byte for byte what client_python writes for the same registry and ``Accept`` header
(the tests compare both on a real sidecar registry); what this module does not handle itself (native
histograms, names that need quoting) is written by client_python's own encoder, family by family.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
import weakref
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, Protocol, cast, runtime_checkable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary
from prometheus_client import exposition as text_format
from prometheus_client import metrics as client_metrics
from prometheus_client import values as client_values
from prometheus_client.core import Metric
from prometheus_client.openmetrics import exposition as om_format
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar, Sample
from prometheus_client.utils import floatToGoString
from prometheus_client.validation import _is_valid_legacy_metric_name

STEP_SECONDS: Final = 25e-6
"""Encoding between two yields to the loop: a proxied request that arrives during a render waits for
the rest of one step at most (well under the 40 us that 10 % of the gateway's p99 leaves)."""
LOOP_SHARE: Final = 1 / 32
"""When the loop is busy, a step may take this share of the time the loop took to come back to the
render (never more than ``MAX_STEP_SECONDS``): a saturated loop, whose turns already last a millisecond
or more, then spends about 3 % of its time on a scrape rather than one 25 us step per turn, which
would stretch a 10,000-line scrape to seconds; an idle or lightly loaded loop keeps 25 us steps."""
MAX_STEP_SECONDS: Final = 250e-6
_MAX_FAMILIES: Final = 10_000  # cached custom families (by format, name, type, help, unit)
_CHECK_EVERY: Final = 16  # samples of a custom family (a few microseconds) between two clock reads
# Deflate's memory level sets how many symbols it buffers before it writes a block: at the default
# (8) a compress call that fills the buffer builds and writes a 16k-symbol block at once (90-150 us);
# at 3 a block is 512 symbols (under 20 us), and on this repetitive text the output is no larger.
_GZIP_MEM_LEVEL: Final = 3
_INF: Final = math.inf
_GO_SWITCH: Final = 1e6  # from here on Go (and client_python) write exponents where repr does not
_REPR_EXPONENT: Final = 1e16  # from here on repr writes an exponent itself
# Small whole numbers (counts, one-hot 0/1, sizes) are most values: a lookup is a third of a repr. 0.0 is
# left out of the general table because -0.0 equals it as a key but is written "-0.0"; counts (never
# negative zero) use _COUNTS, which has it.
_WHOLE: Final[dict[float, str]] = {float(n): repr(float(n)) for n in range(1, 1024)}
_COUNTS: Final[dict[float, str]] = {0.0: "0.0", **_WHOLE}
_OM_SUFFIXES: Final = ("_created", "_gcount", "_gsum")  # sorted: the text format's trailing gauges
_ALLOW_UTF8: Final = om_format.ALLOWUTF8
# client_python's functions, typed here (the library leaves them untyped)
_float_to_go: Final[Callable[[Any], str]] = floatToGoString
_om_generate: Final[Callable[..., bytes]] = om_format.generate_latest
_om_exemplar: Final[Callable[[Metric, Sample, Exemplar], str]] = om_format._compose_exemplar_string
_Step = Generator[None, None, None]


def _escape_value(value: str) -> str:
    """A label value in either format: backslash, newline and double quote escaped."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def go_float(value: Any) -> str:
    """``floatToGoString`` with its common cases (finite floats under 1e16) inline, same digits."""
    if value.__class__ is float:
        text = _WHOLE.get(value)
        if text is not None:
            return text
        if -_INF < value < _REPR_EXPONENT:
            text = repr(value)
            if value < _GO_SWITCH:
                return text
            dot = text.find(".")  # Go writes 1234567.0 as 1.234567e+06; client_python copies it
            mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
            return f"{mantissa}e+{dot - 1:02d}"
    return _float_to_go(value)


@dataclass(frozen=True, slots=True)
class Format:
    """What a scrape asked for, as client_python's ``choose_encoder`` decides it."""

    openmetrics: bool
    escaping: str
    version: str
    content_type: str

    @property
    def cache_key(self) -> tuple[bool, str]:
        """What the cached bytes depend on (not the version, which only native histograms use)."""
        return (self.openmetrics, self.escaping)


@functools.lru_cache(maxsize=64)
def negotiate(accept: str) -> Format:
    """Format, escaping and ``Content-Type`` for an ``Accept`` header, exactly as client_python picks them.

    Cached: a scraper sends the same header every time, and client_python's parsing of it costs more
    than a step of the render."""
    encoder, content_type = text_format.choose_encoder(accept)
    keywords: dict[str, str] = encoder.keywords if isinstance(encoder, partial) else {}
    function = encoder.func if isinstance(encoder, partial) else encoder
    return Format(
        openmetrics=function is om_format.generate_latest,
        escaping=keywords.get("escaping", om_format.UNDERSCORES),
        version=keywords.get("version", "1.0.0"),
        content_type=content_type,
    )


TEXT_0_0_4: Final = negotiate("")
OPENMETRICS_1_0_0: Final = negotiate("application/openmetrics-text; version=1.0.0")


def _help_text(documentation: str, fmt: Format) -> str:
    if fmt.openmetrics:
        return str(om_format._escape(documentation, _ALLOW_UTF8, om_format._is_legacy_labelname_rune))
    return documentation.replace("\\", r"\\").replace("\n", r"\n")


def _text_type(typ: str) -> str:
    return {"info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram", "unknown": "untyped"}.get(
        typ, typ
    )


def _header(name: str, typ: str, documentation: str, unit: str, fmt: Format) -> str:
    """The ``# HELP``/``# TYPE`` (and OpenMetrics ``# UNIT``) lines of one family."""
    escaping = fmt.escaping
    if fmt.openmetrics:
        escaped = om_format.escape_metric_name(name, escaping)
        head = f"# HELP {escaped} {_help_text(documentation, fmt)}\n# TYPE {escaped} {typ}\n"
        return head + (f"# UNIT {escaped} {unit}\n" if unit else "")
    if typ == "counter":
        name += "_total"
    elif typ == "info":
        name += "_info"
    escaped = om_format.escape_metric_name(name, escaping)
    return f"# HELP {escaped} {_help_text(documentation, fmt)}\n# TYPE {escaped} {_text_type(typ)}\n"


def _created_header(name: str, suffix: str, documentation: str, fmt: Format) -> str:
    escaped = om_format.escape_metric_name(name + suffix, fmt.escaping)
    return f"# HELP {escaped} {_help_text(documentation, fmt)}\n# TYPE {escaped} gauge\n"


@functools.lru_cache(maxsize=4096)
def _label_name(name: str, escaping: str) -> str:
    return str(om_format.escape_label_name(name, escaping))


@functools.lru_cache(maxsize=4096)
def _sample_name(name: str, openmetrics: bool, escaping: str) -> tuple[bool, str]:
    """Whether the name goes in front of the labels (else quoted inside them), and its escaped form."""
    legacy = escaping != _ALLOW_UTF8 or _is_valid_legacy_metric_name(name)
    if openmetrics and legacy:
        return True, str(om_format._escape(name, escaping, om_format._is_legacy_labelname_rune))
    return legacy, str(om_format.escape_metric_name(name, escaping))


def label_pair(name: str, value: str, escaping: str) -> str:
    """``name="value"``, the same in both formats (label values always allow UTF-8)."""
    return f'{_label_name(name, escaping)}="{_escape_value(value)}"'


def prefix(name: str, labelstr: str, fmt: Format) -> str:
    """A sample line up to its value: name, labels (joined ``label_pair``s, sorted) and the space."""
    legacy, escaped = _sample_name(name, fmt.openmetrics, fmt.escaping)
    if legacy:
        return f"{escaped}{{{labelstr}}} " if labelstr else f"{escaped} "
    return f"{{{escaped},{labelstr}}} " if labelstr else f"{{{escaped}}} "


def series_prefix(name: str, labels: Iterable[tuple[str, str]], fmt: Format) -> str:
    """Everything in a sample line before its value, trailing space included (client_python's rules)."""
    escaping = fmt.escaping
    return prefix(name, ",".join(label_pair(k, v, escaping) for k, v in sorted(labels)), fmt)


def exemplar_text(exemplar: Exemplar) -> str:
    """`` # {labels} value [timestamp]`` after an OpenMetrics counter or bucket line."""
    labels = ",".join(f'{k}="{_escape_value(v)}"' for k, v in sorted(exemplar.labels.items()))
    if exemplar.timestamp is not None:
        return f" # {{{labels}}} {_float_to_go(exemplar.value)} {exemplar.timestamp}"
    return f" # {{{labels}}} {_float_to_go(exemplar.value)}"


class Valued(Protocol):
    """What a grouped row is read from: a collector's own sample (``collectors.base.Sample``)."""

    @property
    def label_values(self) -> tuple[str, ...]: ...

    @property
    def value(self) -> float: ...


@dataclass(slots=True)
class FamilyRows:
    """A family as plain rows of (label values, value), for collectors built per scrape.

    ``collect()`` makes a ``Metric`` and a ``Sample`` with a label dict per line; a collector that can
    hand over rows instead (``RowsCollector``) is encoded from them directly, its label values tuple
    being the cache key of the series' prefix. ``to_metric`` gives client_python's ``Metric`` of the
    same family, so the collector's ``collect()`` and this path cannot disagree.

    ``groups`` hold rows that share their first label value (a check's samples) as the objects the
    collector already keeps (``Valued``: label values and value), written after ``rows``: a scrape
    then makes no tuple per row, which for 10,000 samples was 20,000 objects and a garbage collection
    of a millisecond or more in the middle of a step.
    """

    name: str  # as client_python names the family: a counter's without ``_total``
    type: str  # "gauge", "counter" or "unknown" (untyped)
    documentation: str
    labelnames: tuple[str, ...]
    sample_name: str  # every row's sample name
    rows: list[tuple[tuple[str, ...], float]]
    groups: list[tuple[str, Sequence[Valued]]] = field(default_factory=list)

    @classmethod
    def new(cls, name: str, typ: str, documentation: str, labelnames: Iterable[str] = ()) -> FamilyRows:
        """Named as GaugeMetricFamily and CounterMetricFamily name theirs: a counter's samples end in
        ``_total``, its family name does not; an ``untyped`` family is client_python's ``unknown``."""
        if typ == "counter":
            family = name.removesuffix("_total")
            return cls(family, typ, documentation, tuple(labelnames), family + "_total", [])
        return cls(name, "unknown" if typ == "untyped" else typ, documentation, tuple(labelnames), name, [])

    @classmethod
    def exact(cls, name: str, typ: str, documentation: str, labelnames: Iterable[str] = ()) -> FamilyRows:
        """Samples under exactly ``name`` (an exporter's family): a counter's family name drops ``_total``."""
        family = cls.new(name, typ, documentation, labelnames)
        family.sample_name = name
        return family

    def size(self) -> int:
        """Rows in all, grouped ones included."""
        return len(self.rows) + sum(len(items) for _, items in self.groups)

    def to_metric(self) -> Metric:
        metric = Metric(self.name, self.documentation, self.type)
        labelnames, sample = self.labelnames, self.sample_name
        for values, value in self.rows:
            metric.add_sample(sample, dict(zip(labelnames, values, strict=True)), value)
        for first, items in self.groups:
            for item in items:
                labels = dict(zip(labelnames, (first, *item.label_values), strict=True))
                metric.add_sample(sample, labels, item.value)
        return metric


@runtime_checkable
class RowsCollector(Protocol):
    """A collector that also yields its families as ``FamilyRows``; ``None`` marks a point where the
    render may give the loop back (between families, or inside a long pass that builds them)."""

    def exposition_rows(self) -> Iterator[FamilyRows | None]: ...


class _OneFamily:
    """A collector of one already collected family, for client_python's encoder (the fallback)."""

    def __init__(self, metric: Metric) -> None:
        self._metric = metric

    def collect(self) -> Iterable[Metric]:
        return [self._metric]


def _client_python_family(metric: Metric, fmt: Format) -> str:
    """One family written by client_python itself (what the fast paths leave alone)."""
    if fmt.openmetrics:
        body = _om_generate(_OneFamily(metric), escaping=fmt.escaping, version=fmt.version)
        return body.decode("utf-8").removesuffix("# EOF\n")
    collector: Any = _OneFamily(metric)
    return text_format.generate_latest(collector, escaping=fmt.escaping).decode("utf-8")


@dataclass(slots=True)
class _Series:
    """The cached prefixes of one child of a client_python metric, in the order its samples are written."""

    # counter _total; gauge; histogram buckets, _count (and _sum); summary _count, _sum
    values: list[str]
    created: str
    exemplars: list[tuple[Exemplar | None, str]]
    created_line: tuple[float, str] = (
        math.nan,
        "",
    )  # the last _created value and its line: it rarely changes


class _WrapperCache:
    """Per client_python metric and format: family header and per-series prefixes, by label values."""

    __slots__ = ("created_header", "header", "series")

    def __init__(self, header: str, created_header: str) -> None:
        self.header = header
        self.created_header = created_header
        self.series: dict[tuple[str, ...], _Series] = {}


class _FamilyCache:
    """Per custom family and format: header and prefixes by (sample name, label items)."""

    __slots__ = ("by_group", "by_values", "created_headers", "header", "prefixes", "suffixed")

    def __init__(self, header: str, name: str, openmetrics: bool) -> None:
        self.header = header
        # text format only: sample names that go into trailing gauge families, to their suffix
        self.suffixed = {} if openmetrics else {name + suffix: suffix for suffix in _OM_SUFFIXES}
        self.created_headers: dict[str, str] = {}
        self.prefixes: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
        self.by_values: dict[tuple[Any, ...], str] = {}  # FamilyRows: by row key
        self.by_group: dict[str, dict[tuple[str, ...], str]] = {}  # FamilyRows' groups: by first, then key


_FAST_TYPES: Final = (Counter, Gauge, Histogram, Summary)
_WITH_CREATED: Final = frozenset({"counter", "histogram", "summary"})  # the families with _created samples


def _direct_values() -> bool:
    """Whether children keep plain in-process values (not multiprocess files) that can be read directly."""
    return client_values.ValueClass is client_values.MutexValue


class _Render:
    """One render: output parts, the step clock and the encoded chunks."""

    __slots__ = ("chunks", "compressor", "deadline", "parts")

    def __init__(self, compress: bool) -> None:
        self.parts: list[str] = []
        self.chunks: list[bytes] = []
        self.compressor = (  # gzip framing
            zlib.compressobj(1, zlib.DEFLATED, 31, _GZIP_MEM_LEVEL) if compress else None
        )
        self.deadline = time.perf_counter() + STEP_SECONDS

    def flush(self) -> None:
        if not self.parts:
            return
        data = "".join(self.parts).encode("utf-8")
        self.parts.clear()
        self.chunks.append(self.compressor.compress(data) if self.compressor is not None else data)

    def due(self) -> bool:
        return time.perf_counter() >= self.deadline

    def restart(self, waited: float = 0.0) -> None:
        """Start the next step: its deadline, then the compression of what the last step wrote, so
        the step's budget covers the compression too (a third of the work when gzipped). ``waited``:
        how long the loop took to come back to the render (``LOOP_SHARE``)."""
        budget = waited * LOOP_SHARE
        if budget < STEP_SECONDS:
            budget = STEP_SECONDS
        elif budget > MAX_STEP_SECONDS:
            budget = MAX_STEP_SECONDS
        self.deadline = time.perf_counter() + budget
        self.flush()

    def body(self) -> bytes:
        self.flush()
        if self.compressor is not None:
            self.chunks.append(self.compressor.flush())
        return b"".join(self.chunks)


class ExpositionEncoder:
    """Renders one registry; its caches live as long as the registry and are shared by every scrape."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._wrappers: weakref.WeakKeyDictionary[Collector, dict[tuple[bool, str], _WrapperCache]] = (
            weakref.WeakKeyDictionary()
        )
        self._families: dict[tuple[bool, str, str, str, str, str], _FamilyCache] = {}

    def render_sync(self, fmt: Format, *, gzip: bool = False) -> bytes:
        """The whole exposition in one go (tests, benchmarks, callers off the loop)."""
        render = _Render(gzip)
        for _ in self._steps(fmt, render):
            render.restart()
        return render.body()

    async def render(self, fmt: Format, *, gzip: bool = False) -> bytes:
        """The exposition, yielding to the event loop after every step of at most ``STEP_SECONDS``."""
        render = _Render(gzip)
        clock = time.perf_counter
        for _ in self._steps(fmt, render):
            paused = clock()
            await asyncio.sleep(0)
            render.restart(clock() - paused)
        # the last step's compression, then deflate's last block and the join, in steps of their own
        await asyncio.sleep(0)
        render.flush()
        await asyncio.sleep(0)
        return render.body()

    def _created_series(self) -> bool:
        """Whether the registry wants ``_created`` series (the app's registry says so per registry; a
        plain client_python registry always does, subject to client_python's process-wide switch)."""
        return bool(getattr(self._registry, "created_series", True))

    def _collectors(self) -> list[Collector]:
        registry: Any = self._registry
        with registry._lock:
            return list(registry._collector_to_names)

    def _steps(self, fmt: Format, render: _Render) -> _Step:
        """Encode into ``render``; yield whenever the step's time is up (between series or samples)."""
        registry: Any = self._registry
        if getattr(registry, "_target_info", None):
            yield from self._family(registry._target_info_metric(), fmt, render)
        direct = _direct_values()
        for collector in self._collectors():
            if direct and type(collector) in _FAST_TYPES:
                yield from self._wrapper(collector, fmt, render)
            elif hasattr(collector, "exposition_rows"):  # a RowsCollector (isinstance on a Protocol is slow)
                yield from self._rows(cast(RowsCollector, collector), fmt, render)
            else:
                for metric in collector.collect():
                    yield from self._family(metric, fmt, render)
                    if render.due():  # between families too: a collector may hand over dozens
                        yield
            if render.due():
                yield
        if fmt.openmetrics:
            render.parts.append("# EOF\n")

    # -- client_python's own metric classes, read from their children --------------------------------

    def _wrapper_cache(self, collector: Any, fmt: Format) -> _WrapperCache:
        per_format = self._wrappers.get(collector)
        if per_format is None:
            per_format = self._wrappers[collector] = {}
        cache = per_format.get(fmt.cache_key)
        if cache is None:
            metric = collector._get_metric()
            header = _header(metric.name, metric.type, metric.documentation, metric.unit, fmt)
            created = _created_header(metric.name, "_created", metric.documentation, fmt)
            cache = per_format[fmt.cache_key] = _WrapperCache(header, created)
        return cache

    def _new_series(self, collector: Any, child: Any, labels: tuple[str, ...], fmt: Format) -> _Series:
        name: str = collector._name
        escaping = fmt.escaping
        pairs = sorted(zip(collector._labelnames, labels, strict=True))
        texts = [label_pair(k, v, escaping) for k, v in pairs]
        labelstr = ",".join(texts)
        if isinstance(collector, Counter):
            values = [prefix(name + "_total", labelstr, fmt)]
        elif isinstance(collector, Gauge):
            values = [prefix(name, labelstr, fmt)]
        elif isinstance(collector, Histogram):
            before = sum(1 for k, _ in pairs if k < "le")  # "le" takes its sorted place among the labels
            bucket = name + "_bucket"
            values = [
                prefix(
                    bucket,
                    ",".join([*texts[:before], label_pair("le", _float_to_go(b), escaping), *texts[before:]]),
                    fmt,
                )
                for b in child._upper_bounds
            ]
            values.append(prefix(name + "_count", labelstr, fmt))
            if child._upper_bounds[0] >= 0:
                values.append(prefix(name + "_sum", labelstr, fmt))
        else:
            values = [prefix(name + "_count", labelstr, fmt), prefix(name + "_sum", labelstr, fmt)]
        return _Series(values, prefix(name + "_created", labelstr, fmt), [(None, "")] * len(values))

    def _wrapper(self, collector: Any, fmt: Format, render: _Render) -> _Step:
        cache = self._wrapper_cache(collector, fmt)
        if collector._is_parent():
            with collector._lock:  # two lists rather than a tuple per child: fewer objects to collect
                keys: list[tuple[str, ...]] = list(collector._metrics)
                values: list[Any] = list(collector._metrics.values())
        else:
            keys, values = [()], [collector]
        series = cache.series
        if len(series) > len(keys):  # children were removed: drop their prefixes
            live = set(keys)
            series = cache.series = {k: v for k, v in series.items() if k in live}
        parts = render.parts
        parts.append(cache.header)
        use_created = client_metrics._use_created and self._created_series()
        created_lines: list[str] = []
        kind = type(collector)
        openmetrics = fmt.openmetrics
        for labels, child in zip(keys, values, strict=True):
            entry = series.get(labels)
            if entry is None:
                entry = series[labels] = self._new_series(collector, child, labels, fmt)
            self._child(kind, child, entry, parts, openmetrics)
            if use_created and kind is not Gauge:
                seen, created = entry.created_line
                if seen != child._created:
                    created = entry.created + go_float(child._created) + "\n"
                    entry.created_line = (child._created, created)
                if openmetrics:
                    parts.append(created)
                else:
                    created_lines.append(created)
            if render.due():
                yield
        if created_lines:
            parts.append(cache.created_header)
            parts.extend(created_lines)

    def _child(self, kind: type, child: Any, entry: _Series, parts: list[str], openmetrics: bool) -> None:
        """The value lines of one series (not ``_created``), all read in this one call."""
        if kind is Histogram:
            self._histogram(child, entry, parts, openmetrics)
        elif kind is Counter:
            value = child._value
            line = entry.values[0] + go_float(value._value)
            if openmetrics and value._exemplar is not None:
                line += self._exemplar(entry, 0, value._exemplar)
            parts.append(line + "\n")
        elif kind is Gauge:
            if "_child_samples" in child.__dict__:  # set_function: the value is computed on read
                parts.append(entry.values[0] + go_float(child._child_samples()[0].value) + "\n")
            else:
                parts.append(entry.values[0] + go_float(child._value._value) + "\n")
        else:  # Summary
            parts.append(entry.values[0] + go_float(child._count._value) + "\n")
            parts.append(entry.values[1] + go_float(child._sum._value) + "\n")

    @staticmethod
    def _exemplar(entry: _Series, index: int, exemplar: Exemplar) -> str:
        seen, text = entry.exemplars[index]
        if seen is not exemplar:
            text = exemplar_text(exemplar)
            entry.exemplars[index] = (exemplar, text)
        return text

    def _histogram(self, child: Any, entry: _Series, parts: list[str], openmetrics: bool) -> None:
        """One histogram series: cumulative buckets, count, sum, read together.

        Cumulative counts plateau (every bucket above the largest observation holds the total), so
        a count is formatted only when it differs from the previous bucket's.
        """
        prefixes = entry.values
        acc = 0.0
        last = -1.0
        text = ""
        index = 0
        for bucket in child._buckets:
            acc += bucket._value
            if acc != last:
                text = _COUNTS.get(acc) or go_float(acc)
                last = acc
            if openmetrics and bucket._exemplar is not None:
                parts.append(prefixes[index] + text + self._exemplar(entry, index, bucket._exemplar) + "\n")
            else:
                parts.append(prefixes[index] + text + "\n")
            index += 1
        parts.append(prefixes[index] + text + "\n")
        if len(prefixes) > index + 1:
            parts.append(prefixes[index + 1] + go_float(child._sum._value) + "\n")

    def _new_family(self, key: tuple[bool, str, str, str, str, str], cache: _FamilyCache) -> _FamilyCache:
        """Keep a new family's cache; a collector inventing family names or help texts per scrape
        must not grow the caches forever, so past ``_MAX_FAMILIES`` they start over."""
        if len(self._families) >= _MAX_FAMILIES:
            self._families.clear()
        self._families[key] = cache
        return cache

    # -- collectors that hand over plain rows -----------------------------------------------------------

    def _rows(self, collector: RowsCollector, fmt: Format, render: _Render) -> _Step:
        for family in collector.exposition_rows():
            if family is None:
                if render.due():
                    yield
                continue
            key = (*fmt.cache_key, family.name, family.type, family.documentation, "")
            cache = self._families.get(key)
            if cache is None:
                header = _header(family.name, family.type, family.documentation, "", fmt)
                cache = self._new_family(key, _FamilyCache(header, family.name, fmt.openmetrics))
            rows, groups = family.rows, family.groups
            if len(cache.by_values) > 4 * len(rows) + 64:  # label sets churned: start over rather than grow
                cache.by_values = {}
            if groups and len(cache.by_group) > 4 * len(groups) + 64:
                cache.by_group = {}
            render.parts.append(cache.header)
            yield from self._plain_rows(family, fmt, render, cache.by_values)
            if groups:
                yield from self._grouped_rows(family, fmt, render, cache.by_group)
            if render.due():
                yield

    @staticmethod
    def _plain_rows(family: FamilyRows, fmt: Format, render: _Render, prefixes: dict[Any, str]) -> _Step:
        name, labelnames = family.sample_name, family.labelnames
        lookup, append = prefixes.get, render.parts.append
        countdown = _CHECK_EVERY
        for values, value in family.rows:
            prefix = lookup(values)
            if prefix is None:
                prefix = prefixes[values] = series_prefix(name, zip(labelnames, values, strict=True), fmt)
            append(prefix + go_float(value) + "\n")
            countdown -= 1
            if not countdown:
                countdown = _CHECK_EVERY
                if render.due():
                    yield

    @staticmethod
    def _grouped_rows(
        family: FamilyRows, fmt: Format, render: _Render, by_group: dict[str, dict[Any, str]]
    ) -> _Step:
        """Groups' rows: prefixes by first label value, then by the item's own label values tuple."""
        name, labelnames = family.sample_name, family.labelnames
        append = render.parts.append
        countdown = _CHECK_EVERY
        for first, items in family.groups:
            prefixes = by_group.get(first)
            if prefixes is None or len(prefixes) > 4 * len(items) + 64:
                prefixes = by_group[first] = {}
            lookup = prefixes.get
            for item in items:
                values = item.label_values
                prefix = lookup(values)
                if prefix is None:
                    labels = zip(labelnames, (first, *values), strict=True)
                    prefix = prefixes[values] = series_prefix(name, labels, fmt)
                append(prefix + go_float(item.value) + "\n")
                countdown -= 1
                if not countdown:
                    countdown = _CHECK_EVERY
                    if render.due():
                        yield

    # -- every other collector, from collect() ------------------------------------------------------

    def _family_cache(self, metric: Metric, fmt: Format) -> _FamilyCache:
        key = (*fmt.cache_key, metric.name, metric.type, metric.documentation, metric.unit)
        cache = self._families.get(key)
        if cache is None:
            header = _header(metric.name, metric.type, metric.documentation, metric.unit, fmt)
            cache = self._new_family(key, _FamilyCache(header, metric.name, fmt.openmetrics))
        return cache

    def _family(self, metric: Metric, fmt: Format, render: _Render) -> _Step:
        escaping = fmt.escaping
        if metric.type in _WITH_CREATED and not self._created_series():
            created = metric.name + "_created"  # left out as the app's registry leaves it out of collect()
            metric.samples = [s for s in metric.samples if s.name != created]
        samples = metric.samples
        if any(s.native_histogram is not None for s in samples) or (
            escaping == _ALLOW_UTF8 and not _is_valid_legacy_metric_name(metric.name)
        ):
            render.parts.append(_client_python_family(metric, fmt))
            return
        cache = self._family_cache(metric, fmt)
        prefixes = cache.prefixes
        if len(prefixes) > 4 * len(samples) + 64:  # label sets churned: start over rather than grow
            prefixes = cache.prefixes = {}
        parts = render.parts
        parts.append(cache.header)
        openmetrics = fmt.openmetrics
        trailing: dict[str, list[str]] = {}
        suffixed = cache.suffixed
        for count, sample in enumerate(samples, 1):
            key = (sample.name, tuple(sample.labels.items()))
            prefix = prefixes.get(key)
            if prefix is None:
                prefix = prefixes[key] = series_prefix(sample.name, sample.labels.items(), fmt)
            line = self._sample_line(prefix, sample, openmetrics, metric)
            suffix = suffixed.get(sample.name)
            if suffix is None:
                parts.append(line)
            else:
                trailing.setdefault(suffix, []).append(line)
            if count % _CHECK_EVERY == 0 and render.due():
                yield
        for suffix, lines in sorted(trailing.items()):
            header = cache.created_headers.get(suffix)
            if header is None:
                header = _created_header(metric.name, suffix, metric.documentation, fmt)
                cache.created_headers[suffix] = header
            parts.append(header)
            parts.extend(lines)

    @staticmethod
    def _sample_line(prefix: str, sample: Sample, openmetrics: bool, metric: Metric) -> str:
        value = sample.value
        if openmetrics:
            text = prefix + ("" if value is None else go_float(value))
            if sample.timestamp is not None:
                text += f" {sample.timestamp}"
            if sample.exemplar:
                text += _om_exemplar(metric, sample, sample.exemplar)
            return text + "\n"
        text = prefix + go_float(value)
        if sample.timestamp is not None:
            text += f" {int(float(sample.timestamp) * 1000):d}"
        return text + "\n"


_ENCODERS: weakref.WeakKeyDictionary[CollectorRegistry, ExpositionEncoder] = weakref.WeakKeyDictionary()


def encoder_for(registry: CollectorRegistry) -> ExpositionEncoder:
    """The registry's encoder (one per registry, so its caches outlive a scrape)."""
    encoder = _ENCODERS.get(registry)
    if encoder is None:
        encoder = _ENCODERS[registry] = ExpositionEncoder(registry)
    return encoder
