"""The gateway: a reverse proxy before the app that adds request IDs, traces, RED metrics and access logs.

The hot path (``proxy``, ``upstream``) is ``asyncio.Protocol`` code over ``httptools`` so a request
costs a few dozen microseconds; everything else (settings, IDs, trace context, access log, metrics)
lives in small modules the hot path calls. Those modules are compiled with mypyc when the package is
built (``setup.py``); the same source runs interpreted where no compiler was available.
"""

from __future__ import annotations


def compiled() -> bool:
    """Whether the hot path runs as mypyc-compiled native code or as plain Python (both work)."""
    from sidecar.gateway import proxy  # noqa: PLC0415 (the gateway loads only when configured)

    return not proxy.__file__.endswith(".py")
