"""The gateway: a reverse proxy before the app that adds request IDs, traces, RED metrics and access logs.

The hot path (``proxy``, ``upstream``) is plain ``asyncio.Protocol`` code over ``httptools`` so a request
costs a few dozen microseconds; everything else (settings, IDs, trace context, access log, metrics)
lives in small modules the hot path calls.
"""
