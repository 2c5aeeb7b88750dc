"""The native table of request-ID hashes (``seen_hashes.c``) against ``http_metrics._Hashes``.

Both must give the same answers for any sequence of inserts and lookups: colliding keys (the same low
bits), negative hashes, the largest and smallest 64-bit values. (The interpreted pass of tests/run.sh,
a copy without any compiled module, leaves this file out: there ``_Hashes`` is the table.)
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.core import http_metrics

try:
    from sidecar.core.seen_hashes import HashTable
except ImportError:  # the assertion below reports it
    HashTable = None  # type: ignore[assignment,misc]

SLOTS = http_metrics._SLOTS


def test_the_table_was_built_and_is_the_one_used() -> None:
    """A C compiler error leaves the optional extension out without failing the install: it fails here."""
    assert HashTable is not None, "sidecar/core/seen_hashes.c did not compile: see pip's output"
    assert isinstance(http_metrics.new_seen_table(), HashTable)


# Keys that crowd a few slots (the same low bits, different high bits), and any other 64-bit hash.
crowded = st.builds(lambda slot, high: slot + high * SLOTS, st.integers(0, 3), st.integers(-(2**45), 2**45))
keys = st.one_of(crowded, st.integers(-(2**63), 2**63 - 1)).filter(lambda k: k != 0)
operations = st.lists(st.tuples(st.sampled_from(["add", "in"]), keys), max_size=200)


@settings(max_examples=300, deadline=None)
@given(operations)
def test_same_answers_as_the_python_table(ops: list[tuple[str, int]]) -> None:
    native, python = HashTable(SLOTS), http_metrics._Hashes()
    for op, key in ops:
        if op == "add":
            assert native.add(key) == python.add(key), key
        else:
            assert (key in native) == (key in python), key
        assert native.count == python.count


def test_refuses_what_is_not_a_nonzero_64_bit_hash() -> None:
    table = HashTable(SLOTS)
    for key in (0, 2**63, -(2**63) - 1):
        with pytest.raises(ValueError, match="nonzero int of at most 64 bits"):
            table.add(key)
    with pytest.raises(TypeError):
        table.add("a")  # type: ignore[arg-type]
    for slots in (0, 3, -8):
        with pytest.raises(ValueError, match="power of two"):
            HashTable(slots)
    assert table.count == 0


def test_a_full_table_says_so_instead_of_probing_forever() -> None:
    table = HashTable(8)
    assert all(table.add(k) for k in range(1, 8))
    with pytest.raises(OverflowError):
        table.add(99)
    assert 99 not in table and 7 in table  # lookups still end: one slot stays empty
