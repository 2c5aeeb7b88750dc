"""Hysteresis, drain and the IETF health document, driven by results fed straight into the store."""

from __future__ import annotations

import time

from collectors.base import Measurement, Reason, Status
from sidecar.probing.health import HealthModel
from sidecar.probing.results import CheckResult, ResultStore
from sidecar.probing.settings import CheckConfig


def check(name: str, *, critical: bool = True, rise: int = 2, fall: int = 2) -> CheckConfig:
    return CheckConfig(name=name, kind="tcp", target="127.0.0.1:9", critical=critical, rise=rise, fall=fall)


def result(name: str, status: Status, **extra: object) -> CheckResult:
    reason = Reason.CONNECT if status is Status.FAIL else None
    return CheckResult(
        check=name,
        kind="tcp",
        status=status,
        duration_seconds=0.01,
        finished_at=time.time(),
        reason=reason,
        **extra,  # type: ignore[arg-type]
    )


def model(*checks: CheckConfig) -> tuple[ResultStore, HealthModel]:
    store = ResultStore()
    health = HealthModel(store, service_name="shop")
    for c in checks:
        store.register(c.name, c.kind)
    health.configure(list(checks))
    return store, health


def test_starting_until_every_critical_check_has_a_result() -> None:
    store, health = model(check("db"), check("cache"), check("extra", critical=False))
    assert health.readiness.reason == "starting"
    store.record(result("db", Status.PASS))
    assert not health.readiness.ready and health.readiness.starting == ("cache",)
    store.record(result("cache", Status.PASS))
    assert health.readiness.ready  # the non-critical check may still be starting


def test_fall_and_rise_hysteresis() -> None:
    store, health = model(check("db", rise=2, fall=2))
    store.record(result("db", Status.PASS))
    assert health.readiness.ready
    store.record(result("db", Status.FAIL))
    assert health.readiness.ready, "one failure is a blip with fall=2"
    store.record(result("db", Status.PASS))
    store.record(result("db", Status.FAIL))
    store.record(result("db", Status.FAIL))
    assert not health.readiness.ready and health.readiness.failing == ("db",)
    store.record(result("db", Status.PASS))
    assert not health.readiness.ready, "one pass is not enough with rise=2"
    store.record(result("db", Status.WARN))
    assert health.readiness.ready, "warn counts as passing"
    assert health.readiness_changes == 2


def test_warn_keeps_ready_and_noncritical_failure_is_warn() -> None:
    store, health = model(check("db"), check("disk", critical=False))
    store.record(
        result("db", Status.WARN, measurements={"responseTime": Measurement(0.3, "s")}, output="slow")
    )
    store.record(result("disk", Status.FAIL, output="full"))
    assert health.readiness.ready
    doc = health.health_document()
    assert doc["status"] == "warn"
    entry = doc["checks"]["db:responseTime"][0]
    assert entry["status"] == "warn" and entry["observedValue"] == 0.3 and entry["observedUnit"] == "s"
    assert entry["componentId"] == "db" and entry["componentType"] == "component"
    assert entry["time"].endswith("Z")
    assert doc["checks"]["disk:responseTime"][0]["status"] == "fail"


def test_drain_fails_readiness_at_once() -> None:
    store, health = model(check("db"))
    store.record(result("db", Status.PASS))
    health.drain()
    assert not health.readiness.ready and health.readiness.reason == "draining"
    assert health.health_document()["status"] == "fail"
    health.undrain()
    assert health.readiness.ready


def test_health_document_shape() -> None:
    store, health = model(check("db"))
    doc = health.health_document()
    assert doc["checks"]["db:status"][0]["output"] == "no result yet"
    store.record(result("db", Status.FAIL, output="connection refused"))
    doc = health.health_document()
    assert doc["status"] == "fail"
    assert doc["serviceId"] == "shop"
    assert doc["checks"]["db:responseTime"][0]["output"] == "connect: connection refused"
    assert "failing: db" in doc["output"]


def test_reconfigure_keeps_state_of_unchanged_checks() -> None:
    store, health = model(check("db"), check("old"))
    store.record(result("db", Status.PASS))
    store.record(result("old", Status.PASS))
    health.configure([check("db")])
    assert health.readiness.ready and "old" not in health.states


def test_readyz_answer_is_encoded_when_readiness_changes() -> None:
    store, health = model(check("db", rise=1, fall=1), check("cache", rise=1, fall=1))
    assert health.answer == (503, b"starting: db, cache")
    store.record(result("db", Status.PASS))
    assert health.answer == (503, b"starting: cache")
    store.record(result("cache", Status.PASS))
    assert health.answer == (200, b"ok")
    store.record(result("cache", Status.FAIL))
    assert health.answer == (503, b"failing: cache")
    health.eject("db", "outlier: 5 consecutive 5xx", until=time.monotonic() + 60)
    assert health.answer == (503, b"failing: db (outlier: 5 consecutive 5xx), cache")
    health.drain()
    assert health.answer == (503, b"draining")
    health.undrain()
    assert health.answer == (503, b"failing: db (outlier: 5 consecutive 5xx), cache")
