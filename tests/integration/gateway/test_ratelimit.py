"""Rate limiting through a real gateway, in front of a real app, with a real Redis: exact limits under
concurrency on both backends, the 429 and its headers, keys, count-failed-only rules, Redis stopped and
hung with fail-open and fail-closed, the NOSCRIPT fallback, and the Lua script matching the local code."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import aiohttp
import pytest
import redis

from sidecar.gateway.ratelimit.local import OP_CHECK, OP_PEEK, OP_SPEND, sliding_window, token_bucket
from sidecar.gateway.ratelimit.redis_backend import SCRIPT, SCRIPT_SHA
from tests.integration.gateway_support import HOST, RunningGateway, read_response, run_gateway, run_upstream
from tests.servers import RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

LONG = "1h"  # windows long enough that no test straddles a window boundary or sees a refill


def sample(gw: RunningGateway, name: str, **labels: str) -> float:
    return float(gw.registry.get_sample_value(name, labels) or 0.0)


def decisions(gw: RunningGateway, rule: str, outcome: str) -> float:
    return sample(gw, "sidecar_gateway_ratelimit_decisions_total", rule=rule, outcome=outcome)


async def burst(url: str, count: int, headers: dict[str, str] | None = None) -> list[int]:
    """``count`` requests at once, each on its own connection."""
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> int:
            async with session.get(url, headers=headers) as resp:
                await resp.read()
                return resp.status

        return list(await asyncio.gather(*[one() for _ in range(count)]))


async def get(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str]]:
    async with session.get(url, headers=headers) as resp:
        await resp.read()
        return resp.status, dict(resp.headers)


def backend_settings(backend: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    if backend == "local":
        return {}
    server: RedisServer = request.getfixturevalue("redis_server")
    return {"rate_limit_redis": server.url}


# -- exact limits -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["local", "redis"])
@pytest.mark.parametrize("algorithm", ["sliding_window", "token_bucket"])
async def test_thirty_concurrent_clients_get_exactly_the_limit(
    backend: str, algorithm: str, request: pytest.FixtureRequest
) -> None:
    rule = {"name": "api", "limit": 10, "window": LONG, "algorithm": algorithm, "backend": backend}
    async with (
        run_upstream() as upstream,
        run_gateway(upstream.url, rate_limits=[rule], **backend_settings(backend, request)) as gw,
    ):
        statuses = await burst(gw.url + "/echo", 30)
        assert statuses.count(200) == 10 and statuses.count(429) == 20, statuses
        assert len(upstream.seen) == 10  # refused requests never reach the app
        assert decisions(gw, "api", "allowed") == 10
        assert decisions(gw, "api", "rejected") == 20
        assert sample(gw, "sidecar_gateway_rejected_total", reason="rate_limited") == 20
        if backend == "redis":
            assert sample(gw, "sidecar_gateway_ratelimit_redis_duration_seconds_count") == 30
            assert decisions(gw, "api", "error_open") == 0


async def test_the_429_carries_retry_after_and_the_ietf_fields() -> None:
    rule = {"name": "api", "limit": 2, "window": "1m"}
    async with (
        run_upstream() as upstream,
        run_gateway(upstream.url, rate_limits=[rule]) as gw,
        aiohttp.ClientSession() as session,
    ):
        first = await get(session, gw.url + "/echo")
        assert first[0] == 200
        assert first[1]["RateLimit-Policy"] == '"api";q=2;w=60'
        assert first[1]["RateLimit"].startswith('"api";r=1;t=')
        await get(session, gw.url + "/echo")
        async with session.get(gw.url + "/echo", headers={"X-Request-ID": "limited-1"}) as resp:
            body = await resp.text()
            assert resp.status == 429
            assert resp.headers["X-Request-ID"] == "limited-1"
            retry = int(resp.headers["Retry-After"])
            assert 1 <= retry <= 120
            assert resp.headers["RateLimit"] == f'"api";r=0;t={retry}'
            assert resp.headers["RateLimit-Policy"] == '"api";q=2;w=60'
            assert "429 Too Many Requests: rate limit exceeded" in body
        gw.gateway.ctx.red.flush()
        assert (
            sample(
                gw,
                "http_server_request_duration_seconds_count",
                http_request_method="GET",
                http_route="/echo",
                http_response_status_code="429",
                error_type="rate_limited",
            )
            == 1
        )


async def test_a_refused_request_keeps_the_connection_alive() -> None:
    rule = {"name": "api", "limit": 1, "window": LONG}
    async with run_upstream() as upstream, run_gateway(upstream.url, rate_limits=[rule]) as gw:
        reader, writer = await asyncio.open_connection(HOST, gw.port)
        try:
            get_line = b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n"
            post = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
            writer.write(get_line)
            assert (await read_response(reader)).status == 200
            for payload in (get_line, post, get_line):  # refused, with and without a body
                writer.write(payload)
                response = await asyncio.wait_for(read_response(reader), 5)
                assert response.status == 429
                assert response.header("Connection") is None
        finally:
            writer.close()


async def test_rate_limit_headers_can_be_left_off_allowed_responses() -> None:
    rule = {"name": "quiet", "limit": 1, "window": LONG, "headers": False}
    async with (
        run_upstream() as upstream,
        run_gateway(upstream.url, rate_limits=[rule]) as gw,
        aiohttp.ClientSession() as session,
    ):
        status, headers = await get(session, gw.url + "/echo")
        assert status == 200 and "RateLimit" not in headers and "RateLimit-Policy" not in headers
        status, headers = await get(session, gw.url + "/echo")
        assert status == 429 and headers["RateLimit-Policy"] == '"quiet";q=1;w=3600'


# -- what a rule covers and whose budget a request spends -----------------------------------------------------


async def test_match_by_route_prefix_and_method_and_key_by_header() -> None:
    rules = [
        {
            "name": "users",
            "limit": 2,
            "window": LONG,
            "match": {"routes": ["/users/{id}"], "methods": ["GET"]},
        },
        {
            "name": "keys",
            "limit": 1,
            "window": LONG,
            "key": "header:X-API-Key",
            "match": {"path_prefixes": ["/echo/"]},
        },
    ]
    async with (
        run_upstream() as upstream,
        run_gateway(upstream.url, rate_limits=rules) as gw,
        aiohttp.ClientSession() as session,
    ):
        assert [(await get(session, gw.url + f"/users/{i}"))[0] for i in range(3)] == [200, 200, 429]
        async with session.post(gw.url + "/users/9") as resp:  # another method: not covered
            assert resp.status == 200
        assert (await get(session, gw.url + "/echo"))[0] == 200  # neither rule
        key_a, key_b = {"X-API-Key": "key-a"}, {"X-API-Key": "key-b"}
        assert (await get(session, gw.url + "/echo/x", key_a))[0] == 200
        assert (await get(session, gw.url + "/echo/x", key_b))[0] == 200  # its own budget
        assert (await get(session, gw.url + "/echo/y", key_a))[0] == 429
        # No key: the client's address is the key (the default on_missing_key).
        assert (await get(session, gw.url + "/echo/z"))[0] == 200
        assert (await get(session, gw.url + "/echo/z"))[0] == 429


@pytest.mark.parametrize(("missing", "expected"), [("anonymous", [200, 429, 429]), ("skip", [200, 200, 200])])
async def test_a_missing_key_header_shares_an_anonymous_budget_or_skips(
    missing: str, expected: list[int]
) -> None:
    rule = {
        "name": "keys",
        "limit": 1,
        "window": LONG,
        "key": "header:Authorization",
        "on_missing_key": missing,
    }
    async with (
        run_upstream() as upstream,
        run_gateway(upstream.url, rate_limits=[rule]) as gw,
        aiohttp.ClientSession() as session,
    ):
        assert [(await get(session, gw.url + "/echo"))[0] for _ in range(3)] == expected
        assert (await get(session, gw.url + "/echo", {"Authorization": "Bearer a"}))[0] == 200


async def test_the_client_key_is_the_real_client_behind_a_trusted_proxy() -> None:
    rule = {"name": "per-client", "limit": 1, "window": LONG}
    async with (
        run_upstream() as upstream,
        run_gateway(upstream.url, rate_limits=[rule], trusted_proxies=["127.0.0.0/8"]) as gw,
        aiohttp.ClientSession() as session,
    ):
        one = {"X-Forwarded-For": "203.0.113.1"}
        two = {"X-Forwarded-For": "203.0.113.2"}
        assert (await get(session, gw.url + "/echo", one))[0] == 200
        assert (await get(session, gw.url + "/echo", two))[0] == 200
        assert (await get(session, gw.url + "/echo", one))[0] == 429
        # A client cannot pick a fresh address by claiming one behind an untrusted hop.
    async with (
        run_upstream() as upstream,
        run_gateway(upstream.url, rate_limits=[rule]) as gw,
        aiohttp.ClientSession() as session,
    ):
        assert (await get(session, gw.url + "/echo", one))[0] == 200
        assert (await get(session, gw.url + "/echo", two))[0] == 429


async def test_route_keys_share_one_budget_per_route() -> None:
    rule = {"name": "per-route", "limit": 2, "window": LONG, "key": "route"}
    async with (
        run_upstream() as upstream,
        run_gateway(upstream.url, ("/users/{id}",), rate_limits=[rule]) as gw,
        aiohttp.ClientSession() as session,
    ):
        assert [(await get(session, gw.url + f"/users/{i}"))[0] for i in range(3)] == [200, 200, 429]
        assert (await get(session, gw.url + "/echo"))[0] == 200


# -- counting failures only (login attempts) --------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["local", "redis"])
async def test_five_failed_logins_then_429_and_successes_do_not_count(
    backend: str, request: pytest.FixtureRequest
) -> None:
    rule = {
        "name": "login",
        "limit": 5,
        "window": "15m",
        "count": "failed",
        "match": {"routes": ["/status/{code}"]},
        "backend": backend,
    }
    async with (
        run_upstream() as upstream,
        run_gateway(upstream.url, rate_limits=[rule], **backend_settings(backend, request)) as gw,
        aiohttp.ClientSession() as session,
    ):
        for _ in range(3):
            assert (await get(session, gw.url + "/status/200"))[0] == 200
        for attempt in range(5):
            status, headers = await get(session, gw.url + "/status/401")
            assert status == 401
            await asyncio.sleep(0.05 if backend == "redis" else 0)  # the spend is sent after the response
            assert (await get(session, gw.url + "/status/200"))[0] == (200 if attempt < 4 else 429)
        status, headers = await get(session, gw.url + "/status/200")
        assert status == 429 and int(headers["Retry-After"]) >= 1
        assert decisions(gw, "login", "rejected") == 2
        assert len([s for s in upstream.seen if s["path"] == "/status/401"]) == 5


async def test_count_failed_with_a_configured_status_set() -> None:
    rule = {"name": "auth", "limit": 2, "window": LONG, "count": "failed", "failed_statuses": [401, 403]}
    async with (
        run_upstream() as upstream,
        run_gateway(upstream.url, rate_limits=[rule]) as gw,
        aiohttp.ClientSession() as session,
    ):
        for path in ("/status/404", "/status/500", "/status/404"):
            await get(session, gw.url + path)  # not in the set: free
        assert (await get(session, gw.url + "/status/403"))[0] == 403
        assert (await get(session, gw.url + "/status/401"))[0] == 401
        assert (await get(session, gw.url + "/echo"))[0] == 429


# -- Redis failures --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("failure", ["stopped", "hung"])
@pytest.mark.parametrize("mode", ["open", "closed"])
async def test_redis_failure_fails_open_or_closed_quickly_and_is_counted(
    failure: str, mode: str, redis_server: RedisServer
) -> None:
    rule = {"name": "shared", "limit": 1000, "window": LONG, "on_redis_error": mode}
    async with (
        run_upstream() as upstream,
        run_gateway(upstream.url, rate_limits=[rule], rate_limit_redis=redis_server.url) as gw,
        aiohttp.ClientSession() as session,
    ):
        status, headers = await get(session, gw.url + "/echo")
        assert status == 200 and "RateLimit" in headers  # decided by Redis
        if failure == "stopped":
            redis_server.stop()
        else:
            redis_server.pause()
        started = time.monotonic()
        statuses = [(await get(session, gw.url + "/echo")) for _ in range(20)]
        elapsed = time.monotonic() - started
        assert elapsed < 2.0, f"20 requests took {elapsed:.2f}s: a failing Redis stalled them"
        expected = 200 if mode == "open" else 503
        assert {s for s, _ in statuses} == {expected}
        assert all("RateLimit" not in h for _, h in statuses)  # no decision, no quota to report
        if mode == "closed":
            assert all(h["Retry-After"] == "1" for _, h in statuses)
            assert sample(gw, "sidecar_gateway_rejected_total", reason="rate_limit_unavailable") == 20
        assert decisions(gw, "shared", f"error_{mode}") == 20
        errors = {
            reason: sample(gw, "sidecar_gateway_ratelimit_redis_errors_total", reason=reason)
            for reason in ("timeout", "connect", "closed", "unavailable")
        }
        assert sum(errors.values()) == 20, errors
        if failure == "hung":
            assert errors["timeout"] >= 1
            redis_server.resume()
        else:
            redis_server.start()

        async def recovered() -> bool:
            status, headers = await get(session, gw.url + "/echo")
            return status == 200 and "RateLimit" in headers

        deadline = time.monotonic() + 10
        while not await recovered():
            assert time.monotonic() < deadline, "never reconnected to Redis"
            await asyncio.sleep(0.1)


async def test_noscript_falls_back_to_eval_once(redis_server: RedisServer) -> None:
    rule = {"name": "api", "limit": 5, "window": LONG}
    client = redis.Redis.from_url(redis_server.url)
    try:
        async with (
            run_upstream() as upstream,
            run_gateway(upstream.url, rate_limits=[rule], rate_limit_redis=redis_server.url) as gw,
            aiohttp.ClientSession() as session,
        ):
            assert (await get(session, gw.url + "/echo"))[0] == 200
            client.script_flush()
            assert [(await get(session, gw.url + "/echo"))[0] for _ in range(5)] == [200] * 4 + [429]
            assert decisions(gw, "api", "error_open") == 0
            assert client.script_exists(SCRIPT_SHA.decode()) == [True]  # EVAL cached it again
    finally:
        client.close()


async def test_redis_keys_are_hashed_prefixed_and_expire(redis_server: RedisServer) -> None:
    rule = {"name": "keys", "limit": 5, "window": "1m", "key": "header:X-API-Key"}
    client = redis.Redis.from_url(redis_server.url)
    try:
        async with (
            run_upstream() as upstream,
            run_gateway(
                upstream.url,
                rate_limits=[rule],
                rate_limit_redis={"url": redis_server.url, "key_prefix": "t:"},
            ) as gw,
            aiohttp.ClientSession() as session,
        ):
            assert (await get(session, gw.url + "/echo", {"X-API-Key": "secret-api-key"}))[0] == 200
        (key,) = client.keys("*")
        assert key.startswith(b"t:keys:s:") and b"secret" not in key
        assert 60_000 < client.pttl(key) <= 120_000
    finally:
        client.close()


# -- the Lua script is the local arithmetic ----------------------------------------------------------------------


@pytest.mark.parametrize("sliding", [True, False])
def test_the_lua_script_decides_exactly_like_the_local_code(sliding: bool, redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    rng = random.Random(20261123 + sliding)
    try:
        for case in range(40):
            limit = rng.randint(1, 20)
            window = rng.choice([1000, 60_000, 3_600_000])
            burst = rng.randint(1, 30)
            state = [-1.0, 0.0, 0.0] if sliding else [float(burst), 0.0]
            now = 1_700_000_000_000.0 + rng.random() * 1e6
            if not sliding:
                state[1] = now
            key = f"equiv:{sliding}:{case}"
            for _ in range(60):
                now += rng.choice([0.0, 0.5, rng.random() * window / 3, window * rng.random() * 1.5])
                op = rng.choice([OP_CHECK, OP_CHECK, OP_PEEK, OP_SPEND])
                if sliding:
                    expected = sliding_window(state, now, limit, float(window), op)
                else:
                    expected = token_bucket(state, now, limit, float(window), burst, op)
                got = client.eval(
                    SCRIPT, 1, key, op, "s" if sliding else "t", limit, window, burst, repr(now)
                )
                assert (bool(got[0]), *got[1:]) == expected, (case, op, now)
    finally:
        client.close()


async def test_pipelined_requests_are_decided_and_answered_in_order() -> None:
    rule = {"name": "api", "limit": 2, "window": LONG}
    async with run_upstream() as upstream, run_gateway(upstream.url, rate_limits=[rule]) as gw:
        reader, writer = await asyncio.open_connection(HOST, gw.port)
        try:
            writer.write(b"".join(f"GET /echo?n={i} HTTP/1.1\r\nHost: t\r\n\r\n".encode() for i in range(4)))
            statuses = [(await asyncio.wait_for(read_response(reader), 5)).status for _ in range(4)]
            assert statuses == [200, 200, 429, 429]
        finally:
            writer.close()


@pytest.mark.parametrize("redis_server", [{"password": "s3cret-pw"}], indirect=True)
async def test_redis_with_a_password_and_a_database_and_a_wrong_password(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    rule = {"name": "api", "limit": 5, "window": LONG}
    url = redis_server.url.rsplit("/", 1)[0] + "/2"
    client = redis.Redis.from_url(url)
    try:
        async with (
            run_upstream() as upstream,
            run_gateway(upstream.url, rate_limits=[rule], rate_limit_redis=url) as gw,
            aiohttp.ClientSession() as session,
        ):
            status, headers = await get(session, gw.url + "/echo")
            assert status == 200 and headers["RateLimit"].startswith('"api";r=4;')
            assert len(client.keys("sidecar:ratelimit:api:*")) == 1  # in database 2
        wrong = url.replace("s3cret-pw", "wrong-pw")
        async with (
            run_upstream() as upstream,
            run_gateway(upstream.url, rate_limits=[rule], rate_limit_redis=wrong) as gw,
            aiohttp.ClientSession() as session,
        ):
            assert (await get(session, gw.url + "/echo"))[0] == 200  # fails open
            assert decisions(gw, "api", "error_open") == 1
            failed = [
                sample(gw, "sidecar_gateway_ratelimit_redis_errors_total", reason=reason)
                for reason in ("connect", "unavailable")  # during the set-up, or in the back-off after it
            ]
            assert sum(failed) == 1
        assert "refused the connection set-up" in caplog.text
        assert "cannot be parsed" not in caplog.text
        assert "wrong-pw" not in caplog.text and "s3cret-pw" not in caplog.text
    finally:
        client.close()


async def test_a_connection_redis_closed_while_idle_is_reopened_without_errors(
    redis_server: RedisServer,
) -> None:
    rule = {"name": "api", "limit": 100, "window": LONG}
    client = redis.Redis.from_url(redis_server.url)
    try:
        async with (
            run_upstream() as upstream,
            run_gateway(upstream.url, rate_limits=[rule], rate_limit_redis=redis_server.url) as gw,
            aiohttp.ClientSession() as session,
        ):
            assert (await get(session, gw.url + "/echo"))[1]["RateLimit"].startswith('"api";r=99;')
            client.client_kill_filter(_type="normal", skipme=True)  # as a server idle timeout would
            await asyncio.sleep(0.2)
            status, headers = await get(session, gw.url + "/echo")
            assert status == 200 and headers["RateLimit"].startswith('"api";r=98;')
            assert decisions(gw, "api", "error_open") == 0
    finally:
        client.close()
