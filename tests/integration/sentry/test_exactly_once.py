"""Exactly once across ``kill -9``: an event the SDK re-sends (its 200 was lost) is not forwarded twice.

The real sidecar process relays to a fake Sentry that counts what it accepted. The sidecar is killed
with SIGKILL (its own process, by PID) after acknowledging an event, started again on the same spool
directory, and the SDK's re-send of the same ``event_id`` arrives. Two cases: the event had already
reached Sentry before the kill (only the journal of event IDs can recognise it), and it was still in
the spool (Sentry was failing).
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.sidecar_process import SidecarProcess
from tests.sentry_upstream import FakeSentry

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

KEY = "publickey123"


def envelope(event_id: str) -> bytes:
    head = json.dumps({"event_id": event_id}).encode()
    event = json.dumps({"event_id": event_id, "message": f"boom {event_id}", "level": "error"}).encode()
    return head + b'\n{"type":"event","content_type":"application/json"}\n' + event + b"\n"


def send(sidecar: SidecarProcess, event_id: str) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        f"{sidecar.admin}/api/42/envelope/?sentry_key={KEY}", data=envelope(event_id), method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read())


@pytest.fixture
def upstream() -> Iterator[FakeSentry]:
    with FakeSentry() as fake:
        yield fake


def config(upstream: FakeSentry, spool: Path) -> str:
    return (
        "default_checks: false\n"
        f"sentry:\n  app_dsn: {upstream.dsn(KEY, '42')}\n  spool: {{dir: {spool}}}\n"
        "  backoff_initial: 100ms\n  backoff_max: 300ms\n"
    )


def kill_9(sidecar: SidecarProcess) -> None:
    assert sidecar.proc is not None
    sidecar.proc.kill()  # SIGKILL to the sidecar's own PID: no shutdown code runs
    sidecar.proc.wait(10)


def spooled(spool: Path) -> list[Path]:
    """Envelope files still waiting in the spool directory."""
    return list(spool.glob("*.env"))


def count(upstream: FakeSentry, event_id: str) -> int:
    return upstream.accepted_ids().count(event_id)


def test_a_resent_event_already_forwarded_is_not_forwarded_again(
    upstream: FakeSentry, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    first, fresh = uuid.uuid4().hex, uuid.uuid4().hex
    with SidecarProcess(config(upstream, spool)) as sidecar:
        assert send(sidecar, first) == (200, {"id": first})
        upstream.wait_for(lambda: count(upstream, first) == 1)
        # Forwarded means Sentry answered and the spool file is gone. A kill between the two is the
        # spool's documented at-least-once window (one re-send, which Sentry drops by event ID).
        upstream.wait_for(lambda: not spooled(spool))
        kill_9(sidecar)
    with SidecarProcess(config(upstream, spool)) as sidecar:
        assert send(sidecar, first) == (200, {"id": first})  # the SDK's retry gets its 200
        assert send(sidecar, fresh) == (200, {"id": fresh})
        upstream.wait_for(lambda: count(upstream, fresh) == 1)
        time.sleep(0.5)
        assert count(upstream, first) == 1
        assert "not spooled again" in sidecar.logs()


def test_a_resent_event_still_in_the_spool_is_sent_once(upstream: FakeSentry, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    held, fresh = uuid.uuid4().hex, uuid.uuid4().hex
    upstream.fail_status = 503  # Sentry is down: the event stays in the spool
    with SidecarProcess(config(upstream, spool)) as sidecar:
        assert send(sidecar, held) == (200, {"id": held})
        upstream.wait_for(lambda: any(r.status == 503 for r in upstream.received))
        kill_9(sidecar)
    upstream.fail_status = None
    with SidecarProcess(config(upstream, spool)) as sidecar:
        assert send(sidecar, held) == (200, {"id": held})
        assert send(sidecar, fresh) == (200, {"id": fresh})
        upstream.wait_for(lambda: count(upstream, held) >= 1 and count(upstream, fresh) == 1)
        time.sleep(0.5)
        assert count(upstream, held) == 1
