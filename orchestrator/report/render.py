"""The results of one `orch build` run: the record (results.json), and its renderings.

One :class:`RunReport` per run holds, per variant, what the pipeline learned: the build (built
or cached, duration, image), the boot (verdict, cause, time to login, guest ``free -m``), the
VMM's static memory read from the ELF, the seed's frame bookkeeping, the expectation and
whether it was met, plus the raw build metadata and run record. From it this module writes
``results.json`` (and reads it back), the rich comparison table, a Markdown summary for an
upstream PR, JUnit XML for CI, and compares two runs (``orch report --diff``).

No PNG chart: per variant there are a handful of numbers that differ by three orders of
magnitude (120 MiB of metadata against 240 KiB); a table states them exactly, and matplotlib
would add a large dependency for a picture nobody can paste into a PR review as text.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import types
import typing
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from rich.table import Table
from rich.text import Text

from orchestrator import layout
from orchestrator.analysis.memory import format_bytes
from orchestrator.errors import EXIT_CANNOT_TEST, EXIT_FAIL, EXIT_OK, InputError
from orchestrator.ui import dumps

SCHEMA = 1
RESULTS_JSON = "results.json"
SUMMARY_MD = "summary.md"
JUNIT_XML = "junit.xml"

# Outcomes of a variant, from the point of view of the run's exit code.
EXPECTED = "expected"
UNEXPECTED = "unexpected"
PASSED = "pass"
FAILED = "fail"
ERROR = "error"
BUILT = "built"  # --no-run: built, not booted


@dataclass
class Expectation:
    """What a variant is expected to do: a verdict, optionally a cause (a glob: ``vmm-*``)."""

    verdict: str
    cause: str | None = None

    def met_by(self, verdict: str | None, cause: str | None) -> bool:
        if verdict != self.verdict:
            return False
        return self.cause is None or (cause is not None and fnmatch.fnmatchcase(cause, self.cause))

    def describe(self) -> str:
        return self.verdict if self.cause is None else f"{self.verdict} ({self.cause})"


@dataclass
class GuestMemory:
    """The guest's ``free -m`` line, MiB."""

    total: int | None = None
    used: int | None = None
    free: int | None = None
    available: int | None = None


@dataclass
class BuildSummary:
    status: str  # built | cached | failed | error | skipped
    seconds: float | None = None
    image: str | None = None
    image_sha256: str | None = None
    build_dir: str | None = None
    log: str | None = None
    message: str | None = None  # the one line saying why it failed


@dataclass
class RunSummary:
    status: str  # ran | cached | skipped | error
    verdict: str | None = None  # pass | fail | timeout | error
    cause: str | None = None
    matched: str | None = None  # the decisive console line
    matched_at: float | None = None  # seconds after QEMU start
    login_seconds: float | None = None
    seconds: float | None = None
    guest: GuestMemory | None = None
    console_log: str | None = None
    message: str | None = None


@dataclass
class VmmSummary:
    """The VMM component's static memory, from its ELF (see :mod:`orchestrator.analysis.elf`)."""

    mempool: int | None = None
    symbol: str | None = None
    file: str | None = None
    section: str | None = None
    bss: int | None = None

    @property
    def where(self) -> str:
        return "not found" if self.file is None else f"{Path(self.file).name}, {self.section}"


@dataclass
class MemorySummary:
    """The seed's bookkeeping (see :mod:`orchestrator.analysis.memory`), each input with its source."""

    guest_ram: int | None = None
    guest_ram_source: str | None = None
    frame_size: int | None = None
    frame_size_source: str | None = None
    frames: int | None = None
    metadata: int | None = None
    mempool: int | None = None
    mempool_source: str | None = None

    @property
    def fits(self) -> bool | None:
        if self.metadata is None or self.mempool is None:
            return None
        return self.metadata <= self.mempool


@dataclass
class VariantResult:
    name: str
    patchsets: list[str]
    build: BuildSummary
    run: RunSummary
    expect: Expectation | None = None
    vmm: VmmSummary = field(default_factory=VmmSummary)
    memory: MemorySummary = field(default_factory=MemorySummary)
    outcome: str = ""
    build_record: dict[str, Any] = field(default_factory=dict)  # the builder's metadata, verbatim
    run_record: dict[str, Any] = field(default_factory=dict)  # the runner's record, verbatim

    @property
    def verdict(self) -> str:
        """pass/fail/timeout/error from the boot; ``build-failed`` or ``not-run`` without one."""
        if self.build.status in ("failed", "error"):
            return "build-failed"
        return self.run.verdict or "not-run"


@dataclass
class RunReport:
    id: str
    patchset: str
    variants: list[VariantResult]
    started: str = ""
    finished: str = ""
    seconds: float = 0.0
    exit_code: int = EXIT_OK
    orch_version: str = ""
    workspace: str = ""
    command: list[str] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # seconds: sync, check, build, boot, orch
    schema: int = SCHEMA

    def variant(self, name: str) -> VariantResult | None:
        return next((v for v in self.variants if v.name == name), None)


# --- judging ----------------------------------------------------------------------------------


def judge(variant: VariantResult, *, ran: bool = True) -> str:
    """The variant's outcome: infrastructure ``error``; with an expectation ``expected`` or
    ``unexpected``; without one ``pass`` or ``fail``; ``built`` for build-only runs."""
    if variant.build.status == "error" or variant.run.status == "error" or variant.run.verdict == "error":
        return ERROR
    if not ran and variant.build.status in ("built", "cached"):
        return BUILT
    if variant.expect is not None:
        met = variant.expect.met_by(variant.verdict, variant.run.cause)
        return EXPECTED if met else UNEXPECTED
    return PASSED if variant.verdict == "pass" else FAILED


def exit_code(variants: list[VariantResult]) -> int:
    """125 if any variant could not be tested, else 0 when every variant passed or met its
    expectation (or was built, for --no-run), else 1."""
    outcomes = [v.outcome for v in variants]
    if ERROR in outcomes:
        return EXIT_CANNOT_TEST
    if all(o in (EXPECTED, PASSED, BUILT) for o in outcomes):
        return EXIT_OK
    return EXIT_FAIL


# --- results.json -----------------------------------------------------------------------------

T = TypeVar("T")


def _convert(hint: Any, value: Any) -> Any:
    """Build ``hint`` (a dataclass, ``X | None``, ``list[X]`` or a plain type) from JSON data."""
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(args[0], value) if len(args) == 1 else value
    if origin is list:
        (item,) = typing.get_args(hint)
        return [_convert(item, v) for v in value]
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return from_dict(hint, value)
    if hint is float and isinstance(value, int):
        return float(value)
    return value


def from_dict(cls: type[T], data: Any) -> T:
    """A dataclass from its :func:`to_jsonable` form; unknown keys are ignored (newer files)."""
    if not isinstance(data, dict):
        raise ValueError(f"expected an object for {cls.__name__}, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    kwargs = {
        f.name: _convert(hints[f.name], data[f.name])
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.name in data
    }
    return cls(**kwargs)


def write_results(report: RunReport, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / RESULTS_JSON
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(dumps(report) + "\n")
    tmp.replace(path)
    return path


def read_results(path: Path) -> RunReport:
    """A run's record from its results directory or its results.json; one clear line if broken."""
    file = path / RESULTS_JSON if path.is_dir() else path
    try:
        data = json.loads(file.read_text())
        if data.get("schema") != SCHEMA:
            raise InputError(f"{file}: results schema {data.get('schema')!r}, this orch reads {SCHEMA}")
        return from_dict(RunReport, data)
    except FileNotFoundError:
        raise InputError(f"{file}: no such results file") from None
    except (json.JSONDecodeError, ValueError, TypeError, AttributeError) as exc:
        raise InputError(f"{file}: not a readable orch results file ({exc})") from None


# --- the comparison table ---------------------------------------------------------------------

_VERDICT_STYLE = {"pass": "bold green", "fail": "bold red", "timeout": "bold yellow", "error": "bold magenta",
                  "build-failed": "bold red", "not-run": "dim"}


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _mib(value: int | None) -> str:
    return "-" if value is None else str(value)


def verdict_text(v: VariantResult) -> str:
    text = v.verdict.upper()
    if v.run.cause:
        text += f" ({v.run.cause})"
    return text


def outcome_text(v: VariantResult) -> str:
    if v.outcome == EXPECTED:
        return f"expected: {v.expect.describe() if v.expect else '?'}"
    if v.outcome == UNEXPECTED:
        return f"UNEXPECTED: wanted {v.expect.describe() if v.expect else '?'}"
    return {PASSED: "pass (no expectation)", FAILED: "fail (no expectation)", ERROR: "could not test",
            BUILT: "built (not booted)"}.get(v.outcome, v.outcome or "-")


def guest_text(v: VariantResult) -> str:
    g = v.run.guest
    if g is None:
        return "-"
    return f"{_mib(g.total)} / {_mib(g.used)} / {_mib(g.free)} / {_mib(g.available)}"


def pool_text(v: VariantResult) -> str:
    if v.vmm.mempool is None:
        return "not found in ELF"
    return f"{format_bytes(v.vmm.mempool)} ({v.vmm.where})"


def frames_text(v: VariantResult) -> str:
    m = v.memory
    if m.frames is None:
        return "-"
    return f"{format_bytes(m.guest_ram)} / {format_bytes(m.frame_size)} = {m.frames}"


def metadata_text(v: VariantResult) -> str:
    m = v.memory
    if m.metadata is None:
        return "-"
    if m.mempool is None:
        return f"{format_bytes(m.metadata)} (pool unknown)"
    relation = "fits in" if m.fits else "EXCEEDS"
    return f"{format_bytes(m.metadata)} {relation} {format_bytes(m.mempool)} pool"


def login_text(v: VariantResult) -> str:
    if v.run.login_seconds is not None:
        return _seconds(v.run.login_seconds)
    return "-" if v.run.matched_at is None else f"- (verdict at {_seconds(v.run.matched_at)})"


def build_text(v: VariantResult) -> str:
    b = v.build
    if b.status == "cached":
        return "cached"
    return f"{b.status} {_seconds(b.seconds)}" if b.seconds is not None else b.status


def boot_text(v: VariantResult) -> str:
    r = v.run
    return "cached" if r.status == "cached" else f"{r.status} {_seconds(r.seconds)}".strip()


ROWS: list[tuple[str, typing.Callable[[VariantResult], str]]] = [
    ("patchsets", lambda v: ", ".join(v.patchsets) or "(none)"),
    ("verdict", verdict_text),
    ("expectation", outcome_text),
    ("time to login (verdict)", lambda v: login_text(v)),
    ("decisive line", lambda v: v.run.matched or "-"),
    ("guest MiB total/used/free/avail", guest_text),
    ("VMM mempool (ELF)", pool_text),
    ("VMM .bss", lambda v: format_bytes(v.vmm.bss)),
    ("guest RAM / frame = frames", frames_text),
    ("est. allocator metadata", metadata_text),
    ("build", build_text),
    ("boot", boot_text),
]


def _cell(label: str, v: VariantResult, text: str) -> Text:
    style = ""
    if label == "verdict":
        style = _VERDICT_STYLE.get(v.verdict, "")
    elif label == "expectation":
        style = {EXPECTED: "green", UNEXPECTED: "bold red", ERROR: "magenta", PASSED: "green",
                 FAILED: "red"}.get(v.outcome, "")
    elif label == "est. allocator metadata" and v.memory.fits is False:
        style = "yellow"
    elif label in ("build", "boot") and text == "cached":
        style = "cyan"
    return Text(text, style=style)


def table(report: RunReport) -> Table:
    """Variants side by side, one row per figure."""
    title = f"orch build --patchset {report.patchset}   ({report.id})"
    grid = Table(title=title, title_justify="left", show_lines=False)
    grid.add_column("", style="bold", no_wrap=True)
    for v in report.variants:
        grid.add_column(v.name, overflow="fold")
    for label, render in ROWS:
        grid.add_row(label, *(_cell(label, v, render(v)) for v in report.variants))
    return grid


def verdict_line(report: RunReport) -> str:
    """One line for the end of the output: ``4k: FAIL (vmm-allocation) expected / ...``."""
    parts = []
    for v in report.variants:
        part = f"{v.name}: {verdict_text(v)}"
        if v.run.guest is not None and v.run.guest.total is not None:
            part += f", guest {v.run.guest.total} MiB"
        if v.outcome in (EXPECTED, UNEXPECTED):
            part += f" [{v.outcome}]"
        parts.append(part)
    return " / ".join(parts) + f"  -> exit {report.exit_code}"


# --- Markdown ---------------------------------------------------------------------------------


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(report: RunReport) -> str:
    """A summary ready to paste into an upstream PR: the table, the inputs' sources, how to
    reproduce."""
    names = [v.name for v in report.variants]
    lines = [
        f"### orch: `{report.patchset}` ({', '.join(names)})",
        "",
        "| | " + " | ".join(f"`{n}`" for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for label, render in ROWS:
        cells = [_md_escape(render(v)) for v in report.variants]
        if label == "verdict":
            cells = [f"**{c}**" for c in cells]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "<details><summary>Where the numbers come from</summary>", ""]
    for v in report.variants:
        m = v.memory
        lines.append(f"- `{v.name}`: guest RAM from {m.guest_ram_source or 'unknown'}; "
                     f"frame size from {m.frame_size_source or 'unknown'}; "
                     f"mempool from {m.mempool_source or 'unknown'}; "
                     f"VMM ELF: {v.vmm.file or 'not found'}")
    lines += [
        "",
        "Estimated allocator metadata = guest RAM / frame size x 2 nodes x 120 bytes "
        "(the seed's formula; 2 GiB at 4 KiB = 120 MiB).",
        "",
        "</details>",
        "",
    ]
    if report.manifest:
        lines.append("Sources: " + ", ".join(f"{k} `{v}`" for k, v in sorted(report.manifest.items())
                                               if isinstance(v, str)))
    lines += [
        f"Reproduce: `{' '.join(report.command) or 'orch build --patchset ' + report.patchset}`"
        f" (orch {report.orch_version}, exit {report.exit_code})",
        "",
    ]
    return "\n".join(lines)


# --- JUnit XML --------------------------------------------------------------------------------


def junit(report: RunReport) -> str:
    """One testsuite, one testcase per variant; failure when its expectation (or, without one,
    a pass) is not met, error when it could not be tested."""
    failures = sum(v.outcome in (UNEXPECTED, FAILED) for v in report.variants)
    errors = sum(v.outcome == ERROR for v in report.variants)
    suite = ET.Element("testsuite", {
        "name": f"orch.{report.patchset}",
        "tests": str(len(report.variants)),
        "failures": str(failures),
        "errors": str(errors),
        "skipped": "0",
        "time": f"{report.seconds:.3f}",
        "timestamp": report.started,
    })
    props = ET.SubElement(suite, "properties")
    for key, value in (("run", report.id), ("orch_version", report.orch_version),
                       ("exit_code", str(report.exit_code))):
        ET.SubElement(props, "property", {"name": key, "value": value})
    for v in report.variants:
        seconds = (v.build.seconds or 0.0) + (v.run.seconds or 0.0)
        case = ET.SubElement(suite, "testcase", {
            "classname": f"orch.{report.patchset}", "name": v.name, "time": f"{seconds:.3f}",
        })
        summary = f"verdict {verdict_text(v)}; {outcome_text(v)}"
        if v.outcome in (UNEXPECTED, FAILED):
            failure = ET.SubElement(case, "failure", {"message": summary, "type": v.verdict})
            failure.text = v.run.matched or v.build.message or ""
        elif v.outcome == ERROR:
            error = ET.SubElement(case, "error", {"message": v.run.message or v.build.message or summary})
            error.text = summary
        out = ET.SubElement(case, "system-out")
        out.text = "\n".join(f"{label}: {render(v)}" for label, render in ROWS)
    ET.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


def write_reports(report: RunReport, directory: Path) -> dict[str, Path]:
    """results.json, summary.md and junit.xml under ``directory``."""
    written = {"results": write_results(report, directory)}
    for key, name, text in (("summary", SUMMARY_MD, markdown(report)), ("junit", JUNIT_XML, junit(report))):
        path = directory / name
        path.write_text(text)
        written[key] = path
    return written


# --- diff -------------------------------------------------------------------------------------


@dataclass
class Difference:
    variant: str
    field: str
    a: str
    b: str


DIFF_FIELDS: list[tuple[str, typing.Callable[[VariantResult], str]]] = [
    ("verdict", verdict_text),
    ("outcome", lambda v: v.outcome),
    ("time to login", lambda v: _seconds(v.run.login_seconds)),
    ("guest MiB total/used/free/avail", guest_text),
    ("VMM mempool", lambda v: format_bytes(v.vmm.mempool)),
    ("VMM .bss", lambda v: format_bytes(v.vmm.bss)),
    ("frames", lambda v: str(v.memory.frames) if v.memory.frames is not None else "-"),
    ("est. allocator metadata", lambda v: format_bytes(v.memory.metadata)),
    ("patchsets", lambda v: ", ".join(v.patchsets)),
    ("image sha256", lambda v: (v.build.image_sha256 or "-")[:16]),
]


def diff(a: RunReport, b: RunReport) -> list[Difference]:
    """Every figure that differs between two runs, variant by variant (a missing variant is a
    difference too)."""
    names = [v.name for v in a.variants] + [v.name for v in b.variants if a.variant(v.name) is None]
    out: list[Difference] = []
    for name in names:
        va, vb = a.variant(name), b.variant(name)
        if va is None or vb is None:
            presence = ("present" if va else "absent", "present" if vb else "absent")
            out.append(Difference(name, "variant", *presence))
            continue
        for label, render in DIFF_FIELDS:
            ra, rb = render(va), render(vb)
            if ra != rb:
                out.append(Difference(name, label, ra, rb))
    if a.exit_code != b.exit_code:
        out.append(Difference("(run)", "exit code", str(a.exit_code), str(b.exit_code)))
    return out


def diff_table(a: RunReport, b: RunReport, differences: list[Difference]) -> Table:
    grid = Table(title=f"{a.id}  ->  {b.id}", title_justify="left")
    grid.add_column("variant", style="bold")
    grid.add_column("field")
    grid.add_column(a.id, overflow="fold")
    grid.add_column(b.id, overflow="fold")
    for d in differences:
        grid.add_row(d.variant, d.field, d.a, d.b)
    if not differences:
        grid.add_row("-", "no differences", "", "")
    return grid


# --- the results directory --------------------------------------------------------------------

def results_root(workspace: Path) -> Path:
    return layout.results_dir(workspace)


def new_run_dir(workspace: Path, run_id: str) -> Path:
    """``.orch/results/<run_id>/`` (made unique with a suffix) with ``latest`` pointing at it."""
    root = results_root(workspace)
    root.mkdir(parents=True, exist_ok=True)
    directory, n = root / run_id, 1
    while directory.exists():
        n += 1
        directory = root / f"{run_id}.{n}"
    directory.mkdir()
    link = root / layout.LATEST
    tmp = root / f".{layout.LATEST}.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(directory.name)
    tmp.replace(link)
    return directory


def find_run(workspace: Path, ref: str | None) -> Path:
    """A run's results directory from a path, a run id (or a unique prefix of one), or
    ``latest`` (the default)."""
    ref = ref or layout.LATEST
    as_path = Path(ref).expanduser()
    if (as_path / RESULTS_JSON).is_file() or (as_path.is_file() and as_path.name == RESULTS_JSON):
        return as_path if as_path.is_dir() else as_path.parent
    root = results_root(workspace)
    exact = root / ref
    if (exact / RESULTS_JSON).is_file():
        return exact.resolve()
    matches = sorted(p for p in root.glob(f"{ref}*") if (p / RESULTS_JSON).is_file()) if root.is_dir() else []
    if len(matches) == 1:
        return matches[0]
    if not matches:
        hint = f"runs are kept under {root}" if root.is_dir() else "run `orch build --patchset NAME` first"
        raise InputError(f"no results for run '{ref}'", hint=hint)
    raise InputError(f"run '{ref}' is ambiguous: " + ", ".join(p.name for p in matches[:5]))
