"""Validated settings models: ``msgspec.Struct`` classes checked field by field, every problem collected.

The configuration (``sidecar.config`` and every ``settings`` module) and the collectors' options are
declared as ``Model`` subclasses: typed fields with defaults, ``msgspec.Meta`` constraints
(``Annotated[int, Meta(ge=1)]``), and validators in the familiar decorator form
(``@field_validator("name")``, ``@model_validator(mode="fields")``). Constructing a model, or
``Model.model_validate(mapping)``, converts and checks every field and raises one ``ValidationError``
listing *every* problem with its location (``checks[2].interval``), so a configuration with three
mistakes is reported with three lines, not one at a time. Checks across fields, list items, mapping
entries and sections run in that same pass on the parts that are valid (``ValidationInfo``): a section,
list or mapping with a mistake still gives its valid fields, items and entries to them, so no check
waits for the rest of its section.

Why not pydantic: the sidecar is a small resident process, and pydantic, pydantic-core, their schema
machinery and pydantic-settings cost ~14 MB of resident memory for a configuration read once at
start-up; msgspec's structs and this module cost ~1 MB.

Conversion follows the rules a YAML or environment value needs: numbers and booleans may arrive as
text (``"5"``, ``"true"``), text never silently becomes a number, unknown keys are errors (with a
"did you mean" when one is close), ``Literal`` and enum values are listed when wrong.
"""

from __future__ import annotations

import contextvars
import dataclasses
import difflib
import enum
import inspect
import ipaddress
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar, Union, cast, get_args, get_origin

import msgspec

__all__ = [
    "AfterValidator",
    "BeforeValidator",
    "FrozenModel",
    "IPvAnyNetwork",
    "Meta",
    "Model",
    "SecretStr",
    "Unique",
    "ValidationError",
    "ValidationInfo",
    "check_each",
    "field",
    "field_validator",
    "is_model_type",
    "location",
    "model_validator",
]

Meta = msgspec.Meta
field = msgspec.field
F = TypeVar("F")
Loc = tuple[str | int, ...]


class ValidationError(ValueError):
    """Every problem found while validating one model: ``(location, message)`` pairs, in field order."""

    def __init__(self, problems: list[tuple[Loc, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{location(loc)}: {message}" for loc, message in problems))

    def errors(self) -> list[tuple[Loc, str]]:
        return list(self.problems)


def location(loc: Loc) -> str:
    """``("checks", 0, "kind")`` -> ``checks[0].kind``; the empty location is ``(top level)``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "(top level)"


class SecretStr:
    """A string that never shows itself in ``repr``, ``str`` or a dumped configuration."""

    __slots__ = ("_secret",)

    def __init__(self, value: str) -> None:
        self._secret = value

    def get_secret_value(self) -> str:
        return self._secret

    def __repr__(self) -> str:
        return "SecretStr('**********')" if self._secret else "SecretStr('')"

    def __str__(self) -> str:
        return "**********" if self._secret else ""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretStr) and other._secret == self._secret

    def __hash__(self) -> int:
        return hash(self._secret)

    def __len__(self) -> int:
        return len(self._secret)


@dataclass(frozen=True, slots=True)
class BeforeValidator:
    """``Annotated[T, BeforeValidator(f)]``: ``f`` turns the raw value into something ``T`` accepts."""

    func: Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class AfterValidator:
    """``Annotated[T, AfterValidator(f)]``: ``f`` checks (or normalises) the converted value."""

    func: Callable[[Any], Any]


_NETWORKS = (ipaddress.IPv4Network, ipaddress.IPv6Network)


def _parse_network(value: Any) -> Any:
    return parse_network(value)


IPvAnyNetwork = Annotated[ipaddress.IPv4Network | ipaddress.IPv6Network, BeforeValidator(_parse_network)]
"""An IPv4 or IPv6 network in CIDR form (``10.0.0.0/8``); host bits must be zero."""

_FIELD_MARK = "__settings_field_validator__"
_MODEL_MARK = "__settings_model_validator__"


def field_validator(
    *names: str, mode: Literal["before", "after"] = "after", always: bool = False
) -> Callable[[F], F]:
    """Mark a classmethod ``(cls, value) -> value`` as a validator of the named fields.

    A validator that takes a second parameter gets a ``ValidationInfo``: ``info.data`` holds the
    fields declared before this one that are valid, so a check across fields (a target that depends
    on the kind) runs in the same pass as every other, instead of after the whole model is valid.
    ``always``: an ``after`` validator runs on the default too when the field is not given (a
    required-by-kind target, an options mapping checked against the kind's model).
    """

    def mark(func: F) -> F:
        target = func.__func__ if isinstance(func, classmethod | staticmethod) else func
        setattr(target, _FIELD_MARK, (names, mode, always))
        return func

    return mark


@dataclass(frozen=True, slots=True)
class ValidationInfo:
    """What a validator may read besides its value: the valid fields declared before it.

    Each part is what validated on its own, also when something next to it did not, so a check
    across fields, items, entries or sections skips only the comparisons whose own inputs are invalid:

    ``items``: for each list field, its valid items with their positions.
    ``entries``: for each mapping field, its valid entries (key and value valid).
    ``keys``: for each mapping field, its valid keys, whatever their values (a check of the names).
    ``sections``: for each nested settings section, its own ``ValidationInfo`` (the section's valid
    fields, items, entries and sections), also when another field of that section is invalid.
    """

    data: Mapping[str, Any]
    items: Mapping[str, list[tuple[int, Any]]] = dataclasses.field(default_factory=dict)
    entries: Mapping[str, Mapping[Any, Any]] = dataclasses.field(default_factory=dict)
    keys: Mapping[str, list[Any]] = dataclasses.field(default_factory=dict)
    sections: Mapping[str, ValidationInfo] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Unique:
    """``Annotated[list[Model], Unique("name")]``: no two items may share ``name``; each repeat is a
    problem at ``[i].name``, reported with the other problems of the list in the same pass."""

    key: str
    noun: str = "item"


def model_validator(*, mode: Literal["before", "fields", "after"]) -> Callable[[F], F]:
    """Mark a validator of the whole model.

    ``before`` is a classmethod ``(cls, data) -> data`` run on the raw input.

    ``fields`` is a classmethod ``(cls, info) -> None`` run in the same pass as the field validators,
    whatever else is wrong. ``info.data`` holds the fields that are valid (defaults included),
    ``info.items``/``info.entries``/``info.keys`` the valid items and entries of list and mapping
    fields and ``info.sections`` the valid part of each nested section, so a check across fields or
    sections compares what it can and skips a comparison whose inputs are themselves invalid. It raises
    ``ValueError`` (a problem of the model) or ``ValidationError`` with locations inside the model
    (``("name",)``), each reported with that field's own problems, in field order.

    ``after`` is a method ``(self) -> self`` run once every field is valid: for what derives from a
    valid model (a resolved collector), not for checks, which would then wait for a second run.
    """

    def mark(func: F) -> F:
        target = func.__func__ if isinstance(func, classmethod | staticmethod) else func
        setattr(target, _MODEL_MARK, mode)
        return func

    return mark


class _Invalid:
    __slots__ = ()


_INVALID: Any = _Invalid()


@dataclass(slots=True)
class _FieldSpec:
    type: Any
    required: bool
    before: list[str]
    after: list[str]
    always: bool = False
    default: Any = None


@dataclass(slots=True)
class _ModelSpec:
    fields: dict[str, _FieldSpec]
    before: list[str]
    after: list[str]
    across: list[str]  # the "fields" model validators: checks across fields, run in the same pass


_construct = msgspec.StructMeta.__call__


class _ModelMeta(msgspec.StructMeta):
    """Routes ``Model(**values)`` through the validation below, as pydantic's constructor did."""

    def __new__(mcls, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any) -> Any:
        # keyword-only in every subclass too: a required field may follow fields with defaults
        kwargs.setdefault("kw_only", True)
        return super().__new__(mcls, name, bases, namespace, **kwargs)

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if args:
            raise TypeError(f"{cls.__name__} takes keyword arguments only")
        return _one_pass(cast(type[_ModelMethods], cls), kwargs)


class _ModelMethods:
    """What pydantic models offered and the sidecar uses, shared by ``Model`` and ``FrozenModel``."""

    __slots__ = ()
    __settings_spec__: ClassVar[_ModelSpec | None] = None

    @classmethod
    def model_validate(cls: type[_M], data: Any) -> _M:
        """``data`` (a mapping, or whatever a ``before`` model validator accepts) as a valid ``cls``."""
        result: _M = _one_pass(cls, data)
        return result

    def model_dump(self) -> dict[str, Any]:
        """The settings as plain data (JSON types); secrets come out as ``**********``."""
        data: dict[str, Any] = msgspec.to_builtins(self, enc_hook=_dump_hook)
        return data

    def model_copy(self: _M, *, update: Mapping[str, Any] | None = None) -> _M:
        """A copy with some fields replaced (not validated again, as pydantic's ``model_copy``)."""
        return msgspec.structs.replace(self, **(update or {}))  # type: ignore[type-var]

    @property
    def model_fields_set(self) -> frozenset[str]:
        """The fields given explicitly; only kept by models declared with ``dict=True``."""
        fields: frozenset[str] = getattr(self, "__dict__", {}).get("__fields_set__", frozenset())
        return fields


class Model(_ModelMethods, msgspec.Struct, kw_only=True, metaclass=_ModelMeta):
    """Base of the mutable settings models; unknown keys are errors."""


class FrozenModel(_ModelMethods, msgspec.Struct, frozen=True, kw_only=True, metaclass=_ModelMeta):
    """Base of the immutable (and hashable) settings models; subclasses say ``frozen=True`` too."""


_M = TypeVar("_M", bound=_ModelMethods)


def is_model_type(tp: Any) -> bool:
    """Whether ``tp`` is a settings model class (``Model`` or ``FrozenModel``)."""
    return isinstance(tp, type) and issubclass(tp, _ModelMethods)


def _dump_hook(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return str(value)
    if isinstance(value, (Path, *_NETWORKS)):
        return str(value)
    raise NotImplementedError(f"cannot dump {type(value).__name__}")


# -- the validation -----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Salvage:
    """What validated on its own inside the sections, lists and mappings of one pass, by location.

    A parent reads its fields' parts from here when a field as a whole is invalid, so the checks
    across fields and sections (``ValidationInfo``) still see every part that is valid.
    """

    sections: dict[Loc, ValidationInfo] = dataclasses.field(default_factory=dict)
    items: dict[Loc, list[tuple[int, Any]]] = dataclasses.field(default_factory=dict)
    entries: dict[Loc, tuple[dict[Any, Any], list[Any]]] = dataclasses.field(default_factory=dict)


_SALVAGE: contextvars.ContextVar[_Salvage] = contextvars.ContextVar("settings_salvage")


def _one_pass(cls: type[_ModelMethods], data: Any) -> Any:
    """Validate ``data`` as ``cls`` with a salvage store of its own (a validator may start another)."""
    token = _SALVAGE.set(_Salvage())
    try:
        problems: list[tuple[Loc, str]] = []
        instance = _validate_model(cls, data, (), problems)
    finally:
        _SALVAGE.reset(token)
    if problems:
        raise ValidationError(problems)
    return instance


def _salvage() -> _Salvage:
    store = _SALVAGE.get(None)
    return store if store is not None else _Salvage()  # outside a pass: nothing reads what it keeps


def _spec(cls: type[_ModelMethods]) -> _ModelSpec:
    spec = cls.__dict__.get("__settings_spec__")
    if spec is not None:
        return spec  # type: ignore[no-any-return]
    hints = typing.get_type_hints(cls, include_extras=True)
    struct = cast(type[msgspec.Struct], cls)
    required = {info.name for info in msgspec.structs.fields(struct) if info.required}
    field_before: dict[str, list[str]] = {}
    field_after: dict[str, list[str]] = {}
    field_always: set[str] = set()
    model_before: list[str] = []
    model_after: list[str] = []
    model_fields: list[str] = []
    seen: set[str] = set()
    for klass in reversed(cls.__mro__):  # base classes first, each in definition order
        for attr, value in vars(klass).items():
            if attr in seen or next(k for k in cls.__mro__ if attr in vars(k)) is not klass:
                continue  # overridden in a subclass: only the subclass's one runs
            seen.add(attr)
            func = value.__func__ if isinstance(value, classmethod | staticmethod) else value
            marked = getattr(func, _FIELD_MARK, None)
            if marked is not None:
                names, mode, always = marked
                for name in names:
                    (field_before if mode == "before" else field_after).setdefault(name, []).append(attr)
                    if always:
                        field_always.add(name)
            model_mode = getattr(func, _MODEL_MARK, None)
            if model_mode is not None:
                {"before": model_before, "fields": model_fields, "after": model_after}[model_mode].append(
                    attr
                )
    defaults = {info.name: info for info in msgspec.structs.fields(struct)}
    fields = {
        name: _FieldSpec(
            hints[name],
            name in required,
            field_before.get(name, []),
            field_after.get(name, []),
            name in field_always,
            _default_of(defaults[name]),
        )
        for name in struct.__struct_fields__
    }
    for name in (*field_before, *field_after):
        if name not in fields:
            raise TypeError(f"{cls.__name__}: a validator names the unknown field {name!r}")
    spec = _ModelSpec(fields, model_before, model_after, model_fields)
    cls.__settings_spec__ = spec
    return spec


def _default_of(info: msgspec.structs.FieldInfo) -> Any:
    if info.default_factory is not msgspec.NODEFAULT:
        return info.default_factory
    return info.default


def _takes_info(func: Callable[..., Any]) -> bool:
    """Whether a validator declares a second parameter (the ``ValidationInfo``)."""
    cached = _INFO_ARITY.get(func)
    if cached is None:
        try:
            parameters = inspect.signature(func).parameters
        except (TypeError, ValueError):
            parameters = {}  # type: ignore[assignment]
        cached = _INFO_ARITY[func] = len(parameters) >= 2
    return cached


_INFO_ARITY: dict[Any, bool] = {}


def _message(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _call(func: Callable[[Any], Any], value: Any, loc: Loc, problems: list[tuple[Loc, str]]) -> Any:
    try:
        return func(value)
    except ValidationError as exc:
        problems.extend((loc + inner, message) for inner, message in exc.problems)
    except (ValueError, TypeError, AssertionError) as exc:
        problems.append((loc, _message(exc)))
    return _INVALID


def check_each(pairs: Iterable[tuple[str | int, Any]], check: Callable[[Any], F]) -> list[F]:
    """``check`` on every (index or key, value) of a list or mapping, every problem at its own place.

    For a validator of a list or mapping field: each bad item or entry is reported, in one pass, at
    ``[i]`` or ``.key``, instead of the first one for the whole field. Returns the checked values.
    """
    problems: list[tuple[Loc, str]] = []
    out: list[F] = []
    for where, value in pairs:
        try:
            out.append(check(value))
        except ValidationError as exc:
            problems.extend(((where, *inner), message) for inner, message in exc.problems)
        except (ValueError, TypeError) as exc:
            problems.append(((where,), _message(exc)))
    if problems:
        raise ValidationError(problems)
    return out


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'interval'?)`` when a choice is close to ``word``, else empty."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _validate_model(  # noqa: PLR0911, PLR0912  (one pass: before, keys, fields, after)
    cls: type[_ModelMethods], value: Any, loc: Loc, problems: list[tuple[Loc, str]]
) -> Any:
    if isinstance(value, cls):
        return value
    spec = _spec(cls)
    for name in spec.before:
        value = _call(getattr(cls, name), value, loc, problems)
        if value is _INVALID:
            return _INVALID
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        problems.append((loc, f"expected a mapping of settings (key: value), got {_kind(value)}"))
        return _INVALID
    # Problems come out in the order of the input's keys (the order of the file), each key's own
    # problems together; then what is missing (a required field, a target the kind needs).
    buckets: dict[str, list[tuple[Loc, str]]] = {}
    for key in value:
        if key not in spec.fields:
            buckets[str(key)] = [
                (
                    (*loc, str(key)),
                    f"unknown setting{did_you_mean(str(key), spec.fields)}: remove it or fix its spelling",
                )
            ]
    values: dict[str, Any] = {}
    parts = _Parts()  # what validators see: the valid values so far, defaults included, and their parts
    data = parts.data
    missing: list[tuple[Loc, str]] = []
    for name, field_spec in spec.fields.items():
        found: list[tuple[Loc, str]] = []
        if name not in value:
            if field_spec.required:
                missing.append(((*loc, name), "required: add it"))
                continue
            default = field_spec.default
            default = default() if callable(default) else default
            if field_spec.always and field_spec.after:
                checked = _after_validators(cls, field_spec, default, (*loc, name), found, parts.view)
                if checked is not _INVALID and checked is not default:
                    values[name] = checked
                missing.extend(found)
            data[name] = values.get(name, default)
            parts.add(name, (*loc, name), data[name])
            continue
        converted = _validate_field(cls, field_spec, value[name], (*loc, name), found, parts.view)
        buckets[name] = found
        if converted is not _INVALID:
            values[name] = data[name] = converted
        parts.add(name, (*loc, name), converted)
    info = parts.view
    _check_fields(cls, spec, info, value, loc, buckets, missing)
    _salvage().sections[loc] = info
    ordered = [problem for key in value for problem in buckets.get(str(key), ())]
    if ordered or missing:
        problems.extend(ordered)
        problems.extend(missing)
        return _INVALID
    instance = _construct(cls, **values)
    if hasattr(instance, "__dict__"):
        instance.__dict__["__fields_set__"] = frozenset(values)
    for name in spec.after:
        result = _call(_run_method, (instance, name), loc, problems)
        if result is _INVALID:
            return _INVALID
        instance = result if isinstance(result, cls) else instance
    return instance


def _check_fields(
    cls: type[_ModelMethods],
    spec: _ModelSpec,
    info: ValidationInfo,
    given: Mapping[Any, Any],
    loc: Loc,
    buckets: dict[str, list[tuple[Loc, str]]],
    missing: list[tuple[Loc, str]],
) -> None:
    """Run the ``fields`` model validators on the valid fields; file each problem with its field's."""
    if not spec.across:
        return
    touched: set[str] = set()
    for name in spec.across:
        found: list[tuple[Loc, str]] = []
        _call(getattr(cls, name), info, loc, found)
        for problem in found:
            inner = problem[0][len(loc) :]
            key = inner[0] if inner else None
            if isinstance(key, str) and key in given:
                buckets.setdefault(key, []).append(problem)
                touched.add(key)
            else:
                missing.append(problem)
    depth = len(loc)
    for key in touched:  # a field's problems in the order of the input, whichever check found them
        buckets[key].sort(key=lambda p: _input_order(given, p[0][depth:]))


class _Parts:
    """The valid part of a model being validated: its fields, and the valid parts of the others.

    ``view`` is the one ``ValidationInfo`` every validator of the model gets: it shares these
    mappings, so it shows what is valid so far.
    """

    __slots__ = ("data", "entries", "items", "keys", "sections", "view")

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.items: dict[str, list[tuple[int, Any]]] = {}
        self.entries: dict[str, Mapping[Any, Any]] = {}
        self.keys: dict[str, list[Any]] = {}
        self.sections = _Sections()
        self.view = ValidationInfo(self.data, self.items, self.entries, self.keys, self.sections)

    def add(self, name: str, loc: Loc, value: Any) -> None:
        """File field ``name``'s parts: from its value when valid, else what validated on its own."""
        if value is _INVALID:
            store = _salvage()
            if loc in store.items:
                self.items[name] = store.items[loc]
            if loc in store.entries:
                self.entries[name], self.keys[name] = store.entries[loc]
            if loc in store.sections:
                self.sections.found[name] = store.sections[loc]
        elif isinstance(value, list | tuple):
            self.items[name] = list(enumerate(value))
        elif isinstance(value, dict):
            self.entries[name], self.keys[name] = value, list(value)
        elif isinstance(value, _ModelMethods):
            self.sections.found[name] = value


class _Sections(Mapping[str, ValidationInfo]):
    """Section name -> its ``ValidationInfo``; a valid section's is made only when a check reads it."""

    __slots__ = ("found",)

    def __init__(self) -> None:
        self.found: dict[str, ValidationInfo | _ModelMethods] = {}

    def __getitem__(self, name: str) -> ValidationInfo:
        value = self.found[name]
        if isinstance(value, ValidationInfo):
            return value
        info = self.found[name] = _info_of(value)
        return info

    def __iter__(self) -> typing.Iterator[str]:
        return iter(self.found)

    def __len__(self) -> int:
        return len(self.found)


def _info_of(instance: _ModelMethods) -> ValidationInfo:
    """A valid model's fields and parts, as its ``fields`` validators saw them."""
    parts = _Parts()
    for name in cast(msgspec.Struct, instance).__struct_fields__:
        parts.data[name] = getattr(instance, name)
        parts.add(name, (), parts.data[name])
    return parts.view


def _input_order(given: Any, loc: Loc) -> tuple[int, ...]:
    """Where ``loc`` lies in the input: at each level, the key's position in the mapping (a key not
    given, such as a missing required field, after those given) or the item's index."""
    order: list[int] = []
    for part in loc:
        if isinstance(given, Mapping):
            keys = [str(k) for k in given]
            order.append(keys.index(str(part)) if str(part) in keys else len(keys))
            given = given.get(part)
        elif isinstance(given, list | tuple) and isinstance(part, int) and 0 <= part < len(given):
            order.append(part)
            given = given[part]
        else:
            order.append(part if isinstance(part, int) else 0)
            given = None
    return tuple(order)


def _run_method(target: tuple[_ModelMethods, str]) -> Any:
    instance, name = target
    return getattr(instance, name)()


def _validate_field(
    cls: type[_ModelMethods],
    spec: _FieldSpec,
    value: Any,
    loc: Loc,
    problems: list[tuple[Loc, str]],
    info: ValidationInfo,
) -> Any:
    for name in spec.before:
        value = _call_validator(getattr(cls, name), value, info, loc, problems)
        if value is _INVALID:
            return _INVALID
    value = convert(spec.type, value, loc, problems)
    return _after_validators(cls, spec, value, loc, problems, info)


def _after_validators(
    cls: type[_ModelMethods],
    spec: _FieldSpec,
    value: Any,
    loc: Loc,
    problems: list[tuple[Loc, str]],
    info: ValidationInfo,
) -> Any:
    for name in spec.after:
        if value is _INVALID:
            break
        value = _call_validator(getattr(cls, name), value, info, loc, problems)
    return value


def _call_validator(
    func: Callable[..., Any], value: Any, info: ValidationInfo, loc: Loc, problems: list[tuple[Loc, str]]
) -> Any:
    if _takes_info(func):
        return _call(lambda v: func(v, info), value, loc, problems)
    return _call(func, value, loc, problems)


_NONE = type(None)
_UNIONS = (Union, types.UnionType)


def _is_special(tp: Any) -> bool:
    """Whether ``tp`` needs this module (models, markers, containers of them) rather than msgspec."""
    if isinstance(tp, type):
        return issubclass(tp, (_ModelMethods, SecretStr, Path, enum.Enum, *_NETWORKS))
    origin = get_origin(tp)
    if origin is Literal:
        return True
    if origin is Annotated:
        base, *extra = get_args(tp)
        markers = BeforeValidator | AfterValidator | Unique
        return any(isinstance(m, markers) for m in extra) or _is_special(base)
    if origin in (list, tuple, dict):
        return True
    return any(_is_special(arg) for arg in get_args(tp))


def convert(tp: Any, value: Any, loc: Loc, problems: list[tuple[Loc, str]]) -> Any:  # noqa: PLR0911
    """``value`` as type ``tp``, or ``_INVALID`` with the reasons appended to ``problems``."""
    origin = get_origin(tp)
    if origin is Annotated:
        return _convert_annotated(tp, value, loc, problems)
    if isinstance(tp, type):
        if issubclass(tp, _ModelMethods):
            return _validate_model(tp, value, loc, problems)
        if tp is SecretStr:
            return _secret(value, loc, problems)
        if issubclass(tp, _NETWORKS):
            return _network(tp, value, loc, problems)
        if issubclass(tp, Path):
            return _path(value, loc, problems)
        if issubclass(tp, enum.Enum):
            return _choice(tuple(tp), value, loc, problems, tp)
    if origin is Literal:
        return _choice(get_args(tp), value, loc, problems, None)
    if origin in _UNIONS:
        return _convert_union(tp, value, loc, problems)
    if origin is list or origin is tuple:
        return _convert_sequence(tp, origin, value, loc, problems)
    if origin is dict:
        return _convert_mapping(tp, value, loc, problems)
    return _scalar(tp, value, loc, problems)


def _convert_annotated(tp: Any, value: Any, loc: Loc, problems: list[tuple[Loc, str]]) -> Any:
    base, *extra = get_args(tp)
    metas = [m for m in extra if isinstance(m, msgspec.Meta)]
    for marker in extra:
        if isinstance(marker, BeforeValidator):
            value = _call(marker.func, value, loc, problems)
            if value is _INVALID:
                return _INVALID
    if _is_special(base) or get_origin(base) in (list, tuple, dict):
        value = _convert_sized(base, extra, metas, value, loc, problems)
    elif metas:
        value = _scalar(Annotated[(base, *metas)], value, loc, problems)
    else:
        value = convert(base, value, loc, problems)
    for marker in extra:
        if value is _INVALID:
            break
        if isinstance(marker, AfterValidator):
            value = _call(marker.func, value, loc, problems)
    return value


def _convert_sized(
    base: Any,
    extra: list[Any],
    metas: list[msgspec.Meta],
    value: Any,
    loc: Loc,
    problems: list[tuple[Loc, str]],
) -> Any:
    """A container with its length bounds; too many items is reported too when some item is bad."""
    converted = _convert_container(base, extra, value, loc, problems)
    if converted is not _INVALID:
        for meta in metas:
            converted = _check_length(meta, converted, loc, problems)
    elif isinstance(value, list | tuple | Mapping):
        for meta in metas:
            _check_length(meta, value, loc, problems)
    return converted


def _convert_container(
    base: Any, extra: list[Any], value: Any, loc: Loc, problems: list[tuple[Loc, str]]
) -> Any:
    unique = next((m for m in extra if isinstance(m, Unique)), None)
    if unique is not None and get_origin(base) is list:
        return _convert_sequence(base, list, value, loc, problems, unique)
    return convert(base, value, loc, problems)


def _check_length(meta: msgspec.Meta, value: Any, loc: Loc, problems: list[tuple[Loc, str]]) -> Any:
    if value is _INVALID or not hasattr(value, "__len__"):
        return value
    if meta.min_length is not None and len(value) < meta.min_length:
        problems.append((loc, f"must have at least {_items(meta.min_length)}"))
        return _INVALID
    if meta.max_length is not None and len(value) > meta.max_length:
        problems.append((loc, f"must have at most {_items(meta.max_length)}"))
        return _INVALID
    return value


def _items(count: int) -> str:
    return f"{count} item" + ("" if count == 1 else "s")


def _convert_union(tp: Any, value: Any, loc: Loc, problems: list[tuple[Loc, str]]) -> Any:  # noqa: PLR0911
    members = get_args(tp)
    if value is None and _NONE in members:
        return None
    special = [m for m in members if _is_special(m)]
    plain = [m for m in members if not _is_special(m) and m is not _NONE]
    if not special:
        return _scalar(tp, value, loc, problems)
    if plain:
        trial: list[tuple[Loc, str]] = []
        result = _scalar(Union[tuple(plain)], value, loc, trial)  # noqa: UP007
        if result is not _INVALID:
            return result
        if not special:
            problems.extend(trial)
            return _INVALID
    if len(special) == 1:
        return convert(special[0], value, loc, problems)
    reported: list[tuple[Loc, str]] = []
    for member in special:  # e.g. TLSConfig | Literal[False]: the first that accepts the value
        trial = []
        result = convert(member, value, loc, trial)
        if result is not _INVALID:
            return result
        # a mapping was meant for the model: its problems say more than "not one of false"
        is_model = isinstance(member, type) and issubclass(member, _ModelMethods)
        if not reported or (is_model and isinstance(value, Mapping)):
            reported = trial
    problems.extend(reported)
    return _INVALID


def _convert_sequence(
    tp: Any,
    origin: Any,
    value: Any,
    loc: Loc,
    problems: list[tuple[Loc, str]],
    unique: Unique | None = None,
) -> Any:
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, list | tuple | set | frozenset):
        problems.append((loc, f"expected a list, got {_kind(value)}"))
        return _INVALID
    args = get_args(tp)
    if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
        if len(value) != len(args):
            problems.append((loc, f"expected a list of {len(args)} items, got {len(value)}"))
            return _INVALID
        item_types = list(args)
    else:
        item_types = [args[0] if args else Any] * len(value)
    before = len(problems)
    seen: dict[Any, int] = {}
    items = []
    for i, (t, v) in enumerate(zip(item_types, value, strict=True)):
        if unique is not None and isinstance(v, Mapping):
            key = v.get(unique.key)
            if isinstance(key, str | int) and not isinstance(key, bool):
                if key in seen:
                    problems.append(
                        (
                            (*loc, i, unique.key),
                            f"{key!r} is also the {unique.key} of {location((*loc, seen[key]))}: "
                            f"{unique.noun} {unique.key}s must be unique",
                        )
                    )
                else:
                    seen[key] = i
        items.append(convert(t, v, (*loc, i), problems))
    # each item valid on its own, for the checks across items and fields (``ValidationInfo.items``)
    _salvage().items[loc] = [(i, item) for i, item in enumerate(items) if item is not _INVALID]
    if len(problems) > before:
        return _INVALID
    return tuple(items) if origin is tuple else items


def _convert_mapping(tp: Any, value: Any, loc: Loc, problems: list[tuple[Loc, str]]) -> Any:
    if not isinstance(value, Mapping):
        problems.append((loc, f"expected a mapping (key: value), got {_kind(value)}"))
        return _INVALID
    key_type, value_type = get_args(tp) or (Any, Any)
    before = len(problems)
    out: dict[Any, Any] = {}
    keys: list[Any] = []
    for key, item in value.items():  # every entry on its own: each bad one is reported
        new_key = convert(key_type, key, (*loc, str(key)), problems)
        new_value = convert(value_type, item, (*loc, str(key)), problems)
        if new_key is not _INVALID:
            keys.append(new_key)
            if new_value is not _INVALID:
                out[new_key] = new_value
    # the valid entries and keys, for the checks across entries and fields (``ValidationInfo.entries``)
    _salvage().entries[loc] = (out, keys)
    if len(problems) > before:
        return _INVALID
    return out


def _choice(
    choices: tuple[Any, ...],
    value: Any,
    loc: Loc,
    problems: list[tuple[Loc, str]],
    make: Callable[[Any], Any] | None,
) -> Any:
    for choice in choices:
        # ``True == 1``: a choice matches only a value of its own type
        if type(value) is type(choice) and value == choice:
            return make(value) if make else choice
        if isinstance(choice, enum.Enum) and type(value) is type(choice.value) and value == choice.value:
            return choice
    shown = ", ".join(_show(c.value if isinstance(c, enum.Enum) else c) for c in choices)
    problems.append((loc, f"{_show(value)} is not allowed: use one of {shown}"))
    return _INVALID


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _secret(value: Any, loc: Loc, problems: list[tuple[Loc, str]]) -> Any:
    return _from_text(SecretStr, "a string", value, loc, problems)


def _path(value: Any, loc: Loc, problems: list[tuple[Loc, str]]) -> Any:
    return _from_text(Path, "a path", value, loc, problems)


def _from_text(
    tp: Callable[[str], Any], noun: str, value: Any, loc: Loc, problems: list[tuple[Loc, str]]
) -> Any:
    """``value`` as ``tp`` when it is one already or is text; otherwise a problem naming ``noun``."""
    if isinstance(value, tp):  # type: ignore[arg-type]
        return value
    if isinstance(value, str):
        return tp(value)
    problems.append((loc, f"expected {noun}, got {_kind(value)}"))
    return _INVALID


def _network(tp: type[Any], value: Any, loc: Loc, problems: list[tuple[Loc, str]]) -> Any:
    if isinstance(value, tp):
        return value
    problems.append((loc, f"expected a network such as 10.0.0.0/8, got {_kind(value)}"))
    return _INVALID


def parse_network(value: Any) -> Any:
    """``10.0.0.0/8`` or ``fd00::/8`` -> an ``ipaddress`` network; host bits must be zero."""
    if isinstance(value, str):
        try:
            return ipaddress.ip_network(value.strip())
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a network in CIDR form, e.g. 10.0.0.0/8 ({exc})") from None
    return value


_KINDS = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "true or false",
    "null": "null",
    "array": "a list",
    "object": "a mapping",
}
_EXPECTED = re.compile(r"^Expected `([^`]+)`(?:, got `([^`]+)`)?(?: (>=|<=|>|<) (\S+))?")
_LENGTH = re.compile(r"^Expected `([^`]+)` of length (>=|<=) (\d+)")
_CONSTRAINT_WORDS = {
    ">=": "greater than or equal to",
    "<=": "less than or equal to",
    ">": "greater than",
    "<": "less than",
}


def _kind(value: Any) -> str:  # noqa: PLR0911
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def _kinds(names: str) -> str:
    return " or ".join(_KINDS.get(n.strip(), n.strip()) for n in names.split("|"))


def _friendly(message: str, value: Any) -> str:
    """msgspec's ``Expected `int` >= 1`` as ``must be greater than or equal to 1 (got 0)``."""
    message = message.split(" - at `", 1)[0]
    length = _LENGTH.match(message)
    if length:
        words = "at least" if length[2] == ">=" else "at most"
        unit = "character" if length[1] == "str" else "item"
        count = int(length[3])
        return f"must have {words} {count} {unit}{'' if count == 1 else 's'}"
    expected = _EXPECTED.match(message)
    if expected and expected[3]:
        return f"must be {_CONSTRAINT_WORDS[expected[3]]} {expected[4]} (got {_show(value)})"
    if expected:
        return f"expected {_kinds(expected[1])}, got {_kind(value)}"
    return message


# the spellings of true and false that configuration files and environment variables use
_BOOLEAN_WORDS = {
    **dict.fromkeys(("true", "yes", "on", "y", "t", "1"), True),
    **dict.fromkeys(("false", "no", "off", "n", "f", "0"), False),
}


def _admits_bool(tp: Any) -> bool:
    if tp is bool:
        return True
    origin = get_origin(tp)
    if origin is Annotated:
        return _admits_bool(get_args(tp)[0])
    return origin in _UNIONS and any(_admits_bool(arg) for arg in get_args(tp))


def _scalar(tp: Any, value: Any, loc: Loc, problems: list[tuple[Loc, str]]) -> Any:
    if tp is Any:
        return value
    if isinstance(value, str) and _admits_bool(tp):
        word = _BOOLEAN_WORDS.get(value.strip().lower())
        if word is not None and (tp is bool or not value.strip().isdigit()):
            return word if tp is bool else msgspec.convert(word, tp, strict=False)
    try:
        return msgspec.convert(value, tp, strict=False)
    except msgspec.ValidationError as exc:
        problems.append((loc, _friendly(str(exc), value)))
        return _INVALID
