"""Just enough of Dockerfile and .dockerignore semantics to check the image build against the repo
without a Docker engine: instructions with their arguments, and which paths the build context keeps.
"""

from __future__ import annotations

import fnmatch
import json
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str  # upper case: FROM, COPY, RUN, ...
    args: str  # the rest of the (joined) line

    def words(self) -> list[str]:
        """Arguments as a list: JSON (exec) form when it is one, else shell-split."""
        text = self.args.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                pass
            else:
                if isinstance(value, list):
                    return [str(v) for v in value]
        return shlex.split(text)


def instructions(path: Path = ROOT / "Dockerfile") -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined and comments dropped."""
    result: list[Instruction] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        result.append(Instruction(keyword.upper(), args.strip()))
    return result


def stages(items: list[Instruction]) -> list[list[Instruction]]:
    """Instructions grouped by build stage (each starts with FROM)."""
    groups: list[list[Instruction]] = []
    for item in items:
        if item.keyword == "FROM":
            groups.append([])
        if groups:  # ARGs before the first FROM belong to no stage
            groups[-1].append(item)
    return groups


def dockerignore_patterns(path: Path = ROOT / ".dockerignore") -> list[tuple[bool, str]]:
    """(negated, pattern) pairs in file order."""
    patterns = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        patterns.append((negated, line.lstrip("!").strip().rstrip("/")))
    return patterns


def _matches(pattern: str, relative: str) -> bool:
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    if pattern.startswith("**/"):
        tail = pattern[3:]
        return any(fnmatch.fnmatchcase(part, tail) for part in parts) or any(
            fnmatch.fnmatchcase(p, tail) for p in prefixes
        )
    # a pattern matching a directory matches everything under it
    return any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes)


def in_build_context(relative: str, patterns: list[tuple[bool, str]] | None = None) -> bool:
    """Whether ``relative`` (a path inside the repo) is sent to the builder; the last match wins."""
    included = True
    for negated, pattern in patterns if patterns is not None else dockerignore_patterns():
        if _matches(pattern, relative):
            included = negated
    return included


def healthcheck_command() -> list[str]:
    (check,) = [i for i in instructions() if i.keyword == "HEALTHCHECK"]
    _options, _, command = check.args.partition("CMD ")
    words = json.loads(command)
    assert isinstance(words, list)
    return [str(w) for w in words]
