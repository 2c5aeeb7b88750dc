"""A fixed-seed differential framing campaign through the real gateway (issue 16, item 2).

Seeded mutated request streams go through the gateway to the strict recording upstream; see
tests/framing_fuzz/harness.py for the invariant. ``bench/fuzz_gateway.py`` runs the long campaigns
against the sidecar process; this one runs in the suite, in-process, in well under a minute.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.framing_fuzz.harness import AccessLogReader, Findings, Recorder, campaign, check_logged
from tests.integration.gateway_support import HOST, run_gateway

pytestmark = pytest.mark.integration

SEED = 20261202
CASES = 3000


async def test_fixed_seed_campaign_finds_no_desync(tmp_path: Path) -> None:
    findings = Findings()
    recorder = Recorder(findings)
    await recorder.start()
    access = tmp_path / "access.log"
    log = AccessLogReader(access)
    try:
        async with run_gateway(
            f"http://{HOST}:{recorder.port}",
            access_log={"enabled": True, "path": str(access)},
            header_timeout=2.0,
            body_timeout=2.0,
        ) as gw:
            await campaign(
                gw.port, recorder, findings, log, seed=SEED, cases=CASES, seconds=120, concurrency=16
            )
        check_logged(recorder, log, findings)  # the gateway is closed: its access log is complete
    finally:
        await recorder.close()
    assert findings.desyncs == []
    assert findings.cases == CASES
    # The campaign means something only if it exercised both sides: requests forwarded and refused.
    assert findings.forwarded > CASES // 3, findings
    assert findings.refused > CASES // 3, findings
    assert findings.stalls == 0, findings.stalled
