"""The native line splitter (``line_split.c``) against ``bytes.split(b"\\n")``, which it replaces.

A log's bytes are outside input: any byte may appear, lines may be empty, a chunk may end inside a
line or right after a newline. The splitter must give the very same list in every case. (The
interpreted pass of tests/run.sh, a copy without any compiled module, leaves this file out: there
``lines.py`` uses ``bytes.split`` itself.)
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sidecar.logs.sources import lines

try:
    from sidecar.logs.sources.line_split import split_lines
except ImportError:  # the assertion below reports it
    split_lines = None  # type: ignore[assignment]


def test_the_splitter_was_built_and_is_the_one_used() -> None:
    """A C compiler error leaves the optional extension out without failing the install: it fails here."""
    assert split_lines is not None, "sidecar/logs/sources/line_split.c did not compile: see pip's output"
    assert lines.split_lines is split_lines


# Chunks made of the bytes that matter (newlines, CR, NUL, high bytes) and ordinary text.
chunks = st.lists(
    st.sampled_from([b"\n", b"\r\n", b"\x00", b"\xff", b"{", b'"msg":"x"}', b"a" * 300, b"", b"\n\n"]),
    max_size=40,
).map(b"".join) | st.binary(max_size=2048)


@settings(max_examples=500, deadline=None)
@given(chunks)
@example(b"")
@example(b"\n")
@example(b"\n\n")
@example(b"no newline")
@example(b"ends with one\n")
@example(b"\nstarts with one")
def test_the_same_lines_as_bytes_split(data: bytes) -> None:
    assert split_lines is not None
    assert split_lines(data) == data.split(b"\n")


def test_a_chunk_the_size_of_a_read() -> None:
    data = b"".join(b'{"level":30,"i":%d,"pad":"%s"}\n' % (i, b"p" * (i % 700)) for i in range(5000))
    assert split_lines is not None
    assert split_lines(data) == data.split(b"\n")
    assert split_lines(data[:-1] + b"partial") == (data[:-1] + b"partial").split(b"\n")


@pytest.mark.parametrize("value", [bytearray(b"a\nb"), "a\nb", memoryview(b"a\nb"), None])
def test_only_bytes_are_taken(value: object) -> None:
    assert split_lines is not None
    with pytest.raises(TypeError):
        split_lines(value)  # type: ignore[arg-type]
