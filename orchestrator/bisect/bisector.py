"""The two-level `orch bisect`: manifest snapshots first, then the project commits between
the last good and the first bad snapshot (or, with ``--project``, one project's commits).

Each level is a list of :class:`~orchestrator.workspace.point.Point` s, index 0 the good end;
:func:`orchestrator.bisect.search.search` picks which to judge through a batch probe, which
here judges the batch's points one after another with the :class:`PipelineOracle` (or reads
their verdicts back from a log on ``--replay``). Everything a bisection writes goes under
``.orch/bisect/<id>/``: ``bisect.json``, ``bisect.log`` and each step's `orch build` reports.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from orchestrator import layout
from orchestrator.bisect import candidates as cand
from orchestrator.bisect import distribute
from orchestrator.bisect.log import BisectLog, LogWriter
from orchestrator.bisect.oracle import INFRA, OracleSettings, PipelineOracle, StepOutcome
from orchestrator.bisect.record import (
    EXIT_CODES,
    MANIFEST_LEVEL,
    PROJECT_LEVEL,
    BisectRecord,
    Culprit,
    LevelSummary,
    Snapshot,
    StepRecord,
)
from orchestrator.bisect.search import BAD, FOUND, GOOD, SKIP, Progress, SearchResult, Verdict, search
from orchestrator.build.eras import choose_image
from orchestrator.build.spec import BuildSpec, spec_for
from orchestrator.cluster.engine import DaskEngine, Engine
from orchestrator.cluster.fanout import ManifestPin, manifest_pin
from orchestrator.cluster.task import PatchFile
from orchestrator.errors import InputError
from orchestrator.patchset.apply import load_patchset, patchset_search_path
from orchestrator.ui import UI
from orchestrator.workspace import gitops
from orchestrator.workspace.point import (
    ManifestRev,
    Point,
    apply_pins,
    manifest_point,
    resolve_manifest_rev,
    resolve_project_rev,
    workspace_point,
)
from orchestrator.workspace.sync import Workspace


@dataclass(frozen=True)
class BisectRequest:
    settings: OracleSettings
    good: str
    bad: str
    project: str | None = None  # bisect one project's commits, the others at the workspace's pins
    image: str | None = None  # --image: one image for every point (no era rules)
    width: int = 1  # points judged per search step (k-ary search; 1: binary)
    command: tuple[str, ...] = ()
    replay: BisectLog | None = None  # verdicts to read back instead of building
    cluster: str | None = None  # a Dask scheduler: each step judges `width` points on its workers


@dataclass
class LevelPoint:
    """One point of a level and how the table names it."""

    point: Point
    rev: str
    subject: str
    date: str | None
    project: str | None = None
    change: cand.Change | None = None


@dataclass
class _Run:
    """One bisection in progress."""

    request: BisectRequest
    workspace: Workspace
    spec: BuildSpec
    record: BisectRecord
    directory: Path
    log: LogWriter
    ui: UI
    oracle: PipelineOracle
    judged: dict[tuple[str, str, str | None], StepRecord] = field(default_factory=dict)
    engine: Engine | None = None  # --cluster: each search step's points on the workers at once
    cluster_pin: ManifestPin | None = None
    cluster_files: tuple[PatchFile, ...] = ()
    pending: list[int] = field(default_factory=list)  # points of the batch being judged


def bisect_dir(root: Path, run_id: str) -> Path:
    return layout.bisect_dir(root) / run_id


def run_bisect(request: BisectRequest, ui: UI) -> BisectRecord:
    """Bisect, write ``bisect.json`` and ``bisect.log``, and return the record (its
    ``exit_code``: 0 culprit found, 1 no regression, 2 good end bad, 125 all skipped)."""
    settings = request.settings
    search_path = [p.resolve() for p in patchset_search_path(list(settings.patchset_dirs), settings.env)]
    spec = spec_for(load_patchset(settings.patchset, search_path))
    spec.variant(settings.variant)  # a typo fails now
    workspace = Workspace.open(settings.workspace)
    started = datetime.now(UTC)
    run_id = started.strftime("%Y%m%d-%H%M%S-%f")[:-3] + f"-{settings.patchset}"
    directory = bisect_dir(workspace.root, run_id)
    record = BisectRecord(settings.patchset, settings.variant, request.good, request.bad, request.project,
                          id=run_id, started=started.isoformat(timespec="seconds"),
                          command=list(request.command), replayed=request.replay is not None)
    log = LogWriter(directory / "bisect.log", _start_args(request), shlex.join(request.command))
    record.log = str(directory / "bisect.log")
    run = _Run(request, workspace, spec, record, directory, log, ui, PipelineOracle(settings, ui))
    engine = _connect(run) if request.cluster and request.replay is None else None
    try:
        if request.project is None:
            _two_levels(run)
        else:
            _project_only(run)
    finally:
        if engine is not None:
            engine.close()
    record.exit_code = EXIT_CODES[record.status]
    record.finished = datetime.now(UTC).isoformat(timespec="seconds")
    record.write(directory / "bisect.json")
    layout.link_latest(directory)
    return record


def _connect(run: _Run) -> DaskEngine:
    """--cluster: the engine, this workspace's manifest pins and the patchset files for the
    workers, and the search width (one point per worker unless --width says otherwise)."""
    from orchestrator.job import JobOptions

    assert run.request.cluster is not None
    settings = run.request.settings
    engine = DaskEngine(run.request.cluster)
    run.engine = engine
    run.cluster_pin = manifest_pin(settings.workspace, JobOptions())
    run.cluster_files = distribute.shipped_files(settings)
    if run.request.width <= 1:
        run.request = replace(run.request, width=engine.workers())
    run.ui.info(f"bisecting on {engine.describe()}: {run.request.width} point(s) per step")
    return engine


def _start_args(request: BisectRequest) -> dict[str, object]:
    s = request.settings
    return {"patchset": s.patchset, "variant": s.variant, "good": request.good, "bad": request.bad,
            "project": request.project, "test": s.test, "build_failure": s.build_failure,
            "retries": s.retries, "image": request.image, "cmake": list(s.cmake),
            "executor": s.executor}


# --- the levels -----------------------------------------------------------------------------


def _two_levels(run: _Run) -> None:
    good = resolve_manifest_rev(run.workspace, run.request.good)
    bad = resolve_manifest_rev(run.workspace, run.request.bad)
    run.record.good, run.record.bad = good.commit, bad.commit
    git_dir = run.workspace.meta_dir / "manifest.git"
    file = run.workspace.state().manifest.source.file
    snapshots = cand.manifest_snapshots(git_dir, good.commit, bad.commit, file)
    points = [_snapshot_point(run, rev) for rev in (good, *snapshots)]
    result = _search_level(run, MANIFEST_LEVEL, points, known={})
    if result.status != FOUND or result.first_bad is None:
        return
    last_good, first_bad = points[result.last_good], points[result.first_bad]
    run.record.last_good_manifest = Snapshot(last_good.rev, last_good.date or "", last_good.subject)
    run.record.first_bad_manifest = Snapshot(first_bad.rev, first_bad.date or "", first_bad.subject)
    changes = cand.changes_between(run.workspace, last_good.point, first_bad.point)
    if not changes:  # the snapshot changed no pin (links, groups...): it is the culprit itself
        run.record.reproduce = _reproduce(run, first_bad)
        return
    known = {0: result.verdicts.get(result.last_good, Verdict(GOOD)),
             len(changes): result.verdicts.get(result.first_bad, Verdict(BAD))}
    _level_two(run, last_good, changes, known)


def _project_only(run: _Run) -> None:
    path = run.request.project or ""
    base = workspace_point(run.workspace)
    if path not in base.pins:
        raise InputError(f"--project {path}: not a project of the workspace",
                         hint=f"known project paths: {', '.join(sorted(base.pins))}")
    pin = base.pins[path]
    good_sha = resolve_project_rev(run.workspace, pin, run.request.good)
    bad_sha = resolve_project_rev(run.workspace, pin, run.request.bad)
    run.record.good, run.record.bad = good_sha, bad_sha
    good = apply_pins(run.workspace, base, [f"{path}={good_sha}"])
    bad = apply_pins(run.workspace, base, [f"{path}={bad_sha}"])
    changes = cand.changes_between(run.workspace, good, bad)
    if not changes:
        raise InputError(f"--good and --bad are the same commit of {path}")
    start = LevelPoint(good, good_sha, "the good commit", None, path)
    _level_two(run, start, changes, known={})


def _level_two(run: _Run, start: LevelPoint, changes: Sequence[cand.Change],
               known: Mapping[int, Verdict]) -> None:
    points = [start] + [
        LevelPoint(cand.state(start.point, changes, k), change.sha or "removed",
                   change.commit.subject if change.commit else f"{change.path} removed",
                   change.commit.date if change.commit else start.date, change.path, change)
        for k, change in enumerate(changes, 1)]
    result = _search_level(run, PROJECT_LEVEL, points, known=known)
    if result.status == FOUND and result.first_bad is not None:
        change = changes[result.first_bad - 1]
        if change.commit is not None:
            run.record.culprit = Culprit(change.path, change.commit.sha, change.commit.subject,
                                         change.commit.author, change.commit.date,
                                         cand.github_url(change.url, change.commit.sha))
        run.record.reproduce = _reproduce(run, points[result.first_bad], base=start)


def _snapshot_point(run: _Run, rev: ManifestRev) -> LevelPoint:
    return LevelPoint(manifest_point(run.workspace, rev), rev.commit, rev.subject, rev.date)


def _search_level(run: _Run, level: str, points: Sequence[LevelPoint],
                  known: Mapping[int, Verdict]) -> SearchResult:
    n = len(points) - 1
    summary = LevelSummary(level, n, "", bound=math.ceil(math.log2(n)) if n > 1 else n)
    run.record.levels.append(summary)
    run.ui.info(f"bisect {level}s: {n} candidate{'s' * (n != 1)} between {points[0].rev[:12]} (good) "
                f"and {points[-1].rev[:12]} (bad)")

    def probe(batch: Sequence[int]) -> dict[int, Verdict]:
        if run.engine is not None and run.request.replay is None:
            return _judge_on_cluster(run, level, batch, points, summary)
        # one after another: every point of a run shares the variant's tree (issue 16 runs a
        # batch on several workers, each with its own)
        return {index: _judge(run, level, index, points[index], summary) for index in batch}

    def progress(p: Progress) -> None:
        shown = ", ".join(f"{points[i].rev[:12]} {points[i].subject[:50]}" for i in p.batch)
        run.ui.info(f"{level} step {p.step}: {p.left} candidate{'s' * (p.left != 1)} left, "
                    f"~{p.steps_to_go} more step{'s' * (p.steps_to_go != 1)}: testing {shown}")

    result = search(n, probe, width=run.request.width, known=known, on_progress=progress)
    summary.status = "all-skipped" if result.all_skipped and result.status != FOUND else result.status
    if result.status not in (FOUND,) and result.candidates:
        summary.suspects = [f"{points[i].rev} {points[i].subject}" for i in result.candidates]
    run.record.status = summary.status
    return result


def _judge(run: _Run, level: str, index: int, at: LevelPoint, summary: LevelSummary) -> Verdict:
    step, image = _new_step(run, level, index, at)
    if run.request.replay is not None:
        outcome = _replayed(run, step)
    else:
        outcome = run.oracle.judge(at.point, image, run.directory / "steps" / f"{step.number:02d}")
    return _record(run, step, outcome, summary)


def _new_step(run: _Run, level: str, index: int, at: LevelPoint) -> tuple[StepRecord, str | None]:
    """The step's record before judging, and the build image to ask for (None: the default)."""
    number = len(run.record.steps) + 1 + len(run.pending)
    image = _image_for(run, at)
    step = StepRecord(number, level, index, at.rev, at.subject, at.project, at.date,
                      image=image[0], image_rule=image[1], pins=at.point.commits())
    return step, image[0] if image[1] != "default" or run.request.image else None


def _record(run: _Run, step: StepRecord, outcome: StepOutcome, summary: LevelSummary) -> Verdict:
    _fill(step, outcome)
    run.record.steps.append(step)
    run.log.step(step)
    summary.steps += 1
    summary.builds += step.built in ("built", "failed")
    summary.skips += step.verdict == SKIP
    more = f": {step.detail}" if step.detail and step.verdict == SKIP else ""
    timing = f"{step.built} {step.build_seconds or 0:.1f} s" if step.built == "built" else step.built
    run.ui.info(f"  {step.rev[:12]}: {step.verdict.upper()} {step.cause} ({timing}){more}")
    return Verdict(step.verdict, step.cause, step)


def _judge_on_cluster(run: _Run, level: str, batch: Sequence[int], points: Sequence[LevelPoint],
                      summary: LevelSummary) -> dict[int, Verdict]:
    """One search step's points at once, one per worker (the k-ary search's batch)."""
    assert run.engine is not None and run.cluster_pin is not None
    steps: dict[int, tuple[StepRecord, str | None]] = {}
    for index in batch:
        steps[index] = _new_step(run, level, index, points[index])
        run.pending.append(index)
    tasks = {f"{level}-{index}": distribute.cluster_task(
        run.record.id, f"{level}-{index}", run.request.settings, points[index].point, steps[index][1],
        run.cluster_pin, run.cluster_files) for index in batch}
    try:
        results = {r.point_id: r for r in run.engine.run(list(tasks.values()))}
    finally:
        run.pending.clear()
    verdicts = {}
    for index in batch:
        result = results.get(f"{level}-{index}")
        outcome = distribute.outcome_of(result) if result is not None else StepOutcome(
            SKIP, INFRA, detail="no result from the cluster", attempts=2)
        verdicts[index] = _record(run, steps[index][0], outcome, summary)
    return verdicts


def _fill(step: StepRecord, outcome: StepOutcome) -> None:
    step.verdict, step.cause, step.detail = outcome.verdict, outcome.cause, outcome.detail
    step.built, step.boot, step.seconds = outcome.build, outcome.boot, outcome.seconds
    step.build_seconds, step.boot_seconds = outcome.build_seconds, outcome.boot_seconds
    step.results = outcome.results
    if outcome.image:
        step.image = outcome.image


def _replayed(run: _Run, step: StepRecord) -> StepOutcome:
    assert run.request.replay is not None
    found = run.request.replay.lookup(step.level, step.project, step.rev)
    if found is None:
        raise InputError(f"--replay: the log has no verdict for {step.level} {step.project or ''} "
                         f"{step.rev[:12]} ({step.subject})",
                         hint="replay with the arguments the log was made with, or add a line for it")
    return StepOutcome(found[0], found[1], build="replayed")


def _image_for(run: _Run, at: LevelPoint) -> tuple[str, str]:
    """The build image for a point: --image, else the first [[build.images]] rule that holds."""
    if run.request.image:
        return run.request.image, "--image"
    if not run.spec.image_rules:
        return run.spec.toolchain_image, "default"
    read = _reader(run.workspace, at.point)
    choice = choose_image(run.spec.image_rules, run.spec.toolchain_image, at.date, read)
    return choice.image, choice.rule


def _reader(workspace: Workspace, point: Point) -> Callable[[str], str | None]:
    def read(path: str) -> str | None:
        for project, pin in sorted(point.pins.items(), key=lambda item: -len(item[0])):
            if path.startswith(project + "/"):
                return gitops.try_run(["show", f"{pin.sha}:{path.removeprefix(project + '/')}"],
                                      git_dir=workspace.git_dir(project))
        return None
    return read


def _reproduce(run: _Run, bad: LevelPoint, base: LevelPoint | None = None) -> str:
    """The one `orch build` command that builds the first bad point again."""
    s = run.request.settings
    words = ["orch", "build", "--patchset", s.patchset, "--variant", s.variant]
    if s.executor != "docker":
        words += ["--executor", s.executor]
    image = _image_for(run, bad)
    if image[1] != "default":
        words += ["--image", image[0]]
    start = base or bad
    manifest = start.point.manifest
    if manifest is not None and run.request.project is None:
        words += ["--at", manifest.commit]
    reference = start.point if run.request.project is None else workspace_point(run.workspace)
    for path, sha in sorted(bad.point.commits().items()):
        if reference.pins.get(path) is None or reference.pins[path].sha != sha:
            words += ["--pin", f"{path}={sha}"]
    words += [f"--cmake={option}" for option in s.cmake]
    for directory in s.patchset_dirs:
        words += ["--patchsets", str(directory)]
    return shlex.join(words)
