"""Observability sidecar: dependency probes, health endpoints, metrics and correlation next to any app.

The process shell is the only code at this level: ``cli`` (commands), ``config`` (the root settings,
composed from each flow's own section), ``server`` (the app factory that builds each flow and wires
them through the typed keys in ``app_keys``). Each flow is a package: ``probing``, ``gateway``,
``logs``, ``sentry``, ``tracing``, ``correlation``; ``serving`` holds the listeners and exposition,
``core`` the small pieces they share. docs/architecture.md draws the map.
"""

__version__ = "0.1.0"
