"""The whole `orch build --patchset NAME` job: the stages in order, each reusing what is done.

1. patchsets and spec loaded (a typo fails before anything else);
2. sync: the workspace is synced once (the shipped default manifest unless one is given);
3. check: every variant's patchsets dry-run against it (:func:`~.patchset.apply.require_applicable`);
4. build: :func:`~.build.builder.build_variants` (its own inputs-hash cache);
5. analyse: :func:`~.analysis.cache.analyse` per successful build;
6. boot: :func:`~.boot.stage.boot_builds` (parallel, its own boot cache);
7. judge and report: :mod:`~.report.model`, written by :mod:`~.report.store`.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator import __version__
from orchestrator.analysis.cache import Analysis, analyse
from orchestrator.boot.qemu import CONSOLE_NAME, RECORD_NAME
from orchestrator.boot.stage import Boot, BootSettings, BootStage, boot_builds
from orchestrator.build.builder import LOG_NAME, METADATA_NAME, BuildContext, BuildResult, build_variants
from orchestrator.build.spec import BuildSpec, check_spec, override, spec_for
from orchestrator.errors import EXIT_CANNOT_TEST, EXIT_FAIL, InfraError
from orchestrator.patchset.apply import (
    Patchset,
    load_patchset,
    patchset_search_path,
    require_applicable,
    resolve,
)
from orchestrator.report import model, store
from orchestrator.runtime import make_runtime
from orchestrator.sweep.results import MeasuredCost, measured_cost
from orchestrator.ui import UI
from orchestrator.workspace.point import Point, PointTree, prepare, resolve_point
from orchestrator.workspace.state import recorded_manifest
from orchestrator.workspace.sync import ManifestSource, Workspace, requested_source


@dataclass(frozen=True)
class JobOptions:
    """How to run a job (every field has the `orch build` default)."""

    variants: tuple[str, ...] = ()  # select (``4k``) or define (``mine=vm-2g+largepage``) variants
    boot: bool = True  # False: build only
    executor: str = "docker"  # docker | host
    toolchain_image: str | None = None  # the Docker image builds run in (default: the spec's)
    rebuild: bool = False
    reboot: bool = False  # boot again even when an identical boot is cached
    jobs: int = 1  # variants built at once
    boot_jobs: int = 0  # variants booted at once (0: all)
    boot_in: str = "auto"  # auto | host | docker
    patchset_dirs: tuple[Path, ...] = ()  # searched first, then $ORCH_PATCHSETS, ./patchsets, shipped
    manifest: str | None = None  # sync from this source (as `orch sync -m/-b/--manifest-file/...`)
    manifest_rev: str | None = None
    manifest_file: str | None = None
    manifest_url: str | None = None
    sync: bool = False  # sync even when the workspace is already synced
    cmake: tuple[str, ...] = ()  # extra -DNAME=value options for every variant
    params: tuple[str, ...] = ()  # NAME=VALUE: declared [params] for every variant
    timeout: float | None = None  # per boot, seconds
    fail_grace: float = 2.0  # seconds the console is read on after a fail verdict
    results_dir: Path | None = None  # default: .orch/results/<job id>/
    at: str | None = None  # a manifest repository revision whose pins to build
    pins: tuple[str, ...] = ()  # PATH=REV, one project at another commit
    use_checkouts: bool = False  # build what is checked out, not the pins
    point: Point | None = None  # the exact commits to build (orch bisect); overrides the three above
    three_way: bool = False  # apply patchsets with git am --3way in the variant trees
    reuse_failed_builds: bool = False  # do not repeat a build that broke with the same inputs


@dataclass
class JobOutcome:
    """The job's report (``report.exit_code`` is the job's exit code) and where it was written."""

    report: model.JobReport
    directory: Path
    written: dict[str, Path]


@dataclass
class _Timings:
    marks: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        self.marks[name] = round(self.marks.get(name, 0.0) + seconds, 3)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.add(name, time.monotonic() - started)


def ensure_synced(workspace: Workspace, options: JobOptions, ui: UI) -> str:
    """Sync the workspace if it never was (or if asked); says which happened."""
    asked = options.manifest or options.manifest_rev or options.manifest_file
    if workspace.load_state() is not None and not options.sync and not asked:
        workspace.require_complete()
        return "reused"
    source = requested_source(workspace, options.manifest, options.manifest_rev, options.manifest_file,
                              options.manifest_url)
    ui.info(f"syncing {workspace.root} ({(source or ManifestSource.shipped_default()).describe()})")
    with ui.tracker() as tracker:
        report = workspace.sync(source, tracker=tracker)
    if report.exit_code != 0:
        failed = [p for p in report.projects if p.action == "failed"]
        detail = f"{failed[0].path}: {failed[0].reason}" if failed else "see `orch status`"
        raise InfraError(f"sync failed: {detail}", hint="fix the sync (`orch sync -v`) and retry")
    return "synced"


def load_job(patchset: str, options: JobOptions) -> tuple[BuildSpec, dict[str, list[Patchset]]]:
    """The spec with the options applied and each variant's patchsets in apply order.
    Absolute paths: patches are applied (git am) from other working directories."""
    search_path = [p.resolve() for p in patchset_search_path(list(options.patchset_dirs), os.environ)]
    spec = override(spec_for(load_patchset(patchset, search_path)), variants=list(options.variants) or None,
                    cmake=list(options.cmake) or None, toolchain_image=options.toolchain_image,
                    params=list(options.params) or None)
    return spec, {v.name: resolve(list(v.patchsets), search_path) for v in spec.variants}


def run_job(patchset: str, workspace: Path, options: JobOptions | None = None, ui: UI | None = None,
            *, reproduce: Sequence[str] = ()) -> JobOutcome:
    """Do the whole job and write its reports; the exit code is ``outcome.report.exit_code``.
    Bad input raises InputError before anything is built; machinery failures raise InfraError.
    ``reproduce`` is the command line recorded in the reports (default: ``orch build ...``)."""
    options = options or JobOptions()
    ui = ui or UI.silent()
    started_wall, started = datetime.now(UTC), time.monotonic()
    timings = _Timings()
    with timings.stage("check"):
        spec, chains = load_job(patchset, options)
    with timings.stage("sync"):
        ws = Workspace(workspace)
        sync_state = ensure_synced(ws, options, ui)
        point = options.point or resolve_point(ws, at=options.at, pins=options.pins,
                                               use_checkouts=options.use_checkouts)
        for note in point.notes if point else ():
            (ui.warn if point and point.in_bisect else ui.info)(note)  # said even with -q under git bisect
        at_point = prepare(ws, point) if point else None
        tree = at_point.tree if at_point else ws.tree()
    with timings.stage("check"):
        for warning in check_spec(spec, tree).warnings:
            ui.warn(warning)
        if at_point is None:  # at a point, the variant tree's own `git am` is the check
            require_applicable(tree, chains)
    checked = "check out" if at_point is None else "to apply in the variant tree"
    ui.info(f"workspace {sync_state}; {sum(len(c) for c in chains.values())} patch(set)s {checked} for "
            f"{', '.join(chains)}")
    with timings.stage("build_stage"):
        ctx = BuildContext(root=ws.root, tree=tree, spec=spec, ui=ui, rebuild=options.rebuild,
                           runtime=make_runtime(options.executor, spec.toolchain_image),
                           reuse_failures=options.reuse_failed_builds,
                           **point_context(ws, at_point, options.three_way))
        builds = build_variants(ctx, [(v, chains[v.name]) for v in spec.variants], jobs=options.jobs)
    timings.add("build_tools", sum(b.duration or 0.0 for b in builds if not b.cached))
    with timings.stage("analysis"):
        analyses = {b.variant: analyse(b, spec, ws.root) for b in builds if b.ok}
        measured = measured_cost(ws.root)
    boots = BootStage()
    if options.boot:
        settings = BootSettings(root=ws.root, boot_in=options.boot_in, executor=options.executor,
                                jobs=options.boot_jobs, timeout=options.timeout, reboot=options.reboot,
                                fail_grace=options.fail_grace)
        boots = boot_builds([b for b in builds if b.ok and b.boot_image is not None], spec, settings, ui)
        timings.add("boot_stage", boots.seconds)
        timings.add("qemu", boots.qemu_seconds)
    with timings.stage("report"):
        variants = [_variant_result(v.name, chains[v.name], v.expect, build, boots, analyses, options.boot,
                                    measured)
                    for v, build in zip(spec.variants, builds, strict=True)]
        job_id = started_wall.strftime("%Y%m%d-%H%M%S") + f"-{patchset}"
        directory = _results_directory(ws.root, job_id, options.results_dir)
        for result, build in zip(variants, builds, strict=True):
            _keep_files(directory / result.name, build, boots.boots.get(result.name))
        report = model.JobReport(
            id=directory.name, patchset=patchset, variants=variants,
            started=started_wall.isoformat(timespec="seconds"), orch_version=__version__,
            workspace=str(ws.root), command=list(reproduce) or ["orch", "build", "--patchset", patchset],
            manifest=_manifest_info(ws) | ({"point": point.record()} if point else {}),
            exit_code=model.exit_code(variants),
        )
        if point is not None and point.in_bisect and broken_build_only(variants, report.exit_code):
            ui.warn(f"a git bisect is in progress in {', '.join(point.in_bisect)} and this revision does "
                    "not build: exit 125, so `git bisect run` skips it")
            report.exit_code = EXIT_CANNOT_TEST
    report.timings = _with_totals(timings.marks, time.monotonic() - started)
    report.seconds = report.timings["total"]
    report.finished = datetime.now(UTC).isoformat(timespec="seconds")
    return JobOutcome(report, directory, store.write_reports(report, directory))


def _variant_result(name: str, patchsets: Sequence[Patchset], expect: model.Expectation | None,
                    build: BuildResult, boots: BootStage, analyses: Mapping[str, Analysis],
                    booted: bool, measured: MeasuredCost | None = None) -> model.VariantResult:
    done = boots.boots.get(name)
    result = model.VariantResult(
        name=name,
        patchsets=[p.name for p in patchsets],
        expect=expect,
        build=model.build_summary(build),
        boot=model.boot_summary(done.record, done.cached) if done else model.BootSummary(
            "not-run" if not booted else "skipped"),
        vmm=model.vmm_summary(analyses.get(name)),
        memory=model.memory_summary(analyses.get(name), *(
            (measured.bytes_per_frame, measured.source) if measured else ())),
        build_record=build.metadata,
        boot_record=done.record.to_dict() if done else {},
    )
    result.outcome = model.judge(result, booted=booted)
    return result


def _results_directory(root: Path, job_id: str, chosen: Path | None) -> Path:
    if chosen is None:
        return store.new_job_dir(root, job_id)
    chosen.mkdir(parents=True, exist_ok=True)
    return chosen


def _keep_files(directory: Path, build: BuildResult, boot: Boot | None) -> None:
    """Each variant's build record (and log, if it failed), boot record and console."""
    files: dict[str, Path | None] = {
        METADATA_NAME: build.output_dir / METADATA_NAME,
        LOG_NAME: build.log if not build.ok else None,
        RECORD_NAME: boot.directory / RECORD_NAME if boot else None,
        CONSOLE_NAME: boot.directory / CONSOLE_NAME if boot else None,
    }
    directory.mkdir(parents=True, exist_ok=True)
    for name, path in files.items():
        if path is not None and path.is_file():
            shutil.copy2(path, directory / name)


def _with_totals(marks: Mapping[str, float], total: float) -> dict[str, float]:
    """The stage times plus ``total`` and ``orch``: the time not spent in the build tools, QEMU
    or syncing."""
    timings = dict(marks)
    external = min(timings.get("build_stage", 0.0), timings.get("build_tools", 0.0)) + min(
        timings.get("boot_stage", 0.0), timings.get("qemu", 0.0))
    timings["total"] = round(total, 3)
    timings["orch"] = round(max(0.0, total - external - timings.get("sync", 0.0)), 3)
    return timings


def broken_build_only(variants: Sequence[model.VariantResult], exit_code: int) -> bool:
    """Exit 1 only because a build broke: under `git bisect run` that revision cannot be tested."""
    failing = [v for v in variants if v.outcome not in (model.EXPECTED, model.PASSED, model.BUILT)]
    return exit_code == EXIT_FAIL and bool(failing) and all(v.verdict == "build-failed" for v in failing)


def point_context(workspace: Workspace, at_point: PointTree | None, three_way: bool) -> dict[str, Any]:
    """The BuildContext settings for building a point: its links, its record, and no warning
    that the checkouts differ from the pins (they are meant to)."""
    if at_point is None:
        return {"three_way": three_way}
    manifest = recorded_manifest(workspace.root) | at_point.point.record()
    return {"three_way": three_way, "links": at_point.links, "manifest": manifest, "warn_checkouts": False}


def _manifest_info(workspace: Workspace) -> dict[str, Any]:
    try:
        state = workspace.state()
    except Exception:  # a workspace made by hand (tests) may have a partial state file
        return {}
    source = state.manifest.source
    info = {"source": source.describe(), "commit": state.manifest.commit}
    return {k: v for k, v in info.items() if v}

