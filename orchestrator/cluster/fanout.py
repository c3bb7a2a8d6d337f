"""`orch build --cluster`: the variants of one `orch build` as independent points.

Each variant becomes a :class:`PointTask` (the manifest repository and the exact manifest
commit this workspace is synced to, the patchset files by value, and the `orch build` options
that select the variant); the engine runs them (Dask workers, or this machine), and the
points' results directories are merged into one run with :mod:`orchestrator.report.merge`, so
the table, ``results.json``, ``summary.md`` and ``junit.xml`` are those of a local run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.build.spec import BuildSpec, override, spec_for
from orchestrator.cluster.engine import Engine
from orchestrator.cluster.task import PatchFile, PointResult, PointTask, pack_patchsets
from orchestrator.errors import InputError
from orchestrator.job import JobOptions
from orchestrator.patchset.apply import Patchset, load_patchset, patchset_search_path, resolve
from orchestrator.report import model as rep
from orchestrator.report.merge import merge_directories
from orchestrator.report.store import new_job_dir, write_reports
from orchestrator.workspace.sync import ManifestSource, Workspace


@dataclass(frozen=True)
class ManifestPin:
    """The manifest a worker syncs: a repository it can reach, at an exact commit."""

    url: str
    commit: str | None
    file: str | None


def manifest_pin(workspace: Path, opts: JobOptions) -> ManifestPin:
    """``-m`` if given, else the manifest this workspace was synced from, at its synced commit."""
    if opts.manifest:
        source = ManifestSource.parse(opts.manifest)
        if source.url is None:
            raise InputError(f"-m {opts.manifest}: a distributed run needs a manifest repository the "
                             "workers can reach, not a local XML file")
        return ManifestPin(source.url, source.revision, None)
    state = Workspace(workspace).state()
    source = state.manifest.source
    if source.url is None:
        raise InputError(f"{workspace}: synced from the local file {source.path}; a distributed run "
                         "needs a manifest repository the workers can reach", hint="sync with -m URL")
    return ManifestPin(source.url, state.manifest.commit or source.revision, source.file)


def point_args(opts: JobOptions, variant: str) -> tuple[str, ...]:
    """The `orch build` options that make a worker run exactly this variant as asked."""
    args = ["--variant", variant, "--executor", opts.executor]
    if opts.toolchain_image:
        args += ["--image", opts.toolchain_image]
    for option in opts.cmake:
        args.append(f"--cmake={option}")
    if opts.timeout is not None:
        args += ["--timeout", f"{opts.timeout:g}"]
    if not opts.boot:
        args.append("--no-run")
    if opts.rebuild:
        args.append("--rebuild")
    if opts.reboot:
        args.append("--rerun")
    if opts.boot_in != "auto":
        args += ["--boot-in", opts.boot_in]
    if opts.at:
        args += ["--at", opts.at]
    for pin in opts.pins:
        args += ["--pin", pin]
    if opts.use_checkouts:
        raise InputError("--use-checkouts builds this machine's checkouts; a distributed run cannot",
                         hint="pin the commits instead: --pin PATH=SHA")
    return tuple(args)


def _shipped_files(chains: Sequence[Patchset], patchset: Patchset) -> tuple[PatchFile, ...]:
    return pack_patchsets(sorted({p.directory for p in [*chains, patchset]}))


def point_tasks(name: str, workspace: Path, opts: JobOptions,
                run_id: str) -> tuple[BuildSpec, list[PointTask]]:
    """One task per variant of the build, described by data only."""
    search_path = [p.resolve() for p in patchset_search_path(list(opts.patchset_dirs), os.environ)]
    patchset = load_patchset(name, search_path)
    spec = override(spec_for(patchset), variants=list(opts.variants) or None,
                    cmake=list(opts.cmake) or None, toolchain_image=opts.toolchain_image)
    pin = manifest_pin(workspace, opts)
    given = {v.split("=", 1)[0]: v for v in opts.variants}
    tasks = []
    for variant in spec.variants:
        chain = resolve(list(variant.patchsets), search_path)
        tasks.append(PointTask(
            run_id=run_id, point_id=variant.name, patchset=name, manifest=pin.url,
            manifest_revision=pin.commit, manifest_file=pin.file,
            build_args=point_args(opts, given.get(variant.name, variant.name)),
            files=_shipped_files(chain, patchset)))
    return spec, tasks


def run_distributed(patchset: str, workspace: Path, opts: JobOptions, engine: Engine,
                    command: Sequence[str] = (),
                    on_result: Callable[[PointResult], None] | None = None) -> tuple[rep.JobReport, Path]:
    """Run every variant as a point on ``engine`` and merge their results into one job."""
    run_id = datetime.now(UTC).strftime("%Y%m%d-%H%M%S") + f"-{patchset}"
    _, tasks = point_tasks(patchset, workspace, opts, run_id)
    directory = opts.results_dir or new_job_dir(workspace, run_id)
    results = engine.run(tasks, on_result)
    point_dirs = []
    for result in results:
        point_dir = directory / "points" / result.point_id
        result.write(point_dir)
        if (point_dir / "results.json").is_file():
            point_dirs.append(point_dir)
    missing = [r for r in results if not (directory / "points" / r.point_id / "results.json").is_file()]
    report = merge_directories(point_dirs, directory, command) if point_dirs else None
    if report is None or missing:
        report = _with_untestable(report, patchset, command, directory, missing)
        write_reports(report, directory)
    return report, directory


def _with_untestable(report: rep.JobReport | None, patchset: str, command: Sequence[str], directory: Path,
                     missing: Sequence[PointResult]) -> rep.JobReport:
    """Points that came back with no results (infrastructure on two workers) are 'error'."""
    base = report or rep.JobReport(id=directory.name, patchset=patchset, variants=[], command=list(command))
    for result in missing:
        variant = rep.VariantResult(
            name=result.point_id, patchsets=[],
            build=rep.BuildSummary("error", message=result.error),
            boot=rep.BootSummary("error", message=result.error))
        variant.outcome = rep.judge(variant)
        base.variants.append(variant)
    base.exit_code = rep.exit_code(base.variants)
    return base
