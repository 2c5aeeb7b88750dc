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


def normalise_segment(segment: str) -> str:
    """An ID-like path segment becomes a placeholder; anything else is kept."""
    if not segment:
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
        self.overflowed = 0

    @property
    def distinct_routes(self) -> int:
        return len(self._routes)

    def route(self, path: str) -> str:
        """The route label for a request path (query string ignored)."""
        path = path.split("?", 1)[0] or "/"
        cached = self._cache.get(path)
        if cached is not None:
            self._cache.move_to_end(path)
            if cached == OVERFLOW_ROUTE:
                self.overflowed += 1
            return cached
        route = self._template_for(path)
        if route not in self._routes:
            if len(self._routes) >= self.max_routes:
                route = OVERFLOW_ROUTE
                self.overflowed += 1
            else:
                self._routes.add(route)
        self._cache[path] = route
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return route

    def _template_for(self, path: str) -> str:
        for template in self._templates:
            if template.matches(path):
                return template.template
        return "/".join(normalise_segment(s) for s in path.split("/")) or "/"
