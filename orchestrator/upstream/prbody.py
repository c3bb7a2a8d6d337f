"""PR titles and bodies: the commits, the merge order, the evidence of the latest ``orch build``
of the patchset (its ``results.json`` under ``.orch/results/``) and of its latest ``orch sweep``
(``summary.md`` under ``.orch/sweeps/``, the chart named for attaching), the manifest pins, the command
to reproduce, and the "Test with:" line naming the companion PRs (see :mod:`testwith`).

A body file is ``.orch/upstream/NAME/<project path>.md``: ``# title`` on the first line, the
body after it. People may edit it between ``prepare`` and ``open``; ``open`` rewrites only its
"Test with:" line.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator import layout
from orchestrator.analysis.memory import ESTIMATE_SOURCE
from orchestrator.errors import InputError
from orchestrator.report import store
from orchestrator.report.model import JobReport
from orchestrator.upstream import testwith


@dataclass
class PreparedCommit:
    sha: str
    subject: str
    patchset: str


@dataclass
class PreparedProject:
    project: str
    upstream_repo: str  # "org/repo" of the upstream
    base_branch: str  # the PR's base
    fork_url: str
    fork_repo: str  # "owner/repo" of the fork
    branch: str  # on the fork and in the workspace
    head: str  # the rebased tip
    onto: str  # the upstream commit it was rebased onto
    title: str
    body_file: str  # relative to the workspace root
    commits: list[PreparedCommit] = field(default_factory=list)
    pushed: bool = False
    number: int | None = None
    url: str | None = None
    sent_body: str | None = None  # the body GitHub has, as orch last sent it

    def ref(self) -> testwith.Ref:
        if self.number is not None:
            return testwith.Ref(self.upstream_repo, number=self.number)
        return testwith.Ref(self.fork_repo, branch=self.branch)


@dataclass
class PreparedSet:
    patchset: str
    chain: list[str]
    projects: list[PreparedProject] = field(default_factory=list)  # merge order

    def companions(self, project: str) -> list[testwith.Ref]:
        return [p.ref() for p in self.projects if p.project != project]


def test_with_line(prepared: PreparedSet, project: str) -> str:
    return testwith.render_line(prepared.companions(project))


def title_for(commits: list[PreparedCommit], description: str, name: str) -> str:
    if len(commits) == 1:
        return commits[0].subject
    return f"{name}: {description}" if description else name


# --------------------------------------------------------------------------- evidence


def latest_results(workspace: Path, patchset: str) -> JobReport | None:
    """The newest ``orch build`` record of ``patchset`` under ``.orch/results/``."""
    root = store.results_root(workspace)
    if not root.is_dir():
        return None
    found: list[tuple[str, str, JobReport]] = []
    for file in root.glob(f"*/{store.RESULTS_JSON}"):
        if file.parent.is_symlink():
            continue
        try:
            report = store.read_results(file)
        except InputError:
            continue
        if report.patchset == patchset:
            found.append((report.finished or report.started, report.id, report))
    return max(found, key=lambda item: (item[0], item[1]))[2] if found else None


@dataclass(frozen=True)
class SweepEvidence:
    id: str
    directory: Path
    summary: str  # the sweep's summary.md


def latest_sweep(workspace: Path, patchset: str) -> SweepEvidence | None:
    """The newest ``orch sweep`` of ``patchset`` under ``.orch/sweeps/`` that wrote a summary."""
    root = layout.sweeps_dir(workspace)
    found: list[tuple[str, SweepEvidence]] = []
    for file in root.glob("*/sweep.json") if root.is_dir() else []:
        if file.parent.is_symlink() or not (file.parent / "summary.md").is_file():
            continue
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
            plan = data.get("plan") or {}
            if plan.get("patchset") != patchset:
                continue
            summary = (file.parent / "summary.md").read_text(encoding="utf-8")
        except (OSError, ValueError, AttributeError):
            continue
        stamp = str(data.get("finished") or data.get("started") or "")
        found.append((stamp, SweepEvidence(str(data.get("id", file.parent.name)), file.parent, summary)))
    return max(found, key=lambda item: (item[0], item[1].id))[1] if found else None


def _sweep_section(sweep: SweepEvidence) -> list[str]:
    """The sweep's own summary, its chart named as a file to attach (a PR body cannot link a
    file on this machine)."""
    lines: list[str] = []
    for line in sweep.summary.rstrip("\n").splitlines():
        image = re.match(r"^!\[(.*)\]\(([^)]+)\)$", line.strip())
        if image:
            lines.append(f"Chart: {image.group(2)} ({image.group(1)}) from sweep `{sweep.id}`, attached.")
        elif not line.startswith("Test with"):
            lines.append(line)
    return [*lines, ""]


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    return f"{value / (1 << 20):.2f} MiB" if value >= 1 << 20 else f"{value / 1024:.0f} KiB"


def evidence(workspace: Path, patchset: str, pins: dict[str, str], manifest: str) -> str:
    """The Markdown evidence section (same for every PR of the set)."""
    report = latest_results(workspace, patchset)
    lines = ["### Evidence", ""]
    if report is None:
        lines += [f"No `orch build` results for `{patchset}` yet "
                  f"(run `orch build --patchset {patchset}`).", ""]
    else:
        lines += [f"`orch build` job `{report.id}` ({report.finished or report.started}), "
                  f"exit code {report.exit_code}:", "",
                  "| variant | patchsets | verdict | expected | outcome | VMM mempool "
                  "| page metadata (estimate) |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for v in report.variants:
            verdict = v.verdict + (f" ({v.boot.cause})" if v.boot.cause else "")
            expected = v.expect.describe() if v.expect else "-"
            lines.append(f"| {v.name} | {', '.join(v.patchsets)} | {verdict} | {expected} | {v.outcome} "
                         f"| {_size(v.vmm.mempool or v.memory.mempool)} | {_size(v.memory.metadata)} |")
        lines += ["", f"Page metadata: {ESTIMATE_SOURCE}."]
        lines.append("")
        charts = sorted(p.name for p in (store.results_root(workspace) / report.id).glob("*.png"))
        if charts:
            lines += [f"Chart: {', '.join(charts)} (from the job's results directory, attached).", ""]
    sweep = latest_sweep(workspace, patchset)
    if sweep is not None:
        lines += _sweep_section(sweep)
    lines += ["Manifest pins (the revisions the evidence was built from):", "",
              f"- manifest: {manifest}"]
    lines += [f"- `{path}` @ `{sha}`" for path, sha in pins.items()]
    command = report.command if report is not None and report.command else ["orch", "build", "--patchset",
                                                                               patchset]
    lines += ["", "To reproduce:", "", "```", f"orch sync -m {manifest.split(' @ ')[0]}",
              " ".join(shlex.quote(c) for c in command), "```", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- body


def render_body(prepared: PreparedSet, index: int, description: str, evidence_md: str) -> str:
    me = prepared.projects[index]
    total = len(prepared.projects)
    lines = [description, ""] if description else []
    lines += [f"Part {index + 1} of {total} of the `{prepared.patchset}` change"
              + (f" (with {', '.join(n for n in prepared.chain if n != prepared.patchset)})"
                 if len(prepared.chain) > 1 else "") + ", prepared with orch.", "",
              "### Commits", ""]
    lines += [f"- `{c.sha[:12]}` {c.subject} (patchset `{c.patchset}`)" for c in me.commits]
    lines += ["", "### Merge order", ""]
    for i, p in enumerate(prepared.projects):
        mark = " (this PR)" if i == index else ""
        lines.append(f"{i + 1}. {p.upstream_repo}{mark}")
    before = [p.upstream_repo for p in prepared.projects[:index]]
    lines += ["", f"Merge after {', '.join(before)}." if before else
              ("Merge this one first." if total > 1 else "Nothing else to merge first."), ""]
    lines += [evidence_md]
    line = test_with_line(prepared, me.project)
    if line:
        lines += [line]
    return "\n".join(lines).rstrip("\n") + "\n"


def write_body_file(path: Path, title: str, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# {title}\n\n{body}", encoding="utf-8")


def read_body_file(path: Path) -> tuple[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise InputError(f"{path}: cannot read the PR body ({error.strerror})",
                         hint="run `orch upstream prepare` first") from None
    first, _, rest = text.partition("\n")
    if not first.startswith("# "):
        raise InputError(f"{path}: the first line must be '# <PR title>'")
    return first.removeprefix("# ").strip(), rest.lstrip("\n")
