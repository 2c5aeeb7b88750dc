# syntax=docker/dockerfile:1
# The sidecar image: built from this repository's own metadata (pyproject.toml), runs as a non-root
# user with nothing but a virtual environment on top of the slim Python base.
#
#   docker build -t observability-sidecar .
#   docker run --rm -p 9797:9797 observability-sidecar
#
# Ports: 9797 health and metrics (/livez /readyz /health /metrics), 9798 admin (loopback unless
# SIDECAR_ADMIN_LISTEN and SIDECAR_ADMIN_TOKEN say otherwise), 8080 gateway (when SIDECAR_UPSTREAM is set).

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# ---- build: a wheel of the project, installed with every optional driver into /opt/venv -------------
# gcc compiles the gateway's hot path (mypyc, setup.py); it stays in this stage, not in the image.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY sidecar ./sidecar
COPY collectors ./collectors
RUN python -m venv /opt/venv \
    && python -m pip wheel --no-deps --wheel-dir /wheels . \
    && wheel="$(find /wheels -name 'observability_sidecar-*.whl' -print -quit)" \
    && /opt/venv/bin/pip install --no-compile "${wheel}[all]" \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib \
    && /opt/venv/bin/sidecar --version \
    && /opt/venv/bin/python -c "import sys, sidecar.gateway as g; sys.exit(not g.compiled())"

# ---- runtime: the venv, a non-root user, a writable state directory ---------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="observability-sidecar" \
      org.opencontainers.image.description="Dependency probes, /livez /readyz /health, Prometheus /metrics and a request gateway next to any backend." \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 sidecar \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin sidecar \
    && mkdir -p /var/lib/sidecar \
    && chown 10001:10001 /var/lib/sidecar
COPY --from=build /opt/venv /opt/venv
WORKDIR /var/lib/sidecar
USER 10001:10001
EXPOSE 9797 9798 8080
# No curl in slim images: the venv's Python asks /livez on the health port (from SIDECAR_LISTEN).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('SIDECAR_LISTEN', ':9797').rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/livez', timeout=2)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["sidecar"]
CMD ["run"]
