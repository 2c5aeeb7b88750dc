"""The route normaliser's caches (used on the log-metrics hot path) never change a route or the cap.

A reference normaliser with every cache disabled is run on the same sequence of paths; routes and the
overflow count must agree, whatever the templates (with or without digits in their literal text).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.core.routes import RouteNormaliser, normalise_segment

pytestmark = pytest.mark.timeout(60)


class Uncached:
    """Same rules, no memory: every path is normalised from scratch (a wrapper, since the normaliser
    may be a compiled class, which Python code cannot subclass)."""

    def __init__(self, templates: list[str], max_routes: int) -> None:
        self.normaliser = RouteNormaliser(templates, max_routes)

    def route(self, path: str) -> str:
        normaliser = self.normaliser
        normaliser._cache.clear()
        normaliser._shapes = None
        normaliser._kept_segments.clear()
        return normaliser.route(path)


segment = st.one_of(
    st.text(alphabet="0123456789", min_size=1, max_size=12),
    st.text(alphabet="abcdef0123456789", min_size=1, max_size=40),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=30),
    st.sampled_from(["users", "v1", "v2", "v0", "api", "orders", "items", "0e1", "1.5", "-3", "", "á1"]),
    st.uuids().map(str),
    st.builds(
        lambda p, d: p + d,
        st.sampled_from(["v", "api", "x-"]),
        st.text(alphabet="01", min_size=1, max_size=3),
    ),
)
paths = st.lists(segment, min_size=0, max_size=6).map(lambda parts: "/" + "/".join(parts))
templates = st.lists(
    st.sampled_from(["/users/{id}", "/api/v1/x/{id}", "/orders/{id}/items", "/a/{x}/b", "/v2/{id}"]),
    max_size=3,
    unique=True,
)


def _redigit(path: str, seed: int) -> str:
    """The same path with its digits replaced (seed 0: all zeros), i.e. another path of the same shape."""
    return "".join(str((int(c) * seed + seed) % 10) if c in "0123456789" else c for c in path)


@settings(max_examples=300, deadline=None)
@given(
    templates=templates,
    bases=st.lists(paths, min_size=1, max_size=20),
    seeds=st.lists(st.integers(0, 9), min_size=1, max_size=4),
    cap=st.integers(1, 20),
)
def test_cached_routes_equal_uncached_routes(
    templates: list[str], bases: list[str], seeds: list[int], cap: int
) -> None:
    cached, reference = RouteNormaliser(templates, cap), Uncached(templates, cap)
    sequence = [_redigit(path, seed) for seed in seeds for path in bases]  # many paths per shape
    for path in sequence + sequence:  # the second pass hits the caches
        assert cached.route(path) == reference.route(path), path
    assert cached.overflowed == reference.normaliser.overflowed
    assert cached.distinct_routes == reference.normaliser.distinct_routes


def test_ids_share_one_shape_entry_and_versions_are_copied() -> None:
    routes = RouteNormaliser()
    assert [routes.route(f"/users/{i}") for i in (1, 22, 333)] == ["/users/{id}"] * 3
    assert routes.route("/api/v0/x") == "/api/v0/x"
    assert routes.route("/api/v1/x") == "/api/v1/x"  # same shape as v0, but "v1" is kept verbatim
    assert routes.route("/api/v2/users/7") == "/api/v2/users/{id}"
    assert routes.route("/api/v3/users/8") == "/api/v3/users/{id}"
    assert routes._shapes is not None
    assert routes._shapes[b"/users/000"] == "/users/{id}"
    assert routes._shapes[b"/api/v0/users/0"] == ((2,), ["", "api", "v2", "users", "{id}"])


def test_fast_paths_agree_with_the_patterns() -> None:
    assert normalise_segment("123") == "{id}"
    assert normalise_segment("users") == "users"
    assert normalise_segment("x" * 65) == "{token}"
    assert normalise_segment("abcdefab-abcd-abcd-abcd-abcdefabcdef") == "{uuid}"
