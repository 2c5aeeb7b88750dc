"""The one interface every dependency collector implements.

A collector knows one kind of dependency and nothing of HTTP endpoints, Prometheus exposition or
config files. It opens its connection (or pool) once, answers ``collect()`` with what it measured,
and raises when the dependency cannot be measured. Timing, timeouts, reason mapping and redaction
are done once, around every collector, by the probe template in ``sidecar.probing.probe``.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Literal, NamedTuple, TypeVar

from sidecar.core.settings_model import FrozenModel


class Status(enum.StrEnum):
    """Health states, ordered by severity (IETF health-check draft vocabulary)."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    @staticmethod
    def worst(statuses: Sequence[Status]) -> Status:
        return max(statuses, key=lambda s: _SEVERITY[s], default=Status.PASS)


_SEVERITY = {Status.PASS: 0, Status.WARN: 1, Status.FAIL: 2}


class Reason(enum.StrEnum):
    """Why a probe failed: a small closed set, so it can be a metric label."""

    TIMEOUT = "timeout"
    CONNECT = "connect"
    AUTH = "auth"
    PROTOCOL = "protocol"
    UNHEALTHY = "unhealthy"  # the dependency answered and said (or showed) it is not well
    UNEXPECTED = "unexpected"


MetricType = Literal["gauge", "counter", "untyped"]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric family a collector can emit. Declared as module constants so names are greppable.

    ``exporter`` names the exporter whose family this reproduces exactly (name, type, labels), so
    the community mixins work unchanged; such names are the exporter's, even where they break a
    ``promtool check metrics`` naming rule (``pg_locks_count``, ``node_memory_MemTotal_bytes``). An
    exporter's counter without ``_total`` is ``untyped`` here: OpenMetrics has no such counter.
    Families of the sidecar's own leave it empty.
    """

    name: str
    help: str
    type: MetricType = "gauge"
    labels: tuple[str, ...] = ()
    exporter: str = ""


class Sample(NamedTuple):
    """One measured value of a declared metric family; label values follow ``spec.labels``.

    A named tuple rather than a frozen dataclass: equally immutable, and built several times faster
    (a queue probe makes 16 per queue, 16,000 for 1,000 queues; ``bench/bullmq_probe.py``).
    """

    spec: MetricSpec
    value: float
    label_values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Measurement:
    """A value shown in /health (``component:measurement``) and compared with warn/fail thresholds."""

    value: float | str
    unit: str = ""


@dataclass(slots=True)
class Observation:
    """What one successful ``collect()`` saw.

    ``status`` is the collector's own verdict where the dependency reports one (Elasticsearch
    yellow is warn); configured thresholds on ``measurements`` may make it worse, never better.
    """

    measurements: dict[str, Measurement] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    status: Status = Status.PASS
    output: str = ""
    info: dict[str, str] = field(default_factory=dict)


class ProbeError(Exception):
    """Raised by a collector that knows exactly why the dependency is not usable."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class CollectorOptions(FrozenModel, frozen=True):
    """Base for a collector's typed, kind-specific options; unknown keys are errors."""


OptionsT = TypeVar("OptionsT", bound=CollectorOptions)


@dataclass(frozen=True, slots=True)
class CheckTarget:
    """What a collector is pointed at: the check's name, its target (URL, address, path) and timeout."""

    name: str
    target: str | None
    timeout: float


class Collector(ABC, Generic[OptionsT]):
    """Base class of every collector.

    Subclasses set ``kind``, ``options_model``, ``component_type`` and implement ``collect``.
    ``open`` must not block on the network: drivers that pool connect lazily on first use, so a
    dependency that is down at start-up is a failed probe, not a failed start.
    """

    kind: ClassVar[str]
    options_model: ClassVar[type[CollectorOptions]] = CollectorOptions
    component_type: ClassVar[str] = "component"
    target_required: ClassVar[bool] = True
    critical_by_default: ClassVar[bool] = True
    # The exporter's "could it be measured" family (redis_up, pg_up, probe_success), present on
    # failed probes too; ``up_follows_verdict``: blackbox's probe_success also fails when the
    # collector's own verdict is fail (status code, body), while redis_up and pg_up only say
    # the server answered. Configured warn/fail thresholds never change either.
    up_metric: ClassVar[MetricSpec | None] = None
    up_follows_verdict: ClassVar[bool] = False
    duration_metric: ClassVar[MetricSpec | None] = None  # blackbox's probe_duration_seconds
    measurements: ClassVar[tuple[str, ...]] = ("responseTime",)
    """What ``collect`` may measure: the names ``/health`` shows and ``warn:``/``fail:`` may judge."""

    def __init__(self, check: CheckTarget, options: OptionsT) -> None:
        self.check = check
        self.options = options

    async def open(self) -> None:
        """Prepare clients or pools; must not wait on the dependency."""

    async def close(self) -> None:
        """Release every connection; called once at shutdown or when the check is removed."""

    @abstractmethod
    async def collect(self) -> Observation:
        """Do the I/O and return what was measured, or raise."""

    def outcome_samples(self, observation: Observation | None, duration: float) -> list[Sample]:
        """The ``up``-style and duration samples of one probe; ``observation`` is ``None`` when it failed.

        Called by the probe template for every probe, so these series exist with value 0 while the
        dependency is down, which is what the exporters' alerts (``redis_up == 0``) look for.
        """
        samples: list[Sample] = []
        if self.up_metric is not None:
            up = observation is not None
            if up and self.up_follows_verdict and observation is not None:
                up = observation.status is not Status.FAIL
            samples.append(Sample(self.up_metric, 1.0 if up else 0.0))
        if self.duration_metric is not None:
            samples.append(Sample(self.duration_metric, duration))
        return samples

    def classify_error(self, exc: BaseException) -> Reason | None:
        """Map a driver-specific exception to a reason; ``None`` falls back to the generic mapping."""
        return None

    def secrets(self) -> Sequence[str]:
        """Strings that must never appear in an error text (passwords, tokens)."""
        return ()

    @classmethod
    def validate_target(cls, target: str | None) -> str | None:
        """Check the target's form at configuration time; raise ``ValueError`` with the fix."""
        return target


def labels_of(mapping: Mapping[str, Any], keys: Sequence[str]) -> tuple[str, ...]:
    """Label values in a fixed order, stringified; small helper for collectors building samples."""
    return tuple(str(mapping.get(k, "")) for k in keys)
