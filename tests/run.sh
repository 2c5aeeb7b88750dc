#!/usr/bin/env bash
# Sets up everything the test suite needs on a fresh machine, then runs lint, types and every test.
# Usage: bash tests/run.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

# Real tools the tests drive (Debian packages): promtool/Prometheus, Alertmanager, wrk, nginx, mtail,
# the Prometheus exporters, and Chromium for the console's browser tests (Playwright drives it by its
# path; its own browser downloads are never used: no `playwright install`).
need_pkgs=()
command -v promtool >/dev/null 2>&1 || need_pkgs+=(prometheus)
command -v amtool >/dev/null 2>&1 || need_pkgs+=(prometheus-alertmanager)
command -v wrk >/dev/null 2>&1 || need_pkgs+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_pkgs+=(nginx-light)
command -v mtail >/dev/null 2>&1 || need_pkgs+=(mtail)
# The exporters the sidecar's exporter-named families are compared with (tests/integration/collectors/test_exporter_parity.py).
for exporter in redis postgres mysqld node blackbox; do
  command -v "prometheus-$exporter-exporter" >/dev/null 2>&1 || need_pkgs+=("prometheus-$exporter-exporter")
done
[ -x /usr/bin/chromium ] || need_pkgs+=(chromium)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian packages: ${need_pkgs[*]}"
    # Install without starting their daemons (policy-rc.d 101 = "action forbidden"): the machine is
    # shared, and the tests start private instances on free ports, so nothing needs stopping after.
    policy=/usr/sbin/policy-rc.d
    (
      if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"
        trap 'rm -f "$policy"' EXIT
      fi
      apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
    )
  else
    echo "warning: missing ${need_pkgs[*]} and cannot apt-get install them; the tests needing them will say so"
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'  # includes playwright (PyPI)
# With a C compiler the install compiles the gateway's hot path (setup.py); check that it did.
if command -v cc >/dev/null 2>&1 \
  && ! .venv/bin/python -c 'import sys, sidecar.gateway as g; sys.exit(not g.compiled())'; then
  echo "error: a C compiler is installed but the gateway was not compiled (see the pip output above)"
  exit 1
fi
# BullMQ for Node, so the queue tests also drive jobs from the real Node library (skipped without npm).
if command -v npm >/dev/null 2>&1; then
  (cd tests/integration/node && npm ci --no-audit --no-fund --loglevel=error) \
    || echo "warning: npm ci failed in tests/integration/node; the BullMQ Node tests will say so"
  # pino, pino-http, winston and bunyan, so the log parser is tested on their real output.
  (cd tests/integration/node_logs && npm ci --no-audit --no-fund --loglevel=error) \
    || echo "warning: npm ci failed in tests/integration/node_logs; the Node logger tests will say so"
fi

echo "== ruff"; .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== mypy"; .venv/bin/mypy
echo "== pytest"
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" = 5 ]; then echo "no tests were collected"; exit 1; fi
if [ "$status" != 0 ] || [ $# -gt 0 ]; then exit "$status"; fi

# The compiled modules (gateway, correlation index, log flow) also run interpreted (a build without
# a compiler, or SIDECAR_COMPILE=0): their tests again on a copy of the sources without the .so files.
echo "== pytest (compiled modules interpreted)"
pure="$(mktemp -d)"
trap 'rm -rf "$pure"' EXIT
tar --exclude='*.so' --exclude='__pycache__' --exclude='node_modules' -cf - sidecar collectors tests docs pyproject.toml \
  | tar -xf - -C "$pure"
root="$PWD"
# The Node libraries are not copied (they hold no compiled module of ours): the copy links to them.
for node_dir in tests/integration/node tests/integration/node_logs; do
  if [ -d "$node_dir/node_modules" ]; then ln -s "$root/$node_dir/node_modules" "$pure/$node_dir/node_modules"; fi
done
cd "$pure"
if "$root/.venv/bin/python" -c 'import sys, sidecar.gateway as g; sys.exit(not g.compiled())'; then
  echo "error: the copy without .so files still runs compiled modules"; exit 1
fi
# test_head_scan.py, test_fresh_ids.py, test_access_line.py and test_line_split.py are left out: they test the C modules themselves, which this
# copy is without by design.
"$root/.venv/bin/python" -m pytest -q -p no:cacheprovider --ignore=tests/unit/gateway/test_head_scan.py --ignore=tests/unit/gateway/test_fresh_ids.py --ignore=tests/unit/gateway/test_access_line.py --ignore=tests/unit/logs/test_line_split.py \
  tests/unit/gateway tests/integration/gateway \
  tests/unit/logs tests/unit/correlation tests/integration/logs
