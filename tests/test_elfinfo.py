"""ELF reading on ELF files the tests compile: the VMM's allocator pool symbol and .bss."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from orchestrator.analysis import elf
from orchestrator.analysis.elf import SymbolHit, find_symbol_in_file, iter_elf_files, section_size, vmm_static
from tests.conftest import require_tools

POOL = 0x140000  # 1.25 MiB

# The same shape as camkes-vm's seL4AllocatorMempool.template.c.
CAMKES_LIKE = f"""
static char allocator_mempool[{POOL}] __attribute__((aligned(4096), section("align_12bit")));
static char scratch[8192];
char *get_allocator_mempool(void) {{ return allocator_mempool; }}
int main(void) {{ scratch[1] = 1; return get_allocator_mempool()[0] + scratch[1]; }}
"""

PLAIN_BSS = f"""
char allocator_mempool[{POOL}];
int main(void) {{ return allocator_mempool[3]; }}
"""

USER_ONLY = """
extern char allocator_mempool[];
int peek(void) { return allocator_mempool[0]; }
"""


def compile_c(compiler: str, source: str, out: Path, *flags: str) -> Path:
    src = out.with_suffix(".c")
    src.write_text(source)
    subprocess.run([compiler, *flags, "-o", str(out), str(src)], check=True, capture_output=True)
    return out


def test_pool_in_custom_section_of_a_linked_program(tmp_path: Path) -> None:
    require_tools("gcc")
    elf = compile_c("gcc", CAMKES_LIKE, tmp_path / "vm0.instance.bin", "-O0")
    hit = find_symbol_in_file(elf, ["allocator_mempool"])
    assert hit is not None
    assert hit.size == POOL
    assert hit.section == "align_12bit"
    assert hit.elf_type in ("ET_EXEC", "ET_DYN")
    bss = section_size(elf, ".bss")
    assert bss is not None and bss >= 8192


def test_pool_in_bss(tmp_path: Path) -> None:
    require_tools("gcc")
    elf = compile_c("gcc", PLAIN_BSS, tmp_path / "vmm", "-O0")
    hit = find_symbol_in_file(elf, ["allocator_mempool"])
    assert hit is not None and hit.section == ".bss" and hit.size == POOL
    static = vmm_static(tmp_path)
    assert static.mempool is not None and static.mempool.file == elf
    assert static.bss_size is not None and static.bss_size >= POOL
    assert static.where == "vmm, section .bss"


def test_scan_prefers_the_linked_component_and_ignores_references(tmp_path: Path) -> None:
    require_tools("gcc")
    build = tmp_path / "build"
    (build / "obj").mkdir(parents=True)
    (build / "other").mkdir()
    compile_c("gcc", USER_ONLY, build / "other" / "user.o", "-c")  # references, defines nothing
    compile_c("gcc", CAMKES_LIKE, build / "obj" / "pool.o", "-c")  # defines it, but not linked
    linked = compile_c("gcc", CAMKES_LIKE, build / "vm0", "-O0")  # not named as a component: all scanned
    (build / "notes.txt").write_text("allocator_mempool is not an ELF here")
    static = vmm_static(build)
    assert static.mempool is not None
    assert static.mempool.file == linked
    assert static.mempool.size == POOL
    assert set(static.candidates) == {linked, build / "obj" / "pool.o"}
    assert build / "notes.txt" not in set(iter_elf_files(build))


def test_nothing_found(tmp_path: Path) -> None:
    require_tools("gcc")
    compile_c("gcc", "int main(void){return 0;}", tmp_path / "a.out")
    static = vmm_static(tmp_path)
    assert static.mempool is None and static.bss_size is None and static.where == "not found"
    assert vmm_static(tmp_path / "missing").mempool is None


def test_aarch64_component(tmp_path: Path) -> None:
    require_tools("aarch64-linux-gnu-gcc")  # CI installs it: a skip there would hide a failure
    elf = compile_c(
        "aarch64-linux-gnu-gcc", CAMKES_LIKE, tmp_path / "vm0.instance.bin", "-static", "-nostdlib",
        "-Wl,-e,main",
    )
    static = vmm_static(tmp_path)
    assert static.mempool is not None and static.mempool.file == elf
    assert static.mempool.size == POOL and static.mempool.section == "align_12bit"


def test_scan_prefers_the_component_program_over_its_copies(tmp_path: Path) -> None:
    """A real CAmkES build dir holds vm0.instance.bin and two copies of it, vm0.instance-copy.bin
    and vm0_group_bin; the table should name the component's program, not a copy."""
    require_tools("gcc")
    linked = compile_c("gcc", CAMKES_LIKE, tmp_path / "vm0.instance.bin", "-O0")
    for copy in ("vm0.instance-copy.bin", "vm0_group_bin"):
        shutil.copy(linked, tmp_path / copy)
    static = vmm_static(tmp_path)
    assert static.mempool is not None and static.mempool.file == linked
    assert static.where == "vm0.instance.bin, section align_12bit"
    assert static.candidates == (linked,) and static.scanned == "components"


def test_only_the_component_programs_are_read_when_the_build_names_some(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_tools("gcc")
    linked = compile_c("gcc", CAMKES_LIKE, tmp_path / "vm0.instance.bin", "-O0")
    (tmp_path / "libs").mkdir()
    for i in range(5):  # objects and tools a real build leaves beside it
        shutil.copy(linked, tmp_path / "libs" / f"tool{i}")
    opened: list[Path] = []
    real = elf.find_symbol_in_file

    def recording(path: Path, names: Sequence[str]) -> SymbolHit | None:
        opened.append(path)
        return real(path, names)

    monkeypatch.setattr(elf, "find_symbol_in_file", recording)
    static = vmm_static(tmp_path)
    assert static.mempool is not None and static.mempool.file == linked
    assert opened == [linked]
    # no component program defines the pool: every ELF file is scanned, as before
    linked.unlink()
    opened.clear()
    static = vmm_static(tmp_path)
    assert static.scanned == "all" and static.mempool is not None and len(opened) == 5
