"""The forwarding flow to Sentry: the app's errors and the sidecar's own, scrubbed, spooled, never lost.

In: error log lines and the gateway's 5xx (through ``forwarder``), the app's own SDK (through the
``relay`` on the admin listener), the sidecar's own exceptions (``own_errors``). Out: envelopes to
Sentry, oldest first, from a disk spool that holds them until Sentry took them.

- ``settings``: the ``sentry:`` section; ``dsn``: where an envelope goes and its public key.
- ``events``: events made from log lines and 5xx answers; ``stacktrace``: V8 and CPython frames from text.
- ``envelope``: the envelope format, parsed strictly; ``scrub``: sensitive data out of everything.
- ``forwarder``: the one object the other flows hand events to (dedupe, rate limits, spool).
- ``spool``: every accepted envelope on disk before it is acknowledged; ``transport``: delivery.
- ``seen``: the acknowledged event IDs, journalled with the spool, so a re-sent event is not sent twice.
- ``ratelimits``: Sentry's announced limits; ``metrics``: what happened to every event.
- ``relay``: the SDK-facing endpoint; ``own_errors``: sentry-sdk for the sidecar itself;
  ``lifecycle``: wiring into the app factory.

Importing this package is cheap on purpose: ``sentry_sdk`` is imported only when ``SENTRY_DSN`` is set
(see ``own_errors``), and nothing here opens a socket or a file until the app starts.
"""
