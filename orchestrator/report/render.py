"""A job's report shown to people: the rich comparison table and the closing verdict line,
a Markdown summary for an upstream PR, JUnit XML for CI, and the differences between two jobs
(``orch report --diff``).

No PNG chart: per variant there are a handful of numbers that differ by three orders of
magnitude (120 MiB of metadata against 240 KiB); a table states them exactly, and matplotlib
would add a large dependency for a picture nobody can paste into a PR review as text.
"""

from __future__ import annotations

import typing
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

from rich.table import Table
from rich.text import Text

from orchestrator.analysis.memory import ESTIMATE_LABEL, ESTIMATE_SOURCE, format_bytes
from orchestrator.report.model import (
    BUILT,
    ERROR,
    EXPECTED,
    FAILED,
    PASSED,
    UNEXPECTED,
    BootSummary,
    JobReport,
    VariantResult,
)

# --- the comparison table ---------------------------------------------------------------------

_VERDICT_STYLE = {"pass": "bold green", "fail": "bold red", "timeout": "bold yellow", "error": "bold magenta",
                  "build-failed": "bold red", "not-run": "dim"}


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _mib(value: int | None) -> str:
    return "-" if value is None else str(value)


def verdict_text(v: VariantResult) -> str:
    text = v.verdict.upper()
    if v.boot.cause:
        text += f" ({v.boot.cause})"
    return text


def outcome_text(v: VariantResult) -> str:
    if v.outcome == EXPECTED:
        return f"expected: {v.expect.describe() if v.expect else '?'}"
    if v.outcome == UNEXPECTED:
        return f"UNEXPECTED: wanted {v.expect.describe() if v.expect else '?'}"
    return {PASSED: "pass (no expectation)", FAILED: "fail (no expectation)", ERROR: "could not test",
            BUILT: "built (not booted)"}.get(v.outcome, v.outcome or "-")


def guest_text(v: VariantResult) -> str:
    g = v.boot.guest
    if g is None:
        return "-"
    return f"{_mib(g.total_mib)} / {_mib(g.used_mib)} / {_mib(g.free_mib)} / {_mib(g.available_mib)}"


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
    measured = f" (measured {m.bytes_per_frame:.0f} B/frame)" if m.bytes_per_frame is not None else ""
    return f"{format_bytes(m.metadata)} {relation} {format_bytes(m.mempool)} pool{measured}"


def login_text(v: VariantResult) -> str:
    if v.boot.login_seconds is not None:
        return _seconds(v.boot.login_seconds)
    return "-" if v.boot.matched_at is None else f"- (verdict at {_seconds(v.boot.matched_at)})"


def build_text(v: VariantResult) -> str:
    b = v.build
    if b.status == "cached":
        return "cached"
    return f"{b.status} {_seconds(b.seconds)}" if b.seconds is not None else b.status


def boot_text(v: VariantResult) -> str:
    r = v.boot
    return "cached" if r.status == "cached" else f"{r.status} {_seconds(r.seconds)}".strip()


ROWS: list[tuple[str, typing.Callable[[VariantResult], str]]] = [
    ("patchsets", lambda v: ", ".join(v.patchsets) or "(none)"),
    ("verdict", verdict_text),
    ("expectation", outcome_text),
    ("time to login (verdict)", lambda v: login_text(v)),
    ("decisive line", lambda v: v.boot.matched or "-"),
    ("guest MiB total/used/free/avail", guest_text),
    ("VMM mempool (ELF)", pool_text),
    ("VMM .bss", lambda v: format_bytes(v.vmm.bss)),
    ("guest RAM / frame = frames", frames_text),
    (ESTIMATE_LABEL, metadata_text),
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
    elif label == ESTIMATE_LABEL and v.memory.fits is False:
        style = "yellow"
    elif label in ("build", "boot") and text == "cached":
        style = "cyan"
    return Text(text, style=style)


def table(report: JobReport) -> Table:
    """Variants side by side, one row per figure."""
    title = f"orch build --patchset {report.patchset}   ({report.id})"
    grid = Table(title=title, title_justify="left", show_lines=False)
    grid.add_column("", style="bold", no_wrap=True)
    for v in report.variants:
        grid.add_column(v.name, overflow="fold")
    for label, render in ROWS:
        grid.add_row(label, *(_cell(label, v, render(v)) for v in report.variants))
    if any(v.memory.metadata is not None for v in report.variants):
        grid.caption = f"allocator metadata: {metadata_source(report.variants)}"
        grid.caption_justify = "left"
    return grid


def verdict_line(report: JobReport) -> str:
    """One line for the end of the output: ``4k: FAIL (vmm-allocation) expected / ...``."""
    parts = []
    for v in report.variants:
        part = f"{v.name}: {verdict_text(v)}"
        if v.boot.guest is not None and v.boot.guest.total_mib is not None:
            part += f", guest {v.boot.guest.total_mib} MiB"
        if v.outcome in (EXPECTED, UNEXPECTED):
            part += f" [{v.outcome}]"
        parts.append(part)
    return " / ".join(parts) + f"  -> exit {report.exit_code}"


# --- Markdown ---------------------------------------------------------------------------------


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_after_verdict(name: str, boot: BootSummary) -> list[str]:
    """The decisive line and the console lines that followed it (a fail verdict's grace
    period: the reservation address, the assertion), as a quotable block."""
    if not boot.after_verdict:
        return []
    body = [line.replace("`" * 3, "'" * 3) for line in (boot.matched or "", *boot.after_verdict)]
    return ["", f"`{name}`: the console from the decisive line on:", "", "`" * 3 + "text", *body, "`" * 3]


def metadata_source(variants: Sequence[VariantResult]) -> str:
    """Where the allocator metadata figures come from: a sweep's measured cost when one was used
    (it says which), else the seed's fitted per-node size (an estimate)."""
    measured = next((v.memory for v in variants if v.memory.bytes_per_frame is not None), None)
    if measured is not None and measured.bytes_per_frame is not None:
        return (f"frames x {measured.bytes_per_frame:.1f} B, the per-frame cost measured by "
                f"{measured.bytes_per_frame_source} (a fit of minimum pools, not a count of nodes)")
    return ESTIMATE_SOURCE


def _metadata_model(report: JobReport) -> str:
    """How the allocator metadata row was estimated: a sweep's measurement, or the seed's formula."""
    measured = next((v.memory for v in report.variants if v.memory.bytes_per_frame is not None), None)
    if measured is not None and measured.bytes_per_frame is not None:
        return (f"Estimated allocator metadata = guest RAM / frame size x "
                f"{measured.bytes_per_frame:.1f} bytes per frame, measured by "
                f"{measured.bytes_per_frame_source} (the seed's formula says 2 nodes x 120 bytes).")
    return ("Estimated allocator metadata = guest RAM / frame size x 2 nodes x 120 bytes "
            "(the seed's formula; 2 GiB at 4 KiB = 120 MiB).")


def markdown(report: JobReport) -> str:
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
    lines += ["", f"_Allocator metadata: {metadata_source(report.variants)}._"]
    lines += ["", "<details><summary>Where the numbers come from</summary>", ""]
    for v in report.variants:
        m = v.memory
        lines.append(f"- `{v.name}`: guest RAM from {m.guest_ram_source or 'unknown'}; "
                     f"frame size from {m.frame_size_source or 'unknown'}; "
                     f"mempool from {m.mempool_source or 'unknown'}; "
                     f"VMM ELF: {v.vmm.file or 'not found'}")
    for v in report.variants:
        lines += markdown_after_verdict(v.name, v.boot)
    lines += [
        "",
        _metadata_model(report),
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


def junit(report: JobReport) -> str:
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
    for key, value in (("job", report.id), ("orch_version", report.orch_version),
                       ("exit_code", str(report.exit_code))):
        ET.SubElement(props, "property", {"name": key, "value": value})
    for v in report.variants:
        seconds = (v.build.seconds or 0.0) + (v.boot.seconds or 0.0)
        case = ET.SubElement(suite, "testcase", {
            "classname": f"orch.{report.patchset}", "name": v.name, "time": f"{seconds:.3f}",
        })
        summary = f"verdict {verdict_text(v)}; {outcome_text(v)}"
        if v.outcome in (UNEXPECTED, FAILED):
            failure = ET.SubElement(case, "failure", {"message": summary, "type": v.verdict})
            failure.text = v.boot.matched or v.build.message or ""
        elif v.outcome == ERROR:
            error = ET.SubElement(case, "error", {"message": v.boot.message or v.build.message or summary})
            error.text = summary
        out = ET.SubElement(case, "system-out")
        out.text = "\n".join([*(f"{label}: {render(v)}" for label, render in ROWS),
                              f"(allocator metadata: {metadata_source([v])})"])
    ET.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


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
    ("time to login", lambda v: _seconds(v.boot.login_seconds)),
    ("guest MiB total/used/free/avail", guest_text),
    ("VMM mempool", lambda v: format_bytes(v.vmm.mempool)),
    ("VMM .bss", lambda v: format_bytes(v.vmm.bss)),
    ("frames", lambda v: str(v.memory.frames) if v.memory.frames is not None else "-"),
    (ESTIMATE_LABEL, lambda v: format_bytes(v.memory.metadata)),
    ("patchsets", lambda v: ", ".join(v.patchsets)),
    ("boot image sha256", lambda v: (v.build.boot_image_sha256 or "-")[:16]),
]


def diff(a: JobReport, b: JobReport) -> list[Difference]:
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
        out.append(Difference("(job)", "exit code", str(a.exit_code), str(b.exit_code)))
    return out


def diff_table(a: JobReport, b: JobReport, differences: list[Difference]) -> Table:
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


