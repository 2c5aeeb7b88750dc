"""The log flow: the app's log lines in; metrics, correlation entries, Sentry events and re-emitted lines out.

Sources (``sources/``: tailed files, standard input, HTTP NDJSON) each hand batches of raw lines to a
bounded channel of their own, so a slow or broken source never stalls another. One parser normalises
every line; one pipeline feeds every sink from the normalised record.

- ``settings``: the ``logs:`` section (sources, limits, field overrides, sinks, rules).
- ``rule_settings``: ``logs.rules``, the user's metrics from log fields, checked at config time.
- ``rules``: those rules compiled once into matchers and applied to every normalised record.
- ``rule_metrics``: the rules' metric families, kept across a reload for rules that did not change.
- ``rule_codegen``: the compiled rules written out as one generated function (the hot path).
- ``otlp_settings``, ``otlp_encoding``, ``otlp_export``: lines and gateway access records shipped as
  OTLP logs (bounded queue, batches, retries; protobuf written straight to bytes).
- ``parse``: one parser for pino, winston, bunyan, NestJS, structlog, python-json-logger, logfmt, text.
- ``pipeline``: parse once, then metrics, access RED metrics, correlation index, Sentry, re-emit.
- ``metrics``: the ``sidecar_log_*`` families (read, rejected, dropped, followed).
- ``access``: access lines from the app's logs into the same RED histograms the gateway records.
- ``reemit``: normalised lines as JSON on standard output, for a cluster log shipper.
- ``runtime``: the flow's moving parts for one app (pipeline, channels, readers, checkpoints).
- ``wiring``: how the flow plugs into the main and admin apps.
"""
