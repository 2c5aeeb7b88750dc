"""Passive outlier detection: the gateway's per-request counters, ejection times and the way back."""

from __future__ import annotations

import time

from collectors.base import Reason, Status
from sidecar.gateway.outlier import OFF, PassiveCounters
from sidecar.probing.app_check import OutlierSettings
from sidecar.probing.health import HealthModel
from sidecar.probing.outlier import OutlierDetector, OutlierMetrics
from sidecar.probing.results import CheckResult, ResultStore
from sidecar.probing.settings import CheckConfig


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def result(status: Status) -> CheckResult:
    reason = Reason.CONNECT if status is Status.FAIL else None
    return CheckResult("app", "tcp", status, 0.001, time.time(), reason=reason)


def detector(
    clock: Clock, *, grace: float | None = None, **outlier: object
) -> tuple[ResultStore, HealthModel, OutlierDetector, PassiveCounters]:
    store = ResultStore()
    health = HealthModel(store, clock=clock)
    config = CheckConfig(name="app", kind="tcp", target="127.0.0.1:9", rise=2, fall=2, startup_grace=grace)
    store.register("app", "tcp")
    health.configure([config])
    settings = OutlierSettings.model_validate({"base_ejection_time": 10, "max_ejection_time": 25, **outlier})
    found = OutlierDetector(settings, health, "app", clock=clock)
    counters = PassiveCounters()
    found.attach(counters)
    return store, health, found, counters


def test_counters_ignore_what_says_nothing_about_the_app() -> None:
    counters = PassiveCounters()
    trips: list[tuple[str, int]] = []
    counters.configure(3, 2, lambda rule, count: trips.append((rule, count)))
    for _ in range(10):
        counters.observe(499, "client_disconnect")
        counters.observe(503, "concurrency")
        counters.observe(429, "rate_limited")
    assert trips == [] and counters.take_window() == (0, 0)
    counters.observe(200, "")
    counters.observe(404, "")
    assert counters.take_window() == (2, 0)


def test_consecutive_5xx_trip_once_and_a_success_resets_the_run() -> None:
    counters = PassiveCounters()
    trips: list[tuple[str, int]] = []
    counters.configure(3, 0, lambda rule, count: trips.append((rule, count)))
    for status in (500, 502, 200, 500, 503):
        counters.observe(status, "")
    assert trips == []
    counters.observe(504, "upstream_timeout")  # the gateway's own 504 counts as the app's 5xx
    counters.observe(500, "")
    assert trips == [("consecutive_5xx", 3)], "tripped once, disarmed until the app is back"
    counters.rearm()
    counters.observe(500, "")
    counters.observe(500, "")
    assert len(trips) == 1, "rearming starts the run afresh"


def test_connect_failures_trip_their_own_rule_before_the_5xx_rule() -> None:
    counters = PassiveCounters()
    trips: list[tuple[str, int]] = []
    counters.configure(5, 2, lambda rule, count: trips.append((rule, count)))
    counters.observe(502, "upstream_refused")
    counters.observe(504, "upstream_connect_timeout")
    assert trips == [("consecutive_connect_failures", 2)]
    assert counters.take_window() == (2, 2)


def test_an_ejection_fails_readiness_with_its_reason_and_grows_on_repeat() -> None:
    clock = Clock()
    store, health, found, counters = detector(clock, consecutive_5xx=5)
    store.record(result(Status.PASS))
    assert health.readiness.ready
    for _ in range(5):
        counters.observe(500, "")
    assert not health.readiness.ready
    assert health.readiness.failing_text() == "app (outlier: 5 consecutive 5xx)"
    store.record(result(Status.PASS))
    store.record(result(Status.PASS))
    assert not health.readiness.ready, "rise passes, but the ejection time is not over"
    clock.now += 10
    store.record(result(Status.FAIL))
    store.record(result(Status.PASS))
    assert not health.readiness.ready, "a failure starts the rise over"
    store.record(result(Status.PASS))
    assert health.readiness.ready and counters.armed
    for _ in range(5):
        counters.observe(502, "upstream_reset")
    state = health.states["app"]
    assert state.ejected and state.ejected_until == clock.now + 20, "second ejection in a row: 2 x base"
    clock.now += 20
    store.record(result(Status.PASS))
    store.record(result(Status.PASS))
    for _ in range(5):
        counters.observe(500, "")
    assert health.states["app"].ejected_until == clock.now + 25, "capped at max_ejection_time"
    assert found.ejections["consecutive_5xx"] == 3


def test_error_ratio_per_window_and_the_multiplier_decays_while_healthy() -> None:
    clock = Clock()
    store, health, found, counters = detector(clock, consecutive_5xx=0, error_ratio=0.5, min_requests=10)
    store.record(result(Status.PASS))
    for i in range(9):
        counters.observe(500 if i % 2 else 200, "")
    found.sweep()
    assert health.readiness.ready, "too few requests in the window to judge"
    for i in range(20):
        counters.observe(500 if i % 2 else 200, "")
    found.sweep()
    assert health.readiness.failing_text() == "app (outlier: 10 of 20 requests failed in 10s)"
    assert found.multiplier == 1
    clock.now += 10
    store.record(result(Status.PASS))
    store.record(result(Status.PASS))
    assert health.readiness.ready
    counters.observe(200, "")
    found.sweep()
    assert found.multiplier == 0, "a healthy window lowers the next ejection time again"
    metrics = {m.name: m for m in OutlierMetrics(found).collect()}
    ejections = {s.labels["reason"]: s.value for s in metrics["sidecar_app_ejections"].samples}
    assert ejections["error_ratio"] == 1 and ejections["consecutive_5xx"] == 0


def test_a_starting_app_is_starting_until_its_first_pass_or_the_grace_ends() -> None:
    clock = Clock()
    store, health, _found, _counters = detector(clock, grace=30)
    store.record(result(Status.FAIL))
    store.record(result(Status.FAIL))
    assert health.readiness.reason == "starting" and health.started == (False, ("app",))
    assert health.health_document()["checks"]["app:responseTime"][0]["status"] == "warn"
    store.record(result(Status.PASS))
    assert health.readiness.ready and health.started == (True, ())
    store.record(result(Status.FAIL))
    store.record(result(Status.FAIL))
    assert health.readiness.reason == "failing" and health.started[0], "start-up stays done"


def test_an_app_that_never_starts_fails_once_its_grace_is_over() -> None:
    clock = Clock()
    store, health, _found, _counters = detector(clock, grace=30)
    store.record(result(Status.FAIL))
    clock.now += 31
    store.record(result(Status.FAIL))
    assert health.readiness.reason == "failing" and health.readiness.failing == ("app",)
    assert health.started == (False, ("app",))


def test_a_starting_app_is_not_ejected_by_traffic_before_its_first_pass() -> None:
    clock = Clock()
    store, health, found, counters = detector(clock, grace=30, consecutive_connect_failures=2)
    for _ in range(4):
        counters.observe(502, "upstream_refused")
    assert health.readiness.reason == "starting" and found.ejections["consecutive_connect_failures"] == 0
    store.record(result(Status.PASS))
    assert health.readiness.ready and counters.armed
    counters.observe(502, "upstream_refused")
    counters.observe(502, "upstream_refused")
    assert health.readiness.failing_text() == "app (outlier: 2 consecutive connect failures)"


async def test_a_reload_swaps_rules_and_restarts_the_window_timer() -> None:
    clock = Clock()
    _store, _health, found, counters = detector(clock, error_ratio=0, consecutive_5xx=4)
    found.start()
    assert found._task is None, "no ratio rule, no timer"
    settings = OutlierSettings.model_validate({"error_ratio": 0.5, "window": 0.05, "consecutive_5xx": 2})
    await found.reconfigure(settings, "app")
    assert found._task is not None and counters.max_5xx == 2
    old_task = found._task
    await found.reconfigure(OutlierSettings.model_validate({"error_ratio": 0.5, "window": 2}), "app")
    assert found._task is not old_task and old_task.done(), "the timer restarted with the new window"
    await found.reconfigure(OutlierSettings.model_validate({"enabled": False}), "app")
    assert found._task is None and counters.max_5xx == counters.max_connect == OFF
    await found.stop()
