"""The whole `orch build --patchset NAME` job: sync, check, build, boot, judge, report.

Stages, each reusing what is already done:

1. sync: the workspace is synced once (the shipped default manifest unless one is given);
   an already synced workspace is reused as it is.
2. check: every variant's patchsets are dry-run against the workspace before anything
   builds, so a patch that does not apply stops the run with one line naming the hunk.
3. build: :func:`orchestrator.build.build_variants` (its own inputs-hash cache).
4. boot: every built image is booted in QEMU (:func:`orchestrator.run.run_image`), variants
   in parallel, after all builds are done, so a stuck boot never holds a build. A boot whose
   image sha256 and run settings match an earlier pass/fail is reused (``.orch/runs/<key>``).
5. analyse: the VMM's pool and .bss from the build's ELF files, the seed's bookkeeping from
   the variant's sources; kept per build (``.orch/analysis/<inputs hash>.json``).
6. judge and report: expectations, exit code, and results.json / summary.md / junit.xml plus
   each variant's console log and build metadata under ``.orch/results/<id>/``.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator import __version__, layout
from orchestrator.analysis import elf as elfinfo
from orchestrator.analysis import memory
from orchestrator.analysis.elf import SymbolHit, vmm_static
from orchestrator.analysis.memory import gather
from orchestrator.boot.qemu import (
    RunSpec,
    qemu_argv_from_simulate,
    run_image,
)
from orchestrator.build.builder import BuildContext, BuildResult, build_variants
from orchestrator.build.spec import BuildSpec, VariantSpec, check_spec, override, spec_for
from orchestrator.build.variant_tree import variant_base
from orchestrator.digest import Hasher, json_digest, sha256_file_or_none
from orchestrator.errors import InfraError, InputError
from orchestrator.patchset.apply import Patchset, check, load_patchset, patchset_search_path, resolve
from orchestrator.report import render as rep
from orchestrator.runtime import make_runtime
from orchestrator.runtime.base import Runtime
from orchestrator.ui import UI, to_jsonable
from orchestrator.workspace.sync import ManifestSource, Workspace, requested_source
from orchestrator.workspace.tree import SourceTree

RUN_CACHE_VERSION = 1
CACHEABLE_VERDICTS = ("pass", "fail")  # timeouts and errors are always tried again


@dataclass(frozen=True)
class Options:
    """What `orch build` was asked to do."""

    patchset: str
    workspace: Path
    variants: tuple[str, ...] = ()
    run: bool = True
    executor: str = "docker"
    image: str | None = None
    rebuild: bool = False
    rerun: bool = False
    jobs: int = 1
    boot_jobs: int = 0  # 0: every variant at once
    boot_in: str = "auto"  # auto | host | docker
    patchset_dirs: tuple[Path, ...] = ()
    manifest: str | None = None  # -m SOURCE; with -b/--manifest-file/--manifest-url as for `orch sync`
    manifest_rev: str | None = None
    manifest_file: str | None = None
    manifest_url: str | None = None
    sync: bool = False  # sync even when the workspace is already synced
    cmake: tuple[str, ...] = ()
    params: tuple[str, ...] = ()  # --set NAME=VALUE: declared [params] for every variant
    timeout: float | None = None  # per boot, seconds
    results_dir: Path | None = None
    command: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))


@dataclass
class _Timer:
    marks: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        self.marks[name] = round(self.marks.get(name, 0.0) + seconds, 3)


# --- stage 1 and 2: workspace and patchsets ---------------------------------------------------


def ensure_synced(opts: Options, ui: UI) -> tuple[Workspace, str]:
    """The workspace, synced if it never was (or if asked); says which happened."""
    workspace = Workspace(opts.workspace)
    asked = opts.manifest or opts.manifest_rev or opts.manifest_file
    if workspace.load_state() is not None and not opts.sync and not asked:
        workspace.require_complete()
        return workspace, "reused"
    source = requested_source(workspace, opts.manifest, opts.manifest_rev, opts.manifest_file,
                              opts.manifest_url)
    ui.info(f"syncing {opts.workspace} ({(source or ManifestSource.shipped_default()).describe()})")
    with ui.tracker() as tracker:
        report = workspace.sync(source, tracker=tracker)
    if report.exit_code != 0:
        failed = [p for p in report.projects if p.action == "failed"]
        detail = f"{failed[0].path}: {failed[0].reason}" if failed else "see `orch status`"
        raise InfraError(f"sync failed: {detail}", hint="fix the sync (`orch sync -v`) and retry")
    return workspace, "synced"


def variant_patchsets(spec: BuildSpec, search_path: Sequence[Path]) -> dict[str, list[Patchset]]:
    """Each variant's patchsets in apply order, requirements included."""
    return {v.name: resolve(list(v.patchsets), search_path) for v in spec.variants}


def check_all(tree: SourceTree, chains: Mapping[str, list[Patchset]]) -> None:
    """Dry-run every variant's patchsets; the first hunk that does not apply is the error."""
    for name, chain in chains.items():
        if not chain:
            continue
        result = check(tree, chain)
        if not result.ok:
            failure = result.failures()[0]
            hunk = failure.first_failure()
            where = f"{failure.patchset}: {failure.project}/{failure.patch}"
            detail = f"{hunk.file}: hunk {hunk.header}: {hunk.reason}" if hunk else "does not apply"
            raise InputError(f"variant '{name}': {where}: {detail}",
                             hint="nothing was built; refresh the patch (`orch patchset refresh`)")


# --- stage 4: boots ---------------------------------------------------------------------------


def boot_runtime(opts: Options, image: str) -> Runtime:
    """Where QEMU runs: in a container of the build image when asked, or when builds run in
    Docker and this machine has no QEMU of its own; else on the host."""
    if opts.boot_in == "docker" or (
        opts.boot_in == "auto" and opts.executor == "docker" and shutil.which("qemu-system-aarch64") is None
    ):
        return make_runtime("docker", image)
    return make_runtime("host", image)


_MEMORY_IN_SCRIPT = re.compile(r"-m\s+(?:size=)?([0-9]+[MGK]?)\b")


def run_spec_for(build: BuildResult, spec: BuildSpec, opts: Options) -> RunSpec:
    """How to boot a build: its ``simulate`` script when orch can read it, else the platform's
    QEMU command with the memory the script names."""
    assert build.image is not None
    simulate, memory = build.simulate, None
    if simulate is not None:
        try:
            qemu_argv_from_simulate(simulate)
        except InputError:
            found = _MEMORY_IN_SCRIPT.search(simulate.read_text(errors="replace"))
            memory = found.group(1) if found else None
            simulate = None
    extra: dict[str, Any] = {"timeout": opts.timeout} if opts.timeout else {}
    return RunSpec(image=build.image, platform=spec.platform, simulate=simulate, memory=memory, **extra)


def run_key(spec: RunSpec, image_sha256: str, runtime: Runtime) -> str:
    """Same image, same way of running it, same rules: the same run."""
    rules = [sha256_file_or_none(p) for p in spec.rules]
    simulate = spec.simulate.read_text(errors="replace") if spec.simulate else None
    data = {
        "v": RUN_CACHE_VERSION, "image": image_sha256, "platform": spec.platform, "memory": spec.memory,
        "qemu": spec.qemu, "extra": list(spec.extra_args), "simulate": simulate, "rules": rules,
        "timeout": spec.timeout, "boot_timeout": spec.boot_timeout, "login": to_jsonable(spec.login),
        "launcher": runtime.describe(), "orch": __version__,
    }
    return json_digest(data)


def boot(build: BuildResult, spec: BuildSpec, opts: Options, runtime: Runtime,
         ui: UI, on_milestone: Callable[[str, float], None] | None = None
         ) -> tuple[dict[str, Any], bool, Path]:
    """Boot one build, or reuse an identical earlier run. Returns (record, cached, its dir)."""
    run_spec = run_spec_for(build, spec, opts)
    image_sha = sha256_file_or_none(run_spec.image) or ""
    key = run_key(run_spec, image_sha, runtime)
    directory = layout.boots_dir(opts.workspace) / key[:16]
    record_file = directory / "run.json"
    if not opts.rerun and record_file.is_file():
        try:
            record = json.loads(record_file.read_text())
            if record.get("verdict") in CACHEABLE_VERDICTS and record.get("image_sha256") == image_sha:
                return record, True, directory
        except (OSError, ValueError):
            pass
    shutil.rmtree(directory, ignore_errors=True)
    run_spec = dataclasses.replace(run_spec, output_dir=directory, runtime=runtime,
                                   on_milestone=on_milestone)
    record = run_image(run_spec, ui).to_dict()
    return record, False, directory


# --- stage 5: analysis ------------------------------------------------------------------------


def _hit_json(hit: SymbolHit | None, base: Path) -> dict[str, Any] | None:
    if hit is None:
        return None
    try:
        shown = str(hit.file.relative_to(base))
    except ValueError:
        shown = str(hit.file)
    return {"name": hit.name, "size": hit.size, "section": hit.section, "file": shown,
            "elf_type": hit.elf_type}


def analyser_key() -> str:
    """A hash of the code that reads the figures (ELF scan, bookkeeping), so a remembered
    analysis is used only with the code that made it: a fixed readout must not keep showing
    the old figures for builds that are cached."""
    digest = Hasher()
    for module in (elfinfo, memory):
        digest.update_file(Path(module.__file__ or ""))
    return digest.hexdigest()[:12]


def analyse(build: BuildResult, spec: BuildSpec, root: Path) -> dict[str, Any]:
    """VMM pool/.bss from the ELF files and the seed's bookkeeping, for one successful build;
    remembered per build inputs hash (the variant's build dir is replaced by later builds)."""
    inputs = str(build.metadata.get("inputs_hash") or "")
    cache = layout.analysis_dir(root) / f"{inputs[:16]}-{analyser_key()}.json" if inputs else None
    if cache is not None and cache.is_file():
        try:
            data: dict[str, Any] = json.loads(cache.read_text())
            return data
        except (OSError, ValueError):
            pass
    base = variant_base(root, build.variant)
    built_here = build.image is not None and (base / "build" / spec.image_name).is_file() and (
        sha256_file_or_none(base / "build" / spec.image_name) == sha256_file_or_none(build.image))
    scan = base / "build" if built_here else build.output_dir
    static = vmm_static(scan)
    estimate = gather(base / "src" if built_here else None, app=spec.app, platform=spec.platform,
                      elf_mempool=static.mempool)
    data = {
        "scanned": str(scan),
        "mempool": _hit_json(static.mempool, scan),
        "bss": static.bss_size,
        "memory": to_jsonable(estimate),
    }
    if cache is not None and built_here:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(data, indent=2) + "\n")
    return data


# --- assembling the report --------------------------------------------------------------------


def _expectation(variant: VariantSpec) -> rep.Expectation | None:
    if variant.expect is None:
        return None
    return rep.Expectation(variant.expect.verdict, variant.expect.cause)


def build_summary(build: BuildResult | None, error: str | None = None) -> rep.BuildSummary:
    if build is None:
        return rep.BuildSummary("error" if error else "skipped", message=error)
    status = "cached" if build.cached else ("built" if build.ok else "failed")
    failure = build.error()
    return rep.BuildSummary(
        status=status,
        seconds=0.0 if build.cached else build.metadata.get("duration"),
        image=str(build.image) if build.image else None,
        image_sha256=sha256_file_or_none(build.image) if build.image else None,
        build_dir=str(build.output_dir),
        log=str(build.log),
        message=failure.message if failure else None,
    )


def run_summary(record: dict[str, Any] | None, cached: bool, status: str = "ran") -> rep.RunSummary:
    if record is None:
        return rep.RunSummary(status)
    guest = record.get("guest_memory") or None
    milestones = record.get("milestones") or {}
    return rep.RunSummary(
        status="cached" if cached else ("error" if record.get("verdict") == "error" else "ran"),
        verdict=record.get("verdict"),
        cause=record.get("cause"),
        matched=record.get("matched_line"),
        matched_at=record.get("matched_at"),
        login_seconds=milestones.get("login"),
        seconds=0.0 if cached else record.get("duration"),
        guest=rep.GuestMemory(guest.get("total_mib"), guest.get("used_mib"), guest.get("free_mib"),
                              guest.get("available_mib")) if guest else None,
        console_log=record.get("console_log"),
        message=record.get("error"),
    )


def vmm_summary(analysis: dict[str, Any] | None) -> rep.VmmSummary:
    if not analysis or not analysis.get("mempool"):
        return rep.VmmSummary(bss=(analysis or {}).get("bss"))
    hit = analysis["mempool"]
    return rep.VmmSummary(hit["size"], hit["name"], hit["file"], hit["section"], analysis.get("bss"))


def memory_summary(analysis: dict[str, Any] | None) -> rep.MemorySummary:
    m = (analysis or {}).get("memory") or {}

    def part(key: str) -> tuple[int | None, str | None]:
        value = m.get(key) or {}
        return value.get("value"), value.get("source")

    ram, ram_src = part("guest_ram")
    frame, frame_src = part("frame_size")
    pool, pool_src = part("mempool")
    return rep.MemorySummary(ram, ram_src, frame, frame_src, m.get("frames"), m.get("metadata"),
                             pool, pool_src)


def _copy_into(directory: Path, files: Mapping[str, Path | None]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, path in files.items():
        if path is not None and path.is_file():
            shutil.copy2(path, directory / name)


# --- the job ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    report: rep.RunReport
    directory: Path
    written: dict[str, Path]


def run_pipeline(opts: Options, ui: UI) -> Outcome:
    """Do the whole job and write the reports; the exit code is ``outcome.report.exit_code``.
    Bad input raises InputError before anything is built; machinery failures raise InfraError."""
    started_wall, started = datetime.now(UTC), time.monotonic()
    timer = _Timer()

    t = time.monotonic()
    # The patchsets and the spec first: a typo in a name or option fails at once, before a
    # sync that may take minutes (or need a network). Absolute paths: patches are applied
    # (git am) from other working directories.
    search_path = [p.resolve() for p in patchset_search_path(list(opts.patchset_dirs), opts.env)]
    spec = override(spec_for(load_patchset(opts.patchset, search_path)), variants=list(opts.variants) or None,
                    cmake=list(opts.cmake) or None, image=opts.image, params=list(opts.params) or None)
    chains = variant_patchsets(spec, search_path)
    timer.add("check", time.monotonic() - t)

    t = time.monotonic()
    workspace, sync_state = ensure_synced(opts, ui)
    tree = workspace.tree()
    timer.add("sync", time.monotonic() - t)

    t = time.monotonic()
    for warning in check_spec(spec, tree).warnings:
        ui.warn(warning)
    check_all(tree, chains)
    timer.add("check", time.monotonic() - t)
    ui.info(f"workspace {sync_state}; {sum(len(c) for c in chains.values())} patch(set)s check out for "
            f"{', '.join(chains)}")

    t = time.monotonic()
    runtime = make_runtime(opts.executor, spec.image)
    ctx = BuildContext(root=workspace.root, tree=tree, spec=spec, runtime=runtime, ui=ui,
                       rebuild=opts.rebuild)
    builds = build_variants(ctx, [(v, chains[v.name]) for v in spec.variants], jobs=opts.jobs)
    timer.add("build_stage", time.monotonic() - t)
    timer.add("build_tools", sum(float(b.metadata.get("duration") or 0) for b in builds if not b.cached))

    t = time.monotonic()
    analyses = {b.variant: analyse(b, spec, workspace.root) for b in builds if b.ok}
    timer.add("analysis", time.monotonic() - t)

    records: dict[str, tuple[dict[str, Any], bool, Path]] = {}
    if opts.run:
        t = time.monotonic()
        records = boot_all([b for b in builds if b.ok and b.image is not None], spec, opts, ui)
        timer.add("boot_stage", time.monotonic() - t)
        fresh = [record for record, cached, _ in records.values() if not cached]
        timer.add("qemu", sum(float(r.get("duration") or 0) for r in fresh))

    t = time.monotonic()
    by_name = {b.variant: b for b in builds}
    variants: list[rep.VariantResult] = []
    for v in spec.variants:
        build = by_name[v.name]
        record = records.get(v.name)
        result = rep.VariantResult(
            name=v.name,
            patchsets=[p.name for p in chains[v.name]],
            expect=_expectation(v),
            build=build_summary(build),
            run=run_summary(record[0], record[1]) if record else rep.RunSummary(
                "not-run" if not opts.run else "skipped"),
            vmm=vmm_summary(analyses.get(v.name)),
            memory=memory_summary(analyses.get(v.name)),
            build_record=build.metadata,
            run_record=record[0] if record else {},
        )
        result.outcome = rep.judge(result, ran=opts.run)
        variants.append(result)

    run_id = started_wall.strftime("%Y%m%d-%H%M%S") + f"-{opts.patchset}"
    directory = (opts.results_dir or rep.new_run_dir(workspace.root, run_id))
    if opts.results_dir is not None:
        directory.mkdir(parents=True, exist_ok=True)
    for result in variants:
        record = records.get(result.name)
        build = by_name[result.name]
        _copy_into(directory / result.name, {
            "metadata.json": build.output_dir / "metadata.json",
            "build.log": build.log if not build.ok else None,
            "run.json": record[2] / "run.json" if record else None,
            "console.log": record[2] / "console.log" if record else None,
        })
    report = rep.RunReport(
        id=directory.name,
        patchset=opts.patchset,
        variants=variants,
        started=started_wall.isoformat(timespec="seconds"),
        orch_version=__version__,
        workspace=str(workspace.root),
        command=list(opts.command),
        manifest=_manifest_info(workspace),
    )
    report.exit_code = rep.exit_code(variants)
    timer.add("report", time.monotonic() - t)
    total = time.monotonic() - started
    timings = dict(timer.marks)
    external = min(timings.get("build_stage", 0.0), timings.get("build_tools", 0.0)) + min(
        timings.get("boot_stage", 0.0), timings.get("qemu", 0.0))
    timings["total"] = round(total, 3)
    timings["orch"] = round(max(0.0, total - external - timings.get("sync", 0.0)), 3)
    report.timings = timings
    report.seconds = round(total, 3)
    report.finished = datetime.now(UTC).isoformat(timespec="seconds")
    written = rep.write_reports(report, directory)
    return Outcome(report, directory, written)


def boot_all(builds: Sequence[BuildResult], spec: BuildSpec, opts: Options,
             ui: UI) -> dict[str, tuple[dict[str, Any], bool, Path]]:
    """Boot every build, in parallel; Ctrl-C kills every QEMU before it propagates."""
    if not builds:
        return {}
    runtime = boot_runtime(opts, spec.image)
    workers = opts.boot_jobs or len(builds)
    out: dict[str, tuple[dict[str, Any], bool, Path]] = {}
    with ui.tracker() as tracker, concurrent.futures.ThreadPoolExecutor(
        max_workers=workers, thread_name_prefix="boot"
    ) as pool:
        tasks = {b.variant: tracker.add(f"boot {b.variant}") for b in builds}
        def show_milestone(variant: str) -> Callable[[str, float], None]:
            return lambda name, at: tracker.advance(tasks[variant], 0, status=f"{name} at {at:.1f} s")

        futures = {pool.submit(boot, b, spec, opts, runtime, UI.silent() if workers > 1 else ui,
                               show_milestone(b.variant)): b
                   for b in builds}
        try:
            for future in concurrent.futures.as_completed(futures):
                build = futures[future]
                record, cached, directory = future.result()
                out[build.variant] = (record, cached, directory)
                state = "cached" if cached else f"{record.get('duration', 0):.1f} s"
                tracker.done(tasks[build.variant], f"{str(record.get('verdict', '?')).upper()} ({state})")
        except BaseException:
            runtime.stop_all()
            concurrent.futures.wait(futures)
            raise
    return out


def _manifest_info(workspace: Workspace) -> dict[str, Any]:
    try:
        state = workspace.state()
    except Exception:  # a workspace made by hand (tests) may have a partial state file
        return {}
    source = state.manifest.source
    info = {"source": source.describe(), "commit": state.manifest.commit,
            "remotes_base": state.manifest.remotes_base}
    return {k: v for k, v in info.items() if v}
