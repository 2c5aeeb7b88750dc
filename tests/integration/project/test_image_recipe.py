"""The image's build and health-check steps, run here as far as they can be without Docker:

* the build stage's ``pip wheel`` on exactly the files the build context keeps (.dockerignore and
  the COPY lines), producing a wheel with both packages, the console script and the ``all`` extra;
* the ``HEALTHCHECK`` command itself, against a live /livez and against a closed port.
"""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dockerfile import ROOT, healthcheck_command, in_build_context, instructions
from tests.servers import free_port

pytestmark = pytest.mark.integration


def build_context(target: Path) -> None:
    """Copy what the COPY lines name, filtered by .dockerignore, as the builder would see it."""
    for item in instructions():
        if item.keyword != "COPY" or any(w.startswith("--from") for w in item.words()):
            continue
        *sources, _destination = [w for w in item.words() if not w.startswith("--")]
        for source in sources:
            path = ROOT / source
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            for file in files:
                relative = file.relative_to(ROOT).as_posix()
                if in_build_context(relative):
                    (target / relative).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(file, target / relative)


@pytest.mark.timeout(300)
def test_build_stage_makes_a_complete_wheel(tmp_path: Path) -> None:
    context = tmp_path / "src"
    context.mkdir()
    build_context(context)
    assert not list(context.rglob("__pycache__")), ".dockerignore lets bytecode caches through"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(tmp_path / "wheels"), "."],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (wheel,) = (tmp_path / "wheels").glob("observability_sidecar-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert "sidecar/cli.py" in names and "collectors/base.py" in names
        assert not any(name.startswith("tests/") for name in names)
        info = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "sidecar = sidecar.cli:main" in archive.read(info).decode()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        assert "Provides-Extra: all" in metadata


class Livez(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 200 if self.path == "/livez" else 404
        self.send_response(status)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def livez_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Livez)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.timeout(30)
def test_healthcheck_command_passes_on_livez_and_fails_when_down(livez_port: int) -> None:
    words = healthcheck_command()
    python = [sys.executable, *words[1:]]  # the image's `python` is its venv's; here it is ours
    env = {**os.environ, "SIDECAR_LISTEN": f"0.0.0.0:{livez_port}"}
    assert subprocess.run(python, env=env, capture_output=True, timeout=10, check=False).returncode == 0
    env["SIDECAR_LISTEN"] = f"0.0.0.0:{free_port()}"
    assert subprocess.run(python, env=env, capture_output=True, timeout=10, check=False).returncode != 0
