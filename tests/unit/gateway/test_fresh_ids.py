"""The native ID maker (``fresh_ids.c``) against the rules its Python twin follows.

Each proxied request takes a request ID (a v4 UUID), a trace ID and a span ID from it. They must be
well formed, never repeat (within a draw, across draws, and between a forked child and its parent),
and keep the UUID's version and variant bits honest. (The interpreted pass of tests/run.sh, a copy
without any compiled module, leaves this file out: there ``correlation_ids`` makes them itself.)
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys

from sidecar.gateway import correlation_ids

try:
    from sidecar.gateway.fresh_ids import fresh_fields
except ImportError:  # the assertion below reports it
    fresh_fields = None  # type: ignore[assignment]

UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
TRACE_SPAN = re.compile(rb"([0-9a-f]{32})-([0-9a-f]{16})")
RECORDS_PER_DRAW = 128


def test_the_id_maker_was_built_and_is_the_one_used() -> None:
    """A C compiler error leaves the optional extension out without failing the install: it fails here."""
    assert fresh_fields is not None, "sidecar/gateway/fresh_ids.c did not compile: see pip's output"
    assert correlation_ids.fresh_fields is fresh_fields


def _check(fields: tuple[str, str, bytes, bytes]) -> None:
    request_id, trace_id, request_id_bytes, trace_span = fields
    assert UUID4.fullmatch(request_id), request_id
    assert request_id_bytes == request_id.encode("ascii")
    match = TRACE_SPAN.fullmatch(trace_span)
    assert match, trace_span
    assert match[1].decode() == trace_id
    assert match[1] != b"0" * 32 and match[2] != b"0" * 16


def test_both_makers_give_the_same_shape() -> None:
    for maker in (fresh_fields, correlation_ids._python_fresh_fields):
        fields = maker()
        _check(fields)
        assert [type(f) for f in fields] == [str, str, bytes, bytes]


def test_ids_are_well_formed_and_never_repeat_across_draws() -> None:
    made = [fresh_fields() for _ in range(RECORDS_PER_DRAW * 40 + 3)]
    for fields in made:
        _check(fields)
    for column in zip(*made, strict=True):
        assert len(set(column)) == len(made)
    spans = {f[3][33:] for f in made}
    assert len(spans) == len(made)


def test_the_variant_digit_is_uniform_over_its_four_values() -> None:
    """The variant keeps the byte's random low bits: 8, 9, a and b each about a quarter of the time."""
    counts = collections.Counter(fresh_fields()[0][19] for _ in range(8000))
    assert set(counts) == set("89ab")
    assert all(1600 < n < 2400 for n in counts.values()), counts


def test_random_digits_are_spread_evenly() -> None:
    """A crude check that the hex formatting uses every digit for every nibble (no table slip)."""
    digits = collections.Counter("".join(fresh_fields()[1] for _ in range(2000)))
    assert set(digits) == set("0123456789abcdef")
    expected = 2000 * 32 / 16
    assert all(0.9 * expected < n < 1.1 * expected for n in digits.values()), digits


def test_a_forked_child_draws_its_own_ids() -> None:
    """The pool is copied into a child by fork: without the atfork reset both would hand out the same IDs."""
    fresh_fields()  # the pool holds the rest of a draw now
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next IDs, then leave without running the test runner's exit handlers
        try:
            os.write(write_end, b"\n".join(fresh_fields()[2] for _ in range(8)))
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        child = pipe.read().split(b"\n")
    os.waitpid(pid, 0)
    parent = [fresh_fields()[2] for _ in range(8)]
    assert len(child) == 8
    assert not set(child) & set(parent)


# A child that forbids getrandom(2) (EPERM, as a seccomp profile does) and then imports the gateway's
# ID maker: the native one must refuse to load, and the Python one (os.urandom, which reads
# /dev/urandom in that case) take its place and work. libseccomp is part of every Debian base system.
_WITHOUT_GETRANDOM = """
import ctypes, errno, sys
seccomp = ctypes.CDLL("libseccomp.so.2", use_errno=True)
seccomp.seccomp_init.restype = ctypes.c_void_p
seccomp.seccomp_init.argtypes = [ctypes.c_uint32]
seccomp.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
seccomp.seccomp_load.argtypes = [ctypes.c_void_p]
SCMP_ACT_ALLOW, SCMP_ACT_ERRNO = 0x7FFF0000, 0x00050000
context = seccomp.seccomp_init(SCMP_ACT_ALLOW)
number = seccomp.seccomp_syscall_resolve_name(b"getrandom")
assert context and number > 0, "libseccomp: no context or no getrandom"
assert seccomp.seccomp_rule_add(context, SCMP_ACT_ERRNO | errno.EPERM, number, 0) == 0
assert seccomp.seccomp_load(context) == 0
try:
    import sidecar.gateway.fresh_ids
except ImportError as exc:
    print("refused:", exc)
else:
    sys.exit("fresh_ids loaded although getrandom is refused")
from sidecar.gateway import correlation_ids
assert correlation_ids.fresh_fields is correlation_ids._python_fresh_fields
print("fields:", correlation_ids.fresh_fields()[0])
"""


def test_where_getrandom_is_refused_the_python_maker_takes_over() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_GETRANDOM], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "refused: fresh_ids: getrandom(2) unavailable (Operation not permitted)" in done.stdout
    request_id = done.stdout.split("fields: ")[1].strip()
    assert UUID4.fullmatch(request_id), done.stdout
