"""What a sweep is: a search (``--minimize P=LO..HI``), plain axes (``--values``), grid axes
(``--grid``), and the grid points they make, each a :class:`PointTask` described by data only
(JSON-serialisable, no open handles), so any worker that sees the workspace can run it."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from orchestrator.analysis.memory import format_bytes
from orchestrator.errors import InputError
from orchestrator.patchset.params import ParamDef, Setting, parse_value


@dataclass(frozen=True)
class Search:
    """Binary search of the smallest value of ``param`` in ``(lo, hi]`` whose boot passes,
    assuming monotonicity: ``lo`` is assumed to fail, ``hi`` is probed first."""

    param: str
    lo: int
    hi: int
    step: int
    unit: str = "size"  # how values are shown: size (96 MiB) or number

    def show(self, value: int) -> str:
        return format_bytes(value) if self.unit == "size" else str(value)

    @property
    def intervals(self) -> int:
        return (self.hi - self.lo) // self.step

    @property
    def max_probes(self) -> int:
        """``ceil(log2((hi - lo) / step)) + 1``: ``hi`` once, then halving."""
        return math.ceil(math.log2(self.intervals)) + 1


@dataclass(frozen=True)
class Axis:
    param: str
    values: tuple[int, ...]
    texts: tuple[str, ...]  # as typed, for labels (2G, 4k)


@dataclass(frozen=True)
class ProbeRecord:
    """One build + boot at one setting of the parameters."""

    point: int
    settings: dict[str, int]
    ok: bool
    verdict: str  # pass | fail | timeout | build-failed
    cause: str | None = None
    decisive: str | None = None
    build: str = "built"  # built | cached | failed
    build_seconds: float = 0.0
    configured: bool = False  # a clean build (init-build.sh ran) rather than an incremental one
    boot_seconds: float = 0.0
    boot_cached: bool = False
    inputs_hash: str = ""
    image_sha256: str | None = None
    guest_ram: int | None = None
    frame_size: int | None = None
    tree: str = ""
    at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProbeRecord:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True)
class PointTask:
    """One grid point, as data: where the workspace is, what to build, which values to set,
    what to search, and the probes already done there (a resumed sweep redoes none)."""

    sweep: str
    index: int
    workspace: str
    patchset: str
    variant: str
    tree: str  # the variant tree (and build dir) the probes reuse: .orch/variants/<tree>
    point: tuple[Setting, ...]  # the grid values and --set values
    search: Search | None = None
    probes: tuple[tuple[Setting, ...], ...] = ()  # a plain grid: every one of these is probed
    patchset_dirs: tuple[str, ...] = ()
    executor: str = "docker"
    image: str | None = None
    cmake: tuple[str, ...] = ()
    timeout: float | None = None
    boot_in: str = "auto"
    known: tuple[ProbeRecord, ...] = ()

    def label(self) -> str:
        return ", ".join(f"{s.name}={s.value}" for s in self.point) or "(one point)"

    @property
    def max_probes(self) -> int:
        return self.search.max_probes if self.search else max(1, len(self.probes))


@dataclass
class PointResult:
    """What one grid point found."""

    index: int
    point: dict[str, int]
    minimum: int | None = None  # the smallest passing value (a search), None if none passed
    below: ProbeRecord | None = None  # the failing probe just below the minimum
    probes: list[ProbeRecord] = field(default_factory=list)
    new_probes: int = 0
    seconds: float = 0.0
    violations: list[tuple[int, int]] = field(default_factory=list)  # (pass value, higher fail value)
    notes: list[str] = field(default_factory=list)
    guest_ram: int | None = None
    frame_size: int | None = None


@dataclass(frozen=True)
class SweepPlan:
    """A whole sweep as asked for on the command line (stored as plan.json for --resume)."""

    patchset: str
    variant: str
    search: Search | None
    grid: tuple[Axis, ...]
    values: tuple[Axis, ...]
    fixed: tuple[Setting, ...] = ()
    patchset_dirs: tuple[str, ...] = ()
    executor: str = "docker"
    image: str | None = None
    cmake: tuple[str, ...] = ()
    timeout: float | None = None
    boot_in: str = "auto"
    units: tuple[tuple[str, str], ...] = ()  # parameter -> "size" | "number", for display

    def points(self) -> list[tuple[Setting, ...]]:
        """The grid's points (the product of the --grid axes), each with the --set values."""
        combos = itertools.product(*(a.values for a in self.grid)) if self.grid else [()]
        return [(*self.fixed, *(Setting(a.param, v) for a, v in zip(self.grid, combo, strict=True)))
                for combo in combos]

    def probe_settings(self) -> tuple[tuple[Setting, ...], ...]:
        """A plain grid's probes at each point (the product of the --values axes)."""
        if not self.values:
            return ()
        combos = itertools.product(*(a.values for a in self.values))
        return tuple(tuple(Setting(a.param, v) for a, v in zip(self.values, c, strict=True)) for c in combos)

    def params(self) -> list[str]:
        names = [s.name for s in self.fixed] + [a.param for a in (*self.grid, *self.values)]
        return names + ([self.search.param] if self.search else [])

    def tasks(self, sweep: str, workspace: str, trees: Sequence[str],
              known: Sequence[ProbeRecord] = ()) -> list[PointTask]:
        probes = self.probe_settings()
        out = []
        for index, point in enumerate(self.points()):
            out.append(PointTask(
                sweep=sweep, index=index, workspace=workspace, patchset=self.patchset, variant=self.variant,
                tree=trees[index % len(trees)], point=point, search=self.search,
                probes=probes or (() if self.search else ((),)),
                patchset_dirs=self.patchset_dirs, executor=self.executor, image=self.image,
                cmake=self.cmake, timeout=self.timeout, boot_in=self.boot_in,
                known=tuple(r for r in known if r.point == index)))
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def point_labels(self) -> list[str]:
        """Each grid point as people read it (``ram=512 MiB, frames=4 KiB``)."""
        units = dict(self.units)

        def shown(s: Setting) -> str:
            return format_bytes(s.value) if units.get(s.name, "size") == "size" else str(s.value)

        return [", ".join(f"{s.name}={shown(s)}" for s in point) for point in self.points()]

    def cli_args(self) -> list[str]:
        """The `orch sweep` arguments that make this plan again (values as exact numbers)."""
        args = ["--patchset", self.patchset]
        if self.variant:
            args += ["--variant", self.variant]
        if self.search is not None:
            s = self.search
            args += ["--minimize", f"{s.param}={s.lo}..{s.hi}", "--step", str(s.step)]
        for option, axes in (("--grid", self.grid), ("--values", self.values)):
            args += [f"{option}={a.param}={','.join(str(v) for v in a.values)}" for a in axes]
        args += [f"--set={s.name}={s.value}" for s in self.fixed]
        args += ["--executor", self.executor, "--boot-in", self.boot_in]
        if self.image:
            args += ["--image", self.image]
        args += [f"--cmake={c}" for c in self.cmake]
        if self.timeout is not None:
            args += ["--timeout", f"{self.timeout:g}"]
        return args

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SweepPlan:
        search = data.get("search")
        return cls(
            patchset=data["patchset"], variant=data["variant"],
            search=Search(**search) if search else None,
            grid=tuple(_axis(a) for a in data.get("grid", [])),
            values=tuple(_axis(a) for a in data.get("values", [])),
            fixed=tuple(Setting(s["name"], s["value"]) for s in data.get("fixed", [])),
            patchset_dirs=tuple(data.get("patchset_dirs", ())), executor=data.get("executor", "docker"),
            image=data.get("image"), cmake=tuple(data.get("cmake", ())), timeout=data.get("timeout"),
            boot_in=data.get("boot_in", "auto"),
            units=tuple((str(n), str(u)) for n, u in data.get("units", ())))


def _axis(data: Mapping[str, Any]) -> Axis:
    return Axis(data["param"], tuple(data["values"]), tuple(data["texts"]))


# --- parsing the command line -----------------------------------------------------------------


def parse_search(text: str, step: str | None) -> Search:
    """``mempool=1M..256M`` (and ``--step 1M``; default: (HI - LO) / 256, at least 1)."""
    name, sep, rest = text.partition("=")
    lo_text, dots, hi_text = rest.partition("..")
    if not sep or not dots or not name:
        raise InputError(f"--minimize {text!r}: expected NAME=LO..HI, e.g. mempool=1M..256M")
    lo, hi = parse_value(lo_text, f"--minimize {name} LO"), parse_value(hi_text, f"--minimize {name} HI")
    if hi <= lo:
        raise InputError(f"--minimize {text!r}: HI must be above LO")
    size = parse_value(step, "--step") if step else max(1, (hi - lo) // 256)
    if size <= 0:
        raise InputError("--step must be positive")
    if (hi - lo) % size:
        raise InputError(f"--minimize {text!r}: HI - LO is not a multiple of --step {step}")
    return Search(name, lo, hi, size)


def parse_axis(text: str, option: str) -> Axis:
    """``ram=512M,1G,2G``."""
    name, sep, rest = text.partition("=")
    texts = tuple(t.strip() for t in rest.split(",") if t.strip())
    if not sep or not name or not texts:
        raise InputError(f"{option} {text!r}: expected NAME=V1,V2,..., e.g. ram=512M,1G,2G")
    values = tuple(parse_value(t, f"{option} {name}") for t in texts)
    if len(set(values)) != len(values):
        raise InputError(f"{option} {text!r}: a value is given twice")
    return Axis(name, values, texts)


def check_declared(plan: SweepPlan, params: Mapping[str, ParamDef], origin: str) -> None:
    """Every parameter the sweep sets is declared, and none is set twice."""
    names = plan.params()
    for name in names:
        if name not in params:
            declared = ", ".join(sorted(params)) or "none"
            raise InputError(f"{origin}: no parameter '{name}' ([params.{name}])",
                             hint=f"declared: {declared}")
        if names.count(name) > 1:
            raise InputError(f"parameter '{name}' is set by more than one of "
                             "--set/--grid/--values/--minimize")
    if plan.search is None and not plan.values and not plan.grid:
        raise InputError("nothing to sweep: give --minimize, --values or --grid")
