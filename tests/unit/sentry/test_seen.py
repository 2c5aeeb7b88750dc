"""The journal of acknowledged event IDs: survives a reload, stays bounded, ignores a torn line."""

from __future__ import annotations

import uuid
from pathlib import Path

from sidecar.sentry.seen import JOURNAL, SeenIds, normalise


def ids(n: int) -> list[str]:
    return [uuid.uuid4().hex for _ in range(n)]


def test_normalise_accepts_uuid_forms_only() -> None:
    value = uuid.uuid4()
    assert normalise(str(value)) == value.hex
    assert normalise(value.hex.upper()) == value.hex
    assert normalise("not-an-id") is None and normalise(None) is None and normalise(42) is None


def test_ids_survive_a_reload_and_the_window_is_bounded(tmp_path: Path) -> None:
    seen = SeenIds(limit=10)
    written: list[str] = []
    for _ in range(5):
        batch = ids(7)
        seen.append(tmp_path, batch)
        for event_id in batch:
            seen.add(event_id)
        written += batch
    assert len(seen) == 10 and all(e in seen for e in written[-10:])
    assert written[0] not in seen
    lines = (tmp_path / JOURNAL).read_text().splitlines()
    assert len(lines) <= 2 * 10 + 7  # compacted whenever it would pass twice the window
    again = SeenIds(limit=10)
    again.load(tmp_path)
    assert len(again) == 10 and all(e in again for e in written[-10:])


def test_a_torn_last_line_is_ignored(tmp_path: Path) -> None:
    good = ids(3)
    (tmp_path / JOURNAL).write_text("".join(f"{e}\n" for e in good) + good[0][:11])
    seen = SeenIds(limit=100)
    seen.load(tmp_path)
    assert len(seen) == 3
