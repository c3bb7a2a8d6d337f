"""One grid point of a sweep: :func:`run_point` takes a :class:`~.plan.PointTask` (data only)
and returns a :class:`~.plan.PointResult`; each probe builds the variant with the point's
parameter values (a generated commit on top of its patches, in the task's variant tree, so a
probe that changes one file rebuilds only what depends on it) and boots it.

Points share nothing but the workspace's git directories and caches, so a scheduler may run
them in threads here or ship the task to another worker that sees the same workspace.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.analysis.memory import gather
from orchestrator.boot.stage import BootSettings, boot, boot_runtime
from orchestrator.build.builder import BuildContext, BuildResult, build_variants
from orchestrator.build.spec import BuildSpec, VariantSpec, override, spec_for, with_params
from orchestrator.build.variant_tree import variant_base
from orchestrator.digest import sha256_file_or_none
from orchestrator.errors import InfraError
from orchestrator.patchset.apply import Patchset, load_patchset, patchset_search_path, resolve
from orchestrator.patchset.params import Setting
from orchestrator.runtime import make_runtime
from orchestrator.runtime.base import Runtime
from orchestrator.sweep.plan import PointResult, PointTask, ProbeRecord
from orchestrator.sweep.search import minimize, violations
from orchestrator.ui import UI
from orchestrator.workspace.sync import Workspace

OnProbe = Callable[[PointTask, ProbeRecord], None]
TIMEOUT = "timeout"  # ProbeRecord.verdict of a boot that reached no decisive line in time


class Cancelled(Exception):
    """The sweep was interrupted between two probes."""


@dataclass
class _Env:
    """What every probe of a point needs, loaded once from the task."""

    task: PointTask
    settings: BootSettings
    spec: BuildSpec
    variant: VariantSpec
    chain: list[Patchset]
    context: BuildContext
    boot_runtime: Runtime  # where its boots run


def _load(task: PointTask) -> _Env:
    root = Path(task.workspace)
    search_path = [p.resolve() for p in patchset_search_path(list(task.patchset_dirs), {})]
    spec = override(spec_for(load_patchset(task.patchset, search_path)), variants=[task.variant],
                    cmake=list(task.cmake) or None, toolchain_image=task.image)
    variant = spec.variants[0]
    chain = resolve(list(variant.patchsets), search_path)
    tree = Workspace(root).tree()
    settings = BootSettings(root=root, boot_in=task.boot_in, executor=task.executor, timeout=task.timeout)
    context = BuildContext(root=root, tree=tree, spec=spec, ui=UI.silent(),
                           runtime=make_runtime(task.executor, spec.toolchain_image))
    return _Env(task, settings, spec, variant, chain, context, boot_runtime(settings, spec.toolchain_image))


def _frames_of(env: _Env) -> tuple[int | None, int | None]:
    """Guest RAM and frame size as the probe's tree has them (the seed's bookkeeping)."""
    estimate = gather(variant_base(env.context.root, env.task.tree) / "src", app=env.spec.app,
                      platform=env.spec.platform)
    return (estimate.guest_ram.value if estimate.guest_ram else None,
            estimate.frame_size.value if estimate.frame_size else None)


def probe(env: _Env, settings: Sequence[Setting]) -> ProbeRecord:
    """Build the variant with ``settings`` in the task's tree, boot it, judge it."""
    task = env.task
    values = {s.name: s.value for s in settings}
    variant = replace(with_params(env.variant, values), name=task.tree)
    spec = replace(env.spec, variants=(variant,))
    build: BuildResult = build_variants(replace(env.context, spec=spec), [(variant, env.chain)])[0]
    guest_ram, frame_size = _frames_of(env) if build.ok else (None, None)
    common: dict[str, Any] = {
        "point": task.index, "settings": values, "build": "cached" if build.cached else (
            "built" if build.ok else "failed"),
        "build_seconds": 0.0 if build.cached else build.duration or 0.0,
        "configured": bool(build.metadata.get("configured")) and not build.cached,
        "inputs_hash": build.inputs_hash, "tree": task.tree,
        "guest_ram": guest_ram, "frame_size": frame_size,
    }
    if not build.ok or build.boot_image is None:
        return ProbeRecord(ok=False, verdict="build-failed", cause=build.failed_step, **common,
                           at=datetime.now(UTC).isoformat(timespec="seconds"))
    done = boot(build, spec, env.settings, env.boot_runtime, UI.silent())
    record = done.record
    if record.verdict == "error":
        raise InfraError(f"sweep point {task.label()}: the boot could not be judged: "
                         f"{record.error or record.cause}",
                         hint="fix QEMU, then `orch sweep --resume`")
    return ProbeRecord(
        ok=record.verdict == "pass", verdict=record.verdict, cause=record.cause,
        decisive=record.matched_line,
        boot_seconds=0.0 if done.cached else record.duration,
        boot_cached=done.cached, image_sha256=sha256_file_or_none(build.boot_image), **common,
        at=datetime.now(UTC).isoformat(timespec="seconds"))


def run_point(task: PointTask, on_probe: OnProbe | None = None,
              cancel: threading.Event | None = None) -> PointResult:
    """Search (or walk the plain grid of) one point. Probes ``task.known`` already holds are
    not run again; each new one is passed to ``on_probe`` as soon as it is done."""
    started = time.monotonic()
    base = {s.name: s.value for s in task.point}
    known = {tuple(sorted(r.settings.items())): r for r in task.known}
    records: list[ProbeRecord] = []
    notes: list[str] = []
    env: _Env | None = None
    new = 0

    def at(settings: Sequence[Setting]) -> ProbeRecord:
        nonlocal env, new
        full = [*task.point, *settings]
        key = tuple(sorted({s.name: s.value for s in full}.items()))
        record = known.get(key)
        if record is None:
            record = fresh(full)
            if record.verdict == TIMEOUT:  # a hang says nothing about the value: boot it once more
                records.append(record)
                again = fresh(full)
                notes.append(f"{shown(settings)}: the boot timed out; booted again: {again.verdict}")
                record = again
            known[key] = record
        records.append(record)
        return record

    def shown(settings: Sequence[Setting]) -> str:
        search = task.search
        return ", ".join(f"{s.name}={search.show(s.value) if search and s.name == search.param else s.value}"
                         for s in settings)

    def fresh(full: Sequence[Setting]) -> ProbeRecord:
        nonlocal env, new
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        env = env or _load(task)
        try:
            record = probe(env, full)  # a timed-out boot is never taken from the boot cache
        except BaseException:
            env.boot_runtime.stop_all()
            raise
        new += 1
        if on_probe is not None:
            on_probe(task, record)
        return record

    result = PointResult(index=task.index, point=base)
    if task.search is not None:
        search = task.search
        found = minimize(search, lambda value: at([Setting(search.param, value)]))
        result.minimum, result.below = found.minimum, found.below
        result.notes = [*found.notes, *notes]
        result.violations = violations(list(known.values()), search.param)
    else:
        for settings in task.probes:
            at(settings)
        for name in {s.name for settings in task.probes for s in settings}:
            result.violations += violations(records, name)
    result.probes = records
    result.new_probes = new
    result.seconds = round(time.monotonic() - started, 3)
    sized = [r for r in records if r.guest_ram is not None]
    if sized:
        result.guest_ram, result.frame_size = sized[0].guest_ram, sized[0].frame_size
    return result
