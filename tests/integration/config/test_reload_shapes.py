"""SIGHUP with a broken file, whatever its shape: a log line, the running configuration kept."""

from __future__ import annotations

import signal
import time

import pytest

from tests.e2e.sidecar_process import SidecarProcess
from tests.unit.config.test_config_shapes import SHAPES

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

GOOD = "default_checks: false\nchecks:\n  - {name: probe, kind: tcp, target: '127.0.0.1:9', interval: 1s, timeout: 500ms}\n"
BAD = ["int-key-top", "int-key-nested", "laughs", "recursive", "list-for-section", "top-level-list", "deep"]


def wait_for_log(sidecar: SidecarProcess, text: str, count: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sidecar.logs().count(text) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not logged {count} times:\n{sidecar.logs()}")


def test_reload_with_any_bad_shape_is_rejected_and_the_running_config_kept() -> None:
    with SidecarProcess(GOOD) as sidecar:
        assert sidecar.get("/readyz/probe")[0] == 503  # the check exists (its port is closed)
        for number, shape in enumerate(BAD, start=1):
            sidecar.config_path.write_text(SHAPES[shape][0])
            sidecar.signal(signal.SIGHUP)
            wait_for_log(sidecar, "reload rejected, keeping the running configuration", number)
            assert sidecar.get("/readyz/probe")[0] == 503, shape
        sidecar.config_path.write_text("default_checks: false\n")
        sidecar.signal(signal.SIGHUP)
        wait_for_log(sidecar, "configuration reloaded", 1)
        assert sidecar.get("/readyz/probe")[0] == 404  # a good file still reloads
        assert sidecar.stop() == 0
        logs = sidecar.logs()
        assert "Traceback" not in logs and "never retrieved" not in logs, logs
