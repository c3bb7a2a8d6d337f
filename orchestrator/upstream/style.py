"""seL4_tools' style routing (``misc/style.sh`` -> ``style.py`` -> ``style-{c,cmake,py}.sh``),
run in place on a checkout the way seL4's CI runs it, so ``git diff`` afterwards is exactly the
change the tools want.

Routing and ``.stylefilter`` follow ``misc/style.py`` and ``misc/filter.py``: a file is skipped
when any filter glob (``fnmatch``, ``#`` comments, plus ``*.git/*``) matches its path; else it
goes to every tool whose pattern matches. C/H: astyle with ``misc/astylerc``, then guardonce's
``guard2once -s``; CMake: cmake-format with the flags of ``misc/style-cmake.sh``; Python:
autopep8 with the flags of ``misc/style-py.sh``.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import InfraError
from orchestrator.upstream.tools import (
    AUTOPEP8,
    CMAKE_FORMAT,
    DEFAULT_FILTERS,
    GUARD2ONCE,
    STYLE_MAP,
    Toolset,
)

FILTER_FILE = ".stylefilter"
_COMMENT = re.compile(r"^\s*#")
_TRAILING_COMMENT = re.compile(r"\s+#.*$")


def read_filters(root: Path) -> list[str]:
    """The checkout's ``.stylefilter`` globs (if it has one) plus the default ones."""
    filters = list(DEFAULT_FILTERS)
    path = root / FILTER_FILE
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            line = line.strip()
            if line and not _COMMENT.search(line):
                filters.append(_TRAILING_COMMENT.sub("", line))
    return filters


def unfiltered(files: Sequence[str], filters: Sequence[str]) -> list[str]:
    return [f for f in files if not any(fnmatch.fnmatch(f.removeprefix("./"), g) for g in filters)]


def route(files: Sequence[str], root: Path) -> dict[str, list[str]]:
    """Tool kind (c, cmake, python) -> the files it styles, after ``.stylefilter``."""
    routed: dict[str, list[str]] = {kind: [] for kind in STYLE_MAP}
    for name in unfiltered(files, read_filters(root)):
        if not (root / name).is_file():
            continue
        for kind, pattern in STYLE_MAP.items():
            if re.search(pattern, name):
                routed[kind].append(name)
    return routed


@dataclass(frozen=True)
class StyleRun:
    kind: str
    files: list[str]


def restyle(root: Path, files: Sequence[str], toolset: Toolset) -> list[StyleRun]:
    """Run the style tools in place on ``files`` (paths relative to ``root``)."""
    runs: list[StyleRun] = []
    for kind, routed in route(files, root).items():
        if not routed:
            continue
        for command in _commands(kind, routed, toolset):
            _run(command, root, kind)
        runs.append(StyleRun(kind, routed))
    return runs


def _commands(kind: str, files: list[str], toolset: Toolset) -> list[list[str]]:
    if kind == "c":
        astyle = ["astyle", f"--options={toolset.astylerc}", "--suffix=none", "--quiet", *files]
        return [astyle, *([*GUARD2ONCE, "-s", f] for f in files)]
    if kind == "cmake":
        return [[*CMAKE_FORMAT, "-i", *toolset.cmake_flags, f] for f in files]
    return [[*AUTOPEP8, "-i", *toolset.autopep8_flags, *files]]


class StyleToolFailed(Exception):
    """A style tool rejected a file (cmake-format cannot parse it, say): a finding, not an
    infrastructure error."""


def _run(command: list[str], root: Path, kind: str) -> None:
    try:
        proc = subprocess.run(command, cwd=root, capture_output=True, text=True, errors="replace",
                              timeout=600)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise InfraError(f"style ({kind}): {command[0]}: {error}") from None
    if proc.returncode != 0:
        detail = [line for line in (proc.stderr or proc.stdout).strip().splitlines() if line.strip()]
        raise StyleToolFailed(f"{kind} style tool failed on {command[-1]}: "
                              f"{detail[-1] if detail else f'exit {proc.returncode}'}")
