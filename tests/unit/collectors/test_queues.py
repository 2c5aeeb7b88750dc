"""Queue collectors without a network: options, key and script building, parsing, summaries."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any

import msgspec
import pytest
from aiormq.exceptions import (
    AMQPConnectionError,
    AuthenticationError,
    ChannelAccessRefused,
    IncompatibleProtocolError,
    ProbableAuthenticationError,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.exceptions import AuthenticationError as RedisAuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError

from collectors import load_collector
from collectors.base import CheckTarget, MetricSpec, Reason, Status
from collectors.bullmq import (
    BULLMQ_KEYS,
    BULLMQ_QUEUE_LUA,
    QUEUE_METRICS,
    BullMQCollector,
    BullMQOptions,
    KeyScan,
    QueueStats,
    SeenQueue,
    bullmq_args,
    bullmq_key_prefix,
    bullmq_stats,
    cap_queues,
    client_names,
    count_workers,
    decode_rows,
    queue_from_meta_key,
    queue_observation,
    queue_samples,
    worker_client_names,
)
from collectors.celery import (
    METRICS as CELERY_METRICS,
)
from collectors.celery import (
    CeleryCollector,
    CeleryOptions,
    priority_key,
    queues_in_binding,
)
from collectors.rabbitmq import (
    RabbitMQCollector,
    RabbitMQOptions,
    amqp_passwords,
    validate_amqp_target,
)
from collectors.rq import (
    RQ_QUEUE_LUA,
    RQCollector,
    RQOptions,
    parse_enqueued_at,
    queue_from_key,
    rq_args,
    rq_keys,
    rq_stats,
)
from sidecar.core.settings_model import ValidationError
from sidecar.probing.settings import CheckConfig

ALL_METRICS: tuple[MetricSpec, ...] = (*QUEUE_METRICS, *CELERY_METRICS)


def target(url: str) -> CheckTarget:
    return CheckTarget(name="queues", target=url, timeout=2.0)


# --- registry, config, targets ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "cls"),
    [
        ("bullmq", BullMQCollector),
        ("celery", CeleryCollector),
        ("rq", RQCollector),
        ("rabbitmq", RabbitMQCollector),
    ],
)
def test_registry_knows_the_queue_kinds(kind: str, cls: type) -> None:
    assert load_collector(kind) is cls
    assert cls.critical_by_default is False


@pytest.mark.parametrize("kind", ["bullmq", "celery", "rq"])
def test_redis_queue_checks_are_not_critical_by_default(kind: str) -> None:
    config = CheckConfig(name="jobs", kind=kind, target="redis://127.0.0.1:6379/0")
    assert config.is_critical is False
    assert CheckConfig(name="jobs", kind=kind, target="redis://h/0", critical=True).is_critical is True


@pytest.mark.parametrize("kind", ["bullmq", "celery", "rq"])
@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "redis://", "redis://h/zero", "h:6379"])
def test_redis_queue_targets_are_checked(kind: str, url: str) -> None:
    with pytest.raises(ValidationError, match="redis"):
        CheckConfig(name="jobs", kind=kind, target=url)


@pytest.mark.parametrize("url", ["redis://h:6379/0", "http://h", "amqp://", "amqp://h:99999/"])
def test_rabbitmq_targets_are_checked(url: str) -> None:
    with pytest.raises(ValueError, match=r"rabbitmq target|amqp"):
        validate_amqp_target(url)


def test_rabbitmq_accepts_amqp_urls_and_knows_the_password() -> None:
    url = "amqps://app:s%40cret@mq.internal:5671/prod"
    assert validate_amqp_target(url) == url
    assert set(amqp_passwords(url)) == {"s%40cret", "s@cret"}
    assert amqp_passwords("amqp://mq/") == ()


def test_rabbitmq_needs_queues() -> None:
    with pytest.raises(ValidationError, match="queues"):
        RabbitMQOptions.model_validate({})
    with pytest.raises(ValidationError, match="queues"):
        CheckConfig(name="mq", kind="rabbitmq", target="amqp://guest:guest@127.0.0.1:5672/")
    config = CheckConfig(
        name="mq", kind="rabbitmq", target="amqp://guest:guest@127.0.0.1:5672/", options={"queues": ["a"]}
    )
    assert config.is_critical is False


# --- options ------------------------------------------------------------------------------------


def test_bullmq_defaults() -> None:
    opts = BullMQOptions()
    assert (opts.prefix, opts.queues, opts.batch_size, opts.count_workers) == ("bull", [], 1000, True)
    assert opts.overdue_grace_seconds == 5.0


@pytest.mark.parametrize(
    "bad",
    [
        {"prefix": "bu*ll"},
        {"prefix": ""},
        {"queues": ["a", "a"]},
        {"queues": [""]},
        {"queues": ["new\nline"]},
        {"batch_size": 0},
        {"max_queues": 0},
        {"overdue_grace_seconds": -1},
        {"promt": 1},
    ],
)
def test_bullmq_rejects_bad_options(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        BullMQOptions.model_validate(bad)


def test_celery_options() -> None:
    opts = CeleryOptions.model_validate({"priority_steps": [9, 0, 5]})
    assert opts.priority_steps == [0, 5, 9]
    assert CeleryOptions().priority_steps == [0, 3, 6, 9]
    for bad in (
        {"priority_steps": []},
        {"priority_steps": [0, 0]},
        {"priority_steps": [300]},
        {"key_prefix": "a*"},
    ):
        with pytest.raises(ValidationError):
            CeleryOptions.model_validate(bad)


def test_rq_options() -> None:
    assert RQOptions().key_prefix == "rq"
    assert RQOptions.model_validate({"key_prefix": "{app}:rq"}).key_prefix == "{app}:rq"
    with pytest.raises(ValidationError, match="key_prefix"):
        RQOptions.model_validate({"key_prefix": "rq prefix"})


# --- BullMQ keys, script and parsing -----------------------------------------------------------


def test_bullmq_script_reads_bullmq_layout() -> None:
    assert bullmq_key_prefix("bull", "emails") == "bull:emails:"
    read = set(re.findall(r'base \.\. "([a-z:-]+)"', BULLMQ_QUEUE_LUA))
    assert read == {
        "wait", "paused", "active", "prioritized", "delayed", "waiting-children", "completed", "failed",
        "meta", "id", "metrics:completed", "metrics:failed",
    }  # fmt: skip
    assert read == set(BULLMQ_KEYS)
    assert 'base .. id .. ":lock"' in BULLMQ_QUEUE_LUA  # a running job's lock key


def test_bullmq_overdue_cutoff_uses_the_delayed_score_encoding() -> None:
    # BullMQ scores a delayed job due at T ms as T * 0x1000 + (counter & 0xfff)
    cutoff, scan = bullmq_args(now_ms=1_700_000_010_000, grace_ms=10_000, max_active_scan=50)
    assert int(cutoff) == 1_700_000_000_000 * 0x1000
    assert int(cutoff) < 2**53  # exact in a Lua (double) number
    assert scan == "50"


def test_decode_rows() -> None:
    assert decode_rows(msgspec.msgpack.encode([[1, 2, 3], [4, -1, 1_700_000_000_000]])) == [
        [1, 2, 3],
        [4, -1, 1_700_000_000_000],
    ]
    assert decode_rows(b"\x90") == []  # what cmsgpack makes of an empty table
    with pytest.raises(ValueError, match="array of rows"):
        decode_rows(msgspec.msgpack.encode("ERR"))


def test_client_names_from_client_list() -> None:
    reply = (
        "id=3 addr=127.0.0.1:5001 laddr=127.0.0.1:6379 fd=8 name=bull:bnE= age=9 flags=N cmd=bzpopmin"
        " user=default lib-name=bullmq lib-ver=5 resp=2\n"
        "id=4 addr=127.0.0.1:5002 laddr=127.0.0.1:6379 fd=9 name= age=1 flags=N cmd=client|list user=default\n"
        "id=5 addr=127.0.0.1:5003 laddr=127.0.0.1:6379 fd=10 name=bull:nq:w:box-1 age=2 flags=N cmd=get\n"
    )
    assert client_names(reply) == ["bull:bnE=", "", "bull:nq:w:box-1"]
    assert client_names(reply.encode()) == client_names(reply)
    assert client_names("") == []


@pytest.mark.parametrize("script", [BULLMQ_QUEUE_LUA, RQ_QUEUE_LUA])
def test_scripts_only_read(script: str) -> None:
    read_only = {
        "LLEN", "LINDEX", "LRANGE", "HMGET", "HGET", "HEXISTS", "EXISTS", "ZRANGE", "ZCARD", "ZCOUNT",
        "ZRANGEBYSCORE", "SISMEMBER", "SRANDMEMBER",
    }  # fmt: skip
    commands = set(re.findall(r'rcall\("([A-Z]+)"', script))
    assert commands
    assert commands <= read_only


@pytest.mark.parametrize(
    ("key", "queue"),
    [
        ("bull:emails:meta", "emails"),
        ("bull:a:b:meta", "a:b"),
        ("bull::meta", None),
        ("bull:meta", None),
        ("other:emails:meta", None),
        ("bull:emails:id", None),
    ],
)
def test_queue_from_meta_key(key: str, queue: str | None) -> None:
    assert queue_from_meta_key("bull", key) == queue


def test_worker_names_cover_node_and_python() -> None:
    assert worker_client_names("bull", "nq") == ("bull:bnE=", "bull:nq")
    names = [
        "bull:bnE=",  # Node worker, unnamed
        "bull:bnE=:w:box-1",  # Node worker named box-1
        "bull:nq",  # Python worker
        "bull:nq:qe",  # QueueEvents: not a worker
        "bull:other",
        "",
        "sidecar-jobs",
        "bull:a:w:b:w:x",  # queue "a:w:b", worker "x"
    ]
    assert count_workers(names, "bull", ["nq", "a:w:b", "idle"]) == {"nq": 3, "a:w:b": 1, "idle": 0}


def _reply(**values: int) -> list[int]:
    order = [
        "exists", "wait", "paused", "active", "prioritized", "delayed", "waiting_children", "completed",
        "failed", "paused_flag", "oldest_ms", "overdue", "earliest_due_ms", "stalled", "completed_total",
        "failed_total",
    ]  # fmt: skip
    defaults = {
        "exists": 1,
        "oldest_ms": -1,
        "earliest_due_ms": -1,
        "completed_total": -1,
        "failed_total": -1,
    }
    return [values.get(name, defaults.get(name, 0)) for name in order]


def test_bullmq_stats_from_a_script_reply() -> None:
    now = 1_700_000_100_000
    reply = _reply(
        wait=5, paused=1, prioritized=2, delayed=3, failed=2, completed=7, active=1, paused_flag=1,
        oldest_ms=now - 90_000, overdue=1, earliest_due_ms=now - 30_500, stalled=1,
        completed_total=42, failed_total=4,
    )  # fmt: skip
    stats = bullmq_stats("emails", reply, now)
    assert stats is not None
    assert stats.counts == {
        "wait": 5, "paused": 1, "active": 1, "prioritized": 2, "delayed": 3, "waiting-children": 0,
        "completed": 7, "failed": 2,
    }  # fmt: skip
    assert stats.backlog == 8
    assert stats.oldest_waiting_age == 90.0
    assert (stats.overdue_delayed, stats.overdue_seconds) == (1, 30.5)
    assert (stats.stalled, stats.paused) == (1, True)
    assert (stats.completed_total, stats.failed_total) == (42, 4)


def test_bullmq_stats_without_metrics_or_jobs() -> None:
    stats = bullmq_stats("idle", _reply(), 1_000)
    assert stats is not None
    assert stats.completed_total is None and stats.failed_total is None
    assert stats.oldest_waiting_age == 0.0 and stats.overdue_seconds == 0.0
    assert bullmq_stats("gone", _reply(exists=0), 1_000) is None
    with pytest.raises(ValueError, match="expected 16 numbers"):
        bullmq_stats("short", [1, 2, 3], 1_000)


_ROW = st.tuples(
    st.lists(st.integers(0, 30), min_size=8, max_size=8),  # counts by state
    st.integers(0, 1),  # paused flag
    st.sampled_from([-1, 1_700_000_000_000, 1_700_000_050_000]),  # oldest ready ms
    st.integers(0, 3),  # overdue
    st.sampled_from([-1, 1_699_999_990_000]),  # earliest due ms
    st.integers(0, 3),  # stalled
    st.sampled_from([-1, 0, 42]),  # completed total
    st.sampled_from([-1, 7]),  # failed total
).map(lambda t: [1, *t[0], *t[1:]])
_PROBES = st.lists(
    st.tuples(
        st.integers(0, 2),  # which of the rows this probe reads: the same one again, mostly
        st.sampled_from([None, 0, 1, 3]),  # workers
        st.integers(0, 5_000),  # ms since the previous probe
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(_ROW, min_size=1, max_size=3), probes=_PROBES)
def test_a_queue_seen_again_has_the_samples_of_a_fresh_measure(
    rows: list[list[int]], probes: list[tuple[int, int | None, int]]
) -> None:
    """Probe after probe of one queue: kept samples (same row) or fresh ones (new row), always what
    ``queue_samples`` makes of ``bullmq_stats`` at that probe's time; the same for the figures."""
    now_ms = 1_700_000_100_000
    seen: SeenQueue | None = None
    for which, workers, step in probes:
        row = list(rows[which % len(rows)])
        now_ms += step
        if seen is None:
            seen = SeenQueue.measure("emails", row, now_ms, workers)
        else:
            assert seen.update(row, now_ms, workers)
        fresh = bullmq_stats("emails", row, now_ms)
        assert seen is not None and fresh is not None
        fresh.workers = workers
        assert seen.stats == fresh
        assert seen.samples == queue_samples(fresh)


def test_a_queue_seen_again_keeps_its_unchanged_samples() -> None:
    row = [1, 20, 0, 2, 3, 5, 0, 10, 2, 0, 1_700_000_000_000, 2, 1_699_999_990_000, 0, 1000, 7]
    seen = SeenQueue.measure("emails", row, 1_700_000_100_000, 1)
    assert seen is not None
    before = list(seen.samples)

    def replaced() -> list[tuple[str, tuple[str, ...]]]:
        pairs = zip(before, seen.samples, strict=True)
        return [(b.spec.name, b.label_values) for a, b in pairs if a is not b]

    assert seen.update(list(row), 1_700_000_101_000, 1)
    assert replaced() == [
        ("sidecar_queue_oldest_waiting_job_age_seconds", ("emails",)),
        ("sidecar_queue_overdue_delayed_seconds", ("emails",)),
    ]
    before = list(seen.samples)
    assert seen.update([1, 21, *row[2:]], 1_700_000_101_000, 2)  # one more waiting, one more worker
    assert replaced() == [
        ("sidecar_queue_jobs", ("emails", "wait")),
        ("sidecar_queue_workers", ("emails",)),
    ]
    assert not seen.update([0, *row[1:]], 1_700_000_102_000, 2)  # gone
    assert SeenQueue.measure("gone", [0, *row[1:]], 1_700_000_100_000, None) is None


# --- Celery -------------------------------------------------------------------------------------


def test_celery_priority_keys_match_kombu() -> None:
    # kombu.transport.redis: f"{queue}{sep}{pri}" with sep "\x06\x16", plain queue for priority 0
    assert priority_key("", "work", 0) == "work"
    assert priority_key("", "work", 3) == "work\x06\x163"
    assert priority_key("app:", "work", 9) == "app:work\x06\x169"


def test_celery_queues_from_bindings() -> None:
    sep = "\x06\x16"
    members = [f"work{sep}{sep}work", f"mail{sep}{sep}mail", "garbage", f"x{sep}{sep}w1.celery.pidbox"]
    assert queues_in_binding("work", members) == ["work", "mail"]
    assert queues_in_binding("celery.pidbox", [f"{sep}{sep}w1@host.celery.pidbox"]) == []
    assert queues_in_binding("reply.celery.pidbox", [f"a{sep}{sep}b"]) == []
    assert queues_in_binding("celeryev", [f"worker.#{sep}{sep}celeryev.1234"]) == []


# --- RQ -----------------------------------------------------------------------------------------


def test_rq_keys_follow_rq_layout() -> None:
    assert rq_keys("rq", "default") == [
        "rq:queue:default",
        "rq:wip:default",
        "rq:failed:default",
        "rq:finished:default",
        "rq:deferred:default",
        "rq:scheduled:default",
        "rq:canceled:default",
        "rq:workers:default",
        "rq:queues",
        "rq:suspended",
    ]
    assert rq_args("rq", "default", 100.5, 5.0, 10) == ["rq:queue:default", "rq:job:", "100.5", "95.5", "10"]
    assert queue_from_key("rq", "rq:queue:default") == "default"
    assert queue_from_key("rq", "rq:queue:") is None
    assert queue_from_key("rq", "other:queue:x") is None


def test_rq_enqueued_at_formats() -> None:
    assert parse_enqueued_at("2024-01-02T03:04:05.250000Z") == 1704164645.25
    assert parse_enqueued_at("2024-01-02T03:04:05Z") == 1704164645.0
    assert parse_enqueued_at("yesterday") is None


def test_rq_stats_from_a_script_reply() -> None:
    now = 1704164705.25
    reply = [1, 5, 1, 1, 2, 3, 1, 4, 0, 2, "1704164695.25", "2024-01-02T03:04:05.250000Z", 2, 1]
    stats = rq_stats("default", reply, now)
    assert stats is not None
    assert stats.counts == {
        "wait": 5, "active": 1, "failed": 2, "completed": 3, "deferred": 1, "delayed": 4, "canceled": 0,
    }  # fmt: skip
    assert (stats.backlog, stats.stalled, stats.overdue_delayed, stats.workers, stats.paused) == (
        5,
        1,
        2,
        2,
        True,
    )
    assert stats.oldest_waiting_age == 60.0
    assert stats.overdue_seconds == 10.0
    assert rq_stats("gone", [0, *[0] * 9, "", "", 0, 0], now) is None


# --- summary ------------------------------------------------------------------------------------


def test_queue_observation_measures_across_queues() -> None:
    stats = [
        QueueStats(
            "a", counts={"wait": 5, "failed": 1}, backlog=5, oldest_waiting_age=30.0, stalled=1, workers=2
        ),
        QueueStats(
            "b", counts={"wait": 9, "failed": 2}, backlog=9, oldest_waiting_age=4.0, stalled=0, workers=0
        ),
    ]
    obs = queue_observation(stats)
    values = {key: m.value for key, m in obs.measurements.items()}
    assert values == {
        "queues": 2, "backlog": 9, "missingQueues": 0, "oldestJobAge": 30.0, "stalled": 1, "failed": 3,
        "minWorkers": 0,
    }  # fmt: skip
    assert obs.status is Status.PASS
    names = {s.spec.name for s in obs.samples}
    assert "sidecar_queue_overdue_delayed_jobs" not in names  # nobody measured it: no series
    assert "sidecar_queue_jobs_completed_total" not in names


def test_missing_configured_queue_is_a_warning() -> None:
    obs = queue_observation([], missing=["a", "b", "c", "d", "e", "f"])
    assert obs.status is Status.WARN
    assert obs.measurements["missingQueues"].value == 6
    assert obs.output == "configured queue not found: 'a', 'b', 'c', 'd', 'e' and 1 more"
    assert obs.samples == []


def test_cap_queues_bounds_cardinality() -> None:
    assert cap_queues(["c", "a", "b", "a"], 2) == (["a", "b"], 1)


# --- discovery ----------------------------------------------------------------------------------


class FakeScanClient:
    """Answers SCAN from scripted pages: cursor -> (next cursor, keys)."""

    def __init__(self, pages: dict[int, tuple[int, list[str]]]) -> None:
        self.pages = pages
        self.calls: list[int] = []

    async def scan(self, cursor: int, match: str, count: int) -> tuple[int, list[str]]:
        self.calls.append(cursor)
        return self.pages[cursor]


async def test_key_scan_is_bounded_resumes_and_caches() -> None:
    client = FakeScanClient({0: (7, ["bull:a:meta"]), 7: (9, ["bull:b:meta"]), 9: (0, ["bull:c:meta"])})
    scan = KeyScan("bull:*:meta", count=10, max_calls=2, interval=60)
    first = await scan.keys(client)  # type: ignore[arg-type]
    assert first == {"bull:a:meta", "bull:b:meta"} and not scan.complete and scan.calls == 2
    second = await scan.keys(client)  # type: ignore[arg-type]
    assert second == {"bull:a:meta", "bull:b:meta", "bull:c:meta"} and scan.complete
    assert client.calls == [0, 7, 9]
    third = await scan.keys(client)  # type: ignore[arg-type]
    assert third == second and scan.calls == 0  # cached within the interval
    assert client.calls == [0, 7, 9]


async def test_key_scan_refreshes_after_the_interval() -> None:
    client = FakeScanClient({0: (0, ["bull:a:meta"])})
    scan = KeyScan("bull:*:meta", count=10, max_calls=5, interval=0)
    await scan.keys(client)  # type: ignore[arg-type]
    client.pages[0] = (0, ["bull:b:meta"])
    assert await scan.keys(client) == {"bull:b:meta"}  # type: ignore[arg-type]


# --- errors -------------------------------------------------------------------------------------


def test_redis_queue_errors_map_to_reasons() -> None:
    collector = BullMQCollector(target("redis://127.0.0.1:1/0"), BullMQOptions())
    assert collector.classify_error(RedisConnectionError("refused")) is Reason.CONNECT
    assert collector.classify_error(RedisAuthenticationError("WRONGPASS")) is Reason.AUTH
    assert collector.secrets() == ()
    assert "s3cret" in BullMQCollector(target("redis://:s3cret@h:6379/0"), BullMQOptions()).secrets()


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (ProbableAuthenticationError("closed"), Reason.AUTH),
        (AuthenticationError("no"), Reason.AUTH),
        (ChannelAccessRefused("403"), Reason.AUTH),
        (IncompatibleProtocolError("x"), Reason.PROTOCOL),
        (AMQPConnectionError("reset"), Reason.CONNECT),
        (ConnectionRefusedError(111, "refused"), Reason.CONNECT),
        (ValueError("x"), None),
    ],
)
def test_rabbitmq_errors_map_to_reasons(exc: BaseException, reason: Reason | None) -> None:
    collector = RabbitMQCollector(target("amqp://guest:pw@127.0.0.1:1/"), RabbitMQOptions(queues=["a"]))
    assert collector.classify_error(exc) is reason


async def test_open_and_close_do_not_connect() -> None:
    """Nothing listens on port 1, yet open() and close() return at once."""
    collectors: Sequence[Any] = [
        BullMQCollector(target("redis://127.0.0.1:1/0"), BullMQOptions()),
        CeleryCollector(target("redis://127.0.0.1:1/0"), CeleryOptions()),
        RQCollector(target("redis://127.0.0.1:1/0"), RQOptions()),
        RabbitMQCollector(target("amqp://guest:guest@127.0.0.1:1/"), RabbitMQOptions(queues=["a"])),
    ]
    started = time.monotonic()
    for collector in collectors:
        await collector.open()
        await collector.open()
    for collector in collectors:
        await collector.close()
    assert time.monotonic() - started < 0.5


# --- metric specs -------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ALL_METRICS, ids=lambda s: s.name)
def test_metric_spec_conventions(spec: MetricSpec) -> None:
    assert spec.help
    assert spec.name.startswith("sidecar_") and spec.name.islower()
    assert "check" not in spec.labels
    assert spec.name.endswith("_total") == (spec.type == "counter")
