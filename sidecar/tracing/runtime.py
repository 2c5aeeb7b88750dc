"""Tracing while it runs: what the gateway and the scheduler hand spans to, and its orderly stop.

Importable without ``opentelemetry`` (the app keys name this class): the SDK objects it holds are
built by ``sidecar.tracing.provider``, which is only imported when tracing is on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from sidecar.gateway.context import GatewayContext
    from sidecar.probing.results import CheckResult
    from sidecar.tracing.exporter_metrics import CountingBatchSpanProcessor
    from sidecar.tracing.spans import GatewaySpans

log = logging.getLogger(__name__)

FLUSH_ON_STOP_SECONDS = 3.0  # what is still queued then is counted as lost; a stop never waits longer


class TracingRuntime:
    """The provider, its counting batch processor, and the span builders hooked into the sidecar."""

    def __init__(
        self,
        *,
        provider: TracerProvider,
        processor: CountingBatchSpanProcessor,
        gateway: GatewaySpans,
        new_traces_sampled: bool | None,
        sample_new_trace: Callable[[str], bytes],
        probes: Callable[[CheckResult], None] | None,
    ) -> None:
        self.provider = provider
        self.processor = processor
        self.gateway = gateway
        self.probes = probes
        self._new_traces_sampled = new_traces_sampled  # None: the sampler decides per trace ID
        self._sample_new_trace = sample_new_trace
        self._stopped = False

    def attach(self, ctx: GatewayContext) -> None:
        """Hook into a gateway: spans for its requests, and the sampler's say on the traces it starts.

        A trace the gateway starts is sampled when ``gateway.new_trace_sampled`` and the sampler's
        root decision both say so; the app receives that decision in the sampled flag.
        """
        self.gateway.upstream(ctx.address)
        ctx.tracing = self.gateway
        if not ctx.new_trace_sampled:
            return
        if self._new_traces_sampled is None:
            ctx.sample_new_trace = self._sample_new_trace
        else:
            ctx.new_trace_sampled = self._new_traces_sampled
            ctx.new_trace_flags = b"-01" if self._new_traces_sampled else b"-00"

    async def stop(self, flush_seconds: float = FLUSH_ON_STOP_SECONDS) -> None:
        """Export what is queued for up to ``flush_seconds``, off the event loop, then stop."""
        if self._stopped:
            return
        self._stopped = True
        millis = int(flush_seconds * 1000)

        def shutdown() -> None:
            self.processor.shutdown(timeout_millis=millis)
            self.provider.shutdown()  # the processor is already stopped: returns at once

        task = asyncio.ensure_future(asyncio.to_thread(shutdown))
        try:
            async with asyncio.timeout(flush_seconds + 1.0):
                await asyncio.shield(task)
        except TimeoutError:
            log.warning("span export did not stop in time; queued spans are lost")
        except Exception:
            log.exception("stopping span export failed")
        if not task.done():  # the daemon export thread ends on its own; do not report it as never retrieved
            task.add_done_callback(_retrieve)


def _retrieve(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()
