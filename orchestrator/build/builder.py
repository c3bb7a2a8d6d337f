"""Building variants: ``init-build.sh`` + ``ninja`` in a variant tree, artifacts, record, cache.

For each variant: hash its inputs (project commits, patch sha256s, CMake options, app,
platform, build image ID or host toolchain, ``CAMKES_VM_IMAGES_DIR`` summary); reuse a
successful earlier build with that hash unless ``rebuild``; else prepare the variant's
worktree tree (:mod:`orchestrator.build.variant_tree`), apply its patchsets there, run
``../src/init-build.sh <options>`` (only when the configure inputs changed) and ``ninja`` in
its build dir through an :class:`~orchestrator.runtime.base.Runtime`, and copy the image, the
``simulate`` script, the log and a ``metadata.json`` to ``.orch/builds/<variant>/<hash>/``.
Trees are prepared one variant after another, each while the build before it runs; at most
``jobs`` builds run at once (:class:`_Pipeline`).

Outcomes: a broken build of the code under test is a :class:`BuildResult` with status
``fail`` (exit 1: that revision is broken); machinery trouble (Docker, disk full, timeout)
raises :class:`InfraError` (125); Ctrl-C raises KeyboardInterrupt (130). On every path but
success the variant's worktrees are removed and pruned and no container is left running.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import json
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from orchestrator import __version__, layout
from orchestrator.build.spec import BuildSpec, VariantSpec
from orchestrator.build.variant_tree import (
    RepoLocks,
    VariantTree,
    head_commit,
    mark_ready,
    prepare_variant_tree,
    remove_variant_tree,
    set_parameter_layer,
    variant_lock,
    workspace_links,
)
from orchestrator.digest import json_digest, sha256_file
from orchestrator.errors import EXIT_FAIL, InfraError, OrchError
from orchestrator.patchset.apply import apply
from orchestrator.patchset.config import Patchset
from orchestrator.patchset.params import apply_values, settings_key
from orchestrator.runtime.base import (
    LABEL_VARIANT,
    LABEL_WORKSPACE,
    Bind,
    Job,
    Runtime,
    RuntimeInfo,
    Step,
)
from orchestrator.ui import UI, Tracker
from orchestrator.workspace import gitops
from orchestrator.workspace.manifest import FileLink
from orchestrator.workspace.state import recorded_manifest
from orchestrator.workspace.tree import SourceTree

RECIPE_VERSION = 2  # bump when the build commands change, to invalidate every cache entry
# 2: qemu-arm-virt (AArch64) dumps its DTB without QEMU's random seeds (deterministic_dtb_options)
LOG_TAIL_LINES = 20
METADATA_NAME = "metadata.json"  # the build record, beside the artifacts
LOG_NAME = "build.log"
_CONFIGURE_KEY = ".orch-configure.key"


class BuildFailed(OrchError):
    """A variant's build broke (exit 1): the code under test does not build."""


@dataclass(frozen=True)
class PatchRecord:
    """One patch that went into a variant, as the record lists it."""

    patchset: str
    project: str
    file: str
    sha256: str


@dataclass(frozen=True)
class Artifact:
    name: str  # relative to the output dir, e.g. images/capdl-loader-image-arm-qemu-arm-virt
    path: Path
    sha256: str
    size: int


@dataclass
class BuildResult:
    """One variant's build: status ``pass``/``fail``, where its files are, its record."""

    variant: str
    status: str
    cached: bool
    output_dir: Path
    log: Path
    metadata: dict[str, Any]  # the build's metadata.json, verbatim (for the reports)
    inputs_hash: str = ""
    duration: float | None = None  # seconds the build tools took, as recorded
    boot_image: Path | None = None  # the image QEMU boots (capdl-loader-image-...)
    simulate: Path | None = None
    failed_step: str | None = None
    log_tail: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "pass"

    def error(self) -> OrchError | None:
        """The one-line failure (exit 1) with the log's last lines and path, or None."""
        if self.ok:
            return None
        step = {"configure": "init-build.sh", "build": "ninja"}.get(self.failed_step or "", "the build")
        tail = "\n".join(self.log_tail)
        return BuildFailed(
            f"variant '{self.variant}': {step} failed (log: {self.log})",
            hint=f"last lines of the log:\n{tail}" if tail else None,
            exit_code=EXIT_FAIL,
        )


@dataclass
class BuildContext:
    """What every variant build of one run shares: the synced workspace and the settings."""

    root: Path
    tree: SourceTree  # the user's synced workspace
    spec: BuildSpec
    runtime: Runtime  # where the build commands run (host or docker)
    ui: UI = field(default_factory=UI.silent)
    links: Sequence[FileLink] | None = None  # linkfiles/copyfiles; default: found in root
    manifest: Mapping[str, Any] | None = None  # manifest source for the record
    rebuild: bool = False
    timeout: float | None = None  # seconds per variant build
    reuse_failures: bool = False  # a build that broke with the same inputs is not repeated (bisect)
    warn_checkouts: bool = True  # warn when a checkout is not at its pin (not when building a point)
    three_way: bool = False  # apply the patchsets with git am --3way (orch bisect: other eras)


class _Pipeline:
    """The order variants go through: their trees are prepared one after another in plan
    order (each tree is already checked out several projects at a time), and builds start in
    plan order too, at most ``jobs`` at once. A tree is prepared while the build before it
    runs, so checking out the next variant's 19 projects hides behind the build tools instead
    of adding to the wall time."""

    def __init__(self, jobs: int, cancel: threading.Event) -> None:
        self._prepare_turn = 0
        self._build_turn = 0
        self._turns = threading.Condition()
        self._slots = threading.Semaphore(max(1, jobs))
        self._cancel = cancel

    def _wait_for(self, turn: Callable[[], int], index: int) -> None:
        with self._turns:
            while turn() < index:
                if self._cancel.is_set():
                    raise _CancelledWhileWaiting()
                self._turns.wait(timeout=0.2)

    def _pass(self, index: int, *, prepare: bool, build: bool) -> None:
        with self._turns:
            if prepare and self._prepare_turn == index:
                self._prepare_turn = index + 1
            if build and self._build_turn == index:
                self._build_turn = index + 1
            self._turns.notify_all()

    @contextlib.contextmanager
    def preparing(self, index: int) -> Iterator[None]:
        """Hold the tree-preparing turn of plan ``index`` (after every earlier plan's)."""
        self._wait_for(lambda: self._prepare_turn, index)
        try:
            yield
        finally:
            self._pass(index, prepare=True, build=False)

    @contextlib.contextmanager
    def building(self, index: int) -> Iterator[None]:
        """One of the ``jobs`` build slots, taken after every earlier plan took one (or
        needed none); Ctrl-C while waiting cancels."""
        self._wait_for(lambda: self._build_turn, index)
        while not self._slots.acquire(timeout=0.2):
            if self._cancel.is_set():
                raise _CancelledWhileWaiting()
        if self._cancel.is_set():  # the slot came free because the build before was cancelled
            self._slots.release()
            raise _CancelledWhileWaiting()
        self._pass(index, prepare=False, build=True)
        try:
            yield
        finally:
            self._slots.release()

    def pass_turn(self, index: int) -> None:
        """Plan ``index`` needs no turn any more (built, cached, or failed)."""
        self._pass(index, prepare=True, build=True)


@dataclass(frozen=True)
class _Shared:
    """Facts computed once per run, before the variants build."""

    info: RuntimeInfo
    commits: dict[str, str]
    links: tuple[FileLink, ...]
    manifest: dict[str, Any]
    cancel: threading.Event
    repo_locks: RepoLocks
    pipeline: _Pipeline


class _Interrupted(Exception):
    """A worker's build was cancelled by Ctrl-C in the main thread."""


class _CancelledWhileWaiting(_Interrupted):
    """Ctrl-C came while a variant waited for its turn or a build slot: its tree is either
    untouched or fully prepared, so it is kept as it is (a kept tree stays incremental)."""


def patch_records(patchset: Patchset) -> list[PatchRecord]:
    """The patches of a loaded patchset with the sha256 of each file as it is on disk."""
    records: list[PatchRecord] = []
    for refs in patchset.projects.values():
        for ref in refs:
            path = Path(ref.path)
            sha = sha256_file(path) if path.is_file() else ref.sha256
            records.append(PatchRecord(patchset.name, ref.project, ref.file, sha))
    return records


def _images_dir_summary(directory: Path | None) -> list[Any] | None:
    """Names, sizes and mtimes of the files in ``CAMKES_VM_IMAGES_DIR`` (cheap, not a hash)."""
    if directory is None:
        return None
    summary: list[Any] = []
    for dirpath, _dirs, files in sorted(os.walk(directory)):
        for name in sorted(files):
            path = Path(dirpath) / name
            with contextlib.suppress(OSError):
                stat = path.stat()
                summary.append([str(path.relative_to(directory)), stat.st_size, stat.st_mtime_ns])
    return summary


@dataclass(frozen=True)
class _Plan:
    """One variant's inputs and where its build goes."""

    variant: VariantSpec
    patchsets: tuple[Patchset, ...]
    patches: tuple[PatchRecord, ...]
    options: tuple[str, ...]
    images_dir: Path | None
    tree_key: str
    params_key: str | None  # the generated parameter commit's inputs, None without parameters
    inputs_hash: str
    output_dir: Path


def _plan(ctx: BuildContext, shared: _Shared, variant: VariantSpec, patchsets: Sequence[Patchset]) -> _Plan:
    patches = tuple(r for p in patchsets for r in patch_records(p))
    options = ctx.spec.options_for(variant)
    images_dir = ctx.spec.images_dir(variant)
    tree_key = json_digest({"commits": shared.commits, "patches": [r.sha256 for r in patches],
                      "patchsets": [p.name for p in patchsets],
                      "links": [[link.project, link.src, link.dest, link.copy] for link in shared.links]})
    params_key = settings_key(ctx.spec.params, variant.params) if variant.params else None
    inputs_hash = json_digest({
        "recipe": RECIPE_VERSION,
        "tree": tree_key,
        **({"params": params_key} if params_key else {}),
        "app": ctx.spec.app,
        "platform": ctx.spec.platform,
        "options": list(options),
        "executor": [shared.info.name, shared.info.identity],
        "images_dir": _images_dir_summary(images_dir),
    })
    output_dir = layout.builds_dir(ctx.root, variant.name) / inputs_hash[:16]
    return _Plan(variant, tuple(patchsets), patches, options, images_dir, tree_key, params_key, inputs_hash,
                 output_dir)


def _cached(ctx: BuildContext, plan: _Plan) -> BuildResult | None:
    """The earlier successful build with the same inputs, if its files are all still there:
    this variant's own, else one made under another variant name (builds are keyed by their
    inputs only, and the variant name is none of them)."""
    try:
        own: dict[str, Any] = json.loads((plan.output_dir / METADATA_NAME).read_text())
    except (OSError, ValueError):
        own = {}
    if (own.get("inputs_hash") == plan.inputs_hash and own.get("status") == "fail" and ctx.reuse_failures
            and own.get("failed_step")):
        return _result(ctx, plan, own, cached=True, log_tail=_tail(plan.output_dir / "build.log"))
    key = plan.output_dir.name
    others = sorted(plan.output_dir.parent.parent.glob(f"*/{key}*/{METADATA_NAME}"))
    for directory in [plan.output_dir, *(m.parent for m in others if m.parent != plan.output_dir)]:
        metadata = _valid_build(directory, plan.inputs_hash)
        if metadata is None:
            continue
        hit = replace(plan, output_dir=directory)
        if directory.parent == plan.output_dir.parent:
            _link_latest(directory)
        return _result(ctx, hit, metadata, cached=True)
    return None


def _valid_build(directory: Path, inputs_hash: str) -> dict[str, Any] | None:
    """``directory``'s metadata when it holds a successful build of ``inputs_hash`` with every
    artifact still there."""
    try:
        metadata: dict[str, Any] = json.loads((directory / METADATA_NAME).read_text())
    except (OSError, ValueError):
        return None
    if metadata.get("status") != "pass" or metadata.get("inputs_hash") != inputs_hash:
        return None
    for artifact in metadata.get("artifacts", []):
        path = directory / artifact["name"]
        if not path.is_file() or path.stat().st_size != artifact["size"]:
            return None
    return metadata


def fresh_output_dir(plan: _Plan) -> _Plan:
    """Where a (re)build of ``plan`` goes: its usual directory unless that holds an earlier
    successful build (which a results directory may refer to: never overwritten); then the
    first free ``<key>.<n>``."""
    directory = plan.output_dir
    n = 1
    while _holds_a_good_build(directory):
        directory = plan.output_dir.with_name(f"{plan.output_dir.name}.{n}")
        n += 1
    return plan if directory == plan.output_dir else replace(plan, output_dir=directory)


def _holds_a_good_build(directory: Path) -> bool:
    try:
        return bool(json.loads((directory / METADATA_NAME).read_text()).get("status") == "pass")
    except (OSError, ValueError):
        return False


def _result(ctx: BuildContext, plan: _Plan, metadata: dict[str, Any], *, cached: bool,
            log_tail: list[str] | None = None) -> BuildResult:
    boot_image = plan.output_dir / ctx.spec.boot_image_name
    simulate = plan.output_dir / "simulate"
    duration = metadata.get("duration")
    return BuildResult(
        variant=plan.variant.name,
        status=str(metadata["status"]),
        cached=cached,
        output_dir=plan.output_dir,
        log=plan.output_dir / LOG_NAME,
        metadata=metadata,
        inputs_hash=plan.inputs_hash,
        duration=float(duration) if isinstance(duration, int | float) else None,
        boot_image=boot_image if boot_image.is_file() else None,
        simulate=simulate if simulate.is_file() else None,
        failed_step=metadata.get("failed_step"),
        log_tail=log_tail or [],
    )


def _link_latest(output_dir: Path) -> None:
    with contextlib.suppress(OSError):  # a convenience link: never fails a build
        layout.link_latest(output_dir)


def _settings_contents(tree: SourceTree) -> dict[str, str]:
    """sha256 of every settings.cmake / easy-settings.cmake in the (patched) variant tree:
    they are read at configure time, so a change needs a fresh configure."""
    found: dict[str, str] = {}
    for path, checkout in tree.projects.items():
        for settings in sorted(checkout.directory.rglob("*settings.cmake")):
            if ".git" in settings.parts:
                continue
            found[f"{path}/{settings.relative_to(checkout.directory)}"] = sha256_file(settings)
    return found


def _configure_key(ctx: BuildContext, plan: _Plan, shared: _Shared, variant: VariantTree) -> str:
    return json_digest({"options": list(plan.options), "executor": shared.info.identity,
                  "settings": _settings_contents(variant.tree), "recipe": RECIPE_VERSION})


def share_sel4_cache(src: Path, cache: Path) -> None:
    """Point ``src/.sel4_cache`` at the workspace's shared cache (relative link).

    seL4's init-build.sh ignores a ``SEL4_CACHE_DIR`` from the environment: it passes
    ``-DSEL4_CACHE_DIR=$HOME/.sel4_cache`` if that directory exists, else the ``.sel4_cache``
    beside itself, i.e. in the variant's tree. Without this link every variant would compile
    capDL-tool and musllibc into a cache of its own, lost with the tree."""
    cache.mkdir(parents=True, exist_ok=True)
    link = src / ".sel4_cache"
    target = os.path.relpath(cache, src)
    if link.is_symlink() and os.readlink(link) == target:
        return
    if link.is_dir() and not link.is_symlink():
        shutil.rmtree(link)  # a cache of this variant's own from before: orch's, not the user's
    else:
        link.unlink(missing_ok=True)
    link.symlink_to(target, target_is_directory=True)


def _steps(options: Sequence[str], configure: bool) -> list[Step]:
    steps = [Step("configure", ("../src/init-build.sh", *options))] if configure else []
    return [*steps, Step("build", ("ninja",))]


def _binds(ctx: BuildContext, variant: VariantTree, plan: _Plan) -> list[Bind]:
    binds = [
        Bind(ctx.root.resolve(), read_only=True),  # projects' git dirs, the user's checkouts
        Bind(variant.base.resolve(), read_only=False),  # the variant's src/ and build/
        Bind(layout.sel4_cache_dir(ctx.root).resolve(), read_only=False),
    ]
    if plan.images_dir is not None:
        binds.append(Bind(plan.images_dir.resolve(), read_only=True))
    return binds + alternates_binds(ctx.root, [p.path for p in ctx.tree.projects.values()])


def alternates_binds(root: Path, paths: Sequence[str]) -> list[Bind]:
    """Read-only binds of the object directories the projects' git dirs borrow through
    alternates (a ``--mirror`` workspace), at the same paths: git inside the container (seL4's
    memoize step runs ``git diff HEAD``) then sees every object, and the build cache is used."""
    inside = root.resolve()
    seen: list[Path] = []
    for path in paths:
        for objects in gitops.alternate_object_dirs(layout.project_git_dir(root, path)):
            if objects not in seen and not objects.resolve().is_relative_to(inside):
                seen.append(objects)
    return [Bind(objects, read_only=True) for objects in seen]


_NINJA_PROGRESS = re.compile(r"\[(\d+)/(\d+)\] ")  # ninja's "[12/345] Building C object ..."


class _Log:
    """The build log file, a bounded tail for the failure line, and -v echo to the UI."""

    def __init__(self, handle: BinaryIO, ui: UI, variant: str, tracker: Tracker, task: int) -> None:
        self.handle = handle
        self.ui = ui
        self.variant = variant
        self.tracker = tracker
        self.task = task
        self.pending = b""

    def __call__(self, chunk: bytes) -> None:
        self.handle.write(chunk)
        self.handle.flush()
        lines = (self.pending + chunk).split(b"\n")
        self.pending = lines.pop()
        for raw in lines:
            line = raw.decode(errors="replace").rstrip("\r")
            if line.startswith("::orch-step::"):
                step = line.split()[1].rstrip(":")
                self.tracker.advance(self.task, 0, status={"configure": "configuring"}.get(step, "building"))
            elif progress := _NINJA_PROGRESS.match(line):
                self.tracker.advance(self.task, 0, status=f"ninja {progress[1]}/{progress[2]}")
            if self.ui.verbose:
                self.ui.info(f"{self.variant}: {line}")


def _tail(log: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    try:
        with open(log, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            text = handle.read().decode(errors="replace")
    except OSError:
        return []
    kept = [line for line in text.splitlines() if not line.startswith("::orch-")]
    return kept[-lines:]


def _metadata(ctx: BuildContext, plan: _Plan, shared: _Shared, job: Job, *, status: str,
              start: datetime, end: datetime, failed_step: str | None, artifacts: list[Artifact],
              configured: bool, incremental: bool) -> dict[str, Any]:
    info = shared.info
    return {
        "schema": 1,
        "orch_version": __version__,
        "variant": plan.variant.name,
        "status": status,
        "failed_step": failed_step,
        "app": ctx.spec.app,
        "platform": ctx.spec.platform,
        "cmake": list(plan.options),
        "patchsets": [p.name for p in plan.patchsets],
        "patches": [vars(r) for r in plan.patches],
        "params": {s.name: s.value for s in plan.variant.params},
        "manifest": shared.manifest,
        "projects": dict(sorted(shared.commits.items())),
        "executor": {"name": info.name, "image": info.image, "image_id": info.image_id,
                     "repo_digests": list(info.repo_digests), "toolchain": info.toolchain or None},
        "camkes_vm_images_dir": str(plan.images_dir) if plan.images_dir else None,
        "inputs_hash": plan.inputs_hash,
        "start": start.isoformat(timespec="seconds"),
        "end": end.isoformat(timespec="seconds"),
        "duration": round((end - start).total_seconds(), 3),
        "configured": configured,
        "incremental": incremental,
        "artifacts": [{"name": a.name, "sha256": a.sha256, "size": a.size} for a in artifacts],
        "log": LOG_NAME,
        "reproducer": ctx.runtime.reproducer(
            Job(name=job.name, workdir=job.workdir, output=job.output, env=job.env, binds=job.binds,
                steps=[*([s for s in job.steps if s.name == "configure"] or _steps(plan.options, True)[:1]),
                       Step("build", ("ninja",))])),
    }


def _collect(ctx: BuildContext, variant: VariantTree, output_dir: Path) -> list[Artifact]:
    """Copy the image and the simulate script out of the build dir (the layout ``simulate``
    expects, so ``cd <output dir> && ./simulate`` works)."""
    artifacts: list[Artifact] = []
    for name in (ctx.spec.boot_image_name, "simulate"):
        built = variant.build / name
        if not built.is_file():
            continue
        target = output_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(built, target)
        artifacts.append(Artifact(name, target, sha256_file(target), target.stat().st_size))
    return artifacts


def _disk_full(error: OSError, where: Path) -> InfraError:
    return InfraError(f"disk full while building: {error.strerror} ({where})",
                      hint="free some space (old variant trees: rm -rf .orch/variants) and retry")


def _run_variant(ctx: BuildContext, shared: _Shared, plan: _Plan, tracker: Tracker,
                 index: int) -> BuildResult:
    try:
        return _run_variant_in_turn(ctx, shared, plan, tracker, index)
    finally:
        shared.pipeline.pass_turn(index)


def _run_variant_in_turn(ctx: BuildContext, shared: _Shared, plan: _Plan, tracker: Tracker,
                         index: int) -> BuildResult:
    name = plan.variant.name
    task = tracker.add(f"build {name}", total=None)
    if not ctx.rebuild and (hit := _cached(ctx, plan)) is not None:
        tracker.done(task, "cached")
        return hit
    if shared.cancel.is_set():
        raise _Interrupted()
    plan = fresh_output_dir(plan)
    with variant_lock(ctx.root, name):
        try:
            result = _build_in_tree(ctx, shared, plan, tracker, task, index)
        except _CancelledWhileWaiting:
            tracker.done(task, "interrupted")
            raise
        except OSError as exc:
            remove_variant_tree(ctx.root, name, ctx.tree, locks=shared.repo_locks, warn=ctx.ui.warn)
            if exc.errno == errno.ENOSPC:
                raise _disk_full(exc, ctx.root) from None
            raise
        except BaseException:
            remove_variant_tree(ctx.root, name, ctx.tree, locks=shared.repo_locks, warn=ctx.ui.warn)
            tracker.done(task, "interrupted" if shared.cancel.is_set() else "error")
            raise
    if not result.ok:
        remove_variant_tree(ctx.root, name, ctx.tree, locks=shared.repo_locks, warn=ctx.ui.warn)
    word = "built" if result.ok else "BUILD FAILED"
    tracker.done(task, f"{word} ({result.metadata.get('duration', 0):.1f} s)")
    return result


def _prepared_tree(ctx: BuildContext, shared: _Shared, plan: _Plan) -> VariantTree:
    """The variant's tree at its pins with its patchsets and parameters applied."""
    variant, ready = prepare_variant_tree(ctx.root, plan.variant.name, ctx.tree, shared.commits,
                                          shared.links, plan.tree_key, locks=shared.repo_locks,
                                          warn=ctx.ui.warn)
    if not ready:
        if plan.patchsets:
            apply(variant.tree, plan.patchsets, three_way=ctx.three_way)
        mark_ready(variant, plan.tree_key)
    set_parameter_layer(variant, plan.params_key,
                        lambda tree: apply_values(tree, ctx.spec.params, plan.variant.params))
    return variant


def _build_in_tree(ctx: BuildContext, shared: _Shared, plan: _Plan, tracker: Tracker,
                   task: int, index: int) -> BuildResult:
    with shared.pipeline.preparing(index):
        tracker.advance(task, 0, status="preparing")
        variant = _prepared_tree(ctx, shared, plan)
    tracker.advance(task, 0, status="waiting")
    with shared.pipeline.building(index):
        return _build_prepared(ctx, shared, plan, tracker, task, variant)


def _build_prepared(ctx: BuildContext, shared: _Shared, plan: _Plan, tracker: Tracker, task: int,
                    variant: VariantTree) -> BuildResult:
    tracker.advance(task, 0, status="starting")
    configure_key = _configure_key(ctx, plan, shared, variant)
    key_file = variant.build / _CONFIGURE_KEY
    configure = not (variant.build / "build.ninja").is_file() or (
        key_file.read_text().strip() if key_file.is_file() else "") != configure_key
    if configure:  # settings.cmake values are read at configure time only: start clean
        shutil.rmtree(variant.build, ignore_errors=True)
        variant.build.mkdir(parents=True)
    share_sel4_cache(variant.src, layout.sel4_cache_dir(ctx.root))
    plan.output_dir.mkdir(parents=True, exist_ok=True)
    for stale in (METADATA_NAME, "simulate", ctx.spec.boot_image_name):
        (plan.output_dir / stale).unlink(missing_ok=True)
    log_path = plan.output_dir / LOG_NAME
    start = datetime.now(UTC)
    with open(log_path, "wb") as handle:
        job = Job(
            name=plan.variant.name,
            workdir=variant.build.resolve(),
            steps=_steps([*plan.options, *deterministic_dtb_options(ctx.spec.platform, plan.options,
                                                                    variant.base)], configure),
            output=_Log(handle, ctx.ui, plan.variant.name, tracker, task),
            env={"SEL4_CACHE_DIR": str(layout.sel4_cache_dir(ctx.root).resolve()),
                 **source_date_epoch(ctx.tree)},
            binds=_binds(ctx, variant, plan),
            labels={LABEL_VARIANT: plan.variant.name, LABEL_WORKSPACE: str(ctx.root.resolve())},
            timeout=ctx.timeout,
            cancel=shared.cancel,
        )
        outcome = ctx.runtime.run(job)
    end = datetime.now(UTC)
    if outcome.interrupted:
        raise _Interrupted()
    if outcome.timed_out:
        raise InfraError(f"variant '{plan.variant.name}': build timed out after {ctx.timeout:g} s "
                         f"(log: {log_path})", hint="raise the timeout, or look for a hung step in the log")
    tail = _tail(log_path)
    if not outcome.ok and any("No space left on device" in line for line in tail):
        raise InfraError(f"variant '{plan.variant.name}': disk full during the build (log: {log_path})",
                         hint="free some space (old variant trees: rm -rf .orch/variants) and retry")
    status = "pass" if outcome.ok else "fail"
    artifacts: list[Artifact] = []
    failed_step = outcome.failed_step if not outcome.ok else None
    if outcome.ok:
        key_file.write_text(configure_key + "\n")
        artifacts = _collect(ctx, variant, plan.output_dir)
        if not any(a.name == ctx.spec.boot_image_name for a in artifacts):
            status, failed_step = "fail", "build"
            tail = [*tail, f"orch: the build succeeded but produced no {ctx.spec.boot_image_name}"]
            with open(log_path, "a") as log:
                log.write(tail[-1] + "\n")
    elif failed_step == "configure":
        key_file.unlink(missing_ok=True)
    metadata = _metadata(ctx, plan, shared, job, status=status, start=start, end=end,
                         failed_step=failed_step, artifacts=artifacts, configured=configure,
                         incremental=not configure)
    if status == "pass":
        metadata["reproducible"] = compare_with_earlier(plan, artifacts)
    (plan.output_dir / METADATA_NAME).write_text(json.dumps(metadata, indent=2) + "\n")
    if status == "pass":
        _link_latest(plan.output_dir)
    return _result(ctx, plan, metadata, cached=False, log_tail=tail if status != "pass" else [])


QEMU_DTB_WRAPPER = """#!/bin/sh
# Written by orch. seL4's qemu-arm-virt build runs QEMU once (-machine ...,dumpdtb=FILE) to get
# the board's device tree; QEMU >= 7.1 puts a random rng-seed and kaslr-seed into /chosen, so
# every build embeds a different DTB. This adds dtb-randomness=off to that one call (when the
# QEMU knows it) and runs qemu-system-aarch64 unchanged otherwise.
case "$*" in
*dumpdtb=*)
    if qemu-system-aarch64 -machine virt,help 2>/dev/null | grep -q dtb-randomness; then
        for arg in "$@"; do
            shift
            case "$arg" in *dumpdtb=*) arg="$arg,dtb-randomness=off" ;; esac
            set -- "$@" "$arg"
        done
    fi ;;
esac
exec qemu-system-aarch64 "$@"
"""


def deterministic_dtb_options(platform: str, options: Sequence[str], base: Path) -> list[str]:
    """For an AArch64 qemu-arm-virt build: ``-DQEMU_BINARY`` naming a small wrapper (written
    under the variant's directory, which the container sees at the same path) that dumps the
    DTB without QEMU's random seeds, the one source of difference between two builds of the
    same inputs found on vm_minimal (40 bytes of /chosen). Other platforms: nothing."""
    if platform != "qemu-arm-virt" or not any(o.startswith("-DAARCH64=") and not o.endswith(("=0", "=OFF"))
                                              for o in options):
        return []
    if any(o.startswith("-DQEMU_BINARY=") for o in options):
        return []  # the user chose one
    wrapper = base.resolve() / "orch-qemu" / "qemu-system-aarch64"
    wrapper.parent.mkdir(parents=True, exist_ok=True)
    if not wrapper.is_file() or wrapper.read_text() != QEMU_DTB_WRAPPER:
        wrapper.write_text(QEMU_DTB_WRAPPER)
        wrapper.chmod(0o755)
    return [f"-DQEMU_BINARY={wrapper}"]


def source_date_epoch(tree: SourceTree) -> dict[str, str]:
    """``SOURCE_DATE_EPOCH`` for the build: the newest commit time of the kernel (else the first
    project) at its pin, so compilers and archivers that honour it (``__DATE__``, ``__TIME__``)
    write the same bytes on every rebuild. Empty when git cannot tell."""
    checkouts = sorted(tree.projects.values(), key=lambda c: c.path != "kernel")
    if not checkouts:
        return {}
    first = checkouts[0]
    stamp = gitops.try_run(["log", "-1", "--format=%ct", first.pinned], cwd=first.directory)
    return {"SOURCE_DATE_EPOCH": stamp} if stamp and stamp.isdigit() else {}


def compare_with_earlier(plan: _Plan, artifacts: Sequence[Artifact]) -> dict[str, Any] | None:
    """For a rebuild of inputs built before (``<key>.<n>`` beside ``<key>``): whether each
    artifact came out bit-identical to that earlier successful build's; None for a first build."""
    base = plan.output_dir.parent / plan.output_dir.name.split(".")[0]
    earlier = sorted((d for d in plan.output_dir.parent.glob(base.name + "*")
                      if d != plan.output_dir and _valid_build(d, plan.inputs_hash) is not None),
                     key=lambda d: d.stat().st_mtime)
    if not earlier:
        return None
    before = {a["name"]: a["sha256"] for a in (_valid_build(earlier[-1], plan.inputs_hash) or {}).get(
        "artifacts", [])}
    differ = sorted(a.name for a in artifacts if a.name in before and before[a.name] != a.sha256)
    return {"compared_with": earlier[-1].name, "identical": not differ, "differ": differ}


def _shared(ctx: BuildContext, jobs: int) -> _Shared:
    info = ctx.runtime.info(ctx.ui)
    commits = {path: checkout.pinned for path, checkout in sorted(ctx.tree.projects.items())}
    for path, checkout in sorted(ctx.tree.projects.items()) if ctx.warn_checkouts else ():
        if head_commit(checkout.directory) != checkout.pinned:
            ctx.ui.warn(f"{path}: variants build the pinned {checkout.pinned[:12]}, not your checked-out "
                        "commits (--use-checkouts builds those; or turn local work into a patchset: "
                        "orch patchset import)")
    links = tuple(ctx.links) if ctx.links is not None else tuple(workspace_links(ctx.root, ctx.tree))
    manifest = dict(ctx.manifest) if ctx.manifest is not None else recorded_manifest(ctx.root)
    cancel = threading.Event()
    return _Shared(info, commits, links, manifest, cancel, RepoLocks(), _Pipeline(jobs, cancel))


def build_variants(
    ctx: BuildContext,
    variants: Sequence[tuple[VariantSpec, Sequence[Patchset]]],
    jobs: int = 1,
) -> list[BuildResult]:
    """Build each ``(variant, its loaded patchsets in apply order)``, ``jobs`` at a time.

    Returns one :class:`BuildResult` per variant, in order (``fail`` for broken builds).
    Raises :class:`InfraError` for machinery trouble and KeyboardInterrupt on Ctrl-C, after
    every running build has stopped and cleaned up."""
    names = [v.name for v, _ in variants]
    shared = _shared(ctx, jobs)
    plans = [_plan(ctx, shared, v, p) for v, p in variants]
    # one worker more than build slots: it prepares the next variant's tree meanwhile
    with ctx.ui.tracker() as tracker, concurrent.futures.ThreadPoolExecutor(
        max_workers=max(1, jobs) + 1, thread_name_prefix="build"
    ) as pool:
        futures = [pool.submit(_run_variant, ctx, shared, plan, tracker, index)
                   for index, plan in enumerate(plans)]
        try:
            pending = set(futures)
            while pending:
                _done, pending = concurrent.futures.wait(pending, timeout=0.2)
        except KeyboardInterrupt:
            shared.cancel.set()
            concurrent.futures.wait(futures)
            raise
    results: list[BuildResult] = []
    for name, future in zip(names, futures, strict=True):
        error = future.exception()
        if isinstance(error, _Interrupted):
            raise KeyboardInterrupt(f"build of {name} interrupted")
        if error is not None:
            raise error
        results.append(future.result())
    return results


def build_variant(ctx: BuildContext, variant: VariantSpec, patchsets: Sequence[Patchset]) -> BuildResult:
    """Build one variant (see :func:`build_variants`)."""
    return build_variants(ctx, [(variant, patchsets)])[0]


def remove_variant(ctx_root: Path, name: str, tree: SourceTree) -> None:
    """Delete a variant's worktrees and build dir (its recorded builds stay)."""
    remove_variant_tree(ctx_root, name, tree)


def summary(result: BuildResult) -> dict[str, Any]:
    """The short JSON form of a result, for ``--json`` output."""
    return {"variant": result.variant, "status": result.status, "cached": result.cached,
            "output_dir": str(result.output_dir),
            "image": str(result.boot_image) if result.boot_image else None,
            "log": str(result.log), "duration": result.duration}
