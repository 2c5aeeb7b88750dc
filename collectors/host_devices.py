"""The host's network devices, block devices and clock sync, read as node_exporter reads them.

The node mixin's dashboards and alerts query ``node_network_*``, ``node_disk_*`` and
``node_timex_sync_status``; the host collector emits them under those names, with node_exporter's
labels and default device filters (``^lo$`` for network devices; partitions, RAM, loop and floppy
devices for block devices), so a mixin query gives the same series on either. Everything here is read
from ``/proc`` (two small files) and one ``adjtimex`` call that only reads the kernel clock's state,
inside the host collector's one worker-thread call.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from collectors.base import MetricSpec, Sample

NODE = "node_exporter"
SECTOR_BYTES = 512  # /proc/diskstats counts 512-byte sectors whatever the device's own sector size
NETDEV_EXCLUDE = re.compile(r"^lo$")  # node_exporter's --collector.netdev.device-exclude default
DISK_EXCLUDE = re.compile(r"^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$")  # its diskstats default
MAX_DEVICES = 64  # a bound on series whatever the kernel lists
STA_UNSYNC = 0x0040  # <sys/timex.h>: the clock is not synchronised


def _counter(name: str, help_text: str) -> MetricSpec:
    return MetricSpec(name, help_text, labels=("device",), type="counter", exporter=NODE)


# /proc/net/dev: receive columns 0-3 and transmit columns 8-11 (bytes, packets, errs, drop)
_NETDEV_FIELDS = ("bytes", "packets", "errs", "drop")
NETDEV_FAMILIES: tuple[tuple[int, MetricSpec], ...] = tuple(
    (offset + i, _counter(f"node_network_{way}_{name}_total", f"Network device statistic {way}_{name}."))
    for way, offset in (("receive", 0), ("transmit", 8))
    for i, name in enumerate(_NETDEV_FIELDS)
)
# /proc/diskstats after major, minor and name: (column, scale, spec); times are milliseconds there
_MS = 0.001
_DISK_COLUMNS = (  # node_exporter's names (after node_disk_) and help texts, word for word
    (0, 1.0, "reads_completed_total", "The total number of reads completed successfully."),
    (1, 1.0, "reads_merged_total", "The total number of reads merged."),
    (2, SECTOR_BYTES, "read_bytes_total", "The total number of bytes read successfully."),
    (3, _MS, "read_time_seconds_total", "The total number of seconds spent by all reads."),
    (4, 1.0, "writes_completed_total", "The total number of writes completed successfully."),
    (5, 1.0, "writes_merged_total", "The number of writes merged."),
    (6, SECTOR_BYTES, "written_bytes_total", "The total number of bytes written successfully."),
    (7, _MS, "write_time_seconds_total", "This is the total number of seconds spent by all writes."),
    (9, _MS, "io_time_seconds_total", "Total seconds spent doing I/Os."),
    (10, _MS, "io_time_weighted_seconds_total", "The weighted # of seconds spent doing I/Os."),
)
DISK_FAMILIES: tuple[tuple[int, float, MetricSpec], ...] = tuple(
    (column, scale, _counter(f"node_disk_{name}", help_text))
    for column, scale, name, help_text in _DISK_COLUMNS
)
DISK_IO_NOW = MetricSpec(
    "node_disk_io_now", "The number of I/Os currently in progress.", labels=("device",), exporter=NODE
)
TIMEX_SYNC_STATUS = MetricSpec(
    "node_timex_sync_status", "Is clock synchronized to a reliable server (1 = yes, 0 = no).", exporter=NODE
)


@dataclass(frozen=True, slots=True)
class DeviceReadings:
    """Per-device counters as read, and the clock's sync state (``None`` where it cannot be read)."""

    netdev: tuple[tuple[str, tuple[int, ...]], ...] = ()
    diskstats: tuple[tuple[str, tuple[int, ...]], ...] = ()
    clock_synced: bool | None = None


NO_DEVICES = DeviceReadings()


def read_netdev(path: Path) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """``/proc/net/dev``: (device, its 16 counters), loopback left out as node_exporter does."""
    result = []
    try:
        lines = path.read_text().splitlines()[2:]  # two header lines
    except OSError:
        return ()
    for line in lines:
        name, sep, rest = line.partition(":")
        device = name.strip()
        values = rest.split()
        if (
            not sep
            or NETDEV_EXCLUDE.match(device)
            or len(values) < 16
            or not all(v.isdigit() for v in values)
        ):
            continue
        result.append((device, tuple(int(v) for v in values[:16])))
        if len(result) >= MAX_DEVICES:
            break
    return tuple(result)


def read_diskstats(path: Path) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """``/proc/diskstats``: (device, its first 11 counters), partitions and pseudo devices left out."""
    result = []
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return ()
    for line in lines:
        parts = line.split()
        if len(parts) < 14 or DISK_EXCLUDE.match(parts[2]) or not all(v.isdigit() for v in parts[3:14]):
            continue
        result.append((parts[2], tuple(int(v) for v in parts[3:14])))
        if len(result) >= MAX_DEVICES:
            break
    return tuple(result)


class _Timex(ctypes.Structure):
    """``struct timex`` of <sys/timex.h> (Linux): only ``modes`` (0: read, change nothing) and
    ``status`` are used; the rest is there so the kernel writes into memory of the right size."""

    _fields_ = (
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("reserved", ctypes.c_int * 11),
    )


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


_LIBC = _libc()


def read_clock_synced() -> bool | None:
    """Whether the kernel clock is synchronised (``adjtimex`` with no changes), as node_exporter's timex."""
    if _LIBC is None:
        return None
    timex = _Timex()  # zeroed: modes 0 reads the state and changes nothing, needing no privilege
    if _LIBC.adjtimex(ctypes.byref(timex)) < 0:
        return None
    return not timex.status & STA_UNSYNC


def read_devices(proc_root: Path) -> DeviceReadings:
    """All of the above in one go (blocking: called in the host collector's worker thread)."""
    return DeviceReadings(
        netdev=read_netdev(proc_root / "net" / "dev"),
        diskstats=read_diskstats(proc_root / "diskstats"),
        clock_synced=read_clock_synced(),
    )


def device_samples(readings: DeviceReadings) -> list[Sample]:
    samples: list[Sample] = []
    for device, values in readings.netdev:
        samples += [Sample(spec, float(values[column]), (device,)) for column, spec in NETDEV_FAMILIES]
    for device, values in readings.diskstats:
        samples += [
            Sample(spec, float(values[column] * scale), (device,)) for column, scale, spec in DISK_FAMILIES
        ]
        samples.append(Sample(DISK_IO_NOW, float(values[8]), (device,)))
    if readings.clock_synced is not None:
        samples.append(Sample(TIMEX_SYNC_STATUS, 1.0 if readings.clock_synced else 0.0))
    return samples


def all_specs() -> Sequence[MetricSpec]:
    """Every family this module can emit (for the collector's declared metrics)."""
    return (
        *(spec for _, spec in NETDEV_FAMILIES),
        *(spec for _, _, spec in DISK_FAMILIES),
        DISK_IO_NOW,
        TIMEX_SYNC_STATUS,
    )
