"""client_python's ``process_*`` families, read in pieces a render can pause between.

client_python's collector opens and reads ``/proc/self/stat`` and ``/proc/self/limits`` through Python's
buffered files and lists ``/proc/self/fd`` in one ``collect()`` call: 40-250 us in one go (more with many
open connections, about half a microsecond per descriptor), the longest thing a scrape did without
giving the loop back. Here the same six families, same names, help texts and values, come as rows
(``RowsCollector``): memory from ``statm`` read with one unbuffered ``os.read``, CPU time from
``times()``, the descriptor limit from ``getrlimit`` (the soft limit ``/proc/self/limits`` shows), and
the descriptors counted by iterating the directory with a pause point every ``_FDS_PER_PAUSE`` entries.
``collect()`` gives client_python the same families, so ``generate_latest`` on the registry writes what
``/metrics`` does.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator
from typing import Final

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from sidecar.serving.text_exposition import FamilyRows

_PROC: Final = "/proc"
_FDS_PER_PAUSE: Final = 32  # directory entries counted between two points where a render may pause


def _read(path: str) -> bytes:
    """A small ``/proc`` file in one unbuffered read (a third of what ``open().read()`` costs)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 65536)
    finally:
        os.close(fd)


def _boot_time() -> float:
    """Boot time from ``/proc/stat`` (0 where there is no ``/proc``: then there are no process families)."""
    try:
        for line in _read(f"{_PROC}/stat").splitlines():
            if line.startswith(b"btime "):
                return float(line.split()[1])
    except OSError:
        pass
    return 0.0


class ProcessMetrics(Collector):
    """``process_*`` for this process, as ``prometheus_client.ProcessCollector`` writes them.

    No ``describe()``: the app's registry (``auto_describe``) learns the names from one ``collect()``
    at registration, as it does for client_python's collector, so a clash is still refused.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        try:
            self._ticks = float(os.sysconf("SC_CLK_TCK"))
        except (ValueError, OSError):
            self._ticks = 100.0
        self._pagesize = float(resource.getpagesize())
        self._btime = _boot_time()
        self._start: float | None = None  # clock ticks after boot, from stat
        if registry is not None:
            registry.register(self)

    def collect(self) -> Iterator[Metric]:
        for family in self.exposition_rows():
            if family is not None:
                yield family.to_metric()

    def exposition_rows(self) -> Iterator[FamilyRows | None]:
        """Memory from ``statm``, CPU from ``times()``; then the open and maximum descriptors.

        ``statm`` and ``times()`` give what ``stat`` gives (the same kernel counters: pages in use,
        clock ticks) for a fraction of its cost, which sums every thread's statistics; the start time
        never changes and is read from ``stat`` once. ``None`` after the memory read and every
        ``_FDS_PER_PAUSE`` descriptors counted: the render may give the loop back there. A missing
        file leaves its families out, as client_python does.
        """
        if not self._btime:
            return
        try:
            pages = _read(f"{_PROC}/self/statm").split()
            if self._start is None:
                self._start = float(_read(f"{_PROC}/self/stat").rsplit(b")", 1)[-1].split()[19])
        except OSError:
            pages = []
        if pages and self._start is not None:
            yield _gauge(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                float(pages[0]) * self._pagesize,
            )
            yield _gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                float(pages[1]) * self._pagesize,
            )
            yield _gauge(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                self._start / self._ticks + self._btime,
            )
            cpu = FamilyRows.new(
                "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds."
            )
            times = os.times()  # user and system: clock ticks over SC_CLK_TCK, as client_python divides them
            cpu.rows.append(((), times.user + times.system))
            yield cpu
        yield None
        try:
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            count = 0
            with os.scandir(f"{_PROC}/self/fd") as entries:
                for _ in entries:
                    count += 1
                    if not count % _FDS_PER_PAUSE:
                        yield None
        except OSError:
            return
        yield _gauge("process_open_fds", "Number of open file descriptors.", float(count))
        yield _gauge(
            "process_max_fds",
            "Maximum number of open file descriptors.",
            float("inf") if soft == resource.RLIM_INFINITY else float(soft),
        )


def _gauge(name: str, documentation: str, value: float) -> FamilyRows:
    family = FamilyRows.new(name, "gauge", documentation)
    family.rows.append(((), value))
    return family
