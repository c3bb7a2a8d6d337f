"""The analysis of one build: the VMM's pool and .bss from the build's ELF files and the
seed's bookkeeping from the variant's sources, remembered per build inputs hash under
``.orch/analysis/`` (the variant's build dir is replaced by later builds, a cached build must
still show its figures) and keyed by the code that reads them, so a fixed readout never keeps
showing old figures."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from orchestrator import layout
from orchestrator.analysis import elf, memory
from orchestrator.analysis.elf import SymbolHit, vmm_static
from orchestrator.analysis.memory import MemoryEstimate, gather
from orchestrator.build.builder import BuildResult
from orchestrator.build.spec import BuildSpec
from orchestrator.build.variant_tree import variant_base
from orchestrator.digest import Hasher, sha256_file_or_none
from orchestrator.ui import from_jsonable, to_jsonable


@dataclass(frozen=True)
class PoolSymbol:
    """The VMM's allocator pool symbol as found (``file`` relative to the scanned directory)."""

    name: str
    size: int
    section: str
    file: str
    elf_type: str


@dataclass(frozen=True)
class Analysis:
    """What orch read from one build: where it scanned, the pool symbol, the .bss size, and the
    bookkeeping estimate."""

    scanned: str
    mempool: PoolSymbol | None = None
    bss: int | None = None
    memory: MemoryEstimate | None = None


def analyser_key() -> str:
    """A hash of the code that reads the figures (ELF scan, bookkeeping)."""
    digest = Hasher()
    for module in (elf, memory):
        digest.update_file(Path(module.__file__ or ""))
    return digest.hexdigest()[:12]


def _pool_symbol(hit: SymbolHit | None, base: Path) -> PoolSymbol | None:
    if hit is None:
        return None
    try:
        shown = str(hit.file.relative_to(base))
    except ValueError:
        shown = str(hit.file)
    return PoolSymbol(hit.name, hit.size, hit.section, shown, hit.elf_type)


def _remembered(path: Path | None) -> Analysis | None:
    if path is None or not path.is_file():
        return None
    try:
        return from_jsonable(Analysis, json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def analyse(build: BuildResult, spec: BuildSpec, root: Path) -> Analysis:
    """The figures of one successful build, from the cache when this code read them before."""
    cache = (layout.analysis_dir(root) / f"{build.inputs_hash[:16]}-{analyser_key()}.json"
             if build.inputs_hash else None)
    remembered = _remembered(cache)
    if remembered is not None:
        return remembered
    base = variant_base(root, build.variant)
    in_tree = base / "build" / spec.boot_image_name
    built_here = build.boot_image is not None and in_tree.is_file() and (
        sha256_file_or_none(in_tree) == sha256_file_or_none(build.boot_image))
    scan = base / "build" if built_here else build.output_dir
    static = vmm_static(scan)
    estimate = gather(base / "src" if built_here else None, app=spec.app, platform=spec.platform,
                      elf_mempool=static.mempool)
    analysis = Analysis(str(scan), _pool_symbol(static.mempool, scan), static.bss_size, estimate)
    if cache is not None and built_here:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(to_jsonable(analysis), indent=2) + "\n")
    return analysis
