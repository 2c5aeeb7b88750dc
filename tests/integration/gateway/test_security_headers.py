"""Security headers through a real gateway in front of a real app: added when missing, never twice when
the app sets one, X-Powered-By removed, per-route overrides, a CSP; untouched when not enabled."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from tests.integration.gateway_support import raw_exchange, run_gateway, run_upstream

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

HELMET = {
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "origin-agent-cluster": "?1",
    "referrer-policy": "no-referrer",
    "strict-transport-security": "max-age=31536000; includeSubDomains",
    "x-content-type-options": "nosniff",
    "x-dns-prefetch-control": "off",
    "x-download-options": "noopen",
    "x-frame-options": "SAMEORIGIN",
    "x-permitted-cross-domain-policies": "none",
    "x-xss-protection": "0",
}


def app() -> web.Application:
    async def plain(request: web.Request) -> web.Response:
        return web.Response(text="plain", headers={"X-Powered-By": "Express"})

    async def framed(request: web.Request) -> web.Response:
        return web.Response(text="framed", headers={"x-frame-options": "DENY", "Referrer-Policy": "origin"})

    application = web.Application()
    application.router.add_get("/plain", plain)
    application.router.add_get("/framed", framed)
    application.router.add_get("/embed/{id}", plain)
    application.router.add_get("/files/{name}", plain)
    return application


def fields(raw_head: bytes) -> list[tuple[str, str]]:
    lines = raw_head.decode("latin-1").split("\r\n")[1:]
    return [(k.strip().lower(), v.strip()) for k, _, v in (line.partition(":") for line in lines if line)]


async def fetch(port: int, path: str) -> list[tuple[str, str]]:
    response = await raw_exchange(
        port, f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode()
    )
    assert response.status == 200
    return fields(response.raw_head)


async def test_helmet_defaults_added_app_values_kept_once_x_powered_by_removed() -> None:
    async with (
        run_upstream(app()) as upstream,
        run_gateway(upstream.url, security_headers={"enabled": True}) as gw,
    ):
        plain = await fetch(gw.port, "/plain")
        for name, value in HELMET.items():
            assert (name, value) in plain, name
        assert "x-powered-by" not in dict(plain)
        framed = await fetch(gw.port, "/framed")
        names = [name for name, _ in framed]
        assert names.count("x-frame-options") == 1 and ("x-frame-options", "DENY") in framed
        assert names.count("referrer-policy") == 1 and ("referrer-policy", "origin") in framed
        assert ("x-content-type-options", "nosniff") in framed
        assert all(names.count(n) == 1 for n in HELMET)


async def test_per_route_overrides_and_a_csp() -> None:
    settings = {
        "enabled": True,
        "content_security_policy": "default-src 'self'",
        "routes": [
            {
                "routes": ["/embed/{id}"],
                "headers": {"X-Frame-Options": None, "Content-Security-Policy": "frame-ancestors *"},
            },
            {"path_prefixes": ["/files/"], "enabled": False},
        ],
    }
    async with run_upstream(app()) as upstream, run_gateway(upstream.url, security_headers=settings) as gw:
        plain = dict(await fetch(gw.port, "/plain"))
        assert plain["content-security-policy"] == "default-src 'self'"
        embed = dict(await fetch(gw.port, "/embed/7"))
        assert "x-frame-options" not in embed and embed["content-security-policy"] == "frame-ancestors *"
        files = dict(await fetch(gw.port, "/files/a.txt"))
        assert not set(files) & set(HELMET) and files["x-powered-by"] == "Express"


async def test_nothing_changes_unless_enabled() -> None:
    async with run_upstream(app()) as upstream, run_gateway(upstream.url) as gw:
        assert gw.gateway.ctx.edge is None
        async with aiohttp.ClientSession() as session, session.get(gw.url + "/plain") as resp:
            assert resp.headers["X-Powered-By"] == "Express"
            assert not {k.lower() for k in resp.headers} & set(HELMET)
