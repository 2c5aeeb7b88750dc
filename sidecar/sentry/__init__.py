"""Sentry forwarding: the app's errors (from its logs, the gateway and its own SDK via the relay) and the
sidecar's own errors, scrubbed, de-duplicated, rate-limit aware and spooled so nothing is silently lost.

Importing this package is cheap on purpose: ``sentry_sdk`` is imported only when ``SENTRY_DSN`` is set
(see ``own_errors``), and nothing here opens a socket or a file until the app starts.
"""
