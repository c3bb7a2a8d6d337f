"""What one `orch build` job learned, as records: per variant the build, the boot, the VMM's
static memory, the seed's bookkeeping, the expectation and whether it was met; the job's
outcome and exit code. :mod:`.store` writes and reads them (``results.json``), :mod:`.render`
shows them. The stages hand over typed results (:func:`variant_result`), never dicts.

Words: a *job* is one `orch build` (its id names ``.orch/results/<id>/``); a *boot* is one
QEMU run of a variant's *boot image*; the *toolchain image* is the Docker image builds run in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.analysis.cache import Analysis
from orchestrator.analysis.memory import Sourced
from orchestrator.boot.console import GuestMemory
from orchestrator.boot.qemu import RunRecord
from orchestrator.build.builder import BuildResult
from orchestrator.build.spec import Expectation
from orchestrator.digest import sha256_file_or_none
from orchestrator.errors import EXIT_CANNOT_TEST, EXIT_FAIL, EXIT_OK, combined_exit_code

SCHEMA = 2  # 2: "boot", "boot_record", "boot_image", guest "*_mib" (1: "run", "run_record", "image")

# Outcomes of a variant, from the point of view of the job's exit code.
EXPECTED = "expected"
UNEXPECTED = "unexpected"
PASSED = "pass"
FAILED = "fail"
ERROR = "error"
BUILT = "built"  # --no-run: built, not booted

__all__ = ["BootSummary", "BuildSummary", "Expectation", "GuestMemory", "JobReport", "MemorySummary",
           "VariantResult", "VmmSummary", "boot_summary", "build_summary", "exit_code", "judge",
           "memory_summary", "vmm_summary"]


@dataclass
class BuildSummary:
    status: str  # built | cached | failed | error | skipped
    seconds: float | None = None
    boot_image: str | None = None
    boot_image_sha256: str | None = None
    build_dir: str | None = None
    log: str | None = None
    message: str | None = None  # the one line saying why it failed
    cached: bool = False  # reused from an earlier build with the same inputs (a failure too)


@dataclass
class BootSummary:
    status: str  # ran | cached | skipped | not-run | error
    verdict: str | None = None  # pass | fail | timeout | error
    cause: str | None = None
    matched: str | None = None  # the decisive console line
    matched_at: float | None = None  # seconds after QEMU start
    login_seconds: float | None = None
    seconds: float | None = None
    guest: GuestMemory | None = None
    console_log: str | None = None
    message: str | None = None
    after_verdict: list[str] = field(default_factory=list)  # console lines after a fail verdict


@dataclass
class VmmSummary:
    """The VMM component's static memory, from its ELF (see :mod:`orchestrator.analysis.elf`)."""

    mempool: int | None = None
    symbol: str | None = None
    file: str | None = None
    section: str | None = None
    bss: int | None = None

    @property
    def where(self) -> str:
        return "not found" if self.file is None else f"{Path(self.file).name}, {self.section}"


@dataclass
class MemorySummary:
    """The seed's bookkeeping (see :mod:`orchestrator.analysis.memory`), each input with its source."""

    guest_ram: int | None = None
    guest_ram_source: str | None = None
    frame_size: int | None = None
    frame_size_source: str | None = None
    frames: int | None = None
    metadata: int | None = None
    mempool: int | None = None
    mempool_source: str | None = None
    bytes_per_frame: float | None = None  # the measured cost the metadata uses, None: the seed's
    bytes_per_frame_source: str | None = None  # which sweep measured it

    @property
    def fits(self) -> bool | None:
        if self.metadata is None or self.mempool is None:
            return None
        return self.metadata <= self.mempool


@dataclass
class VariantResult:
    name: str
    patchsets: list[str]
    build: BuildSummary
    boot: BootSummary
    expect: Expectation | None = None
    vmm: VmmSummary = field(default_factory=VmmSummary)
    memory: MemorySummary = field(default_factory=MemorySummary)
    outcome: str = ""
    build_record: dict[str, Any] = field(default_factory=dict)  # the builder's metadata.json, verbatim
    boot_record: dict[str, Any] = field(default_factory=dict)  # the boot's run.json, verbatim

    @property
    def verdict(self) -> str:
        """pass/fail/timeout/error from the boot; ``build-failed`` or ``not-run`` without one."""
        if self.build.status in ("failed", "error"):
            return "build-failed"
        return self.boot.verdict or "not-run"


@dataclass
class JobReport:
    """One `orch build` job: its variants, timings, exit code (``results.json``)."""

    id: str
    patchset: str
    variants: list[VariantResult]
    started: str = ""
    finished: str = ""
    seconds: float = 0.0
    exit_code: int = EXIT_OK
    orch_version: str = ""
    workspace: str = ""
    command: list[str] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # seconds: sync, check, build, boot, orch
    schema: int = SCHEMA

    def variant(self, name: str) -> VariantResult | None:
        return next((v for v in self.variants if v.name == name), None)


# --- judging ----------------------------------------------------------------------------------


def judge(variant: VariantResult, *, booted: bool = True) -> str:
    """The variant's outcome: infrastructure ``error``; with an expectation ``expected`` or
    ``unexpected``; without one ``pass`` or ``fail``; ``built`` for build-only jobs."""
    if variant.build.status == "error" or variant.boot.status == "error" or variant.boot.verdict == "error":
        return ERROR
    if not booted and variant.build.status in ("built", "cached"):
        return BUILT
    if variant.expect is not None:
        met = variant.expect.met_by(variant.verdict, variant.boot.cause)
        return EXPECTED if met else UNEXPECTED
    return PASSED if variant.verdict == "pass" else FAILED


_OUTCOME_EXIT = {ERROR: EXIT_CANNOT_TEST, EXPECTED: EXIT_OK, PASSED: EXIT_OK, BUILT: EXIT_OK}


def exit_code(variants: list[VariantResult]) -> int:
    """125 if any variant could not be tested, else 0 when every variant passed or met its
    expectation (or was built, for --no-run), else 1."""
    return combined_exit_code(_OUTCOME_EXIT.get(v.outcome, EXIT_FAIL) for v in variants)


# --- from the stages' results -----------------------------------------------------------------


def build_summary(build: BuildResult | None, error: str | None = None) -> BuildSummary:
    if build is None:
        return BuildSummary("error" if error else "skipped", message=error)
    status = ("cached" if build.cached else "built") if build.ok else "failed"  # a reused failure too
    failure = build.error()
    return BuildSummary(
        status=status,
        seconds=0.0 if build.cached else build.duration,
        boot_image=str(build.boot_image) if build.boot_image else None,
        boot_image_sha256=sha256_file_or_none(build.boot_image) if build.boot_image else None,
        build_dir=str(build.output_dir),
        log=str(build.log),
        message=failure.message if failure else None,
        cached=build.cached,
    )


def boot_summary(record: RunRecord | None, cached: bool, status: str = "ran") -> BootSummary:
    if record is None:
        return BootSummary(status)
    guest = record.guest_memory
    return BootSummary(
        status="cached" if cached else ("error" if record.verdict == "error" else "ran"),
        verdict=record.verdict,
        cause=record.cause,
        matched=record.matched_line,
        matched_at=record.matched_at,
        login_seconds=record.milestones.get("login"),
        seconds=0.0 if cached else record.duration,
        guest=GuestMemory(guest.total_mib, guest.used_mib, guest.free_mib, guest.shared_mib,
                          guest.buff_cache_mib, guest.available_mib) if guest else None,
        console_log=record.console_log,
        message=record.error,
        after_verdict=list(record.after_verdict),
    )


def vmm_summary(analysis: Analysis | None) -> VmmSummary:
    if analysis is None or analysis.mempool is None:
        return VmmSummary(bss=analysis.bss if analysis else None)
    hit = analysis.mempool
    return VmmSummary(hit.size, hit.name, hit.file, hit.section, analysis.bss)


def memory_summary(analysis: Analysis | None, bytes_per_frame: float | None = None,
                   measured_by: str | None = None) -> MemorySummary:
    """The bookkeeping of one variant; with ``bytes_per_frame`` (a sweep's fitted cost, measured
    by ``measured_by``) the metadata estimate uses it instead of the seed's 2 x 120 bytes."""
    if analysis is None or analysis.memory is None:
        return MemorySummary()
    m = analysis.memory

    def part(value: Sourced | None) -> tuple[int | None, str | None]:
        return (value.value, value.source) if value is not None else (None, None)

    (ram, ram_src), (frame, frame_src) = part(m.guest_ram), part(m.frame_size)
    pool, pool_src = part(m.mempool)
    if bytes_per_frame is not None and m.frames is not None:
        return MemorySummary(ram, ram_src, frame, frame_src, m.frames, round(m.frames * bytes_per_frame),
                             pool, pool_src, bytes_per_frame, measured_by)
    return MemorySummary(ram, ram_src, frame, frame_src, m.frames, m.metadata, pool, pool_src)
