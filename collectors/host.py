"""The machine (or container) the sidecar and its app run on: CPU, load, memory, disks, fds, cgroup.

Names, types and labels follow node_exporter (``node_load1``, ``node_cpu_seconds_total{cpu,mode}``,
``node_memory_MemAvailable_bytes``, ``node_filesystem_avail_bytes{device,fstype,mountpoint}``,
``node_vmstat_pgmajfault``, and the network, disk and clock families of ``host_devices``) so the
node mixin's dashboards and alerts apply unchanged; its camelCase memory names are kept although
``promtool check metrics`` dislikes them. The sidecar's own
``sidecar_host_cpu_utilization_ratio`` (busy share since the previous probe) and
``sidecar_host_memory_*`` stay: they are what the check's warn/fail thresholds and the sidecar's
own dashboards use, and need no PromQL to read. The
cgroup memory figures are ``sidecar_container_memory_*`` rather than cAdvisor's ``container_*``
names, so ``sum by (pod)`` over cAdvisor series never counts the same memory twice. The cgroup is the
sidecar's own (from ``/proc/self/cgroup``, or the mount itself inside a cgroup namespace); cgroup v2
is read where mounted, the v1 memory controller otherwise.

Everything here reads ``/proc``, ``/sys`` and ``statvfs``: cheap but blocking, so each probe does all
of its reading in one ``asyncio.to_thread`` call. Warn/fail limits are configured on the measurements
(``cpuUtilization``, ``memoryUtilization``, ``diskUtilization``, ``containerMemoryUtilization``).
"""

from __future__ import annotations

import asyncio
import os
import re
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
    MetricType,
    Observation,
    ProbeError,
    Reason,
    Sample,
)
from collectors.host_devices import NO_DEVICES, DeviceReadings, device_samples, read_devices
from sidecar.core.settings_model import Meta, field_validator

# --- metric families ----------------------------------------------------------------------------

CPU_UTILIZATION = MetricSpec(
    "sidecar_host_cpu_utilization_ratio", "Share of all CPUs busy since the previous probe (0-1)."
)
LOAD1 = MetricSpec("node_load1", "1m load average.", exporter="node_exporter")
LOAD5 = MetricSpec("node_load5", "5m load average.", exporter="node_exporter")
LOAD15 = MetricSpec("node_load15", "15m load average.", exporter="node_exporter")
MEM_TOTAL = MetricSpec("sidecar_host_memory_total_bytes", "Total usable memory (MemTotal).")
MEM_AVAILABLE = MetricSpec(
    "sidecar_host_memory_available_bytes", "Memory available for new work without swapping (MemAvailable)."
)
SWAP_TOTAL = MetricSpec("sidecar_host_swap_total_bytes", "Total swap space (SwapTotal).")
SWAP_FREE = MetricSpec("sidecar_host_swap_free_bytes", "Unused swap space (SwapFree).")
NODE = "node_exporter"
# node_exporter's labels; device_error is its newer label, always empty (absent) for a readable mount.
FS_LABELS = ("device", "device_error", "fstype", "mountpoint")
FS_SIZE = MetricSpec(
    "node_filesystem_size_bytes", "Filesystem size in bytes.", labels=FS_LABELS, exporter=NODE
)
FS_FREE = MetricSpec(
    "node_filesystem_free_bytes", "Filesystem free space in bytes.", labels=FS_LABELS, exporter=NODE
)
FS_AVAIL = MetricSpec(
    "node_filesystem_avail_bytes",
    "Filesystem space available to non-root users in bytes.",
    labels=FS_LABELS,
    exporter=NODE,
)
FS_FILES = MetricSpec(
    "node_filesystem_files", "Filesystem total file nodes.", labels=FS_LABELS, exporter=NODE
)
FS_FILES_FREE = MetricSpec(
    "node_filesystem_files_free", "Filesystem total free file nodes.", labels=FS_LABELS, exporter=NODE
)
FS_READONLY = MetricSpec(
    "node_filesystem_readonly", "Filesystem read-only status.", labels=FS_LABELS, exporter=NODE
)
FS_DEVICE_ERROR = MetricSpec(
    "node_filesystem_device_error",
    "Whether an error occurred while getting statistics for the given device.",
    labels=FS_LABELS,
    exporter=NODE,
)
CPU_SECONDS = MetricSpec(
    "node_cpu_seconds_total",
    "Seconds the CPUs spent in each mode (/proc/stat).",
    type="counter",
    labels=("cpu", "mode"),
    exporter=NODE,
)
CPU_GUEST_SECONDS = MetricSpec(
    "node_cpu_guest_seconds_total",
    "Seconds the CPUs spent in guests (VMs) for each mode.",
    type="counter",
    labels=("cpu", "mode"),
    exporter=NODE,
)
# node_memory_<Field>[_bytes] (every /proc/meminfo field) and node_vmstat_<field> are built from what
# the kernel reports; their help texts are node_exporter's.
_MEMINFO_HELP = "Memory information field {}."
_VMSTAT_HELP = "/proc/vmstat information field {}."
_VMSTAT_FIELDS = re.compile(r"^(oom_kill|pgpg|pswp|pg.*fault).*")  # node_exporter's default selection
MAX_DYNAMIC_FAMILIES = 256
_dynamic: dict[str, MetricSpec] = {}
FILEFD_ALLOCATED = MetricSpec(
    "node_filefd_allocated", "File descriptor statistics: allocated.", exporter=NODE
)
FILEFD_MAXIMUM = MetricSpec("node_filefd_maximum", "File descriptor statistics: maximum.", exporter=NODE)
BOOT_TIME = MetricSpec("node_boot_time_seconds", "Node boot time, in unixtime.", exporter=NODE)
CONTAINER_MEMORY_USAGE = MetricSpec(
    "sidecar_container_memory_usage_bytes",
    "Memory charged to the sidecar's cgroup (v2 memory.current, v1 memory.usage_in_bytes), page cache "
    "included.",
)
CONTAINER_MEMORY_WORKING_SET = MetricSpec(
    "sidecar_container_memory_working_set_bytes",
    "Cgroup memory usage minus inactive file cache: what the OOM killer and kubelet look at.",
)
CONTAINER_MEMORY_LIMIT = MetricSpec(
    "sidecar_container_memory_limit_bytes",
    "Memory limit of the sidecar's cgroup (tightest v2 memory.max up to the root, or v1 "
    "memory.limit_in_bytes); absent when there is no limit.",
)

METRICS: tuple[MetricSpec, ...] = (
    CPU_UTILIZATION,
    LOAD1,
    LOAD5,
    LOAD15,
    MEM_TOTAL,
    MEM_AVAILABLE,
    SWAP_TOTAL,
    SWAP_FREE,
    FS_SIZE,
    FS_FREE,
    FS_AVAIL,
    FS_FILES,
    FS_FILES_FREE,
    FS_READONLY,
    FS_DEVICE_ERROR,
    CPU_SECONDS,
    CPU_GUEST_SECONDS,
    FILEFD_ALLOCATED,
    FILEFD_MAXIMUM,
    BOOT_TIME,
    CONTAINER_MEMORY_USAGE,
    CONTAINER_MEMORY_WORKING_SET,
    CONTAINER_MEMORY_LIMIT,
)

V1_UNLIMITED = 1 << 62  # cgroup v1 reports "no limit" as a huge page-rounded number
MAX_PATHS = 16  # each path is a label value: keep the set small and fixed by configuration


# --- options ------------------------------------------------------------------------------------


class HostOptions(CollectorOptions, frozen=True):
    """Options of a ``host`` check."""

    paths: Annotated[tuple[str, ...], Meta(description="filesystems to watch, by any path on them")] = ("/",)
    cgroup_root: Annotated[str, Meta(description="where cgroup v2 is mounted")] = "/sys/fs/cgroup"
    proc_root: Annotated[str, Meta(description="where procfs is mounted")] = "/proc"

    @field_validator("paths")
    @classmethod
    def _absolute_paths(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError('list at least one path, e.g. ["/"]')
        if len(value) > MAX_PATHS:
            raise ValueError(f"at most {MAX_PATHS} paths; each one becomes a metric label value")
        for path in value:
            if not path.startswith("/"):
                raise ValueError(f"{path!r} is not an absolute path; write e.g. /var/lib/app")
        if len(set(value)) != len(value):
            raise ValueError("a path is listed twice")
        return value

    @field_validator("cgroup_root", "proc_root")
    @classmethod
    def _absolute_root(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"{value!r} is not an absolute path")
        return value


# --- readers (blocking; called from a worker thread) --------------------------------------------


@dataclass(frozen=True, slots=True)
class CgroupMemory:
    """cgroup v2 memory figures; ``limit`` is ``None`` when no ancestor sets ``memory.max``."""

    usage: int
    working_set: int
    limit: int | None


@dataclass(frozen=True, slots=True)
class Mount:
    """One line of ``/proc/self/mountinfo``: what node_exporter labels a filesystem with."""

    mountpoint: str
    fstype: str
    device: str
    readonly: bool


@dataclass(frozen=True, slots=True)
class DiskUsage:
    """One watched path's filesystem, as ``statvfs`` reports it, and the mount it is on."""

    path: str
    mount: Mount
    size: int
    free: int
    avail: int
    files: int
    files_free: int

    @property
    def utilization(self) -> float:
        """Share not available to the app (reserved blocks count as used, like node-mixin alerts)."""
        return 1.0 - self.avail / self.size if self.size > 0 else 0.0


@dataclass(frozen=True, slots=True)
class HostSnapshot:
    """Everything one probe reads, gathered in one worker-thread call."""

    cpu_busy: float
    cpu_total: float
    load: tuple[float, float, float]
    mem_total: int
    mem_available: int
    swap_total: int
    swap_free: int
    boot_time: float
    disks: tuple[DiskUsage, ...]
    filefd: tuple[int, int] | None
    cgroup: CgroupMemory | None
    cpu_times: tuple[tuple[str, tuple[float, ...]], ...] = ()
    meminfo: tuple[tuple[str, float], ...] = ()
    vmstat: tuple[tuple[str, float], ...] = ()
    devices: DeviceReadings = NO_DEVICES  # network and block devices, clock sync (host_devices)


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _own_cgroup_path(proc_self_cgroup: Path, v1_controller: str | None) -> str | None:
    """This process's cgroup path from ``/proc/self/cgroup``: the ``0::`` line, or a v1 controller's."""
    for line in (_read_text(proc_self_cgroup) or "").splitlines():
        hierarchy, _sep, rest = line.partition(":")
        controllers, _sep, path = rest.partition(":")
        if v1_controller is None and hierarchy == "0" and not controllers:
            return path.strip()
        if v1_controller is not None and v1_controller in controllers.split(","):
            return path.strip()
    return None


def own_cgroup_dir(hierarchy_root: Path, proc_self_cgroup: Path, v1_controller: str | None = None) -> Path:
    """This process's cgroup directory under ``hierarchy_root``.

    Inside a container (cgroup namespace, or a v1 mount of just the container's group) the path from
    ``/proc/self/cgroup`` does not exist below the mount, and the mount itself is the right directory.
    """
    path = _own_cgroup_path(proc_self_cgroup, v1_controller)
    if path:
        candidate = hierarchy_root / path.lstrip("/")
        marker = "memory.current" if v1_controller is None else "memory.usage_in_bytes"
        if (candidate / marker).is_file():
            return candidate
    return hierarchy_root


def _read_int(path: Path) -> int | None:
    text = _read_text(path)
    return int(text) if text is not None and text.isdigit() else None


def _parse_limit(text: str | None) -> int | None:
    """``memory.max`` content: a byte count, or ``max`` for no limit."""
    if text is None or text == "max" or not text.isdigit():
        return None
    return int(text)


def _stat_value(stat_text: str | None, key: str) -> int:
    for line in (stat_text or "").splitlines():
        name, _sep, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return 0


def read_cgroup_memory(cgroup_dir: Path, cgroup_root: Path | None = None) -> CgroupMemory | None:
    """cgroup v2 memory usage and the tightest ``memory.max`` from ``cgroup_dir`` up to ``cgroup_root``.

    ``None`` where the directory has no ``memory.current`` (cgroup v1, or the host's root cgroup).
    """
    usage = _read_int(cgroup_dir / "memory.current")
    if usage is None:
        return None
    inactive = _stat_value(_read_text(cgroup_dir / "memory.stat"), "inactive_file")
    root = cgroup_root or cgroup_dir
    limits: list[int] = []
    directory = cgroup_dir
    while True:
        limit = _parse_limit(_read_text(directory / "memory.max"))
        if limit is not None:
            limits.append(limit)
        if directory in (root, directory.parent) or root not in directory.parents:
            break
        directory = directory.parent
    return CgroupMemory(
        usage=usage, working_set=max(0, usage - inactive), limit=min(limits) if limits else None
    )


def read_cgroup_v1_memory(memory_dir: Path) -> CgroupMemory | None:
    """The same figures from a cgroup v1 memory controller (older hosts and container runtimes)."""
    usage = _read_int(memory_dir / "memory.usage_in_bytes")
    if usage is None:
        return None
    limit = _read_int(memory_dir / "memory.limit_in_bytes")
    inactive = _stat_value(_read_text(memory_dir / "memory.stat"), "total_inactive_file")
    return CgroupMemory(
        usage=usage,
        working_set=max(0, usage - inactive),
        limit=limit if limit is not None and limit < V1_UNLIMITED else None,
    )


def read_container_memory(cgroup_root: Path, proc_self_cgroup: Path) -> CgroupMemory | None:
    """cgroup v2 where mounted, else the v1 memory controller, else ``None``."""
    v2 = read_cgroup_memory(own_cgroup_dir(cgroup_root, proc_self_cgroup), cgroup_root)
    if v2 is not None:
        return v2
    v1_root = cgroup_root / "memory"
    return read_cgroup_v1_memory(own_cgroup_dir(v1_root, proc_self_cgroup, "memory"))


def read_filefd(path: Path) -> tuple[int, int] | None:
    """``/proc/sys/fs/file-nr`` -> (allocated, maximum); ``None`` where it cannot be read."""
    fields = (_read_text(path) or "").split()
    if len(fields) != 3 or not all(f.isdigit() for f in fields):
        return None
    return int(fields[0]), int(fields[2])


_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (``\\040``)."""
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def read_mounts(mountinfo: Path) -> list[Mount]:
    """``/proc/self/mountinfo`` in order; a later mount on the same point hides an earlier one."""
    mounts: list[Mount] = []
    for line in (_read_text(mountinfo) or "").splitlines():
        before, sep, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if not sep or len(fields) < 6 or len(tail) < 2:
            continue
        options = fields[5].split(",") + (tail[2].split(",") if len(tail) > 2 else [])
        mounts.append(Mount(_unescape(fields[4]), tail[0], _unescape(tail[1]), "ro" in options))
    return mounts


def mount_of(path: str, mounts: Sequence[Mount]) -> Mount:
    """The mount a path lives on: the longest mount point that contains it, the last one mounted."""
    best: Mount | None = None
    for mount in mounts:
        point = mount.mountpoint.rstrip("/") + "/"
        if (path.rstrip("/") + "/").startswith(point) and (
            best is None or len(mount.mountpoint) >= len(best.mountpoint)
        ):
            best = mount
    return best or Mount(mountpoint=path, fstype="", device="", readonly=False)


def read_cpu_times(stat: Path) -> tuple[tuple[str, tuple[float, ...]], ...]:
    """Per-CPU ``/proc/stat`` lines in seconds (user nice system idle iowait irq softirq steal guest...)."""
    hertz = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
    result = []
    for line in (_read_text(stat) or "").splitlines():
        name, _sep, rest = line.partition(" ")
        if name.startswith("cpu") and name[3:].isdigit():
            values = tuple(int(v) / hertz for v in rest.split()[:10] if v.isdigit())
            result.append((name[3:], values))
    return tuple(result)


def read_meminfo(meminfo: Path) -> tuple[tuple[str, float], ...]:
    """``/proc/meminfo`` as node_exporter names it: ``Active(anon) 4 kB`` -> ``Active_anon_bytes`` 4096."""
    result = []
    for line in (_read_text(meminfo) or "").splitlines():
        key, _sep, rest = line.partition(":")
        parts = rest.split()
        if not parts or not parts[0].isdigit():
            continue
        key = key.replace("(", "_").replace(")", "")
        if len(parts) > 1 and parts[1] == "kB":
            result.append((f"{key}_bytes", int(parts[0]) * 1024.0))
        else:
            result.append((key, float(parts[0])))
    return tuple(result)


def read_vmstat(vmstat: Path) -> tuple[tuple[str, float], ...]:
    """The ``/proc/vmstat`` fields node_exporter exposes by default (page faults, paging, OOM kills)."""
    result = []
    for line in (_read_text(vmstat) or "").splitlines():
        key, _sep, value = line.partition(" ")
        if _VMSTAT_FIELDS.match(key) and value.strip().isdigit():
            result.append((key, float(value)))
    return tuple(result)


def read_disk(path: str, mounts: Sequence[Mount] = ()) -> DiskUsage:
    """``statvfs`` of one path; a missing path is an unhealthy host (a volume that is not mounted)."""
    try:
        st = os.statvfs(path)
    except OSError as exc:
        raise ProbeError(Reason.UNHEALTHY, f"disk path {path}: {exc.strerror or exc}") from exc
    return DiskUsage(
        path=path,
        mount=mount_of(path, mounts),
        size=st.f_blocks * st.f_frsize,
        free=st.f_bfree * st.f_frsize,
        avail=st.f_bavail * st.f_frsize,
        files=st.f_files,
        files_free=st.f_ffree,
    )


def cpu_busy_total() -> tuple[float, float]:
    """(busy, total) CPU seconds since boot over all CPUs; guest time is already in user/nice."""
    times = psutil.cpu_times()
    fields = times._asdict()
    total = sum(fields.values()) - fields.get("guest", 0.0) - fields.get("guest_nice", 0.0)
    idle = fields.get("idle", 0.0) + fields.get("iowait", 0.0)
    return total - idle, total


def read_snapshot(options: HostOptions) -> HostSnapshot:
    """One consistent reading of the host (blocking)."""
    busy, total = cpu_busy_total()
    memory = psutil.virtual_memory()
    swap = psutil.swap_memory()
    proc = Path(options.proc_root)
    mounts = read_mounts(proc / "self" / "mountinfo")
    return HostSnapshot(
        cpu_busy=busy,
        cpu_total=total,
        load=psutil.getloadavg(),
        mem_total=memory.total,
        mem_available=memory.available,
        swap_total=swap.total,
        swap_free=swap.free,
        boot_time=psutil.boot_time(),
        disks=tuple(read_disk(p, mounts) for p in options.paths),
        filefd=read_filefd(Path(options.proc_root) / "sys" / "fs" / "file-nr"),
        cgroup=read_container_memory(Path(options.cgroup_root), Path(options.proc_root) / "self" / "cgroup"),
        cpu_times=read_cpu_times(proc / "stat"),
        meminfo=read_meminfo(proc / "meminfo"),
        vmstat=read_vmstat(proc / "vmstat"),
        devices=read_devices(proc),
    )


# --- collector ----------------------------------------------------------------------------------


def cpu_utilization(previous: tuple[float, float] | None, busy: float, total: float) -> float:
    """Busy share since the previous reading (since boot on the first one), clamped to 0-1."""
    prev_busy, prev_total = previous if previous is not None else (0.0, 0.0)
    elapsed = total - prev_total
    if elapsed <= 0:
        return 0.0
    return min(1.0, max(0.0, (busy - prev_busy) / elapsed))


class HostCollector(Collector[HostOptions]):
    """Reads host and container resource figures; never fails unless a watched path is missing."""

    kind: ClassVar[str] = "host"
    measurements: ClassVar[tuple[str, ...]] = (
        "cpuUtilization",
        "load1",
        "memoryUtilization",
        "diskUtilization",
        "uptime",
        "swapUtilization",
        "containerMemoryUtilization",
    )
    options_model: ClassVar[type[CollectorOptions]] = HostOptions
    component_type: ClassVar[str] = "system"
    target_required: ClassVar[bool] = False
    critical_by_default: ClassVar[bool] = False

    def __init__(self, check: CheckTarget, options: HostOptions) -> None:
        super().__init__(check, options)
        self._previous_cpu: tuple[float, float] | None = None

    @classmethod
    def validate_target(cls, target: str | None) -> str | None:
        if target:
            raise ValueError("a host check takes no target; list filesystems under options.paths")
        return None

    async def open(self) -> None:
        """Take the first CPU reading so the first probe reports utilisation since start."""
        if self._previous_cpu is None:
            self._previous_cpu = await asyncio.to_thread(cpu_busy_total)

    def classify_error(self, exc: BaseException) -> Reason | None:
        if isinstance(exc, OSError | psutil.Error):
            return Reason.UNEXPECTED  # not a network failure, whatever OSError usually means
        return None

    def secrets(self) -> Sequence[str]:
        return ()

    async def collect(self) -> Observation:
        snap = await asyncio.to_thread(read_snapshot, self.options)
        cpu = cpu_utilization(self._previous_cpu, snap.cpu_busy, snap.cpu_total)
        self._previous_cpu = (snap.cpu_busy, snap.cpu_total)
        return Observation(
            measurements=_measurements(snap, cpu),
            samples=_samples(snap, cpu),
            info={"cpus": str(psutil.cpu_count() or 0)},
        )


def _measurements(snap: HostSnapshot, cpu: float) -> dict[str, Measurement]:
    memory = 1.0 - snap.mem_available / snap.mem_total if snap.mem_total else 0.0
    result = {
        "cpuUtilization": Measurement(round(cpu, 4), "ratio"),
        "load1": Measurement(round(snap.load[0], 2)),
        "memoryUtilization": Measurement(round(memory, 4), "ratio"),
        "diskUtilization": Measurement(round(max(d.utilization for d in snap.disks), 4), "ratio"),
        "uptime": Measurement(round(time.time() - snap.boot_time), "s"),
    }
    if snap.swap_total:
        result["swapUtilization"] = Measurement(round(1.0 - snap.swap_free / snap.swap_total, 4), "ratio")
    if snap.cgroup is not None and snap.cgroup.limit:
        ratio = snap.cgroup.working_set / snap.cgroup.limit
        result["containerMemoryUtilization"] = Measurement(round(ratio, 4), "ratio")
    return result


_CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
_GUEST_MODES = ("user", "nice")


def _cpu_samples(cpu_times: Sequence[tuple[str, tuple[float, ...]]]) -> list[Sample]:
    """node_exporter's per-CPU, per-mode seconds; guest time (already inside user/nice) apart."""
    samples = []
    for cpu, values in cpu_times:
        samples += [Sample(CPU_SECONDS, v, (cpu, m)) for m, v in zip(_CPU_MODES, values[:8], strict=False)]
        samples += [
            Sample(CPU_GUEST_SECONDS, v, (cpu, m)) for m, v in zip(_GUEST_MODES, values[8:], strict=False)
        ]
    return samples


def _dynamic_spec(name: str, help_text: str, metric_type: MetricType) -> MetricSpec | None:
    """One cached spec per kernel-reported field name; bounded whatever the kernel lists."""
    spec = _dynamic.get(name)
    if spec is None:
        if len(_dynamic) >= MAX_DYNAMIC_FAMILIES:
            return None
        spec = _dynamic[name] = MetricSpec(name, help_text, type=metric_type, exporter=NODE)
    return spec


def _samples(snap: HostSnapshot, cpu: float) -> list[Sample]:
    samples = [
        Sample(CPU_UTILIZATION, cpu),
        Sample(LOAD1, snap.load[0]),
        Sample(LOAD5, snap.load[1]),
        Sample(LOAD15, snap.load[2]),
        Sample(MEM_TOTAL, float(snap.mem_total)),
        Sample(MEM_AVAILABLE, float(snap.mem_available)),
        Sample(SWAP_TOTAL, float(snap.swap_total)),
        Sample(SWAP_FREE, float(snap.swap_free)),
        Sample(BOOT_TIME, snap.boot_time),
    ]
    seen: set[str] = set()
    for disk in snap.disks:
        mount = disk.mount
        if mount.mountpoint in seen:  # two watched paths on one filesystem: one series, as node_exporter
            continue
        seen.add(mount.mountpoint)
        label = (mount.device, "", mount.fstype, mount.mountpoint)
        samples += [
            Sample(FS_SIZE, float(disk.size), label),
            Sample(FS_FREE, float(disk.free), label),
            Sample(FS_AVAIL, float(disk.avail), label),
            Sample(FS_FILES, float(disk.files), label),
            Sample(FS_FILES_FREE, float(disk.files_free), label),
            Sample(FS_READONLY, 1.0 if mount.readonly else 0.0, label),
            Sample(FS_DEVICE_ERROR, 0.0, label),
        ]
    samples += _cpu_samples(snap.cpu_times)
    for key, value in snap.meminfo:
        spec = _dynamic_spec(f"node_memory_{key}", _MEMINFO_HELP.format(key.removesuffix("_bytes")), "gauge")
        if spec is not None:
            samples.append(Sample(spec, value))
    for key, value in snap.vmstat:
        spec = _dynamic_spec(f"node_vmstat_{key}", _VMSTAT_HELP.format(key), "untyped")
        if spec is not None:
            samples.append(Sample(spec, value))
    samples += device_samples(snap.devices)
    if snap.filefd is not None:
        samples += [
            Sample(FILEFD_ALLOCATED, float(snap.filefd[0])),
            Sample(FILEFD_MAXIMUM, float(snap.filefd[1])),
        ]
    if snap.cgroup is not None:
        samples += [
            Sample(CONTAINER_MEMORY_USAGE, float(snap.cgroup.usage)),
            Sample(CONTAINER_MEMORY_WORKING_SET, float(snap.cgroup.working_set)),
        ]
        if snap.cgroup.limit is not None:
            samples.append(Sample(CONTAINER_MEMORY_LIMIT, float(snap.cgroup.limit)))
    return samples
