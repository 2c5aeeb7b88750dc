"""Differential framing harness: fuzz cases through the real gateway to a strict recording upstream.

The oracle has three views of every case:

- the *reference*: the client's bytes parsed with llhttp, the gateway's own parser, which says which
  messages the gateway can have read and where each one ends (method, target, body);
- the *gateway*: the responses the client gets back, in order; one the upstream wrote carries the
  recorder's sequence number (``X-Seq``), the gateway's own refusals do not; and the access log;
- the *upstream*: every request the recorder's strict parser (``strict.py``) completed.

Invariant (a *desync* when broken): each response the upstream wrote answers the message at its
position in the reference, and the upstream got that message's method, (origin-form) target and
body bytes, once, under the X-Request-ID the gateway answered with; the upstream never completes a
request that no client was answered for and the access log does not hold; the strict parser never
rejects what the gateway sent. Cases the gateway refuses are fine: refusing is always allowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httptools

from tests.framing_fuzz.cases import Case, build_case
from tests.framing_fuzz.strict import StrictError, StrictParser

HOST = "127.0.0.1"
CASE_TIMEOUT = 5.0
REFUSALS = frozenset({400, 405, 408, 414, 431, 501, 505})  # the gateway's own: it closes after them


@dataclass
class Record:
    seq: int
    request_id: bytes
    method: bytes
    target: bytes
    body: bytes
    answered: bool = False


@dataclass
class Findings:
    cases: int = 0
    desyncs: list[str] = field(default_factory=list)
    refused: int = 0  # responses the gateway wrote itself
    forwarded: int = 0  # responses the upstream wrote
    stalls: int = 0  # cases that neither finished nor closed in CASE_TIMEOUT
    stalled: list[int] = field(default_factory=list)
    unanswered: int = 0  # upstream requests logged but cut before their response (a later one was refused)

    def desync(self, case: Case | None, what: str) -> None:
        where = f"case {case.index} {case.stream!r}" if case is not None else "upstream"
        self.desyncs.append(f"{what}: {where}"[:2000])


class Recorder:
    """The app: parses strictly, records each completed request and answers it with its sequence number."""

    def __init__(self, findings: Findings) -> None:
        self.findings = findings
        self.records: dict[int, Record] = {}
        self.by_id: dict[bytes, int] = {}
        self.next_seq = 0
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _RecorderProtocol(self), HOST, 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await self.server.wait_closed()

    def completed(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes) -> int:
        ids = [v for n, v in headers if n.lower() == b"x-request-id"]
        seq = self.next_seq
        self.next_seq += 1
        request_id = ids[0] if len(ids) == 1 else b""
        if len(ids) != 1:
            self.findings.desync(
                None, f"upstream request {method!r} {target!r} has {len(ids)} X-Request-ID fields"
            )
        elif request_id in self.by_id and _generated(request_id):
            # A client's own ID may repeat across cases (a mutation can turn any value into one);
            # an ID the gateway generated never does.
            self.findings.desync(None, f"upstream saw X-Request-ID {request_id!r} twice ({target!r})")
        self.by_id[request_id] = seq
        self.records[seq] = Record(seq, request_id, method, target, body)
        return seq


def _generated(request_id: bytes) -> bool:
    """Whether ``request_id`` has the shape of the gateway's own (a UUID)."""
    return len(request_id) == 36 and all(request_id[i] == 0x2D for i in (8, 13, 18, 23))


class _RecorderProtocol(asyncio.Protocol):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.parser = StrictParser()
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # uvloop's transports are not asyncio.Transport instances

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        try:
            requests = self.parser.feed(data)
        except StrictError as exc:
            self.recorder.findings.desync(
                None, f"strict upstream parser rejected {exc}: {bytes(self.parser.buffer)[:300]!r}"
            )
            self.transport.abort()
            return
        out = []
        for r in requests:
            seq = self.recorder.completed(r.method, r.target, r.headers, r.body)
            rid = r.header(b"x-request-id") or b"-"
            out.append(
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Seq: %d\r\nX-Echo-ID: %b\r\n\r\n" % (seq, rid)
            )
        if out:
            self.transport.write(b"".join(out))


# -- the reference: what llhttp (the gateway's parser) reads from the client's bytes -------------------------


@dataclass
class Message:
    method: bytes = b""
    url: bytes = b""
    body: bytearray = field(default_factory=bytearray)
    complete: bool = False


class _Reference:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.parser = httptools.HttpRequestParser(self)

    def on_message_begin(self) -> None:
        self.messages.append(Message())

    def on_url(self, url: bytes) -> None:
        self.messages[-1].url += url

    def on_headers_complete(self) -> None:
        self.messages[-1].method = self.parser.get_method()

    def on_body(self, body: bytes) -> None:
        self.messages[-1].body += body

    def on_message_complete(self) -> None:
        self.messages[-1].complete = True


def reference(stream: bytes) -> tuple[list[Message], bool]:
    """The messages llhttp reads from ``stream`` (the gateway resumes after an upgrade it does not make)
    and whether it stopped on an error."""
    ref = _Reference()
    data = stream
    while data:
        try:
            ref.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            data = data[exc.args[0] :]
            continue
        except httptools.HttpParserError:
            return ref.messages, True
        break
    return ref.messages, False


def origin_form(url: bytes) -> bytes:
    """What the gateway sends for ``url``: absolute-form becomes origin-form."""
    if url[:1] in (b"/", b"*"):
        return url
    rest = url.split(b"://", 1)[-1]
    cut = min((i for i in (rest.find(b"/"), rest.find(b"?")) if i >= 0), default=len(rest))
    path = rest[cut:]
    return path if path[:1] == b"/" else b"/" + path


# -- the client ------------------------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: dict[bytes, bytes]


async def _read_response(reader: asyncio.StreamReader) -> Response | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head[:-4].split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if 100 <= status < 200:
        return await _read_response(reader)
    if b"content-length" in headers:
        await reader.readexactly(int(headers[b"content-length"]))
    elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return Response(status, headers)


async def run_case(port: int, case: Case, recorder: Recorder, findings: Findings) -> None:
    messages, error = reference(case.stream)
    complete = [m for m in messages if m.complete]
    # Complete messages are answered in order; after an error the gateway answers and closes. A message
    # cut short at the end is waited for by the gateway (timeouts are not what is tested): not read.
    expect_eof = error
    responses: list[Response] = []
    try:
        async with asyncio.timeout(CASE_TIMEOUT):
            reader, writer = await asyncio.open_connection(HOST, port)
            try:
                for piece in case.writes:
                    writer.write(piece)
                    await writer.drain()
                while expect_eof or len(responses) < len(complete):
                    response = await _read_response(reader)
                    if response is None:
                        break
                    responses.append(response)
                    if not expect_eof and len(responses) == len(complete):
                        break
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except TimeoutError:
        findings.stalls += 1
        findings.stalled.append(case.index)
    except ConnectionError:
        pass
    findings.cases += 1
    _check(case, complete, responses, recorder, findings)


def _check(
    case: Case, complete: list[Message], responses: list[Response], recorder: Recorder, findings: Findings
) -> None:
    refused = False
    for position, response in enumerate(responses):
        seq_text = response.headers.get(b"x-seq")
        if seq_text is None:
            findings.refused += 1
            refused = refused or response.status in REFUSALS
            continue
        findings.forwarded += 1
        record = recorder.records.get(int(seq_text))
        if record is None:
            findings.desync(case, f"response {position} names upstream request {seq_text!r}, never recorded")
            continue
        if refused:
            findings.desync(case, f"upstream answered position {position} after the gateway refused")
        if record.answered:
            findings.desync(case, f"upstream request {record.seq} answered twice")
        record.answered = True
        rid = response.headers.get(b"x-request-id", b"")
        if rid != record.request_id or response.headers.get(b"x-echo-id") != rid:
            findings.desync(
                case, f"response {position} is for {record.request_id!r}, the gateway said {rid!r}"
            )
        if position >= len(complete):
            findings.desync(
                case, f"upstream answered position {position}; llhttp completed {len(complete)} messages"
            )
            continue
        expected = complete[position]
        want = (expected.method, origin_form(expected.url), bytes(expected.body))
        got = (record.method, record.target, record.body)
        if want != got:
            findings.desync(case, f"position {position}: gateway read {want!r}, upstream got {got!r}")


# -- the access log ------------------------------------------------------------------------------------


class AccessLogReader:
    """Follows the gateway's JSON access log file: request ID -> [(method, path before the query)].

    A list: clients' own request IDs can repeat across cases.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""
        self.seen: dict[str, list[tuple[str, str]]] = {}

    def read_new(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            if line.strip():
                entry: dict[str, Any] = json.loads(line)
                line_of = (entry.get("method") or "", (entry.get("path") or "").split("?")[0])
                self.seen.setdefault(entry["request_id"], []).append(line_of)


def check_logged(
    recorder: Recorder, log: AccessLogReader, findings: Findings, upto: int | None = None
) -> None:
    """Every request the upstream completed (below ``upto``) is in the access log, same method and path.

    Checked records are forgotten, so a long campaign keeps only the recent ones.
    """
    log.read_new()
    for seq in [s for s in recorder.records if upto is None or s < upto]:
        record = recorder.records.pop(seq)
        recorder.by_id.pop(record.request_id, None)
        request_id = record.request_id.decode("latin-1")
        entries = log.seen.get(request_id, [])
        path = record.target.split(b"?")[0].decode("latin-1")
        want = (record.method.decode("latin-1"), path)
        match = next((e for e in entries if e == want or (record.target == b"*" and e[0] == want[0])), None)
        if match is None:
            findings.desync(
                None,
                f"upstream completed {record.method!r} {record.target!r} ({record.request_id!r}); "
                f"the access log has {entries} for that ID",
            )
            continue
        entries.remove(match)
        if not entries:
            del log.seen[request_id]
        if not record.answered:
            findings.unanswered += 1


async def campaign(
    gateway_port: int,
    recorder: Recorder,
    findings: Findings,
    log: AccessLogReader,
    *,
    seed: int,
    cases: int,
    seconds: float,
    concurrency: int = 24,
    first: int = 0,
    progress: Callable[[Findings, float], None] | None = None,
    flush: Callable[[], None] | None = None,
) -> None:
    """Run cases ``first`` .. ``first + cases`` (or until ``seconds`` pass) ``concurrency`` at a time."""
    started = time.monotonic()
    next_index = first
    end = first + cases
    checked_at = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < end and time.monotonic() - started < seconds:
            index = next_index
            next_index += 1
            await run_case(gateway_port, build_case(seed, index, f"{seed}-{index}"), recorder, findings)

    while next_index < end and time.monotonic() - started < seconds:
        batch_end = min(end, next_index + 5000)
        saved_end, end = end, batch_end
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        end = saved_end
        # Requests completed before this batch's last case are logged by now (or are being written):
        # check those older than a margin, so a line still in the writer's buffer is not a false alarm.
        if flush is not None:
            flush()
        await asyncio.sleep(0.3)
        upto = recorder.next_seq
        if not getattr(recorder, "keep", False):
            check_logged(recorder, log, findings, upto=checked_at)
        checked_at = upto
        if progress is not None:
            progress(findings, time.monotonic() - started)
