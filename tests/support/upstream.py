"""A small seL4-like world for `orch upstream`: bare upstreams for a kernel, a library, an
examples repository and a seL4_tools-like project (its ``misc/`` config written for these
tests, in our own words: same rules as seL4's, not a copy), a manifest naming them with
``upstream``/``dest-branch``, and patchsets made with ``git format-patch``."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.git import Upstream, git, make_manifest_repo, make_upstream

HEADER_C = "/*\n * Copyright 2026, Test Authors\n *\n * SPDX-License-Identifier: BSD-2-Clause\n */\n"
HEADER_HASH = "#\n# Copyright 2026, Test Authors\n#\n# SPDX-License-Identifier: BSD-2-Clause\n#\n"
LICENSE = {"LICENSES/BSD-2-Clause.txt": "BSD 2-Clause License (the test fixture's stand-in text)\n"}
AUTHOR = ("Test Dev", "dev@example.org")
OTHER = ("Other Person", "other@example.org")

GUEST_RAM = "libsel4vm/src/guest_ram.c"
SETTINGS = "apps/vm_minimal/settings.cmake"
DTS = "src/plat/qemu-arm-virt/overlay.dts"

GITLINT = """# orch test fixture: the commit message rules seL4 asks for
[general]
ignore-merge-commits=true
ignore-fixup-commits=false
ignore-squash-commits=false
regex-style-search=true

[title-max-length]
line-length=50

[title-must-not-contain-word]
words=wip,squash,tosquash

[body-max-line-length]
line-length=72

[body-min-length]
min-length=0

[ignore-by-title]
# a title starting with "trivial" needs no body
regex=^trivial(.*)
ignore=B6
"""

ASTYLERC = """# orch test fixture: seL4's C style options
style=otbs
pad-header
indent=spaces=4
attach-closing-while
pad-oper
pad-comma
unpad-paren
align-pointer=name
add-braces
attach-return-type
convert-tabs
min-conditional-indent=0
max-code-length=120
max-continuation-indent=120
"""

STYLE_CMAKE = """#!/bin/sh
# orch test fixture: formats CMake files as seL4 does
CMAKE_FMT="--line-width 100 \\
           --tab-size 2 \\
           --separate-ctrl-name-with-space False \\
           --separate-fn-name-with-space False \\
           --dangle-parens False \\
           --command-case unchanged \\
           --keyword-case unchanged \\
           --max-subgroups-hwrap 10 \\
           --enable-markup False"
DESIRED_VERSION=0.6.13
for f in "$@"; do
  cmake-format -i $CMAKE_FMT "$f"
done
"""

STYLE_PY = """#!/bin/sh
# orch test fixture: formats Python files as seL4 does
autopep8 -i --max-line-length 100 "$@"
"""

IS_VALID_SHELL = """#!/bin/sh
# orch test fixture: accept only POSIX shell scripts (checkbashisms, then sh -n)
set -eu
for FILE
do
    case "$FILE" in
        (*.sh|*.bash|*.ksh) ;;
        (*) continue ;;
    esac
    if ! checkbashisms --force --posix --extra "$FILE"; then
        echo "is-valid-shell-script: fatal error: script \\"$FILE\\" has non-POSIX features" >&2
        exit 3
    fi
    if ! sh -n "$FILE"; then
        echo "is-valid-shell-script: fatal error: script \\"$FILE\\" failed syntax check" >&2
        exit 3
    fi
done
"""

CLEAN_C = HEADER_C + """
#include <stdint.h>

int vm_ram_touch(int *addr, int size)
{
    int total = 0;
    for (int i = 0; i < size; i++) {
        total += addr[i];
    }
    return total;
}
"""

CLEAN_CMAKE = HEADER_HASH + """
cmake_minimum_required(VERSION 3.16.0)

set(QEMU_MEMORY "1024")
"""

DTS_TEXT = HEADER_C + """
/ {
\tmemory@40000000 {
\t\treg = <0x0 0x40000000 0x0 0x20000000>;
\t};
};
"""


def tools_files() -> dict[str, str]:
    return {"misc/.gitlint": GITLINT, "misc/astylerc": ASTYLERC, "misc/style-cmake.sh": STYLE_CMAKE,
            "misc/style-py.sh": STYLE_PY, "misc/is-valid-shell-script": IS_VALID_SHELL}


@dataclass(frozen=True)
class FixtureProject:
    name: str
    path: str
    files: dict[str, str]


def fixture_projects() -> list[FixtureProject]:
    return [
        FixtureProject("seL4.git", "kernel", {DTS: DTS_TEXT, **LICENSE}),
        FixtureProject("seL4_projects_libs.git", "projects/seL4_projects_libs",
                       {GUEST_RAM: CLEAN_C, **LICENSE}),
        FixtureProject("camkes-vm-examples.git", "projects/vm-examples", {SETTINGS: CLEAN_CMAKE, **LICENSE}),
        FixtureProject("seL4_tools.git", "tools/seL4", tools_files()),
    ]


@dataclass
class World:
    server: Path  # the bare upstreams (seL4/<name>)
    manifest: Path
    upstreams: dict[str, Upstream]  # manifest path -> upstream
    forks: Path  # bare forks: forks/alice/<name>.git
    patchsets: Path

    def fork(self, path: str) -> Path:
        name = next(p.name for p in fixture_projects() if p.path == path)
        return self.forks / "alice" / name


def make_world(base: Path) -> World:
    server = base / "git" / "seL4"
    upstreams = {p.path: make_upstream(server, p.name, p.files) for p in fixture_projects()}
    git(upstreams["tools/seL4"].scratch, "update-index", "--chmod=+x", "misc/is-valid-shell-script")
    git(upstreams["tools/seL4"].scratch, "commit", "-q", "-m", "executable")
    git(upstreams["tools/seL4"].scratch, "push", "-q", "origin", "master")
    projects = "\n".join(
        f'  <project name="{p.name}" path="{p.path}" upstream="master" dest-branch="master"/>'
        for p in fixture_projects()
    )
    xml = ('<?xml version="1.0" encoding="UTF-8"?>\n<manifest>\n  <remote name="seL4" fetch="../seL4"/>\n'
           f'  <default remote="seL4" revision="master"/>\n{projects}\n</manifest>\n')
    manifest = make_manifest_repo(server, "manifest", {"default.xml": xml}).bare
    forks = base / "forks"
    for p in fixture_projects():
        git(base, "init", "-q", "--bare", str(forks / "alice" / p.name))
    return World(server, manifest, upstreams, forks, base / "patchsets")


@dataclass(frozen=True)
class Change:
    """One commit of a patchset: message, files to write, author."""

    message: str
    files: dict[str, str]
    author: tuple[str, str] = AUTHOR
    mode_x: tuple[str, ...] = ()


def signed(title: str, body: str = "Explain why.", author: tuple[str, str] = AUTHOR) -> str:
    return f"{title}\n\n{body}\n\nSigned-off-by: {author[0]} <{author[1]}>\n"


def make_patchset(world: World, name: str, changes: dict[str, list[Change]], *,
                  requires: tuple[str, ...] = (), base: dict[str, str] | None = None) -> Path:
    """``world.patchsets/name`` from commits made on the upstreams' master (or ``base``)."""
    directory = world.patchsets / name
    lines = [f'description = "{name} for tests"', f"requires = {list(requires)!r}".replace("'", '"'), ""]
    for path, commits in changes.items():
        scratch = world.upstreams[path].scratch
        start = (base or {}).get(path, world.upstreams[path].head())
        git(scratch, "checkout", "-q", "--detach", start)
        for change in commits:
            for rel, text in change.files.items():
                target = scratch / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
            for rel in change.mode_x:
                (scratch / rel).chmod(0o755)
            git(scratch, "add", "-A")
            env = {**os.environ, "GIT_AUTHOR_NAME": change.author[0], "GIT_AUTHOR_EMAIL": change.author[1]}
            subprocess.run(["git", "commit", "-q", "-F", "-"], cwd=scratch, input=change.message, text=True,
                           env=env, check=True)
        out = directory / path
        out.mkdir(parents=True, exist_ok=True)
        git(scratch, "format-patch", "-q", "--zero-commit", "--no-signature", "-o", str(out),
            f"HEAD~{len(commits)}")
        lines.append(f'[projects."{path}"]')
        lines.append("patches = [")
        for patch in sorted(out.glob("*.patch")):
            digest = hashlib.sha256(patch.read_bytes()).hexdigest()
            lines.append(f'  {{ file = "{patch.name}", sha256 = "{digest}" }},')
        lines.append("]")
        lines.append("")
        git(scratch, "checkout", "-q", "master")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "patchset.toml").write_text("\n".join(lines))
    return directory


# --------------------------------------------------------------------------- get-prs' grammar

# Written from the documented cases of seL4/ci-actions scripts/get-prs (its unit test):
# only lines starting "Test with" / "test with" (optional ":"), then one or more spaces, then a
# list of references separated by commas/spaces with an optional "and"; a reference is
# org/repo#N, https://github.com/org/repo/pull/N, org/repo@ref or
# https://github.com/org/repo/(tree|commit)/ref; a ref starts with [A-Za-z0-9_] and continues
# with [A-Za-z0-9_./-]; anything after the list that is not a proper separator + reference
# ends the list. Indented lines are ignored.
_NAME = r"[a-zA-Z0-9_-]+"
_REF = (rf"(?:({_NAME}/{_NAME})#([0-9]+)|https://github\.com/({_NAME}/{_NAME})/pull/([0-9]+)"
        rf"|({_NAME}/{_NAME})@([a-zA-Z0-9_][a-zA-Z0-9_./-]*)"
        rf"|https://github\.com/({_NAME}/{_NAME})/(?:tree|commit)/([a-zA-Z0-9_][a-zA-Z0-9_./-]*))")
_LINE = re.compile(rf"[Tt]est with:?[ ]+({_REF}(?:[, ]+(?:and)?[ ]*{_REF})*)")


def parse_test_with(text: str) -> list[str]:
    refs: list[str] = []
    for line in text.splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        for g in re.findall(_REF, match.group(1)):
            if g[0]:
                refs.append(f"{g[0]}#{g[1]}")
            elif g[2]:
                refs.append(f"{g[2]}#{g[3]}")
            elif g[4]:
                refs.append(f"{g[4]}@{g[5]}")
            else:
                refs.append(f"{g[6]}@{g[7]}")
    return refs
