"""A sweep's results: the table, ``sweep.json`` and ``sweep.csv`` (every probe), the Markdown
summary, the bytes-per-frame fit of the 4 KiB points, and the build-time comparison of clean
builds against probe (incremental) builds. Read back by ``orch report`` and ``orch build``."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from orchestrator import layout
from orchestrator.analysis.memory import DEFAULT_MEMPOOL, NODE_BYTES, NODES_PER_FRAME, KiB, format_bytes
from orchestrator.errors import InputError
from orchestrator.sweep.plan import PointResult, ProbeRecord, SweepPlan

SCHEMA = 1
PLAN_FILE = "plan.json"
FIT_FRAME_SIZE = 4 * KiB
SEED_BYTES_PER_FRAME = NODES_PER_FRAME * NODE_BYTES


@dataclass(frozen=True)
class Fit:
    """Minimum pool = ``bytes_per_frame`` x frames + ``intercept``, least squares over points."""

    bytes_per_frame: float
    intercept: float
    points: int
    frame_size: int = FIT_FRAME_SIZE

    def describe(self) -> str:
        extra = f" + {format_bytes(round(self.intercept))}" if round(self.intercept) > 0 else ""
        return (f"{self.bytes_per_frame:.1f} B per {format_bytes(self.frame_size)} frame{extra} "
                f"(least squares over {self.points} point{'s' * (self.points != 1)})")


@dataclass(frozen=True)
class BuildTimes:
    """Clean builds (init-build.sh + ninja from nothing) against probe builds (incremental)."""

    clean_seconds: float | None
    clean_builds: int
    probe_seconds: float | None
    probe_builds: int

    def describe(self) -> str:
        if self.clean_seconds is None or self.probe_seconds is None:
            return "build times: not enough builds to compare"
        ratio = self.probe_seconds / self.clean_seconds if self.clean_seconds else 0.0
        return (f"build times: clean {self.clean_seconds:.2f} s (mean of {self.clean_builds}), "
                f"probe {self.probe_seconds:.2f} s (mean of {self.probe_builds}, {ratio:.0%} of clean)")


@dataclass
class SweepResult:
    id: str
    plan: SweepPlan
    points: list[PointResult]
    started: str
    finished: str = ""
    seconds: float = 0.0
    complete: bool = True
    command: list[str] = field(default_factory=list)
    workspace: str = ""

    def probes(self) -> list[ProbeRecord]:
        return [r for p in self.points for r in p.probes]

    def fit(self) -> Fit | None:
        return fit_bytes_per_frame(self.points)

    def build_times(self) -> BuildTimes:
        return build_times(self.probes())


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def build_times(records: Sequence[ProbeRecord]) -> BuildTimes:
    built = [r for r in records if r.build == "built"]
    clean = [r.build_seconds for r in built if r.configured]
    probe = [r.build_seconds for r in built if not r.configured]
    return BuildTimes(_mean(clean), len(clean), _mean(probe), len(probe))


def fit_bytes_per_frame(points: Sequence[PointResult]) -> Fit | None:
    """Fit the minimum against the frame count over the 4 KiB points with a minimum."""
    data = [(p.guest_ram // FIT_FRAME_SIZE, p.minimum) for p in points
            if p.minimum is not None and p.guest_ram and p.frame_size == FIT_FRAME_SIZE]
    if not data:
        return None
    xs = [float(x) for x, _ in data]
    ys = [float(y) for _, y in data]
    if len(set(xs)) < 2:
        return Fit(sum(ys) / sum(xs), 0.0, len(data))
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    return Fit(slope, my - slope * mx, len(data))


@dataclass(frozen=True)
class MeasuredCost:
    """A sweep's fitted allocator cost, for `orch build`'s metadata estimate."""

    bytes_per_frame: float
    source: str  # e.g. "orch sweep 20261201-230000-largepage-4k (3 points)"


def measured_cost(workspace: Path) -> MeasuredCost | None:
    """The fit of the newest complete sweep in the workspace that has one over two points or more."""
    root = layout.sweeps_dir(workspace)
    if not root.is_dir():
        return None
    for directory in sorted((d for d in root.iterdir() if d.is_dir() and d.name != layout.LATEST),
                            key=lambda d: d.name, reverse=True):
        try:
            data = json.loads((directory / "sweep.json").read_text())
            fit = data.get("fit") if data.get("complete", True) else None
            if fit and int(fit["points"]) >= 2:  # one point is a ratio, not a slope
                return MeasuredCost(float(fit["bytes_per_frame"]),
                                    f"orch sweep {directory.name} ({fit['points']} points)")
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def find_sweep(workspace: Path, ref: str | None) -> Path:
    """A sweep's directory from its id (or unique prefix), a path, or ``latest``."""
    root = layout.sweeps_dir(workspace)
    if ref and Path(ref).is_dir() and (Path(ref) / PLAN_FILE).is_file():
        return Path(ref)
    if not ref or ref == "latest":
        latest = root / layout.LATEST
        if latest.exists():
            return latest.resolve()
        raise InputError(f"no sweep in {workspace}", hint="run `orch sweep` first")
    matches = sorted(p for p in root.glob(f"{ref}*") if p.is_dir() and p.name != layout.LATEST)
    if len(matches) != 1:
        raise InputError(f"sweep '{ref}': {'no such sweep' if not matches else 'ambiguous'} in {root}")
    return matches[0]


# --- files ------------------------------------------------------------------------------------


def _point_json(point: PointResult) -> dict[str, Any]:
    data = asdict(point)
    data.pop("probes")
    data["probes"] = len(point.probes)
    return data


def to_json(result: SweepResult) -> dict[str, Any]:
    fit = result.fit()
    return {
        "schema": SCHEMA,
        "id": result.id,
        "plan": result.plan.to_dict(),
        "complete": result.complete,
        "started": result.started,
        "finished": result.finished,
        "seconds": result.seconds,
        "command": result.command,
        "workspace": result.workspace,
        "points": [_point_json(p) for p in result.points],
        "probes": [r.to_dict() for r in result.probes()],
        "fit": asdict(fit) if fit else None,
        "build_times": asdict(result.build_times()),
        "reference": {"default_mempool": DEFAULT_MEMPOOL, "seed_bytes_per_frame": SEED_BYTES_PER_FRAME},
    }


def from_json(data: dict[str, Any]) -> SweepResult:
    plan = SweepPlan.from_dict(data["plan"])
    probes = [ProbeRecord.from_dict(r) for r in data.get("probes", [])]
    points = []
    for raw in data.get("points", []):
        below = raw.get("below")
        points.append(PointResult(
            index=raw["index"], point=dict(raw["point"]), minimum=raw.get("minimum"),
            below=ProbeRecord.from_dict(below) if below else None,
            probes=[r for r in probes if r.point == raw["index"]], new_probes=raw.get("new_probes", 0),
            seconds=raw.get("seconds", 0.0), violations=[tuple(v) for v in raw.get("violations", [])],
            notes=list(raw.get("notes", [])), guest_ram=raw.get("guest_ram"),
            frame_size=raw.get("frame_size")))
    return SweepResult(id=data["id"], plan=plan, points=points, started=data.get("started", ""),
                       finished=data.get("finished", ""), seconds=data.get("seconds", 0.0),
                       complete=data.get("complete", True), command=list(data.get("command", [])),
                       workspace=data.get("workspace", ""))


def merge(parts: Sequence[tuple[Path, SweepResult]], sweep_id: str,
          command: Sequence[str] = ()) -> SweepResult:
    """One sweep from the directories of its grid points (a CI matrix's or a cluster's): the same
    plan everywhere, every grid point exactly once, in grid order."""
    if not parts:
        raise InputError("report --merge: no sweep directories given")
    first_dir, first = parts[0]
    seen: dict[int, Path] = {}
    points: list[PointResult] = []
    def same(plan: SweepPlan) -> dict[str, Any]:
        return {k: v for k, v in plan.to_dict().items() if k != "patchset_dirs"}  # per machine

    for directory, part in parts:
        if same(part.plan) != same(first.plan):
            raise InputError(f"{directory}: a different sweep than {first_dir} (its plan differs)",
                             hint="merge the grid points of one sweep")
        for point in part.points:
            if point.index in seen:
                raise InputError(f"{directory}: grid point {point.index} is also in {seen[point.index]}")
            seen[point.index] = directory
            points.append(point)
    points.sort(key=lambda p: p.index)
    expected = len(first.plan.points())
    return SweepResult(
        id=sweep_id, plan=first.plan, points=points,
        started=min((p.started for _, p in parts if p.started), default=""),
        finished=max((p.finished for _, p in parts if p.finished), default=""),
        seconds=max((p.seconds for _, p in parts), default=0.0),
        complete=len(points) == expected and all(p.complete for _, p in parts),
        command=list(command) or first.command, workspace=first.workspace)


def read(directory: Path) -> SweepResult:
    try:
        return from_json(json.loads((directory / "sweep.json").read_text()))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"{directory / 'sweep.json'}: not a readable sweep result: {error}") from None


def to_csv(result: SweepResult) -> str:
    names = sorted({k for r in result.probes() for k in r.settings})
    columns = ["point", *names, "ok", "verdict", "cause", "build", "build_seconds", "configured",
               "boot_seconds", "boot_cached", "guest_ram", "frame_size", "inputs_hash", "tree", "at"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for r in result.probes():
        row = r.to_dict()
        writer.writerow([r.point, *(r.settings.get(n, "") for n in names),
                         *("" if row[c] is None else row[c] for c in columns[1 + len(names):])])
    return out.getvalue()


def write(result: SweepResult, directory: Path) -> dict[str, Path]:
    """sweep.json, sweep.csv, summary.md, and the chart when matplotlib can draw it."""
    directory.mkdir(parents=True, exist_ok=True)
    written = {"json": directory / "sweep.json", "csv": directory / "sweep.csv"}
    written["json"].write_text(json.dumps(to_json(result), indent=2) + "\n")
    written["csv"].write_text(to_csv(result))
    if result.points and any(p.minimum is not None for p in result.points):
        from orchestrator.sweep.chart import draw

        written.update(draw(result, directory))
    written["markdown"] = directory / "summary.md"
    written["markdown"].write_text(markdown(result, chart="png" in written))
    return written


# --- what people read -------------------------------------------------------------------------


def show(plan: SweepPlan, name: str, value: int | None) -> str:
    """A value as people read it: 96 MiB for a size parameter, 18 for a number."""
    if value is None:
        return "-"
    return format_bytes(value) if dict(plan.units).get(name, "size") == "size" else str(value)


def _cause(plan: SweepPlan, point: PointResult) -> str:
    below = point.below
    if below is None:
        return "-"
    param = plan.search.param if plan.search else None
    where = f" at {show(plan, param, below.settings.get(param))}" if param else ""
    return f"{below.verdict} ({below.cause or '-'}){where}"


def rows(result: SweepResult) -> list[list[str]]:
    axes = [a.param for a in result.plan.grid]
    out = []
    for p in result.points:
        search = result.plan.search
        minimum = show(result.plan, search.param, p.minimum) if search and p.minimum is not None else (
            "none" if search and p.probes else _plain(result, p))
        flag = " !" if p.violations else ""
        out.append([*(show(result.plan, a, p.point[a]) for a in axes), minimum + flag, _cause(result.plan, p),
                    f"{len(p.probes)} ({p.new_probes} new)", f"{p.seconds:.1f} s"])
    return out


def _plain(result: SweepResult, point: PointResult) -> str:
    """A plain grid's outcome at a point: each probe's values and verdict."""
    parts = []
    for r in point.probes:
        values = ", ".join(f"{k}={show(result.plan, k, v)}" for k, v in r.settings.items()
                           if k not in point.point)
        parts.append(f"{values}: {r.verdict}" if values else r.verdict)
    return "; ".join(parts) or "-"


def header(result: SweepResult) -> list[str]:
    target = f"min {result.plan.search.param}" if result.plan.search else "result"
    return [*(a.param for a in result.plan.grid), target, "fails just below", "probes", "time"]


def table(result: SweepResult) -> Table:
    title = f"orch sweep --patchset {result.plan.patchset} --variant {result.plan.variant}  ({result.id})"
    t = Table(title=title)
    for column in header(result):
        t.add_column(column)
    for row in rows(result):
        t.add_row(*row)
    return t


def findings(result: SweepResult) -> list[str]:
    """Lines printed under the table: the fit next to the seed's model, violations, notes,
    build times."""
    lines = []
    fit = result.fit()
    if fit is not None:
        lines.append(f"fitted allocator cost: {fit.describe()}; the seed's estimate: "
                     f"{SEED_BYTES_PER_FRAME} B per frame ({NODES_PER_FRAME} nodes x {NODE_BYTES} B)")
    for p in result.points:
        label = ", ".join(f"{k}={show(result.plan, k, v)}" for k, v in p.point.items()) or "point"
        for passed, failed in p.violations:
            lines.append(f"warning: {label}: not monotone: passes at {format_bytes(passed)} but fails at "
                         f"{format_bytes(failed)} (the search assumes that above a pass everything passes)")
        for note in p.notes:
            lines.append(f"note: {label}: {note}")
    lines.append(result.build_times().describe())
    return lines


def markdown(result: SweepResult, chart: bool = True) -> str:
    head = header(result)
    lines = [f"### orch sweep: `{result.plan.patchset}` / `{result.plan.variant}`", ""]
    if chart:
        lines += ["![minimum mempool against guest RAM](sweep.png)", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows(result)]
    lines += ["", *(f"- {line}" for line in findings(result)), ""]
    if result.command:
        lines.append(f"Reproduce: `{' '.join(result.command)}` ({len(result.probes())} probes, "
                     f"{result.seconds:.0f} s)")
    return "\n".join(lines) + "\n"
