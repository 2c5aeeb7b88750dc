"""The probe flow: dependencies in, check results and readiness out.

In: the ``checks:`` section (``settings``) and a collector per kind (``collectors/``).
Out: the latest ``CheckResult`` per check (``results.ResultStore``), readiness with hysteresis and
drain (``health.HealthModel``), the health endpoints and the check metrics.

- ``settings``: one check's configuration and its warn/fail thresholds.
- ``probe``: the template around every collector: time it, bound it, judge it, redact it.
- ``scheduler``: runs each check on its own jittered interval, one probe in flight, backing off.
- ``results``: the store of latest results, the single source of truth for what follows.
- ``health``: readiness, drain and the IETF health document, from the store only.
- ``check_metrics``: the Prometheus collector that renders results and readiness at scrape time.
- ``app_check``: the ``app_check:`` section; the app behind the gateway as a check (TCP or HTTP).
- ``outlier``: passive outlier detection of the app from the gateway's per-request counters (ejections).
- ``endpoints``: ``/livez``, ``/readyz``, ``/readyz/<check>``, ``/startupz``, ``/health``, ``/metrics``;
  none does I/O.
"""
