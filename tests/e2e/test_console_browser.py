"""The on-call console in a real browser (Playwright driving Debian's Chromium) against the real sidecar.

The sidecar probes the machine's Redis (6379) and PostgreSQL (5432), a Redis of the test's own (so the
test can stop it), and a BullMQ queue holding failed jobs made by the real ``bullmq`` package; it proxies
a small app and forwards error log lines to a local stand-in for Sentry. Every page is opened with real
data, and each test also asserts that the browser saw no console error and no CSP violation.

Screenshots of every page go to ``$SIDECAR_CONSOLE_SCREENSHOTS`` when set (docs/console.md shows the
ones in ``docs/console/``: ``SIDECAR_CONSOLE_SCREENSHOTS=docs/console pytest tests/e2e/test_console_browser.py``).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.sidecar_process import SidecarProcess, request
from tests.sentry_upstream import FakeSentry
from tests.servers import RedisServer, free_port, port_open, skip_or_fail, wait_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
TOKEN = secrets.token_hex(16)
SHARED_REDIS = "redis://127.0.0.1:6379/0"
SHARED_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
PREFIX = f"console-e2e-{secrets.token_hex(4)}"
FAILED_JOBS = 3
OWN_REDIS_INTERVAL = 0.5
OWN_REDIS_TIMEOUT = 0.3
DESKTOP = {"width": 1200, "height": 800}
PHONE = {"width": 390, "height": 844}
# Kept by the page itself: CSP violations never reach page.on("console") reliably in headless mode.
WATCH_CSP = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(e.violatedDirective + " " + e.blockedURI);
});
"""


def _require() -> None:
    if not Path(CHROMIUM).exists():
        skip_or_fail(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        skip_or_fail("the playwright package is not installed (pip install playwright)")
    for port, what in ((6379, "Redis"), (5432, "PostgreSQL")):
        if not port_open("127.0.0.1", port):
            skip_or_fail(f"no {what} on 127.0.0.1:{port}")


async def _make_failed_jobs() -> None:
    """Three jobs the real BullMQ worker fails, plus two waiting, in queue ``emails`` under ``PREFIX``."""
    from bullmq import Queue, Worker

    queue = Queue("emails", {"connection": SHARED_REDIS, "prefix": PREFIX})
    failed = asyncio.Event()
    seen = 0

    async def process(job: Any, token: str) -> None:
        raise ValueError(f"SMTP refused recipient {job.data['to']}")

    worker = Worker("emails", process, {"connection": SHARED_REDIS, "prefix": PREFIX})

    def on_failed(*_: Any) -> None:
        nonlocal seen
        seen += 1
        if seen >= FAILED_JOBS:
            failed.set()

    worker.on("failed", on_failed)
    for i in range(FAILED_JOBS):
        await queue.add("welcome-mail", {"to": f"user{i}@example.org"})
    await asyncio.wait_for(failed.wait(), 20)
    await worker.close()
    for i in range(2):
        await queue.add("digest", {"to": f"later{i}@example.org"})
    await queue.close()


async def _drop_jobs() -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(SHARED_REDIS)
    try:
        keys = [k async for k in client.scan_iter(match=f"{PREFIX}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    _require()
    tmp = tmp_path_factory.mktemp("console")
    own_redis = RedisServer().start()
    sentry = FakeSentry().start()
    app_port, gateway_port = free_port(), free_port()
    app = subprocess.Popen([sys.executable, str(Path(__file__).with_name("console_app.py")), str(app_port)])
    try:
        wait_port("127.0.0.1", app_port)
        asyncio.run(_make_failed_jobs())
        config = f"""
default_checks: false
admin_token: {TOKEN}
service_name: shop
checks:
  - {{name: redis, kind: redis, target: "{SHARED_REDIS}", interval: 1s, timeout: 500ms}}
  - {{name: postgres, kind: postgres, target: "{SHARED_POSTGRES}", interval: 1s, timeout: 500ms}}
  - {{name: cache, kind: redis, target: "{own_redis.url}", interval: {OWN_REDIS_INTERVAL}s,
      timeout: {OWN_REDIS_TIMEOUT}s, critical: false}}
  - {{name: jobs, kind: bullmq, target: "{SHARED_REDIS}", interval: 1s, timeout: 900ms,
      options: {{prefix: {PREFIX}, queues: [emails]}}}}
gateway:
  upstream: "http://127.0.0.1:{app_port}"
  listen: "127.0.0.1:{gateway_port}"
sentry:
  app_dsn: "{sentry.dsn("0123456789abcdef0123456789abcdef", "42")}"
  spool: {{dir: "{tmp / "spool"}"}}
console:
  trace_url: "https://traces.example.org/trace/{{trace_id}}"
  sentry_url: "https://sentry.example.org/organizations/shop/issues/?query={{event_id}}"
"""
        with SidecarProcess(config) as sidecar:
            sidecar.wait_for("/readyz", 200, timeout=20)
            yield {
                "sidecar": sidecar,
                "gateway": f"http://127.0.0.1:{gateway_port}",
                "own_redis": own_redis,
                "sentry": sentry,
            }
    finally:
        app.terminate()
        app.wait(10)
        sentry.stop()
        own_redis.close()
        asyncio.run(_drop_jobs())


@pytest.fixture(scope="module")
def browser(stack: dict[str, Any]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Watched:
    """A logged-in page whose console errors, page errors and CSP violations are collected."""

    def __init__(self, page: Any, admin: str, health: str = "") -> None:
        self.page = page
        self.admin = admin
        self.health = health
        self.problems: list[str] = []
        page.on(
            "console",
            lambda m: self.problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.add_init_script(WATCH_CSP)

    def goto(self, path: str) -> None:
        self.page.goto(self.admin + path)
        self.page.wait_for_load_state("networkidle")

    def check_clean(self) -> None:
        csp = self.page.evaluate("window.__csp || []")
        assert not self.problems, self.problems
        assert not csp, f"CSP violations: {csp}"


def _login(page: Any, admin: str) -> None:
    page.goto(admin + "/console")
    page.fill("#token", TOKEN)
    page.press("#token", "Enter")
    page.wait_for_url(admin + "/console")


@pytest.fixture
def console(browser: Any, stack: dict[str, Any]) -> Iterator[Watched]:
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    admin = stack["sidecar"].admin
    _login(page, admin)
    watched = Watched(page, admin, stack["sidecar"].base)
    yield watched
    watched.check_clean()
    context.close()


def _shot(page: Any, name: str) -> None:
    folder = os.environ.get("SIDECAR_CONSOLE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=False)


def _proxied(gateway: str, path: str) -> tuple[int, str, str | None]:
    """One request through the gateway: status, its request ID, and its trace ID."""
    req = urllib.request.Request(gateway + path)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            status, headers = resp.status, resp.headers
    except urllib.error.HTTPError as exc:
        status, headers = exc.code, exc.headers
    traceparent = headers.get("traceparent")
    return status, headers["X-Request-ID"], traceparent.split("-")[1] if traceparent else None


def _ingest(admin: str, lines: list[dict[str, Any]]) -> None:
    body = "\n".join(json.dumps(line) for line in lines).encode()
    req = urllib.request.Request(
        f"{admin}/ingest/logs?source=app",
        data=body,
        method="POST",
        headers={"Content-Type": "application/x-ndjson", "Authorization": f"Bearer {TOKEN}"},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status in (200, 202)


# --- security ------------------------------------------------------------------------------------


def test_login_sets_a_strict_httponly_cookie_and_the_api_keeps_the_bearer(
    browser: Any, stack: dict[str, Any]
) -> None:
    admin = stack["sidecar"].admin
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    watched = Watched(page, admin)
    page.goto(admin + "/console/traffic")
    assert "/console/login" in page.url
    _shot(page, "login")
    page.fill("#token", "not-the-token")
    page.click("button[type=submit]")
    assert page.locator("[role=alert]").inner_text().startswith("That is not the admin token")
    watched.problems = [p for p in watched.problems if "401" not in p]  # the refused login itself
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(admin + "/console/traffic")
    cookie = next(c for c in context.cookies() if c["name"] == "sidecar_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""
    watched.check_clean()
    context.close()
    # the API: the bearer header, as before; the console pages answer scripts with it too
    assert request(admin + "/debug/checks")[0] == 401
    assert request(admin + "/debug/checks", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    assert request(admin + "/console?part=live", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    assert request(admin + "/console?part=live")[0] == 401


def test_a_post_without_the_csrf_token_or_from_another_origin_is_refused(console: Watched) -> None:
    page = console.page
    # the session cookie goes along (same browser context), but not the page's token
    assert page.request.post(console.admin + "/console/drain", form={"csrf": "forged"}).status == 403
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    other = page.request.post(
        console.admin + "/console/drain", form={"csrf": token}, headers={"Origin": "https://evil.example"}
    )
    assert other.status == 403
    assert _health_status(console, "/readyz") == 200


def _health_status(console: Watched, path: str) -> int:
    """An answer of the health listener (``/readyz``), where load balancers ask."""
    return request(console.health + path)[0]


def test_every_answer_carries_a_strict_csp(stack: dict[str, Any]) -> None:
    admin = stack["sidecar"].admin
    req = urllib.request.Request(admin + "/console/login")
    with urllib.request.urlopen(req, timeout=5) as resp:
        csp = resp.headers["Content-Security-Policy"]
        html = resp.read().decode()
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
    assert "<script>" not in html and " style=" not in html and "on" + "click=" not in html


# --- the pages -----------------------------------------------------------------------------------


def test_overview_shows_every_check_with_history(console: Watched) -> None:
    page = console.page
    for check in ("redis", "postgres", "cache", "jobs"):
        row = page.locator(f'tr[data-check="{check}"]')
        row.wait_for()
        assert row.get_attribute("data-status") in ("pass", "warn"), check
    assert page.locator("#verdict").inner_text() == "Ready"
    page.wait_for_function(
        "document.querySelectorAll('tr[data-check=\"redis\"] svg.spark polyline').length === 1"
    )
    assert "responseTime" in page.locator('tr[data-check="postgres"]').inner_text()
    _shot(page, "overview")


def test_drain_asks_first_and_flips_readyz(console: Watched) -> None:
    page = console.page
    assert _health_status(console, "/readyz") == 200
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("#drain-button")
    page.wait_for_timeout(300)
    assert _health_status(console, "/readyz") == 200  # dismissed: nothing happened
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#drain-button")
    page.wait_for_url(console.admin + "/console")
    assert _health_status(console, "/readyz") == 503
    assert page.locator("#verdict").inner_text() == "Not ready: draining"
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#drain-button")
    page.wait_for_url(console.admin + "/console")
    assert _health_status(console, "/readyz") == 200


def test_a_proxied_request_is_found_by_its_id_and_by_its_trace(
    console: Watched, stack: dict[str, Any]
) -> None:
    status, request_id, trace_id = _proxied(stack["gateway"], "/orders/1234?card=4111111111111111")
    assert status == 200
    _ingest(
        console.admin,
        [
            {"level": "info", "msg": "order looked up", "request_id": request_id},
            {
                "level": "error",
                "msg": "payment provider timed out",
                "request_id": request_id,
                "err": {"type": "TimeoutError", "message": "payment provider timed out"},
            },
        ],
    )
    page = console.page
    console.goto("/console/request")
    page.focus("#q")
    page.keyboard.type(request_id)
    page.keyboard.press("Enter")
    page.wait_for_load_state("networkidle")
    assert page.locator("#request-id").inner_text() == request_id
    timeline = page.locator("ol.timeline")
    timeline.locator("li.entry.log").first.wait_for()
    text = timeline.inner_text()
    assert "GET /orders/1234" in text and "payment provider timed out" in text
    assert "4111111111111111" not in page.content()  # the query value is masked in the access record
    if trace_id:
        link = page.locator(f'a[href="https://traces.example.org/trace/{trace_id}"]')
        assert link.count() == 1
        console.goto(f"/console/request?q={trace_id}")
        assert page.locator("#request-id").inner_text() == request_id
    _shot(page, "request")
    console.goto("/console/request?q=no-such-request")
    assert "Nothing known" in page.locator("[role=alert]").inner_text()


def test_traffic_shows_routes_windows_and_links_failed_requests(
    console: Watched, stack: dict[str, Any]
) -> None:
    for _ in range(20):
        _proxied(stack["gateway"], "/orders/7")
    for _ in range(3):
        _proxied(stack["gateway"], "/slow")
    failed_ids = [_proxied(stack["gateway"], "/boom")[1] for _ in range(4)]
    page = console.page
    console.goto("/console/traffic")
    # the gateway folds its counts into the histogram every 100 ms; the page refreshes every 5 s
    page.wait_for_selector('tr[data-route="/boom"]', timeout=8000)
    assert page.locator("tr[data-route]").count() >= 3
    boom = page.locator('tr[data-route="/boom"]')
    assert "100.0 %" in boom.inner_text()
    slow_row = page.locator('tr[data-route="/slow"]').inner_text()
    assert "ms" in slow_row
    _shot(page, "traffic")
    page.locator(f'a[href="/console/request?q={failed_ids[-1]}"]').first.click()
    page.wait_for_load_state("networkidle")
    assert page.locator("#request-id").inner_text() == failed_ids[-1]
    assert "500" in page.locator("ol.timeline").inner_text()
    console.goto("/console/traffic?window=15")
    assert page.locator('a[aria-current="true"]').inner_text() == "15 min"


def test_queues_show_counts_and_the_failed_jobs_of_bullmq(console: Watched) -> None:
    page = console.page
    console.goto("/console/queues")
    row = page.locator('tr[data-queue="emails"]')
    row.wait_for()
    text = row.inner_text()
    assert str(FAILED_JOBS) in text and "2" in text
    _shot(page, "queues")
    row.locator("a", has_text="recent failed").click()
    page.wait_for_load_state("networkidle")
    jobs = page.locator("tbody tr")
    assert jobs.count() == FAILED_JOBS
    assert "SMTP refused recipient" in jobs.first.inner_text()
    _shot(page, "queues-failed")


def test_errors_show_forwarded_events_and_the_upstream(console: Watched, stack: dict[str, Any]) -> None:
    _, request_id, _ = _proxied(stack["gateway"], "/orders/99")
    _ingest(console.admin, [{"level": "error", "msg": "stock service refused", "request_id": request_id}])
    stack["sentry"].wait_for(
        lambda: any("stock service refused" in json.dumps(e) for e in stack["sentry"].events())
    )
    page = console.page
    console.goto("/console/errors")
    page.locator("td", has_text="stock service refused").first.wait_for()
    assert "reachable" in page.locator("dl.facts").inner_text()
    assert page.locator(f'a[href="/console/request?q={request_id}"]').count() >= 1
    assert page.locator('a[href^="https://sentry.example.org/"]').count() >= 1
    _shot(page, "errors")


def test_logs_tail_live_with_filters_and_pauses(console: Watched) -> None:
    page = console.page
    console.goto("/console/logs")
    page.wait_for_timeout(500)  # the first poll attaches the tail
    marker = secrets.token_hex(4)
    _ingest(
        console.admin,
        [
            {"level": "info", "msg": f"cart updated {marker}"},
            {"level": "warn", "msg": f"slow query {marker}"},
            {"level": "error", "msg": f"checkout failed {marker}"},
        ],
    )
    page.locator("#tail td", has_text=f"checkout failed {marker}").wait_for(timeout=5000)
    assert page.locator("#tail tbody tr").count() >= 3
    _shot(page, "logs")
    page.select_option("#level", "error")
    page.locator("#tail td", has_text=f"checkout failed {marker}").wait_for()
    page.wait_for_timeout(1200)
    shown = page.locator("#tail tbody").inner_text()
    assert f"cart updated {marker}" not in shown and f"checkout failed {marker}" in shown
    page.click("#tail-pause")
    assert page.locator("#tail-state").inner_text() == "paused"
    _ingest(console.admin, [{"level": "error", "msg": f"while paused {marker}"}])
    page.wait_for_timeout(1500)
    assert f"while paused {marker}" not in page.locator("#tail tbody").inner_text()
    page.click("#tail-pause")
    page.locator("#tail td", has_text=f"while paused {marker}").wait_for(timeout=5000)


def test_the_pages_work_with_the_keyboard(console: Watched) -> None:
    page = console.page
    console.goto("/console")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Traffic":
            break
    else:
        pytest.fail("the Traffic link is not reachable with Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"  # a visible focus ring
    page.keyboard.press("Enter")
    page.wait_for_url(console.admin + "/console/traffic")
    # the search works from the keyboard alone (done in the request test); the tables scroll with it
    assert page.locator(".scroll[tabindex='0']").count() >= 1


@pytest.mark.parametrize(
    "path",
    [
        "/console",
        "/console/traffic",
        "/console/queues",
        "/console/errors",
        "/console/request",
        "/console/logs",
    ],
)
def test_every_page_fits_a_phone(browser: Any, stack: dict[str, Any], path: str) -> None:
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = context.new_page()
    admin = stack["sidecar"].admin
    _login(page, admin)
    watched = Watched(page, admin)
    watched.goto(path)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{path} is {overflow}px wider than a phone"
    assert page.locator("nav a", has_text="Overview").is_visible()
    if path == "/console":
        _shot(page, "overview-phone")
    watched.check_clean()
    context.close()


def test_stopping_redis_turns_its_row_red_within_the_probe_interval(
    console: Watched, stack: dict[str, Any]
) -> None:
    page = console.page
    row = page.locator('tr[data-check="cache"]')
    assert row.get_attribute("data-status") == "pass"
    stack["own_redis"].stop()
    started = time.monotonic()
    # a probe every 0.5 s fails at once (connection refused); the page hears of it by Server-Sent Events
    page.wait_for_selector('tr[data-check="cache"][data-status="fail"]', timeout=6000)
    took = time.monotonic() - started
    assert took < OWN_REDIS_INTERVAL + OWN_REDIS_TIMEOUT + 1.0, f"{took:.2f}s"
    background = page.evaluate(
        "getComputedStyle(document.querySelector('tr[data-check=\"cache\"]')).backgroundColor"
    )
    red, green, blue = (
        int(v) for v in background[background.index("(") + 1 : background.index(")")].split(",")[:3]
    )
    assert red > green and red > blue, background
    _shot(page, "overview-failing")
    stack["own_redis"].start()
    page.wait_for_selector('tr[data-check="cache"][data-status="pass"]', timeout=8000)
