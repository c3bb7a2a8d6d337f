"""Static memory cost of the VMM, read from the built ELF files with pyelftools.

CAmkES gives every VMM component a static allocator pool (camkes-vm's
``seL4AllocatorMempool.template.c``: ``static char allocator_mempool[SIZE]`` in section
``align_12bit``, 80 MiB unless ``vmX.allocator_mempool_size`` says otherwise). Its real size is
the symbol's ``st_size`` in the component's ELF. This module finds that ELF by scanning a build
directory for ELF files that define the symbol, and reports the size, the file and section it
was found in, and the size of that component's ``.bss``. Only the component programs the
build names (``*.instance.bin``) are read when there are any.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

MEMPOOL_SYMBOLS: tuple[str, ...] = ("allocator_mempool",)
"""Symbol names the VMM allocator pool goes by; the first one found wins."""

_ELF_MAGIC = b"\x7fELF"
_SKIP_DIRS = frozenset({".git", ".sel4_cache", "CMakeFiles", "__pycache__"})
_MAX_SCAN_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class SymbolHit:
    """A symbol defined in one ELF file: its size, and where it lives."""

    name: str
    size: int
    address: int
    section: str  # the section the symbol is defined in, e.g. ".bss" or "align_12bit"
    file: Path
    elf_type: str  # ET_EXEC, ET_DYN or ET_REL


@dataclass(frozen=True)
class VmmStatic:
    """The VMM component's static memory: the allocator pool and the component's .bss."""

    mempool: SymbolHit | None
    bss_size: int | None  # size of .bss in the file the pool was found in
    candidates: tuple[Path, ...] = ()  # every ELF that defined the symbol (the first is used)
    scanned: str = "components"  # which files were read: the component programs, or all ELF files

    @property
    def where(self) -> str:
        """Human words for where the pool was found ("vm0.instance.bin, section align_12bit")."""
        if self.mempool is None:
            return "not found"
        return f"{self.mempool.file.name}, section {self.mempool.section}"


def is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(4) == _ELF_MAGIC
    except OSError:
        return False


def iter_elf_files(root: Path) -> Iterator[Path]:
    """Every regular ELF file under ``root`` (symlinks not followed, VCS/cache dirs skipped)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in sorted(filenames):
            path = Path(dirpath, name)
            if not path.is_symlink() and path.is_file() and is_elf(path):
                yield path


def _mentions(path: Path, names: Sequence[str]) -> bool:
    """Cheap pre-filter: does the file contain any of the names as bytes at all?"""
    try:
        size = path.stat().st_size
        if size == 0 or size > _MAX_SCAN_BYTES:
            return False
        with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return any(data.find(name.encode()) >= 0 for name in names)
    except (OSError, ValueError):
        return False


def find_symbol_in_file(path: Path, names: Sequence[str]) -> SymbolHit | None:
    """The first of ``names`` that ``path`` *defines* (undefined references do not count)."""
    try:
        with path.open("rb") as handle:
            elf = ELFFile(handle)
            elf_type = str(elf.header["e_type"])
            for section in elf.iter_sections():
                if not isinstance(section, SymbolTableSection):
                    continue
                for name in names:
                    for symbol in section.get_symbol_by_name(name) or []:
                        shndx = symbol["st_shndx"]
                        if not isinstance(shndx, int):  # SHN_UNDEF, SHN_ABS, SHN_COMMON
                            if shndx == "SHN_COMMON":
                                return SymbolHit(name, int(symbol["st_size"]), 0, "COMMON", path, elf_type)
                            continue
                        return SymbolHit(
                            name=name,
                            size=int(symbol["st_size"]),
                            address=int(symbol["st_value"]),
                            section=elf.get_section(shndx).name,
                            file=path,
                            elf_type=elf_type,
                        )
    except (ELFError, OSError, ValueError, KeyError):
        return None
    return None


def section_size(path: Path, name: str = ".bss") -> int | None:
    """The size of section ``name`` in an ELF file, None when it has no such section."""
    try:
        with path.open("rb") as handle:
            section = ELFFile(handle).get_section_by_name(name)
            return None if section is None else int(section["sh_size"])
    except (ELFError, OSError, ValueError):
        return None


CAMKES_COMPONENT_SUFFIX = ".instance.bin"
"""How CAmkES names a component's linked program (``vm0.instance.bin``); the build also leaves
byte-identical copies of it (``vm0.instance-copy.bin``, ``vm0_group_bin``) that sort first."""


def _preference(hit: SymbolHit, hints: Sequence[str]) -> tuple[int, int, int, str]:
    """Linked programs before object files, then files whose name has a component hint, then
    CAmkES's own component program before the copies the build makes of it."""
    linked = 0 if hit.elf_type in ("ET_EXEC", "ET_DYN") else 1
    hinted = 0 if any(h in hit.file.name for h in hints) else 1
    component = 0 if hit.file.name.endswith(CAMKES_COMPONENT_SUFFIX) else 1
    return (linked, hinted, component, str(hit.file))


def find_symbol(
    files: Iterable[Path], names: Sequence[str] = MEMPOOL_SYMBOLS, hints: Sequence[str] = ()
) -> list[SymbolHit]:
    """Every file among ``files`` defining one of ``names``, best candidate first."""
    hits = [
        hit
        for path in files
        if _mentions(path, names) and (hit := find_symbol_in_file(path, names)) is not None
    ]
    return sorted(hits, key=lambda h: _preference(h, hints))


def component_programs(build_dir: Path) -> list[Path]:
    """The component programs a CAmkES build names (``<instance>.instance.bin``), found by
    name alone: no file is opened, so this costs one directory walk."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(build_dir):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        found += [Path(dirpath, n) for n in sorted(filenames) if n.endswith(CAMKES_COMPONENT_SUFFIX)]
    return [p for p in found if not p.is_symlink() and p.is_file()]


def vmm_static(
    build_dir: Path, names: Sequence[str] = MEMPOOL_SYMBOLS, hints: Sequence[str] = ("vm0", "vm")
) -> VmmStatic:
    """Read the VMM component's pool and .bss sizes from its ELF: only the component programs
    the build names are read (a CAmkES build has thousands of other ELF files: objects,
    libraries, tools); a build without them (not CAmkES) has every ELF file scanned."""
    if not build_dir.is_dir():
        return VmmStatic(mempool=None, bss_size=None)
    hits = find_symbol(component_programs(build_dir), names, hints)
    scanned = "components"
    if not hits:
        hits, scanned = find_symbol(iter_elf_files(build_dir), names, hints), "all"
    if not hits:
        return VmmStatic(mempool=None, bss_size=None, scanned=scanned)
    best = hits[0]
    return VmmStatic(
        mempool=best,
        bss_size=section_size(best.file, ".bss"),
        candidates=tuple(h.file for h in hits),
        scanned=scanned,
    )
