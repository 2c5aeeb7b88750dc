"""The one validated configuration model: a YAML file, overlaid by the environment.

Every YAML setting can also be given as ``SIDECAR_<SECTION>__<KEY>``; the environment wins. The common
variables ``DATABASE_URL`` and ``REDIS_URL`` add checks with no file at all. Invalid configuration is
reported field by field, with the fix, before anything starts.
"""

from __future__ import annotations

import json
import logging
import os
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from sidecar.console.settings import ConsoleSettings
from sidecar.core.durations import Duration
from sidecar.core.settings_model import (
    Meta,
    Model,
    SecretStr,
    Unique,
    ValidationError,
    ValidationInfo,
    check_each,
    did_you_mean,
    field,
    field_validator,
    is_model_type,
    location,
    model_validator,
)
from sidecar.gateway.settings import GatewaySettings, gateway_env_aliases
from sidecar.logs.otlp_export import plan_log_export
from sidecar.logs.settings import LogSettings
from sidecar.probing.app_check import AppCheckSettings, app_check_config
from sidecar.probing.settings import CheckConfig
from sidecar.sentry.settings import SentrySettings
from sidecar.serving.addresses import parse_listen
from sidecar.serving.guard import ListenerLimits
from sidecar.serving.security import MetricsAuth, is_loopback_host
from sidecar.serving.tls import ListenerTLS, TLSConfig
from sidecar.tracing.settings import TracingConfigError, TracingSettings, plan_tracing

log = logging.getLogger(__name__)

MIN_EXPOSED_TOKEN = 16


class ConfigError(Exception):
    """Configuration that cannot start the sidecar; ``problems`` are ``(field, message)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {m}" for f, m in problems))
        self.problems = problems


def _starts_with_slash(template: str) -> str:
    if not template.startswith("/"):
        raise ValueError(f"route template {template!r} must start with '/'")
    return template


class RouteSettings(Model):
    """How request paths become ``http_route`` labels (shared by the gateway and log-derived metrics)."""

    templates: Annotated[list[str], Meta(description="route templates such as /users/{id}")] = []
    max_routes: Annotated[int, Meta(ge=1, le=10_000, description="distinct routes before overflow")] = 200

    @field_validator("templates")
    @classmethod
    def _templates_start_with_slash(cls, value: list[str]) -> list[str]:
        return check_each(enumerate(value), _starts_with_slash)  # every bad template, each at [i]


class Settings(Model, dict=True):
    """Everything the sidecar reads at start-up; ``SIDECAR_*`` environment variables win over the values
    given (see ``environment_overlay``)."""

    listen: Annotated[str, Meta(description="health and metrics listener")] = "0.0.0.0:9797"
    admin_listen: Annotated[str, Meta(description="admin listener (drain, debug)")] = "127.0.0.1:9798"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    service_name: Annotated[str, Meta(description="the service the sidecar stands next to")] = "app"
    shutdown_timeout: Annotated[Duration, Meta(description="longest clean shutdown")] = 15.0
    default_checks: Annotated[bool, Meta(description="add host and own-process checks")] = True
    metrics_created_series: Annotated[
        bool, Meta(description="expose the _created series of counters and histograms")
    ] = False
    admin_token: Annotated[SecretStr | None, Meta(description="bearer token the admin listener requires")] = (
        None
    )
    checks: Annotated[list[CheckConfig], Unique("name", "check")] = []
    routes: RouteSettings = field(default_factory=RouteSettings)
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    app_check: Annotated[
        AppCheckSettings, Meta(description="the app behind the gateway as a check (docs: README)")
    ] = field(default_factory=AppCheckSettings)
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
    console: ConsoleSettings = field(default_factory=ConsoleSettings)

    @model_validator(mode="before")
    @classmethod
    def _environment_wins(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        # a variable that cannot be read is left out here; load_settings reports it with the rest
        return deep_merge(data, environment_overlay(cls, os.environ, problems=[]))

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("listen", "admin_listen")
    @classmethod
    def _valid_address(cls, value: str) -> str:
        parse_listen(value)
        return value

    # Checks across sections are field validators reading the fields before them (``info.data``), so
    # they are reported in the same pass as every other mistake of the file, in field order.

    @field_validator("admin_token", always=True)
    @classmethod
    def _admin_exposure(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        admin_listen = info.data.get("admin_listen")
        if admin_listen is None:
            return value
        host, _port = parse_listen(admin_listen)
        if is_loopback_host(host):
            return value
        token = value.get_secret_value() if value else ""
        if not token:
            raise ValueError(
                f"admin_listen {admin_listen!r} is reachable from other machines but admin_token is "
                "not set: set admin_token (SIDECAR_ADMIN_TOKEN, 16+ random characters) or listen on "
                "127.0.0.1"
            )
        if len(token) < MIN_EXPOSED_TOKEN:
            raise ValueError(
                f"admin_token is shorter than {MIN_EXPOSED_TOKEN} characters while admin_listen is not "
                "loopback: use a longer random token, e.g. from `openssl rand -hex 24`"
            )
        return value

    @model_validator(mode="fields")
    @classmethod
    def _distinct_listeners(cls, info: ValidationInfo) -> None:
        # the gateway's listener as its section validated it, whatever else in that section is wrong
        gateway = info.sections.get("gateway")
        listeners: list[tuple[tuple[str, ...], str, Any]] = [
            ((name,), name, info.data.get(name)) for name in ("listen", "admin_listen")
        ]
        # an enabled gateway: an upstream given, valid or not (null is valid: absent means given and bad)
        if gateway is not None and gateway.data.get("upstream", "given") is not None:
            listeners.append((("gateway", "listen"), "gateway.listen", gateway.data.get("listen")))
        seen: dict[int, tuple[str, str]] = {}
        wildcard = ("0.0.0.0", "::", "")
        problems: list[tuple[tuple[str | int, ...], str]] = []
        for where, name, address in listeners:
            if address is None:
                continue  # invalid: that listener's own problem says why
            try:
                host, port = parse_listen(address)
            except ValueError:
                continue  # the gateway allows port 0, which no other listener shares
            if port in seen:
                other, other_host = seen[port]
                if host == other_host or host in wildcard or other_host in wildcard:
                    problems.append(
                        (where, f"{other} and {name} both use port {port}: give each its own port")
                    )
                    continue
            seen[port] = (name, host)
        if problems:
            raise ValidationError(problems)


ENV_PREFIX = "sidecar_"
ENV_NESTING = "__"


def environment_overlay(
    model: type[Any], environ: Mapping[str, str], problems: list[tuple[str, str]] | None = None
) -> dict[str, Any]:
    """``SIDECAR_<KEY>`` and ``SIDECAR_<SECTION>__<KEY>`` (any depth, any case) as nested settings.

    Values of lists, mappings and sections are JSON (``SIDECAR_CHECKS='[{"name": ...}]'``); a JSON
    section and ``__`` keys inside it merge, the keys winning. Plain values stay text and are converted
    by the model, so ``SIDECAR_DEFAULT_CHECKS=false`` and ``SIDECAR_ROUTES__MAX_ROUTES=50`` work.
    Variables naming no setting are left alone here (``unknown_environment`` reports them), except under
    a section (``SIDECAR_GATEWAY__UPSTREEM``), where the model reports the unknown key. A value that
    cannot be read raises, or, given ``problems``, is left out and reported there.
    """
    fields = model_field_types(model)
    whole: dict[str, Any] = {}
    nested: dict[str, Any] = {}
    found: list[tuple[tuple[str | int, ...], str]] = []
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
                found.append(((name,), str(exc)))
    if found and problems is None:
        raise ValidationError(found)
    if problems is not None:
        problems.extend((str(loc[0]), message) for loc, message in found)
    for top, values in nested.items():
        whole[top] = deep_merge(whole[top], values) if isinstance(whole.get(top), dict) else values
    return whole


# SIDECAR_* variables that are not settings of the model but are read all the same
OTHER_VARIABLES = ("SIDECAR_CONFIG", "SIDECAR_UPSTREAM", "SIDECAR_GATEWAY_LISTEN", "SIDECAR_COMPILE")


def unknown_environment(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """``SIDECAR_*`` variables that name no setting (``SIDECAR_LOG_LEVLE``), with a "did you mean".

    ``check-config`` reports them as errors; ``run`` logs a warning and starts, since other tools in
    the same environment may use the prefix too. Keys under a section are the model's to report.
    """
    fields = model_field_types(Settings)
    known = [f"SIDECAR_{name.upper()}" for name in fields] + list(OTHER_VARIABLES)
    found = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith("SIDECAR_") or upper in OTHER_VARIABLES:
            continue
        top = upper[len("SIDECAR_") :].split(ENV_NESTING)[0].lower()
        if top in fields:
            continue
        hint = did_you_mean(upper.split(ENV_NESTING)[0], known)
        found.append((name, f"no setting is named so{hint}: fix its name, or unset it"))
    return found


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


MAX_CONFIG_BYTES = 1024 * 1024
"""A configuration file is a few kilobytes; anything past a mebibyte is refused unread."""
MAX_CONFIG_NODES = 100_000
"""Values in the document once anchors and aliases are expanded ("billion laughs" stops here)."""

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: Path) -> dict[str, Any]:
    """The YAML file as a mapping, or a ``ConfigError`` saying where it is broken.

    Whatever the document's shape, the result is a mapping with string keys all the way down, or a
    ``ConfigError``: a file over ``MAX_CONFIG_BYTES``, aliases expanding past ``MAX_CONFIG_NODES``
    values, recursive aliases and non-string keys (``1: x``) are named, never a crash.
    """
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError([(str(path), f"cannot read the file: {exc.strerror}")]) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(
            [(str(path), f"the file is larger than {MAX_CONFIG_BYTES} bytes: is it the right file?")]
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([(str(path), f"the file is not UTF-8 (byte {exc.start})")]) from None
    try:
        data = _load_bounded(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}" if mark else "somewhere"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([(str(path), f"invalid YAML at {where}: {problem}")]) from None
    except _ShapeError as exc:
        raise ConfigError([(str(path), str(exc))]) from None
    except RecursionError:
        raise ConfigError([(str(path), "the document is nested too deeply to be settings")]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([(str(path), "the top level must be a mapping of settings (key: value)")])
    _check_keys(data)
    return data


class _ShapeError(ValueError):
    """A document whose structure cannot be settings, whatever its values."""


def _load_bounded(text: str) -> Any:
    """Compose the node graph, refuse it if it expands too far, then build the Python values."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_expansion(root: yaml.Node) -> None:
    """Count the values the document holds once every alias is expanded, without expanding it."""
    sizes: dict[int, int] = {}
    visiting: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            visiting.discard(key)
            children = _children(node)
            sizes[key] = 1 + sum(sizes[id(child)] for child in children)
            if sizes[key] > MAX_CONFIG_NODES:
                raise _ShapeError(
                    f"anchors and aliases expand to more than {MAX_CONFIG_NODES} values: "
                    "a configuration needs far fewer"
                )
            continue
        if key in sizes:
            continue
        if key in visiting:
            raise _ShapeError("an alias refers to a value that contains it (a recursive structure)")
        visiting.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_keys(data: dict[str, Any]) -> None:
    """Every mapping key in the document is a string; else name the first one that is not."""
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, dict):
            for key, child in value.items():
                if not isinstance(key, str):
                    place = f" under {where}" if where else " at the top level"
                    raise ConfigError(
                        [
                            (
                                where or "configuration",
                                f"the key {key!r}{place} is not a string: setting names are text "
                                "(quote it if it is meant as a value)",
                            )
                        ]
                    )
                stack.append((f"{where}.{key}" if where else key, child))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", child) for i, child in enumerate(value))


SettingPath = tuple[str, ...]
"""A setting as a path of keys: ``("gateway", "read_timeout")``, ``("checks",)``."""


def load_settings(
    path: Path | None = None, environ: Mapping[str, str] | None = None, strict_environment: bool = False
) -> Settings:
    """Validate file plus environment into ``Settings``, adding checks from the common variables.

    Every problem is reported at once, in one ``ConfigError``: the file's (in the order of the file),
    then the environment's. Unknown ``SIDECAR_*`` variables are problems with ``strict_environment``
    (``check-config``), else warnings (``run``).
    """
    env = os.environ if environ is None else environ
    data = read_yaml(path) if path else {}  # an unreadable file: nothing else can be checked
    problems: list[tuple[str, str]] = []
    aliases = gateway_env_aliases(env)  # SIDECAR_UPSTREAM, SIDECAR_GATEWAY_LISTEN: over the file
    if aliases and isinstance(data.get("gateway") or {}, dict):
        data = {**data, "gateway": {**(data.get("gateway") or {}), **aliases}}
    settings: Settings | None = None
    valid_part: tuple[Settings, set[SettingPath]] | None = None
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        problems += [(location(loc), message) for loc, message in exc.problems]
        valid_part = _valid_part(data, exc.problems)
    except (
        TypeError,
        ValueError,
        RecursionError,
    ) as exc:  # a shape no validator expected: still a config error
        raise ConfigError(
            [("configuration", f"cannot be read as settings ({type(exc).__name__}: {exc})")]
        ) from None
    environment_overlay(Settings, os.environ, problems)  # values that cannot be read
    for name, message in unknown_environment(env):
        if strict_environment:
            problems.append((name, message))
        else:
            log.warning("unknown environment variable %s: %s", name, message)
    conventional = _conventional_checks(env, problems)
    # The checks that need the whole configuration (the app check, SENTRY_*, OTEL_* with the tracing and
    # log export sections) run on the valid part when something else is wrong, so they are reported
    # in the same run: each step whose settings are all valid (a section's other fields may not be).
    checked, dropped = (settings, set[SettingPath]()) if settings is not None else valid_part or (None, set())
    if checked is not None:
        for step, reads in _STEPS:
            if any(_overlap(read, left_out) for read in reads for left_out in dropped):
                continue
            try:
                step(checked, env)
            except ConfigError as exc:
                problems += exc.problems
    if settings is None:
        raise ConfigError(problems)
    _add_conventional_checks(settings, conventional)
    if problems:
        raise ConfigError(problems)
    return settings


class _ValidPart(Settings, dict=True):
    """The file's valid sections with the environment already merged in (by ``_valid_part``)."""

    @model_validator(mode="before")
    @classmethod
    def _environment_wins(cls, data: Any) -> Any:
        return data


def _valid_part(
    data: Mapping[str, Any], found: list[tuple[Any, str]]
) -> tuple[Settings, set[SettingPath]] | None:
    """The settings without the fields that have problems, and those fields' paths.

    A field of a section (``gateway.read_timeout``) is left out on its own, so the rest of its section
    stays for the steps that read it (the app check needs ``gateway.upstream``, not the timeouts); a
    list (``checks``, ``logs.rules``) is left out whole, as item positions name things. A field that
    cannot be left out (a required one) takes its section with it. ``None`` when no such settings
    can be had (a problem of the whole file). Left-out fields take their defaults, so a step that
    reads one of them is skipped, not run on values the file did not give.
    """
    merged = deep_merge(data, environment_overlay(Settings, os.environ, problems=[]))
    dropped: set[SettingPath] = set()
    for _attempt in range(4):
        paths = {_field_path(loc) for loc, _message in found}
        grown = set()
        for wrong in paths:
            path = wrong
            while path and any(path[: len(d)] == d for d in dropped):
                path = path[:-1]  # left out already and still wrong: its section goes instead
            if not path:
                return None
            grown.add(path)
        dropped |= grown
        try:
            return _ValidPart(**_without(merged, dropped)), dropped
        except ValidationError as exc:
            found = exc.problems
    return None


def _field_path(loc: tuple[Any, ...]) -> SettingPath:
    """The part of a problem's location that is left out: a section's field, or a top-level one; a
    list whole (positions name the items)."""
    path: list[str] = []
    for part in loc[:2]:
        if not isinstance(part, str):
            break
        path.append(part)
    return tuple(path)


def _without(data: Mapping[str, Any], dropped: set[SettingPath]) -> dict[str, Any]:
    out = {k: v for k, v in data.items() if (k,) not in dropped}
    for path in dropped:
        if len(path) == 2 and isinstance(out.get(path[0]), Mapping):
            out[path[0]] = {k: v for k, v in out[path[0]].items() if k != path[1]}
    return out


def _check_sentry_environment(settings: Settings, env: Mapping[str, str]) -> None:
    """SENTRY_DSN, SENTRY_ENVIRONMENT, SENTRY_RELEASE as fallbacks; a malformed DSN names the variable."""
    try:
        settings.sentry = settings.sentry.with_environment(env)
    except ValueError as exc:
        raise ConfigError([("SENTRY_DSN", str(exc))]) from None


def _check_tracing_environment(settings: Settings, env: Mapping[str, str]) -> None:
    try:
        plan_tracing(settings, env)  # OTEL_* variables that cannot work stop start-up too
        plan_log_export(settings, env)
    except TracingConfigError as exc:
        raise ConfigError([(exc.field, str(exc))]) from None


def _add_app_check(settings: Settings, _env: Mapping[str, str]) -> None:
    """With an upstream, the app itself is the first check (``app_check:``), unless switched off."""
    wanted = settings.app_check
    if not settings.gateway.enabled or not wanted.enabled:
        return
    own = next((c for c in settings.checks if c.name == wanted.name), None)
    if own is not None:  # a check of the app under checks: is the active probe; traffic still judges it
        if own.startup_grace is None:
            own.startup_grace = wanted.startup_grace
        return
    address = settings.gateway.upstream_address
    try:
        check = app_check_config(wanted, address.host, address.port, address.unix_path)
    except ValidationError as exc:
        raise ConfigError([(f"app_check.{location(loc)}", m) for loc, m in exc.problems]) from None
    settings.checks.insert(0, check)


_STEPS: tuple[tuple[Callable[[Settings, Mapping[str, str]], None], frozenset[SettingPath]], ...] = (
    (_add_app_check, frozenset({("gateway", "upstream"), ("app_check",), ("checks",)})),
    (_check_sentry_environment, frozenset({("sentry",)})),
    (
        _check_tracing_environment,
        frozenset({("tracing",), ("logs", "otlp"), ("sentry", "release"), ("service_name",)}),
    ),
)
"""Steps after validation, with the settings each reads: a step runs unless one of them is invalid."""


def _overlap(read: SettingPath, left_out: SettingPath) -> bool:
    """Whether a setting a step reads is, contains or lies inside one left out."""
    n = min(len(read), len(left_out))
    return read[:n] == left_out[:n]


def _conventional_checks(env: Mapping[str, str], problems: list[tuple[str, str]]) -> list[CheckConfig]:
    """The checks ``DATABASE_URL`` and ``REDIS_URL`` ask for; their problems name the variable."""
    wanted: list[tuple[str, dict[str, Any]]] = []
    database_url = env.get("DATABASE_URL", "").strip()
    if database_url:
        scheme = database_url.split(":", 1)[0].lower()
        kind = {"postgres": "postgres", "postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql"}.get(
            scheme
        )
        if kind is None:
            problems.append(
                ("DATABASE_URL", f"scheme {scheme!r} is not supported: use postgres:// or mysql://")
            )
        else:
            wanted.append(("DATABASE_URL", {"name": "database", "kind": kind, "target": database_url}))
    redis_url = env.get("REDIS_URL", "").strip()
    if redis_url:
        wanted.append(("REDIS_URL", {"name": "redis", "kind": "redis", "target": redis_url}))
    checks = []
    for variable, spec in wanted:
        try:
            checks.append(CheckConfig(**spec))
        except ValidationError as exc:
            message = "; ".join(message for _loc, message in exc.problems)
            if "needs" in message and "pip install" in message:
                log.warning("skipping check %s from %s: %s", spec["name"], variable, message)
                continue
            problems.append((variable, message))
    return checks


def _add_conventional_checks(settings: Settings, conventional: list[CheckConfig]) -> None:
    """``DATABASE_URL``/``REDIS_URL`` and the embedded host/process defaults, unless already present."""
    names = {c.name for c in settings.checks}
    targets = {c.target for c in settings.checks}
    for check in conventional:
        if check.name not in names and check.target not in targets:
            settings.checks.append(check)
            names.add(check.name)
    if not settings.default_checks:
        return
    for name, kind in (("host", "host"), ("sidecar-process", "process")):
        if name in names:
            continue
        try:
            settings.checks.append(CheckConfig(name=name, kind=kind))
        except ValidationError as exc:
            message = "; ".join(message for _loc, message in exc.problems)
            log.warning("skipping default check %s: %s", name, message)
