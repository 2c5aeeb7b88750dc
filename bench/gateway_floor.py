"""The floor under the gateway's design: instructions per request of two do-nothing proxies on uvloop.

Why: the gateway costs about 3x nginx-with-access-log in instructions per request, and the question
is how much of that any proxy built as uvloop protocols with httptools callbacks pays before doing
anything a gateway must do. Two throwaway proxies answer it, measured the way
``bench/gateway_instructions.py`` measures the gateway (callgrind, a counted window of requests less
an idle one), next to nginx writing an access log:

* ``relay``: each client connection gets its own app connection and bytes are passed through as
  they arrive, unparsed (uvloop's reads, writes and callback dispatch into Python);
* ``parse``: the same, with an httptools parser on both sides, every header collected into a list
  by its Python callback and each head written back as bytes (what parsing with a Python callback
  per header and per event costs, interpreted).

Neither is a usable proxy (no pool, no framing checks, no IDs, no metrics, no log); they show where a
design's cost starts.

    .venv/bin/python bench/gateway_floor.py [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httptools
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from bench._common import PYTHON, free_port, wait_http
from bench.gateway import APP_CONF  # the same app as the other gateway benches: nginx answering 200
from bench.gateway_instructions import NGINX, PROXY_CONF, measure


def serve(port: int, app_port: int, mode: str) -> None:
    """The throwaway proxy (run in its own process under callgrind)."""

    class Upstream(asyncio.Protocol):
        def __init__(self, client: Client) -> None:
            self.client = client
            self.parser = httptools.HttpResponseParser(self) if mode == "parse" else None
            self.headers: list[tuple[bytes, bytes]] = []

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            if self.parser is None:
                self.client.transport.write(data)
            else:
                self.parser.feed_data(data)

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers.append((name, value))

        def on_headers_complete(self) -> None:
            fields = b"".join(b"%b: %b\r\n" % pair for pair in self.headers)
            self.headers = []
            self.client.transport.write(b"HTTP/1.1 200 OK\r\n" + fields + b"\r\n")

        def on_body(self, body: bytes) -> None:
            self.client.transport.write(body)

    class Client(asyncio.Protocol):
        def __init__(self) -> None:
            self.parser = httptools.HttpRequestParser(self) if mode == "parse" else None
            self.headers: list[tuple[bytes, bytes]] = []
            self.url = b""
            self.upstream: Upstream | None = None
            self.pending: list[bytes] = []
            self.connecting: asyncio.Task[None] | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.connecting = asyncio.ensure_future(self.connect())

        async def connect(self) -> None:
            loop = asyncio.get_running_loop()
            _, self.upstream = await loop.create_connection(lambda: Upstream(self), "127.0.0.1", app_port)
            for data in self.pending:
                self.upstream.transport.write(data)

        def send(self, data: bytes) -> None:
            if self.upstream is None:
                self.pending.append(data)
            else:
                self.upstream.transport.write(data)

        def data_received(self, data: bytes) -> None:
            if self.parser is None:
                self.send(data)
            else:
                self.parser.feed_data(data)

        def on_url(self, url: bytes) -> None:
            self.url += url

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers.append((name, value))

        def on_headers_complete(self) -> None:
            fields = b"".join(b"%b: %b\r\n" % pair for pair in self.headers)
            self.headers, url, self.url = [], self.url, b""
            self.send(b"GET %b HTTP/1.1\r\n" % url + fields + b"\r\n")

    async def main() -> None:
        signal.signal(signal.SIGQUIT, lambda *_: os._exit(0))  # how measure() stops what is not a sidecar
        await asyncio.get_running_loop().create_server(Client, "127.0.0.1", port)
        await asyncio.Event().wait()

    uvloop.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    if not shutil.which("valgrind"):
        sys.exit("valgrind is not installed (Debian package valgrind)")
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="gw-floor-") as tmp_name:
        tmp = Path(tmp_name)
        app_port = free_port()
        (tmp / "app.conf").write_text(APP_CONF.format(tmp=tmp, port=app_port))
        app = subprocess.Popen(
            [NGINX, "-c", str(tmp / "app.conf"), "-p", str(tmp)], stderr=subprocess.DEVNULL
        )
        try:
            wait_http(f"http://127.0.0.1:{app_port}/")
            env = {**os.environ, "PYTHONHASHSEED": "0"}
            for mode in ("relay", "parse"):
                port = free_port()
                cmd = [PYTHON, str(Path(__file__).resolve()), "--serve", str(port), str(app_port), mode]
                results[mode] = measure(
                    mode, cmd, port, args.requests, 1, tmp, env, expect=(200,)
                ).per_request
            port = free_port()
            conf = tmp / "nginx-log.conf"
            log = f"access_log {tmp}/nginx-log-access.log combined buffer=64k flush=1s;"
            conf.write_text(
                PROXY_CONF.format(tmp=tmp, name="nginx-log", access_log=log, app_port=app_port, port=port)
            )
            cmd = [NGINX, "-c", str(conf), "-p", str(tmp)]
            results["nginx-log"] = measure("nginx-log", cmd, port, args.requests, 1, tmp, env).per_request
        finally:
            app.send_signal(signal.SIGQUIT)
            app.wait(timeout=30)
    print(f"instructions per proxied request (callgrind; {args.requests} requests, less an idle window)")
    for name, value in results.items():
        print(f"  {name:<10} {value / 1000:8.1f}k   ({value / results['nginx-log']:.2f} x nginx-log)")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    else:
        main()
