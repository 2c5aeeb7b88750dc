"""The ``checks:`` section: one dependency check, and the thresholds that turn a measurement into warn/fail.

The root configuration (``sidecar.config``) composes this model; nothing here imports it back.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from collectors import KNOWN_KINDS, CollectorUnavailable, load_collector
from collectors.base import Collector, CollectorOptions
from sidecar.core.durations import Duration
from sidecar.core.settings_model import (
    FrozenModel,
    Meta,
    Model,
    ValidationError,
    ValidationInfo,
    did_you_mean,
    field_validator,
    model_validator,
)

CHECK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")  # \Z: "$" allows a final newline
_THRESHOLD = re.compile(r"^\s*([<>])\s*(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)\s*\Z", re.ASCII)


class Threshold(FrozenModel, frozen=True):
    """``above`` (default for plain numbers) or ``below`` a limit: ``0.8``, ``">0.8"``, ``"<14"``."""

    limit: float
    below: bool = False

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError('a threshold is a number (meaning "above") or a string like "<14" or ">0.8"')
        if isinstance(value, int | float):
            return {"limit": float(value)}
        if isinstance(value, str):
            match = _THRESHOLD.match(value)
            if not match:
                raise ValueError(f'{value!r} is not a threshold: write a number, or "<14" / ">0.8"')
            return {"limit": float(match[2]), "below": match[1] == "<"}
        return value

    @field_validator("limit")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("a threshold must be a finite number")
        return value

    def crossed(self, value: float) -> bool:
        return value < self.limit if self.below else value > self.limit

    def __str__(self) -> str:
        return f"{'<' if self.below else '>'}{self.limit:.15g}"  # re-parses to the same limit


class CheckConfig(Model, dict=True):
    """One dependency check: what to probe, how often, and what its result means for readiness."""

    name: str
    kind: str
    target: str | None = None
    interval: Duration = 10.0
    timeout: Duration = 3.0
    critical: Annotated[bool | None, Meta(description="default: the kind's own default")] = None
    warn: dict[str, Threshold] = {}
    fail: dict[str, Threshold] = {}
    rise: Annotated[int, Meta(ge=1, le=100, description="passes in a row before a failed check is ready")] = 2
    fall: Annotated[int, Meta(ge=1, le=100, description="failures in a row before a check is not ready")] = 1
    max_backoff: Annotated[Duration | None, Meta(description="longest wait between failing probes")] = None
    startup_grace: Annotated[
        Duration | None,
        Meta(description="'starting', not failing, until the first pass or this long; gates /startupz"),
    ] = None
    options: dict[str, Any] = {}

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not CHECK_NAME.match(value):
            raise ValueError(
                "a check name is 1-63 letters, digits, '_', '.' or '-', starting with a letter or digit"
            )
        return value

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in KNOWN_KINDS:
            hint = did_you_mean(value, KNOWN_KINDS)
            raise ValueError(f"unknown kind {value!r}{hint}; use one of: {', '.join(KNOWN_KINDS)}")
        try:
            load_collector(value)
        except CollectorUnavailable as exc:
            raise ValueError(str(exc)) from exc
        return value

    # Each check across fields is a field validator reading the fields before it (``info.data``), so
    # one pass reports every problem of a check: its target, timing, thresholds and options together.

    @field_validator("target", always=True)
    @classmethod
    def _target_fits_kind(cls, value: str | None, info: ValidationInfo) -> str | None:
        collector = _collector_of(info)
        if collector is None:
            return value
        if collector.target_required and not value:
            collector.validate_target(value)  # most kinds say what to write
            raise ValueError(f"a {collector.kind} check needs a target")
        return collector.validate_target(value)

    @field_validator("interval")
    @classmethod
    def _positive_interval(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("interval must be greater than zero")
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout_within_interval(cls, value: float, info: ValidationInfo) -> float:
        if value <= 0:
            raise ValueError("timeout must be greater than zero")
        interval = info.data.get("interval")
        if interval is not None and value > interval:
            raise ValueError(
                f"timeout ({value:g}s) is longer than interval ({interval:g}s): "
                "shorten the timeout so one probe ends before the next is due"
            )
        return value

    @model_validator(mode="fields")
    @classmethod
    def _measured_by_kind(cls, info: ValidationInfo) -> None:
        # the names under warn/fail are checked whatever their thresholds: a bad limit hides no typo
        collector = _collector_of(info)
        if collector is None:
            return
        known = collector.measurements
        problems = [
            (
                (section, name),
                f"a {collector.kind} check measures no {name!r}{did_you_mean(name, known)}: "
                f"use one of {', '.join(known)}",
            )
            for section in ("warn", "fail")
            for name in info.keys.get(section, ())
            if name not in known
        ]
        if problems:
            raise ValidationError(problems)  # type: ignore[arg-type]

    @field_validator("options", always=True)
    @classmethod
    def _options_of_kind(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        collector = _collector_of(info)
        if collector is not None:
            collector.options_model.model_validate(value)  # every unknown or invalid option at once
        return value

    @model_validator(mode="after")
    def _resolve_collector(self) -> CheckConfig:
        cls = load_collector(self.kind)  # every field is valid: the kind, target and options fit
        # resolved once here; kept beside the fields (not fields themselves: never configured or dumped)
        self.__dict__["collector_class"] = cls
        self.__dict__["typed_options"] = cls.options_model.model_validate(self.options)
        return self

    @property
    def collector_class(self) -> type[Collector]:  # type: ignore[type-arg]
        cls: type[Collector] = self.__dict__["collector_class"]  # type: ignore[type-arg]
        return cls

    @property
    def typed_options(self) -> CollectorOptions:
        options: CollectorOptions = self.__dict__["typed_options"]
        return options

    @property
    def is_critical(self) -> bool:
        return self.collector_class.critical_by_default if self.critical is None else self.critical

    @property
    def backoff_cap(self) -> float:
        return self.max_backoff if self.max_backoff is not None else max(self.interval, 4 * self.interval)


def _collector_of(info: ValidationInfo) -> type[Collector] | None:  # type: ignore[type-arg]
    """The collector class of the check's kind, when the kind is valid."""
    kind = info.data.get("kind")
    return load_collector(kind) if isinstance(kind, str) else None
