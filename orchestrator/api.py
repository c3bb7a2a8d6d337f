"""orch as a library: the job's stages as plain functions on a workspace directory, each with
typed results and no printing (pass a :class:`~orchestrator.ui.UI` to see progress).

    sync(workspace, manifest)            -> SyncReport        (`orch sync`)
    check(workspace, names)              -> CheckReport       (`orch patchset check`)
    apply(workspace, names)              -> ApplyReport       (`orch patchset apply`)
    revert(workspace, names)             -> RevertReport      (`orch patchset revert`)
    build_variants(workspace, patchset)  -> list[BuildResult] (the build stage of `orch build`)
    boot_build(build_or_image)           -> RunRecord         (`orch run`)

(``build`` and ``boot`` name the sub-packages ``orchestrator.build`` and ``orchestrator.boot``,
so the functions say what they build and boot.)
    run_job(patchset, workspace)         -> JobOutcome        (the whole `orch build`)

Errors: :class:`~orchestrator.errors.InputError` (bad input), ``InfraError`` (the machinery
failed: the result says nothing about the code), ``WorkspaceError`` (work would be lost).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from orchestrator.boot.qemu import RunRecord, RunSpec, run_image
from orchestrator.boot.stage import run_spec_for
from orchestrator.build import builder
from orchestrator.build.builder import BuildContext, BuildResult
from orchestrator.build.spec import DEFAULT_IMAGE, check_spec
from orchestrator.job import JobOptions, load_job
from orchestrator.patchset import apply as patchsets
from orchestrator.patchset.apply import ApplyReport, CheckReport, Patchset, RevertReport
from orchestrator.runtime import make_runtime
from orchestrator.ui import UI
from orchestrator.workspace.sync import SyncReport, Workspace, requested_source


def sync(workspace: Path, manifest: str | None = None, *, revision: str | None = None,
         manifest_file: str | None = None, manifest_url: str | None = None,
         groups: Sequence[str] | None = None, jobs: int | None = None, mirror: Path | None = None,
         force: bool = False, ui: UI | None = None) -> SyncReport:
    """Check out (or update) the manifest workspace at ``workspace``: from ``manifest`` (an XML
    file, a manifest repository path or URL) if given, else from the recorded source, else
    from the shipped default. ``report.exit_code`` is 0 when every project is in place."""
    ws = Workspace(Path(workspace))
    source = requested_source(ws, manifest, revision, manifest_file, manifest_url)
    with (ui or UI.silent()).tracker() as tracker:
        return ws.sync(source, jobs=jobs, mirror=mirror, force=force, groups=groups, tracker=tracker)


def _patchsets(names: Sequence[str], patchset_dirs: Sequence[Path]) -> list[Patchset]:
    search = [p.resolve() for p in patchsets.patchset_search_path(list(patchset_dirs), os.environ)]
    return patchsets.resolve(list(names), search)


def check(workspace: Path, names: Sequence[str], *, patchset_dirs: Sequence[Path] = ()) -> CheckReport:
    """Dry-run the named patchsets (requirements first) on the synced workspace, per hunk."""
    return patchsets.check(Workspace.open(Path(workspace)).tree(), _patchsets(names, patchset_dirs))


def apply(workspace: Path, names: Sequence[str], *, three_way: bool = False,
          patchset_dirs: Sequence[Path] = ()) -> ApplyReport:
    """Apply the named patchsets as commits on ``orch/<name>`` branches, atomically."""
    tree = Workspace.open(Path(workspace)).tree()
    return patchsets.apply(tree, _patchsets(names, patchset_dirs), three_way=three_way)


def revert(workspace: Path, names: Sequence[str], *, patchset_dirs: Sequence[Path] = ()) -> RevertReport:
    """Put the projects the named patchsets touch back on their pinned revisions."""
    return patchsets.revert(Workspace.open(Path(workspace)).tree(), _patchsets(names, patchset_dirs))


def build_variants(workspace: Path, patchset: str, *, variants: Sequence[str] = (), executor: str = "docker",
          toolchain_image: str | None = None, rebuild: bool = False, jobs: int = 1,
          cmake: Sequence[str] = (), patchset_dirs: Sequence[Path] = (),
          ui: UI | None = None) -> list[BuildResult]:
    """Build the patchset's variants (all, or ``variants``) from the synced workspace, each in
    its own worktrees, reusing an identical earlier build. A broken build is a result with
    ``ok`` False (``result.error()`` says why); machinery trouble raises InfraError."""
    ui = ui or UI.silent()
    options = JobOptions(variants=tuple(variants), executor=executor, toolchain_image=toolchain_image,
                         rebuild=rebuild, jobs=jobs, cmake=tuple(cmake), patchset_dirs=tuple(patchset_dirs))
    spec, chains = load_job(patchset, options)
    ws = Workspace.open(Path(workspace))
    tree = ws.tree()
    for warning in check_spec(spec, tree).warnings:
        ui.warn(warning)
    patchsets.require_applicable(tree, chains)
    ctx = BuildContext(root=ws.root, tree=tree, spec=spec, ui=ui, rebuild=rebuild,
                       runtime=make_runtime(executor, spec.toolchain_image))
    return builder.build_variants(ctx, [(v, chains[v.name]) for v in spec.variants], jobs=jobs)


def boot_build(target: BuildResult | Path, *, platform: str = "qemu-arm-virt", timeout: float | None = None,
         memory: str | None = None, output_dir: Path | None = None, boot_in: str = "host",
         toolchain_image: str = DEFAULT_IMAGE, ui: UI | None = None) -> RunRecord:
    """Boot a build (its ``simulate`` command) or a boot image file in QEMU, judge the console,
    log in after a pass and read the guest's memory. ``boot_in`` is ``host`` or ``docker``
    (QEMU inside ``toolchain_image``). ``record.exit_code``: 0 pass, 1 fail/timeout, 125 error."""
    if isinstance(target, BuildResult):
        spec = run_spec_for(target, platform, timeout)
    else:
        spec = replace(RunSpec(image=Path(target), platform=platform), timeout=timeout or RunSpec.timeout)
    spec = replace(spec, memory=memory or spec.memory, output_dir=output_dir,
                   runtime=make_runtime(boot_in, toolchain_image))
    return run_image(spec, ui or UI.silent())
