"""A seeded mutation engine over HTTP/1.1 request streams, in the spirit of the HTTP Garden.

Each case is built from its own ``random.Random(f"{seed}:{index}")``, so any case of a campaign can
be rebuilt alone from the seed and its index. A case is one client connection: one to three
requests written back to back (pipelining), cut into writes at random points (so the gateway's
parser meets every state across reads). Requests start well formed and are then mutated where
framing lives: Content-Length and Transfer-Encoding values, spellings and combinations, header-name
and value tricks (case, whitespace before the colon, obs-fold, bare CR/LF, control bytes),
``Connection`` lists naming framing and gateway fields, Host and absolute-form targets, chunk sizes
and extensions, trailers, bodies that hold a whole request, versions, and byte-level edits (insert,
delete or replace a byte, often one of CR, LF, NUL, colon, space or tab).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: fuzz.test\r\n\r\n"
METHODS = (b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"HEAD", b"OPTIONS")
TE_VALUES = (
    b"chunked",
    b"Chunked",
    b"CHUNKED",
    b" chunked",
    b"chunked ",
    b"\tchunked",
    b"identity, chunked",
    b"gzip, chunked",
    b"chunked, identity",
    b"chunked, chunked",
    b",chunked",
    b"chunked,",
    b", chunked",
    b"xchunked",
    b"chunked;q=1",
    b'"chunked"',
    b"identity",
    b"",
    b"chunk",
    b"chunked\x0b",
    b"\x0bchunked",
)
CL_TRICKS = (
    "{n}",
    "0{n}",
    " {n}",
    "{n} ",
    "+{n}",
    "{n}, {n}",
    "-1",
    "{m}",
    "0x{n}",
    "",
    "{n}.0",
    "{n}\t",
    "1{n}",
)
NAME_TRICKS = (
    "{name}",
    "{lower}",
    "{upper}",
    "{name} ",
    "{name}\t",
    " {name}",
    "{name}_x",
    "X-{name}",
    "{under}",
)
CONNECTION_TOKENS = (
    b"close",
    b"keep-alive",
    b"Content-Length",
    b"content-length",
    b"Transfer-Encoding",
    b"Host",
    b"X-Request-ID",
    b"traceparent",
    b"X-Forwarded-For",
    b"X-Real-IP",
    b"upgrade",
    b"TE",
    b"X-Fuzz",
    b"Expect",
)
MEANINGFUL = (b"\r\n", b"\r", b"\n", b"\x00", b":", b"\t", b" ", b"\r\n\r\n", b",", b";", b"0")
BODY_ATOMS = (SMUGGLED, b"0\r\n\r\n", b"\r\n", b"x", b"hello", b"5\r\nhello\r\n")


@dataclass
class Case:
    index: int
    stream: bytes
    writes: list[bytes]


def build_case(seed: int, index: int, unique: str) -> Case:
    """Case ``index`` of the campaign ``seed``; ``unique`` goes into client request IDs and paths."""
    rng = random.Random(f"{seed}:{index}")
    count = rng.choice((1, 1, 1, 2, 2, 3))
    stream = b"".join(_request(rng, f"{unique}-{i}") for i in range(count))
    for _ in range(rng.choice((0, 0, 0, 0, 0, 0, 1, 1, 2, 3))):
        stream = _byte_mutation(rng, stream)
    return Case(index, stream, _split(rng, stream))


def _request(rng: random.Random, unique: str) -> bytes:
    method = rng.choice(METHODS)
    path = b"/fz/" + unique.encode() + rng.choice((b"", b"?a=1", b"?q=x&y=%20", b"/deep/er"))
    version = rng.choices(
        (b"HTTP/1.1", b"HTTP/1.0", b"HTTP/0.9", b"HTTP/2.0", b"HTTP/1.2"), (92, 6, 1, 1, 1)
    )[0]
    target = path
    host = b"fuzz.test"
    roll = rng.random()
    if roll < 0.06:
        target = (
            b"http://"
            + rng.choice((host, b"FUZZ.test", b"fuzz.test:80", b"other.test", b"u@fuzz.test"))
            + path
        )
    elif roll < 0.07:
        target = b"*"
    elif roll < 0.08:
        target = path + b"#frag"
    headers: list[tuple[bytes, bytes]] = []
    host_roll = rng.random()
    if host_roll < 0.94:
        headers.append((b"Host", host))
    elif host_roll < 0.97:
        headers += [(b"Host", host), (b"Host", rng.choice((host, b"evil.test")))]
    elif host_roll < 0.985:
        headers.append(
            (b"Host", rng.choice((b"", b"a b", b"fuzz.test, evil.test", b"[::1]:8080", b"fuzz.test:99999")))
        )
    if rng.random() < 0.3:  # random, not the case number: a mutated digit must not name another case
        headers.append((b"X-Request-ID", b"fz-%016x" % rng.getrandbits(64)))
    if rng.random() < 0.1:
        headers.append((b"X-Real-IP", b"203.0.113.9"))
    if rng.random() < 0.15:
        headers.append((b"X-Forwarded-For", b"198.51.100.1"))
    if rng.random() < 0.05:
        headers += [(b"Connection", b"upgrade"), (b"Upgrade", rng.choice((b"websocket", b"foo", b"h2c")))]
    if rng.random() < 0.35:
        tokens = rng.sample(CONNECTION_TOKENS, rng.randint(1, 3))
        headers.append((b"Connection", rng.choice((b", ", b",", b" ,")).join(tokens)))
    if rng.random() < 0.2:
        headers.append((b"X-Fuzz", rng.choice((b"a", b"", b"a\xffb", b'"q"', b"x" * 40))))
    body = _body(rng)
    framing = rng.choices(("none", "cl", "te", "both", "cl2", "te2"), (22, 37, 32, 3, 3, 3))[0]
    chunked = framing in ("te", "both", "te2")
    if framing in ("cl", "both", "cl2"):
        headers.append((_name(rng, "Content-Length"), _cl(rng, len(body))))
        if framing == "cl2":
            headers.append((_name(rng, "Content-Length"), _cl(rng, len(body))))
    if chunked:
        te = b"chunked" if rng.random() < 0.75 else rng.choice(TE_VALUES)
        headers.append((_name(rng, "Transfer-Encoding"), te))
        if framing == "te2":
            headers.append((b"Transfer-Encoding", rng.choice(TE_VALUES)))
    rng.shuffle(headers)
    lines = [method + b" " + target + b" " + version + b"\r\n"]
    for name, value in headers:
        sep = rng.choices((b": ", b":", b":  ", b":\t"), (85, 8, 4, 3))[0]
        line = name + sep + value + b"\r\n"
        if rng.random() < 0.02:  # obs-fold: the value continues on the next line
            line = name + sep + b"a\r\n " + value + b"\r\n"
        lines.append(line)
    head = b"".join(lines) + b"\r\n"
    if framing == "none" and body and rng.random() < 0.5:
        return head  # a bodiless request; a body here would be the next "request"
    if chunked:
        return head + _chunked(rng, body)
    if framing == "none":
        return head + (body if rng.random() < 0.2 else b"")
    return head + body


def _name(rng: random.Random, name: str) -> bytes:
    trick = rng.choice(NAME_TRICKS) if rng.random() < 0.06 else "{name}"
    return trick.format(
        name=name, lower=name.lower(), upper=name.upper(), under=name.replace("-", "_")
    ).encode()


def _cl(rng: random.Random, n: int) -> bytes:
    trick = rng.choice(CL_TRICKS) if rng.random() < 0.08 else "{n}"
    return trick.format(n=n, m=n + rng.choice((-1, 1, 5, len(SMUGGLED)))).encode()


def _body(rng: random.Random) -> bytes:
    if rng.random() < 0.3:
        return b""
    parts = [bytes(rng.randrange(256) for _ in range(rng.randint(0, 24)))]
    if rng.random() < 0.4:
        parts.append(rng.choice(BODY_ATOMS))
    if rng.random() < 0.2:
        parts.append(b"y" * rng.randint(100, 3000))
    rng.shuffle(parts)
    return b"".join(parts)


def _chunked(rng: random.Random, body: bytes) -> bytes:
    out = []
    i = 0
    while i < len(body):
        size = min(len(body) - i, rng.randint(1, 40))
        size_text = b"%x" % size
        trick = rng.random()
        if trick < 0.05:
            size_text = b"00" + size_text
        elif trick < 0.08:
            size_text = size_text.upper() if rng.random() < 0.5 else b"0x" + size_text
        elif trick < 0.10:
            size_text = b"%x" % (size + rng.choice((-1, 1)))
        elif trick < 0.12:
            size_text = rng.choice((b" ", b"\t", b"")) + size_text + rng.choice((b" ", b"\t", b""))
        ext = b""
        if rng.random() < 0.15:
            ext = rng.choice(
                (b";a=b", b";a", b';a="q;\\"r"', b";a=", b"; a=b", b";a b", b';a="\r\n"', b";=b")
            )
        crlf = b"\r\n" if rng.random() < 0.97 else rng.choice((b"\n", b"\r", b""))
        out.append(size_text + ext + b"\r\n" + body[i : i + size] + crlf)
        i += size
    last = b"0" if rng.random() < 0.9 else rng.choice((b"000", b"0;x=y", b"00000000000000000"))
    trailer = b""
    if rng.random() < 0.1:
        trailer = rng.choice(
            (b"X-T: 1\r\n", b"Content-Length: 5\r\n", b"X-Request-ID: fz-trailer\r\n", b"Host: evil.test\r\n")
        )
    return b"".join(out) + last + b"\r\n" + trailer + b"\r\n"


def _byte_mutation(rng: random.Random, stream: bytes) -> bytes:
    if not stream:
        return stream
    at = rng.randrange(len(stream) + 1)
    kind = rng.randrange(4)
    if kind == 0:
        return stream[:at] + stream[at + 1 :]
    if kind == 1:
        return stream[:at] + rng.choice(MEANINGFUL) + stream[at:]
    if kind == 2:
        return stream[:at] + bytes([rng.randrange(256)]) + stream[at + 1 :]
    # duplicate or drop a header line
    lines = stream.split(b"\r\n")
    pick = rng.randrange(len(lines))
    if rng.random() < 0.5:
        lines.insert(pick, lines[pick])
    else:
        del lines[pick]
    return b"\r\n".join(lines)


def _split(rng: random.Random, stream: bytes) -> list[bytes]:
    if len(stream) < 2 or rng.random() < 0.5:
        return [stream]
    cuts = sorted(rng.sample(range(1, len(stream)), min(len(stream) - 1, rng.randint(1, 4))))
    edges = [0, *cuts, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(edges)]
