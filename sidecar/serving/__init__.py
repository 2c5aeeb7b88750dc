"""The serving layer: listeners and what guards them, the admin API and the ``/metrics`` exposition.

In: the listener settings (addresses, limits, TLS, auth) and the aiohttp apps the flows fill with routes.
Out: bound listeners that refuse hostile input before aiohttp parses it, and the exposition body.

- ``addresses``: ``host:port`` as the configuration writes it.
- ``guard``: per-listener limits on heads, bodies, connections and time, enforced below aiohttp.
- ``errors``: the outermost middleware: a malformed request is a 4xx with a reason, never a 500.
- ``listeners``: starting one listener: runner, TLS, guard, rejection counter.
- ``tls``: one validated TLS setting and a hardened ``ssl.SSLContext``.
- ``security``: the admin bearer token, optional auth on ``/metrics`` and ``/health``, loopback checks.
- ``admin_api``: drain/undrain and the debug endpoints on the admin listener.
- ``exposition``: the app's own registry and the text/OpenMetrics body rendered from it.
- ``text_exposition``: the encoder behind it: series prefixes cached across scrapes, values formatted
  per scrape, rendered in steps of some 25 us with the event loop free in between.
- ``process_metrics``: client_python's ``process_*`` families, read in pieces a render can pause at.
"""
