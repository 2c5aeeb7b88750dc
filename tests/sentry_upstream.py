"""A local stand-in for Sentry's ingestion endpoint, speaking the real envelope protocol.

``POST /api/<project>/envelope/`` and ``/store/`` on 127.0.0.1 and a free port, in a thread with its own
event loop (so both sync end-to-end tests and async tests can use it). Bodies are inflated per
``Content-Encoding`` and parsed with a parser written here from the protocol description (not the
sidecar's), then recorded. Tests steer the answers: 200 ``{"id": ...}``, 500, 429 with
``Retry-After``/``X-Sentry-Rate-Limits`` per category, or stopped altogether (connection refused).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.servers import free_port


@dataclass
class Received:
    """One request the fake Sentry accepted or refused."""

    project: str
    endpoint: str
    auth: str
    headers: dict[str, Any]
    items: list[tuple[dict[str, Any], bytes]]
    status: int

    def json_items(self, item_type: str) -> list[dict[str, Any]]:
        return [json.loads(p) for h, p in self.items if h.get("type") == item_type]

    @property
    def categories(self) -> set[str]:
        return {_CATEGORY.get(str(h.get("type")), "default") for h, _ in self.items}

    @property
    def event_ids(self) -> list[str]:
        ids = [str(e.get("event_id")) for t in ("event", "transaction") for e in self.json_items(t)]
        return ids or ([str(self.headers["event_id"])] if self.headers.get("event_id") else [])


_CATEGORY = {"event": "error", "transaction": "transaction", "attachment": "attachment", "session": "session"}


def parse_envelope(body: bytes) -> tuple[dict[str, Any], list[tuple[dict[str, Any], bytes]]]:
    """Header line, then items: a JSON header line and ``length`` bytes (or up to the next newline)."""
    header_line, _, rest = body.partition(b"\n")
    header = json.loads(header_line)
    items: list[tuple[dict[str, Any], bytes]] = []
    while rest.strip():
        item_line, _, rest = rest.partition(b"\n")
        item_header = json.loads(item_line)
        length = item_header.get("length")
        if length is None:
            payload, _, rest = rest.partition(b"\n")
        else:
            if len(rest) < length:
                raise ValueError("truncated item")
            payload, rest = rest[:length], rest[length:]
            if rest[:1] == b"\n":
                rest = rest[1:]
        items.append((item_header, payload))
    return header, items


class FakeSentry:
    """Threaded fake ingestion endpoint; ``received`` is every request, ``accepted_ids`` the 2xx ones."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.received: list[Received] = []
        self.fail_status: int | None = None  # answer this to everything (e.g. 500, 400)
        self.limited: dict[str, float] = {}  # category ("" = all) -> monotonic deadline
        self.retry_after_only = False  # 429 with only Retry-After (old Sentry / proxies)
        self.delay = 0.0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # --- control ----------------------------------------------------------------------------------

    def dsn(self, key: str = "publickey123", project: str = "42") -> str:
        return f"http://{key}@127.0.0.1:{self.port}/{project}"

    def limit(self, categories: str, seconds: float) -> None:
        """Rate-limit ``categories`` (``;``-separated, "" for all) for ``seconds`` from now."""
        with self._lock:
            for category in categories.split(";"):
                self.limited[category] = time.monotonic() + seconds

    def start(self) -> FakeSentry:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._serve())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-sentry", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake Sentry did not start")
        return self

    def stop(self) -> None:
        """Stop listening (connections are refused) but keep what was received."""
        if self._loop is None:
            return
        loop = self._loop
        asyncio.run_coroutine_threadsafe(self._cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        assert self._thread is not None
        self._thread.join(10)
        loop.close()
        self._loop = None

    def __enter__(self) -> FakeSentry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what arrived -----------------------------------------------------------------------------

    def accepted(self) -> list[Received]:
        with self._lock:
            return [r for r in self.received if 200 <= r.status < 300]

    def accepted_ids(self) -> list[str]:
        return [i for r in self.accepted() for i in r.event_ids]

    def events(self) -> list[dict[str, Any]]:
        return [e for r in self.accepted() for e in r.json_items("event")]

    def wait_for(self, predicate: Any, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.02)
        raise AssertionError(
            f"fake Sentry: condition not met within {timeout}s; accepted {len(self.accepted_ids())} events"
        )

    # --- the server -------------------------------------------------------------------------------

    async def _serve(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/api/{project}/envelope/", self._envelope)
        app.router.add_post("/api/{project}/store/", self._store)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def _cleanup(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @staticmethod
    def _inflate(body: bytes, encoding: str) -> bytes:
        """aiohttp already inflates request bodies; this only covers a server that did not."""
        if encoding == "gzip" and body[:2] == b"\x1f\x8b":
            return gzip.decompress(body)
        if encoding == "deflate" and body[:1] == b"\x78":
            return zlib.decompress(body)
        return body

    def _active_limits(self) -> dict[str, float]:
        now = time.monotonic()
        return {c: d - now for c, d in self.limited.items() if d > now}

    async def _answer(
        self,
        request: web.Request,
        endpoint: str,
        header: dict[str, Any],
        items: list[tuple[dict[str, Any], bytes]],
    ) -> web.Response:
        if self.delay:
            await asyncio.sleep(self.delay)
        received = Received(
            request.match_info["project"],
            endpoint,
            request.headers.get("X-Sentry-Auth", ""),
            header,
            items,
            0,
        )
        limits_header = ""
        with self._lock:
            active = self._active_limits()
            if active:
                limits_header = ",".join(f"{max(1, round(s))}:{c}:key" for c, s in active.items())
            limited = bool(active) and ("" in active or bool(received.categories & set(active)))
            if self.fail_status is not None:
                received.status = self.fail_status
            elif limited:
                received.status = 429
            else:
                received.status = 200
            self.received.append(received)
        headers: dict[str, str] = {}
        if limits_header and not self.retry_after_only:
            headers["X-Sentry-Rate-Limits"] = limits_header
        if received.status == 429:
            headers["Retry-After"] = str(max(1, round(max(active.values()))))
            return web.json_response({"detail": "rate limited"}, status=429, headers=headers)
        if received.status != 200:
            return web.json_response({"detail": "failing on purpose"}, status=received.status)
        return web.json_response({"id": header.get("event_id")}, headers=headers)

    async def _envelope(self, request: web.Request) -> web.Response:
        body = self._inflate(await request.read(), request.headers.get("Content-Encoding", ""))
        try:
            header, items = parse_envelope(body)
        except (ValueError, json.JSONDecodeError) as exc:
            return web.json_response({"detail": f"bad envelope: {exc}"}, status=400)
        return await self._answer(request, "envelope", header, items)

    async def _store(self, request: web.Request) -> web.Response:
        body = self._inflate(await request.read(), request.headers.get("Content-Encoding", ""))
        event = json.loads(body)
        return await self._answer(
            request, "store", {"event_id": event.get("event_id")}, [({"type": "event"}, body)]
        )
