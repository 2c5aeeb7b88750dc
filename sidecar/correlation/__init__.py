"""Correlation: everything seen for one request ID, and the lookup that shows it.

In: access records from the gateway and from access lines, log lines, Sentry events (each flow adds
what it sees, keyed by request ID). Out: one request's timeline, ``GET /debug/requests/{id}``.

- ``index``: the bounded in-memory index (compiled with the core library, see ``setup.py``).
- ``endpoint``: the lookup endpoint on the admin listener and the index's size as metrics.
"""
