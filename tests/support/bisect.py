"""A fixture for `orch bisect`: the end-to-end workspace of :mod:`tests.support.e2e` with a
third project (``projects/seL4_projects_libs``, whose header every build includes) and a
manifest repository of ten snapshots after the good one, each bumping one or more of the
three projects.

Planted, in commit-time order (``S`` = snapshot, ``K``/``L``/``T`` = kernel/libs/tools):

- S3 pins a kernel commit that rewrites the lines the ``largepage`` patch changes, so the
  patchset stops applying there (S4 puts them back);
- S5 (the first bad snapshot) moves libs L0 -> L5 and kernel K3 -> K5, interleaved in time:
  L1, K4, L2 (does not build), L3 (fixes it), L4 (**the regression**: 4 KiB frames again, so
  the console turns into the seed's allocation failure), K5, L5;
- every other snapshot bumps a project harmlessly.

The ``largepage`` patchset picks its build image by era: ``orch-era:old`` for snapshots before
S3's date, ``orch-era:v2`` where libs says ``VM_CONFIG_VERSION 2``, else its default image.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.support.build import make_tools_upstream
from tests.support.e2e import LARGEPAGE_TOML, e2e_kernel_files, write_vm2g_and_largepage
from tests.support.e2e import manifest_xml as e2e_manifest_xml
from tests.support.git import Upstream, make_upstream

LIBS = "projects/seL4_projects_libs"
LIBS_HEADER = "include/vm_config.h"
LIBS_CONFIG = "/* libsel4vm configuration (fixture) */\n#define VM_CONFIG_VERSION 1\n"
INCLUDE_LIBS = ('target_compile_options(console.elf PRIVATE "SHELL:-include '
                '${CMAKE_CURRENT_LIST_DIR}/../projects/seL4_projects_libs/include/vm_config.h")\n')
REGRESSION = """
/* guest RAM: back to the 4 KiB frames the allocator can map quickly */
#undef SCENARIO
#define SCENARIO SCENARIO_FAIL
"""
START = datetime(2024, 1, 1, tzinfo=UTC)


def manifest_xml(kernel: str, tools: str, libs: str) -> str:
    libs_project = f'  <project name="seL4_projects_libs.git" path="{LIBS}" revision="{libs}"/>\n'
    return e2e_manifest_xml(kernel, tools, libs_project)


@dataclass
class BisectFixture:
    server: Path
    manifest: Upstream
    kernel: Upstream
    tools: Upstream
    libs: Upstream
    patchsets: Path
    workspace: Path
    snapshots: list[str] = field(default_factory=list)  # S0 (good) .. S10 (bad)
    dates: list[str] = field(default_factory=list)  # each snapshot's committer date
    libs_commits: dict[str, str] = field(default_factory=dict)  # L0..L6 -> SHA
    kernel_commits: dict[str, str] = field(default_factory=dict)

    @property
    def manifest_url(self) -> str:
        return str(self.manifest.bare)

    @property
    def culprit(self) -> str:
        return self.libs_commits["L4"]


class _Clock:
    """Commit dates one day apart, so the interleaving by time is the planted order."""

    def __init__(self) -> None:
        self.now = START

    @contextlib.contextmanager
    def tick(self) -> Iterator[str]:
        self.now += timedelta(days=1)
        stamp = self.now.isoformat()
        saved = {k: os.environ.get(k) for k in ("GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE")}
        os.environ["GIT_AUTHOR_DATE"] = os.environ["GIT_COMMITTER_DATE"] = stamp
        try:
            yield stamp
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _kernel_files() -> dict[str, str]:
    files = e2e_kernel_files()
    files["CMakeLists.txt"] = files["CMakeLists.txt"].replace(
        "target_link_options(console.elf", INCLUDE_LIBS + "target_link_options(console.elf")
    return files


ERA_RULES = """
[[build.images]]
image = "orch-era:old"
before = "{before}"

[[build.images]]
image = "orch-era:v2"
file = "projects/seL4_projects_libs/include/vm_config.h"
contains = "VM_CONFIG_VERSION 2"
"""


def make_bisect_fixture(base: Path) -> BisectFixture:
    clock = _Clock()
    server = base / "git" / "seL4"
    with clock.tick():
        kernel = make_upstream(server, "kernel.git", _kernel_files())
    with clock.tick():
        tools = make_tools_upstream(server, "tools.git")
    with clock.tick():
        libs = make_upstream(server, "seL4_projects_libs.git", {LIBS_HEADER: LIBS_CONFIG})
    pins = {"kernel": kernel.head(), "tools": tools.head(), "libs": libs.head()}
    with clock.tick() as first:
        manifest = make_upstream(server, "manifest", {"default.xml": manifest_xml(**pins)}, "manifest: S0")
    fx = BisectFixture(server, manifest, kernel, tools, libs, base / "patchsets", base / "ws")
    fx.libs_commits["L0"] = libs.head()

    def snapshot(label: str) -> None:
        with clock.tick() as stamp:
            fx.snapshots.append(manifest.commit({"default.xml": manifest_xml(**pins)},
                                                f"Updating default.xml ({label})"))
            fx.dates.append(stamp)

    fx.snapshots.append(manifest.head())
    fx.dates.append(first)
    write_vm2g_and_largepage(fx.patchsets, kernel, LARGEPAGE_TOML, mempool=False)

    def bump(name: str, up: Upstream, files: dict[str, str], subject: str, label: str = "") -> str:
        with clock.tick():
            sha = up.commit(files, subject)
        pins[name] = sha
        if label:
            (fx.libs_commits if name == "libs" else fx.kernel_commits)[label] = sha
        return sha

    frames = _kernel_files()["src/frames.h"]
    notes = "kernel notes\n"
    bump("kernel", kernel, {"notes.txt": notes + "1\n"}, "kernel: notes 1", "K1")
    snapshot("S1: kernel")
    bump("libs", libs, {"README": "libs\n"}, "libs: README")
    bump("libs", libs, {"README": "libs, documented\n"}, "libs: document the README")
    snapshot("S2: libs")
    bump("kernel", kernel, {"src/frames.h": frames.replace("#define FRAME_SIZE_BITS 12",
                                                            "#define FRAME_SIZE_BITS (12)")},
         "kernel: parenthesise FRAME_SIZE_BITS", "K2")
    snapshot("S3: kernel")
    bump("kernel", kernel, {"src/frames.h": frames}, "Revert: kernel: parenthesise FRAME_SIZE_BITS", "K3")
    bump("tools", tools, {"notes.txt": "tools 1\n"}, "tools: notes 1")
    snapshot("S4: kernel, tools")
    config_v2 = LIBS_CONFIG.replace("VERSION 1", "VERSION 2")
    bump("libs", libs, {LIBS_HEADER: config_v2}, "libsel4vm: configuration version 2", "L1")
    bump("kernel", kernel, {"notes.txt": notes + "4\n"}, "kernel: notes 4", "K4")
    bump("libs", libs, {LIBS_HEADER: config_v2 + "static const int vm_config_broken = ;\n"},
         "libsel4vm: add vm_config_broken (does not build)", "L2")
    bump("libs", libs, {LIBS_HEADER: config_v2}, "libsel4vm: fix the build", "L3")
    bump("libs", libs, {LIBS_HEADER: config_v2 + REGRESSION},
         "libsel4vm: map guest RAM with 4 KiB frames", "L4")
    bump("kernel", kernel, {"notes.txt": notes + "5\n"}, "kernel: notes 5", "K5")
    bump("libs", libs, {"README": "libs 5\n"}, "libs: README 5", "L5")
    snapshot("S5: libs, kernel")
    for number, (name, up) in enumerate(
            [("tools", tools), ("kernel", kernel), ("libs", libs), ("tools", tools), ("kernel", kernel)], 6):
        bump(name, up, {"notes.txt": f"{name} {number}\n"}, f"{name}: notes {number}",
             "L6" if name == "libs" else "")
        snapshot(f"S{number}: {name}")
    _write_era_rules(fx)
    return fx


def _write_era_rules(fx: BisectFixture) -> None:
    """Insert the [[build.images]] rules into largepage's [build] table (before [variants])."""
    config = fx.patchsets / "largepage" / "patchset.toml"
    text = config.read_text()
    rules = ERA_RULES.format(before=fx.dates[3][:10])
    config.write_text(text.replace("\n[variants.4k]", rules + "\n[variants.4k]", 1))
