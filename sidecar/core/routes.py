"""Paths to route templates with a hard cap, so request metrics never explode in cardinality.

Configured templates (``/users/{id}``) win; any other path is normalised (numbers, UUIDs, hex and
other ID-like segments become placeholders). Past ``max_routes`` distinct routes, new ones fold into
one overflow value, and each fold is counted.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable

OVERFLOW_ROUTE = "_other"
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::[^}]*)?\}")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")
_HEX = re.compile(r"^(?=[^/]*\d)[0-9a-fA-F]{8,}$")
_OPAQUE = re.compile(r"^(?=.*\d)(?=.*[A-Za-z])[A-Za-z0-9_\-=.~]{20,}$")
_CACHE_SIZE = 4096
_ZEROS = bytes.maketrans(b"123456789", b"000000000")  # on UTF-8 bytes: far cheaper than str.translate


class RouteTemplate:
    """One configured template, compiled to a regular expression over the path."""

    def __init__(self, template: str) -> None:
        if not template.startswith("/"):
            raise ValueError(f"route template {template!r} must start with '/'")
        self.template = template
        pattern = ""
        last = 0
        for match in _PARAM.finditer(template):
            pattern += re.escape(template[last : match.start()]) + "[^/]+"
            last = match.end()
        pattern += re.escape(template[last:])
        self._regex = re.compile(f"^{pattern}/?$")
        literal = _PARAM.sub("", template)
        self.specificity = (len(literal), -template.count("{"))

    def matches(self, path: str) -> bool:
        return self._regex.match(path) is not None


def _has_digit(text: str) -> bool:
    return any(c in "0123456789" for c in text)


def normalise_segment(segment: str) -> str:  # noqa: PLR0911 (one return per segment shape)
    """An ID-like path segment becomes a placeholder; anything else is kept."""
    if not segment:
        return segment
    # Fast paths (same answers as the patterns below): all decimal digits is a number; all letters
    # can be none of the ID shapes, which all need a digit or a hyphen.
    if segment.isdecimal():
        return "{id}"
    if segment.isalpha() and len(segment) <= 64:
        return segment
    if _NUMBER.match(segment):
        return "{id}"
    if _UUID.match(segment):
        return "{uuid}"
    if _HEX.match(segment):
        return "{hex}"
    if _OPAQUE.match(segment) or len(segment) > 64:
        return "{token}"
    return segment


class RouteNormaliser:
    """Maps raw paths to bounded route labels; ``overflowed`` counts paths folded into the overflow value."""

    def __init__(self, templates: Iterable[str] = (), max_routes: int = 200) -> None:
        self._templates = sorted(
            (RouteTemplate(t) for t in templates), key=lambda t: t.specificity, reverse=True
        )
        self.max_routes = max_routes
        self._routes: set[str] = set()
        self._cache: OrderedDict[str, str] = OrderedDict()
        self._kept_segments: set[str] = set()  # segments seen to be no ID; bounded by _CACHE_SIZE
        # Route by path *shape* (ASCII digits as 0): /users/123 and /users/456 share one entry, so
        # paths with ever-new IDs still hit. Exact only while no template has a digit in its literal
        # text (matching then depends on digits only through their positions); otherwise off.
        digit_literals = any(c in "0123456789" for t in self._templates for c in _PARAM.sub("", t.template))
        self._shapes: dict[bytes, str | tuple[tuple[int, ...], list[str]]] | None = (
            None if digit_literals else {}
        )
        # The generation of shapes before the current one: a full cache forgets the shapes not seen
        # lately instead of all of them at once (every path would miss right after a clear).
        self._shapes_before: dict[bytes, str | tuple[tuple[int, ...], list[str]]] = {}
        self.overflowed = 0

    @property
    def distinct_routes(self) -> int:
        return len(self._routes)

    def route(self, path: str) -> str:
        """The route label for a request path (query string ignored)."""
        if "?" in path:
            path = path.split("?", 1)[0]
        path = path or "/"
        shapes = self._shapes
        if shapes is None:
            return self._route_by_path(path)
        shape = path.encode("utf-8", "surrogatepass").translate(_ZEROS)
        known = shapes.get(shape)
        if known is None:
            known = self._shapes_before.get(shape)
            if len(shapes) >= _CACHE_SIZE // 2:
                self._shapes_before = shapes
                shapes = self._shapes = {}
            if known is not None:
                shapes[shape] = known
        if known is None:
            route, plan = self._route_and_plan(path)
            if plan is None:
                known = shapes[shape] = self._capped(route)
                return known
            shapes[shape] = plan
            return self._capped(route)
        if isinstance(known, str):
            if known == OVERFLOW_ROUTE:
                self.overflowed += 1
            return known
        verbatim, normalised = known
        parts = path.split("/")
        out = list(normalised)
        for index in verbatim:
            out[index] = parts[index]
        return self._capped("/".join(out) or "/")

    def by_shape(self, path: str) -> bool:
        """Whether every path of ``path``'s shape gets the route ``route(path)`` just gave.

        True when shapes are in use and the shape's answer is a route, not a plan that copies
        segments from each path (``/v2/...``): callers may then cache by shape themselves.
        """
        shapes = self._shapes
        if shapes is None:
            return False
        if "?" in path:
            path = path.split("?", 1)[0]
        known = shapes.get((path or "/").encode("utf-8", "surrogatepass").translate(_ZEROS))
        return isinstance(known, str)

    def _capped(self, route: str) -> str:
        """``route`` itself while under ``max_routes`` distinct routes (or already known), else overflow."""
        if route in self._routes:
            return route
        if len(self._routes) >= self.max_routes:
            self.overflowed += 1
            return OVERFLOW_ROUTE
        self._routes.add(route)
        return route

    def _route_and_plan(self, path: str) -> tuple[str, tuple[tuple[int, ...], list[str]] | None]:
        """The uncapped route, and how to build it for any path of the same shape when that needs the path.

        Which segments become placeholders depends on where a path's digits are, never on their values,
        so one answer serves every path of a shape; only segments kept verbatim although they contain
        digits (``v2``) must be copied from each path. Template matching is shape-independent too,
        because no template has a digit in its literal text when shapes are in use.
        """
        for template in self._templates:
            if template.matches(path):
                return template.template, None
        parts = path.split("/")
        normalised = [normalise_segment(s) for s in parts]
        verbatim = tuple(
            i for i, (s, n) in enumerate(zip(parts, normalised, strict=True)) if n is s and _has_digit(s)
        )
        return "/".join(normalised) or "/", ((verbatim, normalised) if verbatim else None)

    def _route_by_path(self, path: str) -> str:
        """Without shapes: an LRU of exact paths."""
        cached = self._cache.get(path)
        if cached is not None:
            self._cache.move_to_end(path)
            if cached == OVERFLOW_ROUTE:
                self.overflowed += 1
            return cached
        route = self._capped(self._template_for(path))
        self._cache[path] = route
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return route

    def _template_for(self, path: str) -> str:
        for template in self._templates:
            if template.matches(path):
                return template.template
        kept = self._kept_segments
        learn = self._learn_segment
        return "/".join([s if s in kept else learn(s) for s in path.split("/")]) or "/"

    def _learn_segment(self, segment: str) -> str:
        """Normalise a segment not known to be plain; remember it when it is (most are, and repeat)."""
        normalised = normalise_segment(segment)
        if normalised is segment and len(self._kept_segments) < _CACHE_SIZE:
            self._kept_segments.add(segment)
        return normalised
