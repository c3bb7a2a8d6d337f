"""Where each check's program and configuration come from.

The *rules* come from the workspace's own seL4_tools checkout (manifest path ``tools/seL4``,
or the project named ``seL4_tools``), so they match the era of the sources: ``misc/.gitlint``,
``misc/astylerc``, the cmake-format flags written in ``misc/style-cmake.sh``, the autopep8
flags in ``misc/style-py.sh`` and ``misc/is-valid-shell-script``. The *programs* come from
packages: gitlint, cmake-format, autopep8, guardonce and reuse from the Python environment orch
runs in (``pip install 'orch[test]'`` pins them as seL4 does), astyle and checkbashisms
(devscripts) from Debian.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import InfraError, InputError
from orchestrator.workspace.tree import SourceTree

TOOLS_PATH = "tools/seL4"
TOOLS_NAME = "seL4_tools"
MISC = "misc"

# seL4_tools' misc/style.py routes files to the style scripts by these patterns.
STYLE_MAP: dict[str, str] = {
    "c": r"((\.c)|(\.h))$",
    "cmake": r"((\.cmake)|(CMakeLists.txt))$",
    "python": r"\.py$",
}
DEFAULT_FILTERS = ("*.git/*",)  # seL4_tools' misc/filter.py: never style anything in .git


@dataclass(frozen=True)
class Toolset:
    """The seL4_tools checkout the rules come from and the programs that apply them."""

    misc: Path  # <seL4_tools checkout>/misc
    cmake_flags: list[str] = field(default_factory=list)
    cmake_version: str = ""
    autopep8_flags: list[str] = field(default_factory=list)

    @property
    def gitlint_config(self) -> Path:
        return self.misc / ".gitlint"

    @property
    def astylerc(self) -> Path:
        return self.misc / "astylerc"

    @property
    def shell_checker(self) -> Path:
        return self.misc / "is-valid-shell-script"

    def describe(self) -> str:
        return str(self.misc)


def python_tool(module: str) -> list[str]:
    """A Python tool from orch's own environment."""
    return [sys.executable, "-m", module]


GITLINT = python_tool("gitlint.cli")
CMAKE_FORMAT = python_tool("cmakelang.format")
AUTOPEP8 = python_tool("autopep8")
GUARD2ONCE = python_tool("guardonce.guard2once")
REUSE = python_tool("reuse")


def find_toolset(tree: SourceTree, names: dict[str, str], explicit: Path | None = None) -> Toolset:
    """The seL4_tools ``misc/`` of ``--tools DIR``, else of the workspace project at
    ``tools/seL4`` or named ``seL4_tools`` (``names``: manifest path -> project name)."""
    if explicit is not None:
        root = explicit
    else:
        candidates = [p for p in tree.projects if p == TOOLS_PATH]
        candidates += [p for p, n in names.items()
                       if n.removesuffix(".git") == TOOLS_NAME and p in tree.projects]
        if not candidates:
            raise InputError(
                "the workspace has no seL4_tools project (tools/seL4): the checks take their rules from it",
                hint="sync a manifest that has it, or pass --tools DIR (a seL4_tools checkout)")
        root = tree.projects[candidates[0]].directory
    misc = root / MISC
    for needed in (".gitlint", "astylerc", "style-cmake.sh", "style-py.sh"):
        if not (misc / needed).is_file():
            raise InputError(f"{misc / needed}: missing (is {root} a seL4_tools checkout?)")
    cmake_flags, cmake_version = parse_cmake_script(misc / "style-cmake.sh")
    return Toolset(misc, cmake_flags, cmake_version, parse_autopep8_script(misc / "style-py.sh"))


def parse_cmake_script(script: Path) -> tuple[list[str], str]:
    """The ``CMAKE_FMT="..."`` flags and ``DESIRED_VERSION=`` of seL4_tools' style-cmake.sh."""
    text = script.read_text(encoding="utf-8", errors="replace")
    flags = re.search(r'CMAKE_FMT="([^"]*)"', text)
    version = re.search(r"DESIRED_VERSION=([0-9.]+)", text)
    if flags is None:
        raise InputError(f"{script}: no CMAKE_FMT=\"...\" flags found")
    return shlex.split(flags.group(1).replace("\\\n", " ")), version.group(1) if version else ""


def parse_autopep8_script(script: Path) -> list[str]:
    """The flags of the ``autopep8 -i ... "$@"`` line in seL4_tools' style-py.sh."""
    text = script.read_text(encoding="utf-8", errors="replace")
    match = re.search(r'^\s*autopep8\s+(.*?)\s*"\$@"', text, re.MULTILINE)
    if match is None:
        raise InputError(f"{script}: no `autopep8 ... \"$@\"` line found")
    return [f for f in shlex.split(match.group(1)) if f not in ("-i", "--in-place")]


def require_programs(toolset: Toolset) -> None:
    """Every program the checks run is installed (and cmake-format is the version seL4_tools
    asks for); otherwise exit 125: a missing tool says nothing about the patches."""
    if shutil.which("astyle") is None:
        raise InfraError("astyle is not installed", hint="apt-get install astyle")
    for module in ("gitlint", "cmakelang", "autopep8", "guardonce", "reuse"):
        if importlib.util.find_spec(module) is None:
            raise InfraError(f"the Python package providing '{module}' is not installed",
                             hint="pip install 'orch[test]' (gitlint-core, cmake-format, autopep8, "
                                  "guardonce, reuse)")
    if toolset.cmake_version:
        found = subprocess.run([*CMAKE_FORMAT, "--version"], capture_output=True, text=True, errors="replace")
        version = (found.stdout + found.stderr).strip()
        if version != toolset.cmake_version:
            raise InfraError(f"cmake-format {version or '?'} is installed; seL4_tools asks for "
                             f"{toolset.cmake_version}",
                             hint=f"pip install cmake-format=={toolset.cmake_version}")
