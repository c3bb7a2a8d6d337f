"""The seed's bookkeeping: how many frames the guest's RAM takes and what the VMM's allocator
needs to track them, next to the allocator pool that was configured.

The seed (seL4 VMM on qemu-arm-virt, 2 GiB guest) explains its failure with
``(2GB / 4KB) * 2 * (sizeof(node) + overhead) = 120MB`` against an 80 MB pool; with 2 MiB
frames the same guest needs 512 times less. Each input is recorded with where it came from
(a spec key, a line of a source file of the variant's tree, the built ELF, or a default), so
the report says why it believes a number.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.analysis.elf import SymbolHit
from orchestrator.errors import InputError

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

NODES_PER_FRAME = 2
NODE_BYTES = 120
ESTIMATE_LABEL = "allocator metadata (estimate)"
"""How every output names the figure: it is an estimate, not a measurement."""
ESTIMATE_SOURCE = ("estimate: frames x 2 nodes x 120 B, a per-node size fitted to the seed bug "
                   "report's own figure (2 GiB at 4 KiB = 120 MiB), not measured")
"""Where the figure comes from, for every output that shows it."""
"""``sizeof(node) + overhead`` of the VMM's buddy-like untyped allocator, in bytes.

Not measured: chosen so that the seed's example comes out as the seed says, 2 GiB of guest
RAM at 4 KiB frames = 524288 frames * 2 nodes * 120 bytes = 120 MiB. Treat the result as an
estimate of the order of magnitude, not as allocman's exact usage."""

DEFAULT_MEMPOOL = 80 * MiB
"""camkes-vm's default ``allocator_mempool_size`` (seL4AllocatorMempool.template.c)."""

SEL4_PAGE_BITS = {"seL4_PageBits": 12, "seL4_LargePageBits": 21, "seL4_HugePageBits": 30}
"""Frame sizes of the AArch64 seL4 object types the VMM can map guest RAM with."""

_SIZE_RE = re.compile(r"^\s*(0x[0-9a-fA-F]+|\d+)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": KiB, "m": MiB, "g": GiB, "t": 1024 * GiB}
_RAM_DEFINE_RE = re.compile(r"^\s*#\s*define\s+VM_RAM_SIZE\s+\(?\s*(0x[0-9a-fA-F]+|\d+)")
_MEMPOOL_ATTR_RE = re.compile(r"\ballocator_mempool_size\s*=\s*(0x[0-9a-fA-F]+|\d+)")
_PAGE_SIZE_RE = re.compile(r"\bpage_size\s*=\s*(seL4_\w+Bits|\d+)\s*;")
_UT_ITERATOR_RE = re.compile(r"\bram_ut_alloc_iterator\s*\([^;]*$")
"""The definition (not a prototype or call) of the iterator that allocates guest RAM from
untyped memory, the one whose frames the allocator's bookkeeping counts; upstream's guest_ram.c
also has ``ram_alloc_iterator`` with its own ``page_size``."""


@dataclass(frozen=True)
class Sourced:
    """A number and where it came from (``spec: memory.guest_ram``, ``path:line``, ``default``)."""

    value: int
    source: str


@dataclass(frozen=True)
class MemoryEstimate:
    """Guest RAM in frames, the allocator metadata they need, and the pool they must fit in."""

    guest_ram: Sourced | None
    frame_size: Sourced | None
    mempool: Sourced | None
    frames: int | None
    metadata: int | None  # estimated bytes of allocator bookkeeping for those frames

    @property
    def headroom(self) -> int | None:
        """Pool minus estimated metadata; negative means the seed's failure is predicted."""
        if self.metadata is None or self.mempool is None:
            return None
        return self.mempool.value - self.metadata

    @property
    def fits(self) -> bool | None:
        headroom = self.headroom
        return None if headroom is None else headroom >= 0


def frames_of(guest_ram: int, frame_size: int) -> int:
    """How many frames of ``frame_size`` (positive) cover ``guest_ram`` (rounded up)."""
    return -(-guest_ram // frame_size)


def metadata_bytes(frames: int) -> int:
    """The seed's formula: frames * 2 * (sizeof(node) + overhead)."""
    return frames * NODES_PER_FRAME * NODE_BYTES


def estimate(
    guest_ram: Sourced | None, frame_size: Sourced | None, mempool: Sourced | None
) -> MemoryEstimate:
    frames = None
    if guest_ram is not None and frame_size is not None:
        frames = frames_of(guest_ram.value, frame_size.value)
    return MemoryEstimate(
        guest_ram=guest_ram,
        frame_size=frame_size,
        mempool=mempool,
        frames=frames,
        metadata=None if frames is None else metadata_bytes(frames),
    )


def parse_size(value: Any, where: str) -> int:
    """``2G``, ``2GiB``, ``4K``, ``0x80000000``, ``"2097152"`` or an int, as bytes."""
    if isinstance(value, bool):
        raise InputError(f"{where}: expected a size like 2G or 0x80000000, got {value!r}")
    if isinstance(value, int):
        return value
    match = _SIZE_RE.match(str(value))
    if match is None:
        raise InputError(f"{where}: expected a size like 2G, 4K or 0x80000000, got {value!r}")
    number, unit = match.groups()
    return int(number, 0) * _UNITS[(unit or "")[:1].lower()]


def format_bytes(value: int | None) -> str:
    """Compact binary units: 120 MiB, 240 KiB, 2 GiB, 1.5 MiB."""
    if value is None:
        return "-"
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if abs(value) >= size:
            scaled = value / size
            text = f"{scaled:.0f}" if scaled == int(scaled) or abs(scaled) >= 100 else f"{scaled:.1f}"
            return f"{text} {unit}"
    return f"{value} B"


def _describe(path: Path, root: Path | None, line: int) -> str:
    try:
        shown = path.relative_to(root) if root is not None else path
    except ValueError:
        shown = path
    return f"{shown}:{line}"


def _first_match(path: Path, pattern: re.Pattern[str], root: Path | None,
                 after: re.Pattern[str] | None = None) -> tuple[str, str] | None:
    """The first capture of ``pattern`` in ``path`` (comments after ``//`` ignored) and its place;
    with ``after``, the first one following the first line ``after`` matches, if there is one."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    code = [line.split("//", 1)[0] for line in lines]
    start = next((i for i, line in enumerate(code) if after.search(line)), 0) if after else 0
    for number in (*range(start, len(code)), *range(start)):
        match = pattern.search(code[number])
        if match:
            return match.group(1), _describe(path, root, number + 1)
    return None


def vm_ram_from_camkes(path: Path, root: Path | None = None) -> Sourced | None:
    """``#define VM_RAM_SIZE 0x80000000`` from an app's devices.camkes."""
    found = _first_match(path, _RAM_DEFINE_RE, root)
    return None if found is None else Sourced(int(found[0], 0), found[1])


def mempool_from_camkes(path: Path, root: Path | None = None) -> Sourced | None:
    """``vm0.allocator_mempool_size = 0x100000;`` from an app's .camkes files."""
    found = _first_match(path, _MEMPOOL_ATTR_RE, root)
    return None if found is None else Sourced(int(found[0], 0), found[1])


def frame_size_from_guest_ram(path: Path, root: Path | None = None) -> Sourced | None:
    """``int page_size = seL4_PageBits;`` (4 KiB) or ``seL4_LargePageBits`` (2 MiB) in
    libsel4vm's guest_ram.c, the granularity the VMM allocates guest RAM frames with: the one
    in ``ram_ut_alloc_iterator`` where the file has it, else the first in the file."""
    found = _first_match(path, _PAGE_SIZE_RE, root, after=_UT_ITERATOR_RE)
    if found is None:
        return None
    token, where = found
    bits = SEL4_PAGE_BITS.get(token) if token.startswith("seL4_") else int(token)
    return None if bits is None else Sourced(1 << bits, f"{where} ({token})")


@dataclass(frozen=True)
class AppSources:
    """The files of a variant's tree the bookkeeping reads (None where the tree has none)."""

    devices_camkes: Path | None
    app_camkes: tuple[Path, ...]
    guest_ram_c: Path | None


def _first_existing(root: Path, patterns: list[str]) -> Path | None:
    for pattern in patterns:
        for found in sorted(root.glob(pattern)):
            if found.is_file():
                return found
    return None


def find_app_sources(root: Path, app: str, platform: str) -> AppSources:
    """Locate devices.camkes, the app's .camkes files and guest_ram.c in a source tree laid out
    like camkes-vm-examples (``projects/vm-examples/apps/Arm/<app>/<platform>/devices.camkes``)."""
    patterns = ("projects/*/apps/*/", "projects/*/apps/", "*/apps/*/", "*/apps/", "apps/*/", "apps/")
    app_dirs = [d for p in patterns for d in sorted(root.glob(p + app)) if d.is_dir()]
    devices = None
    camkes: list[Path] = []
    for app_dir in app_dirs:
        candidate = app_dir / platform / "devices.camkes"
        if devices is None and candidate.is_file():
            devices = candidate
        camkes.extend(sorted(app_dir.glob("*.camkes")))
    guest_ram = _first_existing(root, ["projects/*/libsel4vm/src/guest_ram.c", "*/libsel4vm/src/guest_ram.c",
                                       "libsel4vm/src/guest_ram.c"])
    return AppSources(devices_camkes=devices, app_camkes=tuple(camkes), guest_ram_c=guest_ram)


def gather(
    root: Path | None,
    *,
    app: str = "vm_minimal",
    platform: str = "qemu-arm-virt",
    spec: Mapping[str, Any] | None = None,
    elf_mempool: SymbolHit | None = None,
    spec_name: str = "memory",
) -> MemoryEstimate:
    """The estimate for one variant.

    Precedence: guest RAM and frame size come from the spec's ``memory`` table
    (``guest_ram``, ``frame_size``) when given, else from the variant's sources. The pool comes
    from the built ELF (what was really linked), else the spec's ``mempool``, else the app's
    ``allocator_mempool_size``, else camkes-vm's default of 80 MiB.
    """
    spec = spec or {}
    sources = find_app_sources(root, app, platform) if root is not None and root.is_dir() else None

    def from_spec(key: str) -> Sourced | None:
        if key not in spec:
            return None
        value = parse_size(spec[key], f"{spec_name}.{key}")
        if key == "frame_size" and value <= 0:
            raise InputError(f"{spec_name}.{key}: a frame size must be positive, got {spec[key]!r}")
        return Sourced(value, f"spec: {spec_name}.{key}")

    guest_ram = from_spec("guest_ram")
    if guest_ram is None and sources is not None and sources.devices_camkes is not None:
        guest_ram = vm_ram_from_camkes(sources.devices_camkes, root)

    frame_size = from_spec("frame_size")
    if frame_size is None and sources is not None and sources.guest_ram_c is not None:
        frame_size = frame_size_from_guest_ram(sources.guest_ram_c, root)

    mempool: Sourced | None = None
    if elf_mempool is not None:
        mempool = Sourced(elf_mempool.size, f"ELF: {elf_mempool.file.name} ({elf_mempool.section})")
    mempool = mempool or from_spec("mempool")
    if mempool is None and sources is not None:
        for path in filter(None, (sources.devices_camkes, *sources.app_camkes)):
            mempool = mempool_from_camkes(path, root)
            if mempool is not None:
                break
    if mempool is None and sources is not None and sources.devices_camkes is not None:
        mempool = Sourced(DEFAULT_MEMPOOL, "default: camkes-vm allocator_mempool_size")
    return estimate(guest_ram, frame_size, mempool)
