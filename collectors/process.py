"""One watched process: the sidecar itself (default) or the app, found by pid file or by name.

Metric names mirror client_python's process collector (``process_resident_memory_bytes``,
``process_cpu_seconds_total``, ``process_open_fds``, ``process_max_fds``...) under a
``sidecar_app_`` prefix, so queries translate one to one without ever colliding with the
sidecar's own ``process_*`` series in the same registry. The sidecar adds the ``check`` label that
tells watched processes apart.

Finding the process: ``pid_file`` is re-read on every probe (the app may have restarted); ``name``
matches the process name exactly or a substring of its command line, the oldest match winning (the
master of a pre-fork server). The found process is kept between probes while it still runs, so a
scan of all processes happens only when it is gone. psutil reads ``/proc``, so each probe's reading
runs in one worker thread.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, ClassVar

import psutil

from collectors.base import (
    CheckTarget,
    Collector,
    CollectorOptions,
    Measurement,
    MetricSpec,
    Observation,
    ProbeError,
    Reason,
    Sample,
)
from sidecar.core.settings_model import Meta, ValidationInfo, field_validator

RESIDENT_MEMORY = MetricSpec("sidecar_app_process_resident_memory_bytes", "Resident memory size in bytes.")
VIRTUAL_MEMORY = MetricSpec("sidecar_app_process_virtual_memory_bytes", "Virtual memory size in bytes.")
CPU_SECONDS = MetricSpec(
    "sidecar_app_process_cpu_seconds_total",
    "Total user and system CPU time spent by the process in seconds.",
    type="counter",
)
OPEN_FDS = MetricSpec("sidecar_app_process_open_fds", "Number of open file descriptors.")
MAX_FDS = MetricSpec("sidecar_app_process_max_fds", "Maximum number of open file descriptors (soft limit).")
THREADS = MetricSpec("sidecar_app_process_threads", "Number of OS threads in the process.")
START_TIME = MetricSpec(
    "sidecar_app_process_start_time_seconds", "Start time of the process since unix epoch in seconds."
)

METRICS: tuple[MetricSpec, ...] = (
    RESIDENT_MEMORY,
    VIRTUAL_MEMORY,
    CPU_SECONDS,
    OPEN_FDS,
    MAX_FDS,
    THREADS,
    START_TIME,
)


class ProcessOptions(CollectorOptions, frozen=True):
    """Options of a ``process`` check; neither option watches the sidecar itself."""

    pid_file: Annotated[str | None, Meta(description="file holding the app's pid, e.g. /run/app.pid")] = None
    name: Annotated[
        str | None, Meta(description="process name, or a substring of its command line (oldest match wins)")
    ] = None

    @field_validator("pid_file")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"pid_file {value!r} must be an absolute path, e.g. /run/app.pid")
        return value

    @field_validator("name")
    @classmethod
    def _one_selector(cls, value: str | None, info: ValidationInfo) -> str | None:
        # across fields: reads pid_file when it is valid, in the same pass as every other problem
        if value is not None and not value.strip():
            raise ValueError("name must not be empty")
        if value is not None and info.data.get("pid_file") is not None:
            raise ValueError("give pid_file or name, not both")
        return value


@dataclass(frozen=True, slots=True)
class ProcessReading:
    """One probe's reading of the watched process."""

    pid: int
    name: str
    create_time: float
    rss: int
    vms: int
    cpu_seconds: float
    num_fds: int | None
    num_threads: int
    max_fds: int | None
    cpus: int


def _read_pid_file(path: str) -> int:
    try:
        text = Path(path).read_text().strip()
    except FileNotFoundError:
        raise ProbeError(Reason.UNHEALTHY, f"process not running: pid file {path} does not exist") from None
    if not text.isdigit() or int(text) <= 0:
        raise ProbeError(Reason.UNHEALTHY, f"pid file {path} does not hold a pid")
    return int(text)


def _alive(proc: psutil.Process) -> bool:
    """Running and not a zombie (a killed child nobody reaped yet is not running)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _matches(info: dict[str, object], name: str) -> bool:
    if info.get("name") == name:
        return True
    cmdline = info.get("cmdline")
    return isinstance(cmdline, list) and name in " ".join(str(part) for part in cmdline)


def find_by_name(name: str) -> psutil.Process | None:
    """The oldest live process (other than this one) named ``name`` or with it in its command line."""
    own = os.getpid()
    found: list[tuple[float, psutil.Process]] = []
    for proc in psutil.process_iter(["name", "cmdline", "create_time", "status"]):
        info = proc.info
        if proc.pid == own or info.get("status") == psutil.STATUS_ZOMBIE or not _matches(info, name):
            continue
        found.append((float(info.get("create_time") or 0.0), proc))
    return min(found, key=lambda pair: (pair[0], pair[1].pid))[1] if found else None


def _max_fds(proc: psutil.Process) -> int | None:
    """Soft RLIMIT_NOFILE, ``None`` when unlimited or unreadable on this platform."""
    rlimit = getattr(proc, "rlimit", None)
    if rlimit is None:
        return None
    try:
        soft, _hard = rlimit(psutil.RLIMIT_NOFILE)
    except (psutil.AccessDenied, OSError):
        return None
    return None if soft < 0 or soft == psutil.RLIM_INFINITY else int(soft)


def _cpu_count(proc: psutil.Process) -> int:
    """CPUs the process may run on: its affinity where known, else all logical CPUs."""
    try:
        return len(proc.cpu_affinity() or []) or psutil.cpu_count() or 1
    except (AttributeError, psutil.Error):
        return psutil.cpu_count() or 1


def read_process(proc: psutil.Process) -> ProcessReading:
    """One consistent reading (blocking: psutil reads /proc)."""
    with proc.oneshot():
        memory = proc.memory_info()
        times = proc.cpu_times()
        try:
            fds: int | None = proc.num_fds()
        except (AttributeError, psutil.AccessDenied):
            fds = None
        return ProcessReading(
            pid=proc.pid,
            name=proc.name(),
            create_time=proc.create_time(),
            rss=memory.rss,
            vms=memory.vms,
            cpu_seconds=times.user + times.system,
            num_fds=fds,
            num_threads=proc.num_threads(),
            max_fds=_max_fds(proc),
            cpus=_cpu_count(proc),
        )


def cpu_ratio(previous: tuple[float, float] | None, reading: ProcessReading, now: float) -> float:
    """Share of the process's CPUs used since the previous reading (since its start on the first)."""
    prev_cpu, prev_at = previous if previous is not None else (0.0, reading.create_time)
    elapsed = now - prev_at
    if elapsed <= 0:
        return 0.0
    return min(1.0, max(0.0, (reading.cpu_seconds - prev_cpu) / elapsed / reading.cpus))


class ProcessCollector(Collector[ProcessOptions]):
    """Measures memory, CPU, fds and threads of one process; fails when the process is gone."""

    kind: ClassVar[str] = "process"
    measurements: ClassVar[tuple[str, ...]] = (
        "cpuUtilization",
        "residentMemory",
        "threads",
        "uptime",
        "openFds",
        "fdUtilization",
    )
    options_model: ClassVar[type[CollectorOptions]] = ProcessOptions
    component_type: ClassVar[str] = "system"
    target_required: ClassVar[bool] = False
    critical_by_default: ClassVar[bool] = False

    def __init__(self, check: CheckTarget, options: ProcessOptions) -> None:
        super().__init__(check, options)
        if check.target == "self" and (options.pid_file or options.name):
            raise ValueError("target 'self' watches the sidecar; drop it to watch options.pid_file/name")
        self._proc: psutil.Process | None = None
        self._previous: dict[int, tuple[float, float]] = {}

    @classmethod
    def validate_target(cls, target: str | None) -> str | None:
        if target not in (None, "", "self"):
            raise ValueError(
                "a process check's target is empty or 'self'; to watch the app set options.pid_file "
                "or options.name"
            )
        return target or None

    def classify_error(self, exc: BaseException) -> Reason | None:
        if isinstance(exc, psutil.NoSuchProcess):
            return Reason.UNHEALTHY
        if isinstance(exc, psutil.AccessDenied):
            return Reason.AUTH
        if isinstance(exc, OSError | psutil.Error):
            return Reason.UNEXPECTED
        return None

    def secrets(self) -> Sequence[str]:
        return ()

    @property
    def selector(self) -> str:
        """How the process is chosen, for messages."""
        if self.options.pid_file:
            return f"pid file {self.options.pid_file}"
        if self.options.name:
            return f"name {self.options.name!r}"
        return "self"

    def _locate(self) -> psutil.Process:
        """The watched process, reusing the one found last time while it still runs (blocking)."""
        if self.options.pid_file:
            pid = _read_pid_file(self.options.pid_file)
            if self._proc is None or self._proc.pid != pid or not _alive(self._proc):
                self._proc = _process_or_fail(pid, self.selector)
        elif self.options.name:
            if self._proc is None or not _alive(self._proc):
                self._proc = find_by_name(self.options.name)
        elif self._proc is None:
            self._proc = psutil.Process()
        if self._proc is None or not _alive(self._proc):
            self._proc = None
            raise ProbeError(Reason.UNHEALTHY, f"process not running: {self.selector}")
        return self._proc

    def _read(self) -> ProcessReading:
        proc = self._locate()
        try:
            return read_process(proc)
        except psutil.NoSuchProcess:
            self._proc = None
            raise ProbeError(Reason.UNHEALTHY, f"process not running: {self.selector}") from None

    async def collect(self) -> Observation:
        reading = await asyncio.to_thread(self._read)
        now = time.time()
        cpu = cpu_ratio(self._previous.get(reading.pid), reading, now)
        self._previous = {reading.pid: (reading.cpu_seconds, now)}  # a new pid starts afresh
        return Observation(
            measurements=_measurements(reading, cpu, now),
            samples=_samples(reading),
            info={"pid": str(reading.pid), "processName": reading.name},
        )


def _process_or_fail(pid: int, selector: str) -> psutil.Process:
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        raise ProbeError(Reason.UNHEALTHY, f"process not running: pid {pid} from {selector}") from None


def _measurements(reading: ProcessReading, cpu: float, now: float) -> dict[str, Measurement]:
    result = {
        "cpuUtilization": Measurement(round(cpu, 4), "ratio"),
        "residentMemory": Measurement(float(reading.rss), "bytes"),
        "threads": Measurement(float(reading.num_threads)),
        "uptime": Measurement(round(max(0.0, now - reading.create_time), 3), "s"),
    }
    if reading.num_fds is not None:
        result["openFds"] = Measurement(float(reading.num_fds))
        if reading.max_fds:
            result["fdUtilization"] = Measurement(round(reading.num_fds / reading.max_fds, 4), "ratio")
    return result


def _samples(reading: ProcessReading) -> list[Sample]:
    samples = [
        Sample(RESIDENT_MEMORY, float(reading.rss)),
        Sample(VIRTUAL_MEMORY, float(reading.vms)),
        Sample(CPU_SECONDS, reading.cpu_seconds),
        Sample(THREADS, float(reading.num_threads)),
        Sample(START_TIME, reading.create_time),
    ]
    if reading.num_fds is not None:
        samples.append(Sample(OPEN_FDS, float(reading.num_fds)))
    if reading.max_fds is not None:
        samples.append(Sample(MAX_FDS, float(reading.max_fds)))
    return samples
