"""The request flow: a reverse proxy before the app that adds request IDs, traces, RED metrics, access lines.

In: client connections on the gateway listener. Out: requests to the app (``upstream``), responses to
the clients, and for each request one RED observation, one access line, one correlation entry and,
when tracing is on, two spans. The hot path (``proxy``, ``upstream``) is ``asyncio.Protocol`` code
over ``httptools``, compiled with mypyc when the package is built (``setup.py``); the same source runs
interpreted where no compiler was available.

- ``settings``: the ``gateway:`` section; ``service``: the listener's lifecycle, sweeper and drain;
  ``app_watch``: whether the app is gone during a drain (``exit_on_zero_active``).
- ``listener_state`` and ``context``: what every connection shares; ``context.record`` records a
  finished request in one place.
- ``exchange``: one request/response pair, and the small interfaces (``ClientSide``, ``UpstreamSide``,
  ``LimitsSide``) through which the parts it links call each other without importing each other.
- ``proxy``: the client side (HTTP/1.1 server protocol); ``upstream``: the app side (client protocol,
  keep-alive pool); ``write_batch``: one write per socket per loop iteration.
- ``framing``: where a request's body ends, decided once from the parsed message (and what is refused).
- ``head_scan`` (C, ``head_scan.c``): the app's usual response head read and restated in one native
  call; whatever it does not recognise in full is llhttp's, as before.
- ``request_head``/``response_head``: the heads each side receives; ``hop_by_hop``, ``forwarded``,
  ``correlation_ids``, ``traceparent``, ``query_mask``: the rules they apply; ``responses``: the
  gateway's own answers.
- ``outlier``: per-request counters of the app's passive health, read by ``probing.outlier``.
- ``metrics``, ``access_log``: RED recording and access lines; ``edge``, ``security_headers`` and
  ``ratelimit/``: the edge protections.
"""

from __future__ import annotations


def compiled() -> bool:
    """Whether the hot path runs as mypyc-compiled native code or as plain Python (both work)."""
    from sidecar.gateway import proxy  # noqa: PLC0415 (the gateway loads only when configured)

    return not proxy.__file__.endswith(".py")


def native_heads() -> bool:
    """Whether ``head_scan`` (C) was built: without it llhttp reads every head (the same answers)."""
    from sidecar.gateway.listener_state import native_scanners  # noqa: PLC0415 (as above)

    return native_scanners() != (None, None)
