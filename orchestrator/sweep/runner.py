"""Running a sweep here: check the input, state the budget, run the grid points (``-j N`` at
once, each in a variant tree of its own that later points reuse), record every probe as it
finishes (``.orch/sweeps/<id>/probes.jsonl``), and write the results. An interrupted sweep
keeps its probes; ``--resume`` runs the rest without redoing any of them."""

from __future__ import annotations

import concurrent.futures
import json
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from orchestrator import job, layout
from orchestrator.build.spec import spec_for
from orchestrator.cluster.task import PointResult as ClusterPointResult
from orchestrator.errors import InputError
from orchestrator.patchset.apply import load_patchset, patchset_search_path, require_applicable, resolve
from orchestrator.sweep import results
from orchestrator.sweep.plan import PointResult, PointTask, ProbeRecord, SweepPlan, check_declared
from orchestrator.sweep.probe import Cancelled, run_point
from orchestrator.sweep.results import find_sweep
from orchestrator.ui import UI, Tracker
from orchestrator.workspace.sync import Workspace

PLAN_FILE = results.PLAN_FILE
PROBES_FILE = "probes.jsonl"


@dataclass(frozen=True)
class Request:
    """What `orch sweep` was asked to do."""

    plan: SweepPlan | None  # None with resume: the stored plan
    workspace: Path
    jobs: int = 1
    max_builds: int = 40
    yes: bool = False
    resume: str | None = None  # a sweep id, or "latest"
    manifest: str | None = None
    command: tuple[str, ...] = ()
    cluster: str | None = None  # a Dask scheduler: grid points run on its workers
    points: tuple[int, ...] = ()  # only these grid points (a CI matrix job runs one)
    results_dir: Path | None = None  # the sweep's directory instead of .orch/sweeps/<id>/


@dataclass
class Outcome:
    result: results.SweepResult
    directory: Path
    written: dict[str, Path] = field(default_factory=dict)


def sweeps_root(workspace: Path) -> Path:
    return layout.sweeps_dir(workspace)


def read_probes(directory: Path) -> list[ProbeRecord]:
    records: list[ProbeRecord] = []
    try:
        lines = (directory / PROBES_FILE).read_text().splitlines()
    except OSError:
        return records
    for line in lines:
        try:
            records.append(ProbeRecord.from_dict(json.loads(line)))
        except (ValueError, TypeError):
            continue  # a line cut short by a kill: that probe runs again
    return records


def mean_probe_seconds(workspace: Path) -> float | None:
    """The mean build + boot time of probes of earlier sweeps in this workspace."""
    times = [r.build_seconds + r.boot_seconds for d in sweeps_root(workspace).glob("*/")
             if d.name != layout.LATEST for r in read_probes(d) if r.build != "cached"]
    return sum(times) / len(times) if times else None


def stored_plan(directory: Path) -> SweepPlan:
    """The plan a sweep directory was made with (its plan.json)."""
    try:
        return SweepPlan.from_dict(json.loads((directory / PLAN_FILE).read_text()))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"{directory / PLAN_FILE}: not a readable sweep plan: {error}") from None


def _resumed(request: Request, ui: UI) -> tuple[SweepPlan, Path, list[ProbeRecord]]:
    """A stored sweep's plan, directory and the probes already done."""
    assert request.resume is not None
    directory = find_sweep(request.workspace, request.resume)
    try:
        plan = SweepPlan.from_dict(json.loads((directory / PLAN_FILE).read_text()))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"{directory / PLAN_FILE}: cannot resume: {error}") from None
    known = read_probes(directory)
    ui.info(f"resuming sweep {directory.name}: {len(known)} probe(s) already done")
    return plan, directory, known


def _create(workspace: Path, plan: SweepPlan, given: Path | None = None) -> Path:
    """A new sweep's directory with its plan.json (``latest`` points at it), or ``given``."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    directory = given or sweeps_root(workspace) / f"{stamp}-{plan.patchset}-{plan.variant}"
    directory.mkdir(parents=True, exist_ok=given is not None)
    (directory / PLAN_FILE).write_text(json.dumps(plan.to_dict(), indent=2) + "\n")
    if given is None:
        layout.link_latest(directory)
    return directory


def only_points(tasks: Sequence[PointTask], wanted: Sequence[int]) -> list[PointTask]:
    """The grid points a `--point` selection names (checked: a typo is bad input)."""
    if not wanted:
        return list(tasks)
    known = {t.index for t in tasks}
    unknown = sorted(set(wanted) - known)
    if unknown:
        raise InputError(f"--point {unknown[0]}: the sweep has grid points 0..{len(tasks) - 1}")
    return [t for t in tasks if t.index in set(wanted)]


def _check(plan: SweepPlan, request: Request, ui: UI) -> SweepPlan:
    """Sync if needed, check the variant, its patches and the parameters, before any build."""
    search_path = [p.resolve() for p in patchset_search_path(list(plan.patchset_dirs), {})]
    spec = spec_for(load_patchset(plan.patchset, search_path))
    variant = spec.variant(plan.variant) if plan.variant else spec.variants[0]
    plan = replace(plan, variant=variant.name)
    check_declared(plan, spec.params, spec.origin)
    workspace = Workspace(request.workspace)
    job.ensure_synced(workspace, job.JobOptions(manifest=request.manifest), ui)
    require_applicable(workspace.tree(), {variant.name: resolve(list(variant.patchsets), search_path)})
    search = replace(plan.search, unit=spec.params[plan.search.param].unit) if plan.search else None
    return replace(plan, search=search, units=tuple((n, spec.params[n].unit) for n in plan.params()))


def budget(tasks: Sequence[PointTask], workspace: Path) -> tuple[int, str]:
    """At most how many builds the sweep needs, and that said with a time estimate."""
    builds = sum(max(0, t.max_probes - len(t.known)) if t.search else
                 max(0, len(t.probes) - len(t.known)) for t in tasks)
    per_probe = mean_probe_seconds(workspace)
    eta = (f", about {builds * per_probe / 60:.1f} min at {per_probe:.0f} s per probe so far"
           if per_probe else "")
    return builds, f"{len(tasks)} grid point(s), at most {builds} build(s) + boot(s){eta}"


class _Progress:
    """The per-point progress bars and the probe journal (thread safe)."""

    def __init__(self, tracker: Tracker, directory: Path, plan: SweepPlan) -> None:
        self.tracker = tracker
        self.journal = directory / PROBES_FILE
        self.plan = plan
        self.lock = threading.Lock()
        self.tasks: dict[int, int] = {}

    def start(self, task: PointTask) -> None:
        with self.lock:
            label = ", ".join(f"{s.name}={results.show(self.plan, s.name, s.value)}" for s in task.point)
            self.tasks[task.index] = self.tracker.add(f"point {label or task.index}", total=task.max_probes)

    def probe(self, task: PointTask, record: ProbeRecord) -> None:
        with self.lock:
            with open(self.journal, "a") as handle:
                handle.write(json.dumps(record.to_dict()) + "\n")
            shown = ", ".join(f"{k}={results.show(self.plan, k, v)}" for k, v in record.settings.items()
                              if k not in {s.name for s in task.point})
            self.tracker.advance(self.tasks[task.index], 1, status=f"{shown}: {record.verdict}")

    def done(self, task: PointTask, point: PointResult) -> None:
        search = self.plan.search
        text = f"{len(point.probes)} probe(s)"
        if search is not None:
            text = f"min {results.show(self.plan, search.param, point.minimum)} ({text})"
        with self.lock:
            self.tracker.done(self.tasks[task.index], text)


def _run_points(tasks: Sequence[PointTask], trees: Sequence[str], progress: _Progress,
                jobs: int) -> list[PointResult]:
    """Run the points, ``jobs`` at once, each on a free variant tree; Ctrl-C stops starting
    probes, lets the running ones end, and propagates."""
    free: queue.Queue[str] = queue.Queue()
    for tree in trees:
        free.put(tree)
    cancel = threading.Event()

    def one(task: PointTask) -> PointResult:
        tree = free.get()
        try:
            placed = replace(task, tree=tree)
            progress.start(placed)
            point = run_point(placed, progress.probe, cancel)
            progress.done(placed, point)
            return point
        finally:
            free.put(tree)

    if jobs <= 1:
        return [one(task) for task in tasks]
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="sweep") as pool:
        futures = [pool.submit(one, task) for task in tasks]
        try:
            pending = set(futures)
            while pending:
                _done, pending = concurrent.futures.wait(pending, timeout=0.2)
        except KeyboardInterrupt:
            cancel.set()
            concurrent.futures.wait(futures)
            raise
        return [f.result() for f in futures]


def _run_points_on_cluster(tasks: Sequence[PointTask], plan: SweepPlan, progress: _Progress,
                           request: Request, address: str, ui: UI) -> list[PointResult]:
    """Every grid point as a cluster task at this workspace's manifest pins; each point's
    probes join the journal as the point comes back (a resumed sweep redoes none of them)."""
    from orchestrator.cluster.engine import DaskEngine
    from orchestrator.cluster.fanout import manifest_pin
    from orchestrator.sweep import distribute

    pin = manifest_pin(request.workspace, job.JobOptions())
    files = distribute.shipped_files(plan)
    by_id = {f"point-{t.index}": t for t in tasks}
    run_id = tasks[0].sweep if tasks else "sweep"
    points: dict[int, PointResult] = {}
    with DaskEngine(address) as engine:
        ui.info(f"sweep on {engine.describe()}")
        for task in tasks:
            progress.start(task)

        def arrived(result: ClusterPointResult) -> None:
            task = by_id[result.point_id]
            point = distribute.point_result(result, task)
            known = {tuple(sorted(r.settings.items())) for r in task.known}
            for record in point.probes:
                if tuple(sorted(record.settings.items())) not in known:
                    progress.probe(task, record)
            progress.done(task, point)
            points[task.index] = point

        engine.run([distribute.cluster_task(t, run_id, pin, files) for t in tasks], arrived)
    return [points[t.index] for t in tasks]


def run_sweep(request: Request, ui: UI) -> Outcome:
    """Run (or resume) a sweep and write its results; Ctrl-C leaves a resumable sweep."""
    started, clock = datetime.now(UTC), time.monotonic()
    directory: Path | None = None
    known: list[ProbeRecord] = []
    if request.resume is not None:
        stored, directory, known = _resumed(request, ui)
        plan = _check(stored, request, ui)
    else:
        assert request.plan is not None
        plan = _check(request.plan, request, ui)
    trees = [f"sweep-{plan.variant}-{i}" for i in range(max(1, request.jobs))]
    tasks = only_points(plan.tasks("", str(request.workspace.resolve()), trees, known), request.points)
    builds, text = budget(tasks, request.workspace)
    ui.info(f"sweep: {text}")
    if builds > request.max_builds and not request.yes:
        raise InputError(f"this sweep may need {builds} builds, more than --max-builds {request.max_builds}",
                         hint="pass --yes to go ahead, or narrow the range / raise --step")
    directory = directory or _create(request.workspace, plan, request.results_dir)
    sweep_id = directory.name
    tasks = [replace(t, sweep=sweep_id) for t in tasks]
    result = results.SweepResult(id=sweep_id, plan=plan, points=[],
                                 started=started.isoformat(timespec="seconds"),
                                 command=list(request.command), workspace=str(request.workspace))
    with ui.tracker() as tracker:
        progress = _Progress(tracker, directory, plan)
        try:
            if request.cluster:
                result.points = _run_points_on_cluster(tasks, plan, progress, request, request.cluster, ui)
            else:
                result.points = _run_points(tasks, trees, progress, request.jobs)
        except (KeyboardInterrupt, Cancelled):
            done = len(read_probes(directory))
            ui.err.print(f"sweep {sweep_id} interrupted after {done} probe(s); "
                         f"continue with: orch sweep --resume {sweep_id}", highlight=False, markup=False)
            raise KeyboardInterrupt() from None
    result.finished = datetime.now(UTC).isoformat(timespec="seconds")
    result.seconds = round(time.monotonic() - clock, 3)
    written = results.write(result, directory)
    return Outcome(result, directory, written)
