"""Rate limiting without the network: settings, both algorithms at their boundaries, the LRU bound,
the IETF header syntax and the RESP reply parser."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.core.settings_model import ValidationError
from sidecar.gateway.ratelimit import headers as rl_headers
from sidecar.gateway.ratelimit.local import (
    OP_CHECK,
    OP_PEEK,
    OP_SPEND,
    LocalLimiter,
    sliding_window,
    token_bucket,
)
from sidecar.gateway.ratelimit.redis_backend import (
    EVAL_HEAD,
    EVALSHA_HEAD,
    ReplyError,
    _Incomplete,
    command,
    parse_reply,
    script_args,
)
from sidecar.gateway.ratelimit.settings import RateLimitRedis, RateLimitRule, parse_redis_url
from sidecar.gateway.settings import GatewaySettings

RULE = {"name": "api", "limit": 10, "window": "1m"}


# -- settings -----------------------------------------------------------------------------------------------


def test_a_rule_with_defaults() -> None:
    rule = RateLimitRule(**RULE)
    assert (rule.key, rule.algorithm, rule.count, rule.on_redis_error, rule.headers) == (
        "client_ip",
        "sliding_window",
        "all",
        "open",
        True,
    )
    assert rule.window == 60.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "has space"}, "rule name"),
        ({"name": ""}, "rule name"),
        ({"key": "cookie:x"}, "key is client_ip, route or header:<name>"),
        ({"key": "header:"}, "key is client_ip"),
        ({"limit": 0}, "greater than or equal to 1"),
        ({"window": "500ms"}, "between 1s and 30 days"),
        ({"burst": 5}, "burst applies to algorithm: token_bucket only"),
        ({"failed_statuses": [401]}, "failed_statuses needs count: failed"),
        ({"count": "failed", "failed_statuses": [99]}, "not an HTTP status"),
        ({"match": {"routes": ["users/{id}"]}}, "must start with '/'"),
        ({"match": {"path_prefixes": ["api"]}}, "start with '/'"),
        ({"match": {"methods": ["GE T"]}}, "not an HTTP method"),
        ({"algorithm": "leaky"}, "sliding_window"),
        ({"on_redis_error": "maybe"}, "open"),
    ],
)
def test_bad_rules_are_refused_with_the_fix(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RateLimitRule(**{**RULE, **change})


def test_header_keys_are_normalised_and_methods_upper_cased() -> None:
    rule = RateLimitRule(**RULE, key="Header: X-API-Key", match={"methods": ["post"]})
    assert rule.key == "header:x-api-key"
    assert rule.match.methods == ["POST"]


def test_rule_names_are_unique_and_redis_rules_need_a_redis() -> None:
    with pytest.raises(
        ValidationError, match=r"rate_limits\[1\]\.name: 'api' is also the name of rate_limits\[0\]"
    ):
        GatewaySettings(rate_limits=[RULE, RULE])
    with pytest.raises(ValidationError, match="rate_limit_redis is not set"):
        GatewaySettings(rate_limits=[{**RULE, "backend": "redis"}])
    ok = GatewaySettings(rate_limits=[{**RULE, "backend": "redis"}], rate_limit_redis="redis://r:6379/1")
    assert ok.rate_limit_redis is not None and ok.rate_limit_redis.timeout == 0.05


def test_redis_url_forms_and_errors_never_echo_the_password() -> None:
    address = parse_redis_url("rediss://user:p%40ss@cache.internal:6380/3")
    assert (address.host, address.port, address.db, address.username, address.password, address.tls) == (
        "cache.internal",
        6380,
        3,
        "user",
        "p@ss",
        True,
    )
    assert parse_redis_url("redis://127.0.0.1").port == 6379
    for bad in ("http://:hunter2@h:1/0", "redis://:hunter2@h:1/x", "redis://:hunter2@h:1/0?timeout=1"):
        with pytest.raises(ValueError, match=r"\*\*\*") as info:
            parse_redis_url(bad)
        assert "hunter2" not in str(info.value)
    with pytest.raises(ValidationError) as caught:
        RateLimitRedis(url="redis://:hunter2@h:1/0", timeout="20s")
    assert "between 1ms and 10s" in str(caught.value)
    assert "hunter2" not in repr(RateLimitRedis(url="redis://:hunter2@h:1/0"))


def test_the_object_form_of_rate_limit_redis() -> None:
    redis = RateLimitRedis.model_validate(
        {"url": "redis://h:1/0", "timeout": "20ms", "key_prefix": "app:rl:"}
    )
    assert (redis.timeout, redis.key_prefix) == (0.02, "app:rl:")


# -- sliding window ------------------------------------------------------------------------------------------


def fresh_sliding() -> list[float]:
    return [-1.0, 0.0, 0.0]


def test_sliding_window_allows_exactly_the_limit_in_a_fresh_window() -> None:
    state = fresh_sliding()
    decisions = [sliding_window(state, 1_000_000.0 + i, 10, 60_000.0, OP_CHECK) for i in range(30)]
    assert sum(d[0] for d in decisions) == 10
    assert [d[1] for d in decisions[:10]] == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    assert all(not d[0] and d[1] == 0 for d in decisions[10:])


def test_sliding_window_weights_the_previous_window() -> None:
    window = 60_000.0
    state = fresh_sliding()
    for _ in range(10):
        assert sliding_window(state, 10.0, 10, window, OP_CHECK)[0]
    # A quarter into the next window 3/4 of the previous window still counts: 7.5 used, 2 more fit.
    now = window * 1.25
    allowed = [sliding_window(state, now, 10, window, OP_CHECK)[0] for _ in range(5)]
    assert allowed == [True, True, False, False, False]
    # Two windows later nothing is left of it.
    assert sliding_window(state, window * 3.0, 10, window, OP_CHECK)[:2] == (True, 9)


@settings(max_examples=300, deadline=None)
@given(
    limit=st.integers(1, 50),
    window=st.integers(1_000, 3_600_000),
    previous=st.integers(0, 60),
    current=st.integers(0, 60),
    into=st.floats(0.0, 0.999),
)
def test_sliding_window_retry_after_is_the_first_moment_allowed(
    limit: int, window: int, previous: int, current: int, into: float
) -> None:
    index = 1000
    now = (index + into) * window
    state = [float(index), float(current), float(previous)]
    allowed, _, reset, retry = sliding_window(list(state), now, limit, float(window), OP_PEEK)
    assert reset == math.ceil(window - (now - index * window))
    if allowed:
        assert retry == 0
        return
    assert retry >= 1
    # At now + retry the request fits; 2 ms earlier it did not (rounded up to whole ms, float slack).
    assert sliding_window(list(state), now + retry, limit, float(window), OP_PEEK)[0]
    if retry > 2:
        assert not sliding_window(list(state), now + retry - 2.001, limit, float(window), OP_PEEK)[0]


def test_peek_and_spend_implement_counting_failures_only() -> None:
    state = fresh_sliding()
    for _ in range(20):  # peeks spend nothing
        assert sliding_window(state, 5.0, 3, 60_000.0, OP_PEEK)[0]
    for _ in range(3):
        assert sliding_window(state, 5.0, 3, 60_000.0, OP_SPEND)[0]
    assert not sliding_window(state, 5.0, 3, 60_000.0, OP_PEEK)[0]
    assert sliding_window(state, 5.0, 3, 60_000.0, OP_SPEND)[0]  # spending always records


# -- token bucket --------------------------------------------------------------------------------------------


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    state = [5.0, 0.0]  # burst 5, 10 per second
    allowed = [token_bucket(state, 0.0, 10, 1000.0, 5, OP_CHECK)[0] for _ in range(8)]
    assert allowed == [True] * 5 + [False] * 3
    refused = token_bucket(state, 0.0, 10, 1000.0, 5, OP_CHECK)
    assert refused[3] == 100  # one token every 100 ms
    assert not token_bucket(state, 99.0, 10, 1000.0, 5, OP_CHECK)[0]
    assert token_bucket(state, 100.0, 10, 1000.0, 5, OP_CHECK)[0]
    assert token_bucket(state, 10_000.0, 10, 1000.0, 5, OP_PEEK)[1:3] == (5, 0)  # full again, capped


@settings(max_examples=200, deadline=None)
@given(
    limit=st.integers(1, 100),
    window=st.integers(1_000, 600_000),
    burst=st.integers(1, 100),
    taken=st.integers(0, 200),
)
def test_token_bucket_retry_after_is_the_first_moment_allowed(
    limit: int, window: int, burst: int, taken: int
) -> None:
    state = [float(burst), 0.0]
    for _ in range(taken):
        token_bucket(state, 0.0, limit, float(window), burst, OP_SPEND)
    allowed, _, _, retry = token_bucket(list(state), 0.0, limit, float(window), burst, OP_PEEK)
    if allowed:
        return
    assert token_bucket(list(state), float(retry), limit, float(window), burst, OP_PEEK)[0]
    if retry > 2:
        assert not token_bucket(list(state), retry - 2.001, limit, float(window), burst, OP_PEEK)[0]


# -- local state ---------------------------------------------------------------------------------------------


def test_local_state_is_bounded_least_recently_used_out_and_counted() -> None:
    evicted: list[int] = []
    now = [0.0]
    limiter = LocalLimiter(2, 60.0, None, True, 3, lambda: evicted.append(1), clock=lambda: now[0])
    for key in (b"a", b"b", b"c"):
        limiter.decide(key, OP_CHECK)
    limiter.decide(b"a", OP_CHECK)  # a is now the most recently used
    limiter.decide(b"d", OP_CHECK)  # b goes
    assert len(limiter) == 3 and len(evicted) == 1
    assert not limiter.decide(b"a", OP_CHECK)[0]  # a kept its count (2 of 2)
    assert limiter.decide(b"b", OP_CHECK)[0]  # b starts over
    limiter.decide(b"zz", OP_PEEK)  # a peek at an unknown key keeps nothing
    assert len(limiter) == 3 and len(evicted) == 2


# -- header fields -------------------------------------------------------------------------------------------


def test_ietf_fields_follow_draft_11() -> None:
    policy = rl_headers.policy_item("login", 5, 900.0)
    item = rl_headers.limit_item("login", 2, 10_001.0)
    assert policy == b'"login";q=5;w=900'
    assert item == b'"login";r=2;t=11'  # rounded up: never earlier than the server's own reset
    assert rl_headers.fields([policy, b'"api";q=100;w=60'], [item, b'"api";r=7;t=3']) == (
        b'RateLimit-Policy: "login";q=5;w=900, "api";q=100;w=60\r\nRateLimit: "login";r=2;t=11, "api";r=7;t=3\r\n'
    )
    assert rl_headers.fields([], []) == b""


# -- RESP ----------------------------------------------------------------------------------------------------

REPLIES = (
    b"*4\r\n:1\r\n:9\r\n:59999\r\n:0\r\n"
    b"+OK\r\n"
    b"-NOSCRIPT No matching script. Please use EVAL.\r\n"
    b"$40\r\n" + b"a" * 40 + b"\r\n"
    b"$-1\r\n"
    b"*2\r\n*1\r\n:-3\r\n$0\r\n\r\n"
)
EXPECTED = [
    [1, 9, 59999, 0],
    b"OK",
    ReplyError(b"NOSCRIPT No matching script. Please use EVAL."),
    b"a" * 40,
    None,
    [[-3], b""],
]


def parse_all(buf: bytes) -> tuple[list[object], int]:
    found: list[object] = []
    pos = 0
    try:
        while pos < len(buf):
            value, pos = parse_reply(buf, pos)
            found.append(value)
    except _Incomplete:
        pass
    return found, pos


def test_resp_replies_parse_whole_and_split_at_every_byte() -> None:
    assert parse_all(REPLIES) == (EXPECTED, len(REPLIES))
    assert isinstance(parse_all(REPLIES)[0][2], ReplyError)
    for cut in range(len(REPLIES)):
        first, pos = parse_all(REPLIES[:cut])
        rest, end = parse_all(REPLIES[pos:])
        assert first + rest == EXPECTED
        assert pos + end == len(REPLIES)


def test_commands_are_resp_arrays_of_bulk_strings() -> None:
    assert command(b"SELECT", b"3") == b"*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n"
    body = b"$3\r\nkey\r\n" + script_args(OP_CHECK, True, 10, 60000, 10)
    for head in (EVALSHA_HEAD, EVAL_HEAD):
        whole = head + body
        parsed, _ = parse_reply(whole.replace(b"*9\r\n", b"*9\r\n", 1), 0)
        assert len(parsed) == 9 and parsed[2:] == [b"1", b"key", b"0", b"s", b"10", b"60000", b"10"]
