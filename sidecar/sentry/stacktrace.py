"""Exceptions and stack frames out of the text apps write to their logs: V8 (Node) and CPython tracebacks.

Sentry wants frames oldest first (the crashing frame last) and, for chained exceptions, the cause first
and the exception that was finally raised last. V8 prints newest first, so Node frames are reversed;
CPython already prints in Sentry's order. ``in_app`` is false for dependencies and the runtime
(``node_modules``, ``node:internal``, ``site-packages``, the standard library), which is what makes
Sentry's grouping and our de-duplication look at the app's own code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

MAX_FRAMES = 250
MAX_VALUE_CHARS = 8_192

_V8_AT = re.compile(r"^\s+at (?P<rest>.+?)\s*$")
_V8_CALL = re.compile(r"^(?P<func>.*?) \((?P<loc>.*)\)$")
_V8_LOC = re.compile(r"^(?P<file>.+?):(?P<line>\d+)(?::(?P<col>\d+))?$")
_V8_TYPE = re.compile(r"^[\w$.]+(?: \[[\w.-]+\])?$")
_PY_FILE = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+)(?:, in (?P<func>.+))?$')
_PY_HEADER = "Traceback (most recent call last):"
_PY_CHAINS = (
    "The above exception was the direct cause of the following exception:",
    "During handling of the above exception, another exception occurred:",
)
_PY_EXC = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?::\s?(?P<value>.*))?$")
_PY_LIBS = ("site-packages", "dist-packages", "/lib/python", "<frozen ", "<string>")


@dataclass(slots=True)
class Frame:
    filename: str
    function: str | None = None
    lineno: int | None = None
    colno: int | None = None
    in_app: bool = True
    context_line: str | None = None

    def to_sentry(self) -> dict[str, Any]:
        frame: dict[str, Any] = {"filename": self.filename, "abs_path": self.filename, "in_app": self.in_app}
        if self.function:
            frame["function"] = self.function
        if self.lineno is not None:
            frame["lineno"] = self.lineno
        if self.colno is not None:
            frame["colno"] = self.colno
        if self.context_line is not None:
            frame["context_line"] = self.context_line
        return frame


@dataclass(slots=True)
class ParsedException:
    type: str
    value: str
    frames: list[Frame] = field(default_factory=list)  # oldest first
    module: str | None = None

    @property
    def top_in_app(self) -> Frame | None:
        """The frame nearest the crash that belongs to the app (None when no frame does)."""
        return next((f for f in reversed(self.frames) if f.in_app), None)

    def to_sentry(self, mechanism: str, handled: bool = False) -> dict[str, Any]:
        value: dict[str, Any] = {
            "type": self.type,
            "value": self.value[:MAX_VALUE_CHARS],
            "mechanism": {"type": mechanism, "handled": handled},
        }
        if self.module:
            value["module"] = self.module
        if self.frames:
            value["stacktrace"] = {"frames": [f.to_sentry() for f in self.frames]}
        return value


def parse_stack(text: str, platform_hint: str | None = None) -> tuple[str, list[ParsedException]]:
    """``(platform, exceptions)`` from a stack text; platform is ``node``, ``python`` or ``other``.

    Exceptions are in Sentry's order (cause first). Text that is neither format gives ``("other", [])``.
    """
    if _PY_HEADER in text or platform_hint == "python":
        exceptions = _parse_python(text)
        if exceptions:
            return "python", exceptions
    if "\n    at " in text or text.lstrip().startswith("at ") or platform_hint == "node":
        exception = _parse_v8(text)
        if exception is not None:
            return "node", [exception]
    return "other", []


def _node_in_app(path: str) -> bool:
    return not (
        "node_modules" in path
        or path.startswith(("node:", "internal/", "native", "<anonymous>", "index "))
        or ("/" not in path and "\\" not in path)
    )


def _v8_frame(rest: str) -> Frame | None:
    rest = rest.removeprefix("async ")
    call = _V8_CALL.match(rest)
    func, loc = (call["func"], call["loc"]) if call else (None, rest)
    if func:
        func = func.removeprefix("async ")
    if loc.startswith("eval at "):
        # "eval at foo (file:1:2), <anonymous>:3:4": the eval site is the meaningful location
        inner = re.search(r"\((?P<loc>[^()]+)\)", loc)
        loc = inner["loc"] if inner else loc
    loc = loc.removeprefix("file://")
    place = _V8_LOC.match(loc)
    if place is None:
        # "Promise.all (index 0)", "<anonymous>", "native": a frame without a source file
        return Frame(filename=loc or "<anonymous>", function=func, in_app=False)
    filename = place["file"]
    return Frame(
        filename=filename,
        function=func or None,
        lineno=int(place["line"]),
        colno=int(place["col"]) if place["col"] else None,
        in_app=_node_in_app(filename),
    )


def _parse_v8(text: str) -> ParsedException | None:
    lines = text.splitlines()
    head: list[str] = []
    frames: list[Frame] = []
    for line in lines:
        at = _V8_AT.match(line)
        if at is None:
            if not frames:
                head.append(line)
            continue
        frame = _v8_frame(at["rest"])
        if frame is not None and len(frames) < MAX_FRAMES:
            frames.append(frame)
    if not frames:
        return None
    first = "\n".join(head).strip()
    exc_type, sep, value = first.partition(": ")
    if not sep:
        exc_type, value = (first, "") if _V8_TYPE.match(first) else ("Error", first)
    elif not _V8_TYPE.match(exc_type):
        exc_type, value = "Error", first
    frames.reverse()  # V8 prints newest first; Sentry wants oldest first
    return ParsedException(type=exc_type, value=value, frames=frames)


def _py_in_app(path: str) -> bool:
    return not any(marker in path for marker in _PY_LIBS)


def _parse_python(text: str) -> list[ParsedException]:
    exceptions: list[ParsedException] = []
    frames: list[Frame] | None = None
    collecting_value: ParsedException | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped == _PY_HEADER:
            frames, collecting_value = [], None
            continue
        if stripped in _PY_CHAINS:
            collecting_value = None
            continue
        if frames is None:
            continue
        match = _PY_FILE.match(line)
        if match is not None:
            filename = match["file"]
            if len(frames) < MAX_FRAMES:
                frames.append(
                    Frame(
                        filename=filename,
                        function=(match["func"] or "").strip() or None,
                        lineno=int(match["line"]),
                        in_app=_py_in_app(filename),
                    )
                )
            continue
        if line.startswith("    ") and frames and collecting_value is None:
            if stripped and set(stripped) <= {"^", "~", " "}:
                continue  # 3.11+ position markers under the code line
            if frames[-1].context_line is None:
                frames[-1].context_line = stripped
            continue
        if collecting_value is not None:
            if stripped:
                collecting_value.value += "\n" + line
            continue
        exc = _PY_EXC.match(stripped) if stripped else None
        if exc is not None:
            full_type = exc["type"]
            module, _, name = full_type.rpartition(".")
            parsed = ParsedException(
                type=name, value=exc["value"] or "", frames=frames, module=module or None
            )
            exceptions.append(parsed)
            collecting_value, frames = parsed, []
    return exceptions
