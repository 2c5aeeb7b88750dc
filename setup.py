"""Compiles the gateway's hot path with mypyc; everything else is plain Python (see pyproject.toml).

Why: a proxied request costs the gateway about 45 Python function calls (two protocols, the head
rewrites, RED and access recording). Interpreted, that was twice nginx's CPU per request; compiled
from the same type-checked source, native classes turn attribute access and calls between these
modules into C. No second implementation exists to keep in step: the ``.py`` files are the source,
and they still run as they are when the extension cannot be built.

    SIDECAR_COMPILE=0 pip install -e .   # skip compiling (pure Python; slower gateway)

The build needs a C compiler and the Python headers. Without them the extension is left out with a
warning and the package installs as pure Python (``sidecar --version`` says which one runs).
"""

from __future__ import annotations

import os
import sys

from setuptools import Extension, setup

# The modules a proxied request runs through, in the order a request meets them.
COMPILED = [
    "sidecar/gateway/proxy.py",
    "sidecar/gateway/request_head.py",
    "sidecar/gateway/framing.py",
    "sidecar/gateway/forwarded.py",
    "sidecar/gateway/correlation_ids.py",
    "sidecar/gateway/traceparent.py",
    "sidecar/gateway/exchange.py",
    "sidecar/gateway/write_batch.py",
    "sidecar/gateway/upstream.py",
    "sidecar/gateway/response_head.py",
    "sidecar/gateway/responses.py",
    "sidecar/gateway/listener_state.py",
    "sidecar/gateway/context.py",
    "sidecar/gateway/outlier.py",
    "sidecar/gateway/metrics.py",
    "sidecar/gateway/access_log.py",
]
# Only gateway modules that load when an upstream is configured: a sidecar without the gateway must
# not map the compiled library (its resident memory is budgeted, bench/health.py). hop_by_hop and
# query_mask are also imported by the settings, so they stay interpreted: the hot path reads their
# caches, and their Final constants are inlined where it compares them.

# What every sidecar loads and the gateway calls per request (request ID sightings, route templates, the
# correlation index): a second, small library, so a sidecar without the gateway maps only this one.
COMPILED_CORE = [
    "sidecar/core/http_metrics.py",
    "sidecar/core/routes.py",
    "sidecar/correlation/index.py",
]

# The log flow's per-line path (parse, the pipeline's loop and index entries, access lines into the
# request histograms): a third library. The log modules load with every sidecar; compiled, they add
# about 0.5 MB resident, and the constructors of the per-line records are written out (parse.py).
COMPILED_LOGS = [
    "sidecar/logs/parse.py",
    "sidecar/logs/access.py",
    "sidecar/logs/pipeline.py",
]


# Written in C by hand (why: its header): the app's usual response head in one call. Optional like the
# rest: without it every response goes through llhttp, as it does for the heads it leaves to llhttp.
HEAD_SCAN = Extension("sidecar.gateway.head_scan", ["sidecar/gateway/head_scan.c"], optional=True)
# Also by hand (why: its header): a read chunk of a log split into lines with memchr. Without it,
# bytes.split gives the same lines, slower.
LINE_SPLIT = Extension(
    "sidecar.logs.sources.line_split", ["sidecar/logs/sources/line_split.c"], optional=True
)
# Also by hand (why: its header): a proxied request's new IDs drawn and formatted in one call. Without
# it, correlation_ids.py makes the same IDs from os.urandom, slower.
FRESH_IDS = Extension("sidecar.gateway.fresh_ids", ["sidecar/gateway/fresh_ids.c"], optional=True)
# Also by hand (why: its header): the table of request-ID hashes first_sighting keeps. Without it,
# http_metrics keeps the same table through a memoryview, slower.
SEEN_HASHES = Extension("sidecar.core.seen_hashes", ["sidecar/core/seen_hashes.c"], optional=True)
# Also by hand (why: its header): a proxied request's access line in one call. Without it,
# access_log.py formats the same line as one compiled bytes format, slower.
ACCESS_LINE = Extension("sidecar.gateway.access_line", ["sidecar/gateway/access_line.c"], optional=True)
NATIVE = [HEAD_SCAN, LINE_SPLIT, FRESH_IDS, SEEN_HASHES, ACCESS_LINE]


# mypyc type-checks before compiling, inside pip's isolated build environment: mypy is there, the
# runtime dependencies are not. Their types are Any to the compiler (it calls them as Python would),
# so the strict options that reject Any are relaxed here; the project's own mypy run (CI) enforces
# them. No cache: the build must not depend on a developer's .mypy_cache.
MYPY_OPTIONS = [
    "--ignore-missing-imports",
    "--follow-imports=silent",
    "--allow-subclassing-any",
    "--allow-untyped-decorators",
    "--no-warn-return-any",
    "--no-warn-unused-ignores",
    "--cache-dir=/dev/null",
]


def _extensions() -> list[object]:
    if os.environ.get("SIDECAR_COMPILE", "1").lower() in ("0", "false", "no", "off"):
        return []
    try:
        from mypyc.build import mypycify  # noqa: PLC0415 (optional: SIDECAR_COMPILE=0 needs no mypy)
    except ImportError:  # building without the declared build requirements (e.g. --no-build-isolation)
        print("warning: mypyc is not installed; the gateway stays pure Python", file=sys.stderr)
        return NATIVE
    try:
        extensions = mypycify(
            MYPY_OPTIONS + COMPILED + COMPILED_CORE + COMPILED_LOGS,
            opt_level="3",
            separate=[
                (COMPILED, "sidecar_native"),
                (COMPILED_CORE, "sidecar_core"),
                (COMPILED_LOGS, "sidecar_logs"),
            ],
        )
    except SystemExit:  # mypyc reported errors (printed above): install the pure-Python modules
        print("warning: mypyc could not compile the gateway; it stays pure Python", file=sys.stderr)
        return NATIVE
    for extension in extensions:
        extension.optional = True  # no compiler: install the pure-Python modules, not fail
    return [*extensions, *NATIVE]


setup(ext_modules=_extensions())
