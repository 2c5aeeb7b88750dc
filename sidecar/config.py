"""The one validated configuration model: a YAML file, overlaid by the environment.

Every YAML setting can also be given as ``SIDECAR_<SECTION>__<KEY>``; the environment wins. The common
variables ``DATABASE_URL`` and ``REDIS_URL`` add checks with no file at all. Invalid configuration is
reported field by field, with the fix, before anything starts.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from collectors import KNOWN_KINDS, CollectorUnavailable, load_collector
from collectors.base import Collector, CollectorOptions
from sidecar.durations import Duration
from sidecar.gateway.settings import GatewaySettings, gateway_env_aliases
from sidecar.http_guard import ListenerLimits
from sidecar.listener_security import MetricsAuth, is_loopback_host
from sidecar.logsources.settings import LogSettings
from sidecar.sentry.settings import SentrySettings, apply_environment
from sidecar.settings_model import (
    FrozenModel,
    Meta,
    Model,
    SecretStr,
    ValidationError,
    did_you_mean,
    field,
    field_validator,
    is_model_type,
    location,
    model_validator,
)
from sidecar.tls import ListenerTLS, TLSConfig
from sidecar.tracing.settings import TracingConfigError, TracingSettings, plan_tracing

log = logging.getLogger(__name__)

CHECK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")  # \Z: "$" allows a final newline
MIN_EXPOSED_TOKEN = 16
_THRESHOLD = re.compile(r"^\s*([<>])\s*(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)\s*\Z", re.ASCII)


class ConfigError(Exception):
    """Configuration that cannot start the sidecar; ``problems`` are ``(field, message)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {m}" for f, m in problems))
        self.problems = problems


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

    @model_validator(mode="after")
    def _finite(self) -> Threshold:
        if not math.isfinite(self.limit):
            raise ValueError("a threshold must be a finite number")
        return self

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
        return value

    @model_validator(mode="after")
    def _resolve_collector(self) -> CheckConfig:
        if self.interval <= 0 or self.timeout <= 0:
            raise ValueError("interval and timeout must be greater than zero")
        if self.timeout > self.interval:
            raise ValueError(
                f"timeout ({self.timeout:g}s) is longer than interval ({self.interval:g}s): "
                "shorten the timeout so one probe ends before the next is due"
            )
        try:
            cls = load_collector(self.kind)
        except CollectorUnavailable as exc:
            raise ValueError(str(exc)) from exc
        if cls.target_required and not self.target:
            raise ValueError(f"a {self.kind} check needs a target")
        self.target = cls.validate_target(self.target)
        try:
            typed_options = cls.options_model.model_validate(self.options)
        except ValidationError as exc:
            raise ValidationError([(("options", *loc), message) for loc, message in exc.problems]) from None
        # resolved once here; kept beside the fields (not fields themselves: never configured or dumped)
        self.__dict__["collector_class"] = cls
        self.__dict__["typed_options"] = typed_options
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


class RouteSettings(Model):
    """How request paths become ``http_route`` labels (shared by the gateway and log-derived metrics)."""

    templates: Annotated[list[str], Meta(description="route templates such as /users/{id}")] = []
    max_routes: Annotated[int, Meta(ge=1, le=10_000, description="distinct routes before overflow")] = 200

    @field_validator("templates")
    @classmethod
    def _templates_start_with_slash(cls, value: list[str]) -> list[str]:
        for template in value:
            if not template.startswith("/"):
                raise ValueError(f"route template {template!r} must start with '/'")
        return value


class Settings(Model, dict=True):
    """Everything the sidecar reads at start-up; ``SIDECAR_*`` environment variables win over the values
    given (see ``environment_overlay``)."""

    listen: Annotated[str, Meta(description="health and metrics listener")] = "0.0.0.0:9797"
    admin_listen: Annotated[str, Meta(description="admin listener (drain, debug)")] = "127.0.0.1:9798"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    service_name: Annotated[str, Meta(description="the service the sidecar stands next to")] = "app"
    shutdown_timeout: Annotated[Duration, Meta(description="longest clean shutdown")] = 15.0
    default_checks: Annotated[bool, Meta(description="add host and own-process checks")] = True
    admin_token: Annotated[SecretStr | None, Meta(description="bearer token the admin listener requires")] = (
        None
    )
    checks: list[CheckConfig] = []
    routes: RouteSettings = field(default_factory=RouteSettings)
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    metrics_auth: Annotated[
        MetricsAuth | None,
        Meta(description="credentials /metrics and /health require (basic or bearer_token)"),
    ] = None
    tls: Annotated[TLSConfig | None, Meta(description="TLS for every listener without its own")] = None
    listen_tls: Annotated[ListenerTLS, Meta(description="TLS of the health listener; false: none")] = None
    admin_tls: Annotated[ListenerTLS, Meta(description="TLS of the admin listener; false: none")] = None
    limits: ListenerLimits = field(default_factory=ListenerLimits)
    sentry: SentrySettings = field(default_factory=SentrySettings)
    logs: LogSettings = field(default_factory=LogSettings)
    tracing: TracingSettings = field(default_factory=TracingSettings)

    @model_validator(mode="before")
    @classmethod
    def _environment_wins(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        return deep_merge(data, environment_overlay(cls, os.environ))

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("listen", "admin_listen")
    @classmethod
    def _valid_address(cls, value: str) -> str:
        parse_listen(value)
        return value

    @model_validator(mode="after")
    def _distinct_listeners(self) -> Settings:
        listeners = {"listen": self.listen, "admin_listen": self.admin_listen}
        if self.gateway.enabled:
            listeners["gateway.listen"] = self.gateway.listen
        seen: dict[int, tuple[str, str]] = {}
        wildcard = ("0.0.0.0", "::", "")
        for name, value in listeners.items():
            try:
                host, port = parse_listen(value)
            except ValueError:
                continue  # that listener's own validator explains it (the gateway allows port 0)
            if port in seen:
                other, other_host = seen[port]
                if host == other_host or host in wildcard or other_host in wildcard:
                    raise ValueError(f"{other} and {name} both use port {port}: give each its own port")
            seen[port] = (name, host)
        return self

    @model_validator(mode="after")
    def _admin_exposure(self) -> Settings:
        host, _port = parse_listen(self.admin_listen)
        if is_loopback_host(host):
            return self
        token = self.admin_token.get_secret_value() if self.admin_token else ""
        if not token:
            raise ValueError(
                f"admin_listen {self.admin_listen!r} is reachable from other machines but admin_token is "
                "not set: set admin_token (SIDECAR_ADMIN_TOKEN, 16+ random characters) or listen on "
                "127.0.0.1"
            )
        if len(token) < MIN_EXPOSED_TOKEN:
            raise ValueError(
                f"admin_token is shorter than {MIN_EXPOSED_TOKEN} characters while admin_listen is not "
                "loopback: use a longer random token, e.g. from `openssl rand -hex 24`"
            )
        return self

    @model_validator(mode="after")
    def _unique_names(self) -> Settings:
        seen: set[str] = set()
        for check in self.checks:
            if check.name in seen:
                raise ValueError(f"two checks are named {check.name!r}: check names must be unique")
            seen.add(check.name)
        return self


def parse_listen(value: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9797`` for IPv6) -> (host, port)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise ValueError(f"{value!r} is not host:port, e.g. 0.0.0.0:9797 or [::1]:9797")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port_text)


ENV_PREFIX = "sidecar_"
ENV_NESTING = "__"


def environment_overlay(model: type[Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """``SIDECAR_<KEY>`` and ``SIDECAR_<SECTION>__<KEY>`` (any depth, any case) as nested settings.

    Values of lists, mappings and sections are JSON (``SIDECAR_CHECKS='[{"name": ...}]'``); a JSON
    section and ``__`` keys inside it merge, the keys winning. Plain values stay text and are converted
    by the model, so ``SIDECAR_DEFAULT_CHECKS=false`` and ``SIDECAR_ROUTES__MAX_ROUTES=50`` work.
    Variables naming no setting are left alone, except under a section (``SIDECAR_GATEWAY__UPSTREEM``),
    where the model reports the unknown key.
    """
    fields = model_field_types(model)
    whole: dict[str, Any] = {}
    nested: dict[str, Any] = {}
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for name, raw in sorted(environ.items()):
        lower = name.lower()
        if not lower.startswith(ENV_PREFIX):
            continue
        top, *keys = lower[len(ENV_PREFIX) :].split(ENV_NESTING)
        if top not in fields or (keys and not is_section(fields[top])):
            continue
        tp: Any = fields[top]
        target = nested.setdefault(top, {}) if keys else whole
        for key in keys[:-1]:
            tp = section_field_types(tp).get(key)
            child = target.setdefault(key, {})
            if not isinstance(child, dict):
                break
            target = child
        else:
            last = keys[-1] if keys else top
            if keys:
                tp = section_field_types(tp).get(last)
            try:
                target[last] = env_value(tp, raw)
            except ValueError as exc:
                problems.append(((name,), str(exc)))
    if problems:
        raise ValidationError(problems)
    for top, values in nested.items():
        whole[top] = deep_merge(whole[top], values) if isinstance(whole.get(top), dict) else values
    return whole


def model_field_types(model: type[Any]) -> dict[str, Any]:
    """Field name -> type (``Annotated`` extras stripped) of a settings model."""
    hints = typing.get_type_hints(model)
    return {name: hints[name] for name in model.__struct_fields__}


def _models_in(tp: Any) -> list[type[Any]]:
    if isinstance(tp, type):
        return [tp] if is_model_type(tp) else []
    return [m for arg in typing.get_args(tp) for m in _models_in(arg)]


def is_section(tp: Any) -> bool:
    """A field whose value is a mapping of settings (a model, or a model or null)."""
    return bool(_models_in(tp))


def section_field_types(tp: Any) -> dict[str, Any]:
    models = _models_in(tp)
    return model_field_types(models[0]) if models else {}


def _is_complex(tp: Any) -> bool:
    if isinstance(tp, type):
        return is_model_type(tp) or issubclass(tp, list | tuple | dict)
    if typing.get_origin(tp) in (list, tuple, dict):
        return True
    return any(_is_complex(arg) for arg in typing.get_args(tp))


def env_value(tp: Any, raw: str) -> Any:
    """A variable's text, JSON-decoded where the setting is a list, mapping or section.

    Where the setting may also be plain (``rate_limit_redis``: a URL or a section), text that is not
    JSON is kept as text.
    """
    if tp is None or not _is_complex(tp):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            return raw
        raise ValueError(
            'this setting is a list or a section: give it as JSON, e.g. ["a", "b"] or {"key": 1}'
        ) from None


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``; mappings present in both merge key by key, anything else is replaced."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_yaml(path: Path) -> dict[str, Any]:
    """The YAML file as a mapping, or a ``ConfigError`` saying where it is broken."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([(str(path), f"cannot read the file: {exc.strerror}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}" if mark else "somewhere"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([(str(path), f"invalid YAML at {where}: {problem}")]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([(str(path), "the top level must be a mapping of settings (key: value)")])
    return data


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Validate file plus environment into ``Settings``, adding checks from the common variables."""
    env = os.environ if environ is None else environ
    data = read_yaml(path) if path else {}
    aliases = gateway_env_aliases(env)  # SIDECAR_UPSTREAM, SIDECAR_GATEWAY_LISTEN: over the file
    if aliases and isinstance(data.get("gateway") or {}, dict):
        data = {**data, "gateway": {**(data.get("gateway") or {}), **aliases}}
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError([(location(loc), message) for loc, message in exc.problems]) from None
    _add_conventional_checks(settings, env)
    apply_environment(settings, env)  # SENTRY_DSN, SENTRY_ENVIRONMENT, SENTRY_RELEASE as fallbacks
    try:
        plan_tracing(settings, env)  # OTEL_* variables that cannot work stop start-up too
    except TracingConfigError as exc:
        raise ConfigError([(exc.field, str(exc))]) from None
    return settings


def _add_conventional_checks(settings: Settings, env: Mapping[str, str]) -> None:
    """``DATABASE_URL``/``REDIS_URL`` and the embedded host/process defaults, unless already present."""
    names = {c.name for c in settings.checks}
    targets = {c.target for c in settings.checks}
    wanted: list[dict[str, Any]] = []
    database_url = env.get("DATABASE_URL", "").strip()
    if database_url and database_url not in targets:
        scheme = database_url.split(":", 1)[0].lower()
        kind = {"postgres": "postgres", "postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql"}.get(
            scheme
        )
        if kind is None:
            raise ConfigError(
                [("DATABASE_URL", f"scheme {scheme!r} is not supported: use postgres:// or mysql://")]
            )
        wanted.append({"name": "database", "kind": kind, "target": database_url, "_env": "DATABASE_URL"})
    redis_url = env.get("REDIS_URL", "").strip()
    if redis_url and redis_url not in targets:
        wanted.append({"name": "redis", "kind": "redis", "target": redis_url, "_env": "REDIS_URL"})
    if settings.default_checks:
        wanted.append({"name": "host", "kind": "host", "_default": True})
        wanted.append({"name": "sidecar-process", "kind": "process", "_default": True})
    for spec in wanted:
        origin = spec.pop("_env", None)
        defaulted = spec.pop("_default", False)
        if spec["name"] in names:
            continue
        try:
            settings.checks.append(CheckConfig(**spec))
        except ValidationError as exc:
            message = "; ".join(message for _loc, message in exc.problems)
            if defaulted or ("needs" in message and "pip install" in message):
                log.warning("skipping default check %s: %s", spec["name"], message)
                continue
            raise ConfigError([(origin or spec["name"], message)]) from None
