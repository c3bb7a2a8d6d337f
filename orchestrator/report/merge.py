"""Merging result directories into one run: `orch report --merge DIR...`, the results of a
GitHub Actions matrix (one job per point) and of a run fanned out over a Dask cluster; `orch
build` runs (``results.json``) and sweeps (``sweep.json``, one grid point per directory) alike.

Each directory is an `orch build` results directory (``results.json`` plus one folder per
variant). The merged run holds every variant once, in the order the directories were given;
its exit code is judged again from the merged variants with the same rule as a local run, so
a merge of split results is the report the single run would have written.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.errors import InputError
from orchestrator.report import model as rep
from orchestrator.report.store import read_results, write_reports

SWEEP_JSON = "sweep.json"


def merge_reports(reports: Sequence[tuple[Path, rep.JobReport]], run_id: str,
                  command: Sequence[str] = ()) -> rep.JobReport:
    """One run from several; every variant once, every report of the same patchset."""
    if not reports:
        raise InputError("report --merge: no result directories given")
    first_dir, first = reports[0]
    variants: list[rep.VariantResult] = []
    seen: dict[str, Path] = {}
    for directory, report in reports:
        if report.patchset != first.patchset:
            raise InputError(f"{directory}: a run of patchset '{report.patchset}', but {first_dir} is "
                             f"of '{first.patchset}': merge runs of one patchset")
        for variant in report.variants:
            if variant.name in seen:
                raise InputError(f"{directory}: variant '{variant.name}' is also in {seen[variant.name]}",
                                 hint="each point must come from exactly one result directory")
            seen[variant.name] = directory
            variants.append(variant)
    merged = rep.JobReport(
        id=run_id,
        patchset=first.patchset,
        variants=variants,
        started=min((r.started for _, r in reports if r.started), default=""),
        finished=max((r.finished for _, r in reports if r.finished), default=""),
        orch_version=first.orch_version,
        workspace=first.workspace,
        command=list(command) or first.command,
        manifest=first.manifest,
        timings=_summed_timings([r for _, r in reports]),
    )
    merged.seconds = max((r.seconds for _, r in reports), default=0.0)
    merged.exit_code = rep.exit_code(variants)
    return merged


def _summed_timings(reports: Sequence[rep.JobReport]) -> dict[str, float]:
    """Work done across the points (build tools, QEMU, orch) adds up; 'total' is the longest."""
    out: dict[str, float] = {}
    for report in reports:
        for key, seconds in report.timings.items():
            longest = max(out.get(key, 0.0), seconds)
            out[key] = round(longest if key == "total" else out.get(key, 0.0) + seconds, 3)
    return out


def is_sweep(directory: Path) -> bool:
    return (directory / SWEEP_JSON).is_file()


def merge_sweep_directories(directories: Sequence[Path], out: Path, command: Sequence[str] = ()) -> Any:
    """The grid points of one sweep, from several directories, as one sweep in ``out`` (its
    JSON, CSV, chart and Markdown summary written again from the merged points)."""
    from orchestrator.sweep import results as sweep_results

    parts = [(d, sweep_results.read(d)) for d in directories]
    merged = sweep_results.merge(parts, out.name, command)
    sweep_results.write(merged, out)
    return merged


def merge_directories(directories: Sequence[Path], out: Path, command: Sequence[str] = ()) -> rep.JobReport:
    """Read each results directory, write the merged run (reports plus every variant's files)
    into ``out``."""
    reports = [(d, read_results(d)) for d in directories]
    out.mkdir(parents=True, exist_ok=True)
    merged = merge_reports(reports, out.name or datetime.now(UTC).strftime("%Y%m%d-%H%M%S-merged"), command)
    for directory, report in reports:
        for variant in report.variants:
            source = directory / variant.name
            if source.is_dir() and source.resolve() != (out / variant.name).resolve():
                shutil.copytree(source, out / variant.name, dirs_exist_ok=True, symlinks=True)
    write_reports(merged, out)
    return merged
