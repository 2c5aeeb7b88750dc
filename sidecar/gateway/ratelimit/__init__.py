"""Rate limiting at the gateway's edge: configured rules, local or Redis-shared state, IETF headers.

``settings`` is the configuration, ``rules`` matches requests and picks keys, ``local`` and
``redis_backend`` hold the state (same algorithms, one in-process, one in a Lua script), ``headers``
renders the ``RateLimit``/``RateLimit-Policy`` fields and ``limiter`` ties them to one request.
"""
