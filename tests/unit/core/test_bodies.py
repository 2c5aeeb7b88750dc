"""``core.bodies``: the bounds hold while inflating, bad and truncated streams are 400, time is bounded.

The raw stream is an asyncio ``StreamReader`` fed by the test (``read_body`` needs only ``read(n)``).
"""

from __future__ import annotations

import asyncio
import gzip
import os
import time
import zlib

import pytest

from sidecar.core.bodies import MAX_RATIO, RATIO_FLOOR, BodyError, Inflater, inflate, parse_codings, read_body

pytestmark = pytest.mark.timeout(30)


def stream(*chunks: bytes, eof: bool = True) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=2**30)
    for chunk in chunks:
        reader.feed_data(chunk)
    if eof:
        reader.feed_eof()
    return reader


async def read(
    *chunks: bytes,
    encoding: str = "",
    max_wire: int = 1 << 20,
    max_decoded: int = 1 << 22,
    deadline: float = 5.0,
    eof: bool = True,
) -> bytes:
    return await read_body(
        stream(*chunks, eof=eof),
        content_encoding=encoding,
        content_length=None,
        max_wire=max_wire,
        max_decoded=max_decoded,
        deadline=deadline,
        wire_setting="wire",
        decoded_setting="decoded",
    )


def bomb(size: int, wbits: int = 31) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    block = b"\0" * (1 << 20)
    return b"".join(compressor.compress(block) for _ in range(size >> 20)) + compressor.flush()


async def test_identity_gzip_deflate_raw_deflate_and_multi_member_gzip() -> None:
    text = b'{"msg":"hello"}\n' * 100
    assert await read(text) == text
    assert await read(gzip.compress(text), encoding="gzip") == text
    assert await read(zlib.compress(text), encoding="deflate") == text
    raw = zlib.compressobj(6, zlib.DEFLATED, -15)
    assert await read(raw.compress(text) + raw.flush(), encoding="deflate") == text
    assert await read(gzip.compress(text) + gzip.compress(text), encoding="x-gzip") == text * 2
    assert await read(gzip.compress(zlib.compress(text)), encoding="deflate, gzip") == text


async def test_a_bomb_is_stopped_by_the_ratio_after_about_a_mebibyte() -> None:
    body = bomb(32 << 20)  # 32 MiB of zeros in ~32 KB
    inflater = Inflater("gzip", 1 << 30, "too large")
    with pytest.raises(BodyError) as caught:
        for _ in inflater.feed(body):
            pass
    assert caught.value.status == 413 and "bomb" in caught.value.detail
    assert inflater.produced <= RATIO_FLOOR + 256 * 1024 + 1
    with pytest.raises(BodyError) as caught:
        await read(body, encoding="gzip")
    assert caught.value.status == 413


async def test_decoded_bound_holds_for_compressible_but_not_bomb_like_data() -> None:
    text = os.urandom(8 << 10).hex().encode() * 200  # ~3.2 MB, compresses far less than 100:1
    body = gzip.compress(text)
    assert len(text) / len(body) < MAX_RATIO
    with pytest.raises(BodyError) as caught:
        await read(body, encoding="gzip", max_decoded=1 << 20)
    assert caught.value.status == 413 and caught.value.limit == 1 << 20
    assert await read(body, encoding="gzip", max_decoded=4 << 20) == text


async def test_wire_bound_counts_bytes_as_sent() -> None:
    with pytest.raises(BodyError) as caught:
        await read(b"x" * 1000, b"y" * 1000, max_wire=1500)
    assert caught.value.status == 413 and caught.value.limit == 1500


@pytest.mark.parametrize(
    ("body", "encoding", "why"),
    [
        (b"not gzip at all", "gzip", "not valid gzip"),
        (gzip.compress(b"x" * 10_000)[:-20], "gzip", "truncated"),
        (zlib.compress(b"x" * 10_000)[:-3], "deflate", "truncated"),
        (gzip.compress(b"abc") + b"garbage", "gzip", "not valid gzip"),
        (zlib.compress(b"abc") + b"more", "deflate", "after the end"),
        (b"", "gzip", "empty"),
    ],
)
async def test_bodies_that_do_not_decode_are_400_with_the_reason(
    body: bytes, encoding: str, why: str
) -> None:
    with pytest.raises(BodyError) as caught:
        await read(body, encoding=encoding)
    assert caught.value.status == 400 and why in caught.value.detail


def test_unknown_codings_are_415_and_identity_is_ignored() -> None:
    assert parse_codings("identity") == []
    assert parse_codings("gzip, deflate") == ["deflate", "gzip"]
    with pytest.raises(BodyError) as caught:
        parse_codings("gzip, zstd")
    assert caught.value.status == 415 and "zstd" in caught.value.detail


async def test_a_body_that_does_not_arrive_in_time_is_408() -> None:
    started = time.monotonic()
    with pytest.raises(BodyError) as caught:
        await read(b"partial", deadline=0.2, eof=False)
    assert caught.value.status == 408 and "body_timeout" in caught.value.detail
    assert time.monotonic() - started < 2


async def test_first_line_is_checked_before_the_rest_is_inflated() -> None:
    seen: list[bytes] = []

    def refuse(line: bytes) -> None:
        seen.append(line)
        raise BodyError(401, "no key")

    body = gzip.compress(b'{"dsn":"x"}\n' + b"\0" * (50 << 20))
    with pytest.raises(BodyError) as caught:
        await read_body(
            stream(body),
            content_encoding="gzip",
            content_length=None,
            max_wire=1 << 20,
            max_decoded=100 << 20,
            deadline=5,
            wire_setting="w",
            decoded_setting="d",
            first_line=refuse,
        )
    assert caught.value.status == 401 and seen == [b'{"dsn":"x"}']


def test_one_shot_inflate_has_the_same_bound() -> None:
    assert inflate(zlib.compress(b"abc"), "deflate", 10, "s") == b"abc"
    with pytest.raises(BodyError):
        inflate(zlib.compress(b"a" * 100), "deflate", 10, "s")
