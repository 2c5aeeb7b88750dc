"""Any YAML or JSON shape is "invalid configuration" and exit 2 from ``check-config``, never a crash."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sidecar.config import MAX_CONFIG_BYTES, MAX_CONFIG_NODES, ConfigError, load_settings, read_yaml

pytestmark = pytest.mark.timeout(60)


def laughs(levels: int) -> str:
    """The "billion laughs" document: each level is nine aliases of the one before."""
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for i in range(1, levels):
        lines.append(f"{chr(97 + i)}: &{chr(97 + i)} [" + ",".join(["*" + chr(96 + i)] * 9) + "]")
    return "\n".join(lines) + "\ncontainer_labels: *" + chr(96 + levels) + "\n"


SHAPES = {
    "int-key-top": ("1: x\n", "is not a string"),
    "int-key-nested": ("logs:\n  files:\n    - {path: /x, 3: y}\n", "logs.files[0]"),
    "bool-key": ("sentry:\n  true: 1\n", "is not a string"),
    "null-key": ("~: 1\n", "is not a string"),
    "list-key": ("? [1, 2]\n: x\n", "unhashable"),
    "list-for-section": ("sentry: [1, 2]\n", "sentry"),
    "map-for-list": ("checks: {a: 1}\n", "checks"),
    "scalar-for-section": ("limits: 5\n", "limits"),
    "top-level-list": ("- a\n- b\n", "top level"),
    "top-level-scalar": ("just text\n", "top level"),
    "laughs": (laughs(10), "anchors and aliases"),
    "recursive": ("a: &a [*a]\n", "recursive"),
    "deep": ("x: " + "[" * 5000 + "]" * 5000 + "\n", "nest"),
    "python-tag": ("x: !!python/object/apply:os.system [ls]\n", "constructor"),
    "json-wrong-types": ('{"checks": [{"name": 1, "kind": ["x"]}], "listen": {}}', "checks[0]"),
    "not-utf8": ("a: \udcff\n", "UTF-8"),
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sidecar.yaml"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    return path


@pytest.mark.parametrize("shape", list(SHAPES))
def test_read_and_validate_refuse_every_shape_with_a_config_error(tmp_path: Path, shape: str) -> None:
    text, expected = SHAPES[shape]
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text), environ={})
    assert expected in str(caught.value)


def test_a_huge_file_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("routes:\n  templates:\n" + "    - /r\n" * (MAX_CONFIG_BYTES // 8))
    with pytest.raises(ConfigError, match="larger than"):
        read_yaml(path)


def test_anchors_within_the_bound_still_work(tmp_path: Path) -> None:
    text = "base: &base {interval: 5s}\nchecks:\n  - {<<: *base, name: a, kind: tcp, target: 127.0.0.1:1}\n"
    data = read_yaml(write(tmp_path, text))
    assert data["checks"][0]["interval"] == "5s"
    assert MAX_CONFIG_NODES >= 10_000


@pytest.mark.parametrize("shape", ["int-key-top", "laughs", "list-for-section", "recursive"])
def test_check_config_exits_2_with_the_usual_message(tmp_path: Path, shape: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sidecar", "check-config", "--config", str(write(tmp_path, SHAPES[shape][0]))],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "invalid configuration" in proc.stderr
    assert "Traceback" not in proc.stderr
