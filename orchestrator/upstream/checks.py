"""``orch upstream check``: per project, per commit, what seL4's PR checks run.

From seL4/ci-actions: ``pr.yml`` runs gitlint (the repository's ``.gitlint``, else seL4_tools'
``misc/.gitlint``), ``git diff --check`` (trailing whitespace, conflict markers), the style
action (seL4_tools ``misc/style.sh`` on the changed files, failing on any diff) and the
"portable shell" action (``misc/is-valid-shell-script``); ``push.yml`` runs ``reuse lint``.
The DCO (a ``Signed-off-by:`` matching the author) is checked by GitHub's DCO app.

Differences, on purpose: each check runs per commit (each commit must pass on its own, so a
finding names the commit that brought it), and ``reuse`` lints only the files the commits
add or touch (``reuse lint-file``), not the whole repository.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import InfraError
from orchestrator.upstream import style
from orchestrator.upstream.series import Chain, Commit, ProjectSeries, touched_files
from orchestrator.upstream.tools import GITLINT, REUSE, Toolset
from orchestrator.workspace import gitops

CHECKS = ("gitlint", "dco", "whitespace", "style", "license", "shell")
OK, FAILED, NOT_APPLICABLE = "ok", "failed", "n/a"
_SIGNOFF = re.compile(r"^Signed-off-by:\s*(.*?)\s*<([^>]*)>\s*$", re.MULTILINE | re.IGNORECASE)
_GITLINT_LINE = re.compile(r"^(\d+|-): (\S+) (.*)$")
_SHELL_SUFFIXES = (".sh", ".bash", ".ksh")


@dataclass(frozen=True)
class Finding:
    project: str
    check: str
    commit: str  # full SHA ("" when not about one commit)
    patchset: str
    patch: str
    subject: str
    first: str  # the first offending line
    file: str = ""
    detail: str = ""  # e.g. the diff the style tools would apply


@dataclass
class CheckResult:
    project: str
    check: str
    status: str  # ok | failed | n/a
    findings: list[Finding] = field(default_factory=list)


@dataclass
class UpstreamCheckReport:
    patchset: str
    chain: list[str]
    rules_from: str
    projects: list[str] = field(default_factory=list)
    results: list[CheckResult] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)  # what --fix changed
    refreshed: list[str] = field(default_factory=list)  # patch files --fix rewrote

    @property
    def ok(self) -> bool:
        return all(r.status != FAILED for r in self.results)

    def result(self, project: str, check: str) -> CheckResult:
        return next(r for r in self.results if r.project == project and r.check == check)


def check_chain(chain: Chain, toolset: Toolset) -> UpstreamCheckReport:
    report = UpstreamCheckReport(chain.name, [p.name for p in chain.patchsets], toolset.describe(),
                                 list(chain.series))
    for series in chain.series.values():
        report.results += check_series(series, toolset)
    return report


def check_series(series: ProjectSeries, toolset: Toolset) -> list[CheckResult]:
    results = {name: CheckResult(series.project, name, NOT_APPLICABLE) for name in CHECKS}
    config = _gitlint_config(series, toolset)
    try:
        for commit in series.commits:
            for name, findings in _check_commit(series, commit, toolset, config).items():
                result = results[name]
                if findings is not None and result.status == NOT_APPLICABLE:
                    result.status = OK
                if findings:
                    result.status = FAILED
                    result.findings += findings
    finally:
        series.git("checkout", "--quiet", "--force", "--detach", series.tip)
    return list(results.values())


def _check_commit(series: ProjectSeries, commit: Commit, toolset: Toolset,
                  gitlint_config: Path) -> dict[str, list[Finding] | None]:
    """Check name -> findings (None: nothing for that check to look at in this commit)."""
    series.git("checkout", "--quiet", "--force", "--detach", commit.sha)
    files = touched_files(series, commit.sha)
    return {
        "gitlint": gitlint(series, commit, gitlint_config),
        "dco": dco(series.project, commit),
        "whitespace": whitespace(series, commit),
        "style": style_check(series, commit, files, toolset),
        "license": license_check(series, commit, files) if files else None,
        "shell": shell_check(series, commit, files, toolset),
    }


def _finding(series: ProjectSeries, commit: Commit, check: str, first: str, file: str = "",
             detail: str = "") -> Finding:
    return Finding(series.project, check, commit.sha, commit.patchset, commit.patch, commit.subject,
                   first, file, detail)


# --------------------------------------------------------------------------- gitlint


def _gitlint_config(series: ProjectSeries, toolset: Toolset) -> Path:
    """The repository's own ``.gitlint`` (as of the series' tip) if it has one, else seL4_tools'."""
    try:
        own = series.git("show", f"{series.tip}:.gitlint")
    except gitops.GitError:
        return toolset.gitlint_config
    path = series.directory.parent / f".gitlint-{series.directory.name}"
    path.write_text(own + "\n", encoding="utf-8")
    return path


def gitlint(series: ProjectSeries, commit: Commit, config: Path) -> list[Finding]:
    command = [*GITLINT, "--config", str(config), "--target", str(series.directory),
               "--commit", commit.sha, "lint"]
    proc = subprocess.run(command, capture_output=True, text=True, errors="replace", env=_tool_env())
    if proc.returncode == 0:
        return []
    lines = [m for m in (_GITLINT_LINE.match(x) for x in proc.stderr.splitlines()) if m]
    if proc.returncode >= 250 or not lines:  # gitlint's own errors: config, git, usage
        why = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise InfraError(f"gitlint failed in {series.project}: {why}")
    return [_finding(series, commit, "gitlint", f"{m.group(2)} {m.group(3)}".strip(),
                     detail=f"line {m.group(1)}") for m in lines]


def _tool_env() -> dict[str, str]:
    return {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}


# --------------------------------------------------------------------------- DCO


def signoffs(message: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in _SIGNOFF.finditer(message)]


def has_author_signoff(commit: Commit) -> bool:
    return any(name == commit.author_name and email.lower() == commit.author_email.lower()
               for name, email in signoffs(commit.message))


def dco(project: str, commit: Commit) -> list[Finding]:
    if has_author_signoff(commit):
        return []
    expected = f"Signed-off-by: {commit.author_name} <{commit.author_email}>"
    found = signoffs(commit.message)
    why = ("no Signed-off-by:" if not found
           else "Signed-off-by: " + ", ".join(f"{n} <{e}>" for n, e in found) + " is not the author")
    return [Finding(project, "dco", commit.sha, commit.patchset, commit.patch, commit.subject,
                    f"{why}; expected '{expected}'")]


# --------------------------------------------------------------------------- whitespace


def whitespace(series: ProjectSeries, commit: Commit) -> list[Finding]:
    proc = subprocess.run(["git", "diff", "--check", f"{commit.sha}^", commit.sha], cwd=series.directory,
                          capture_output=True, text=True, errors="replace")
    if proc.returncode == 0:
        return []
    findings: list[Finding] = []
    lines = proc.stdout.splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"^(.+?):(\d+): (.*)$", line)
        if match:
            content = lines[i + 1] if i + 1 < len(lines) else ""
            findings.append(_finding(series, commit, "whitespace", line, match.group(1), content))
    if not findings:
        raise InfraError(f"git diff --check failed in {series.project}: {proc.stderr.strip()}")
    return findings


# --------------------------------------------------------------------------- style


def style_check(series: ProjectSeries, commit: Commit, files: list[str],
                toolset: Toolset) -> list[Finding] | None:
    try:
        runs = style.restyle(series.directory, files, toolset)
    except style.StyleToolFailed as error:
        series.git("reset", "--quiet", "--hard")
        return [_finding(series, commit, "style", str(error))]
    if not runs:
        return None
    changed = series.git("diff", "--name-only", "-z").split("\0")
    findings: list[Finding] = []
    for file in (f for f in changed if f):
        diff = series.git("diff", "--", file)
        first = next((x for x in diff.splitlines()[4:] if x[:1] in "+-" and not x.startswith(("+++", "---"))),
                     "")
        findings.append(_finding(series, commit, "style", f"{file}: {first}", file, diff))
    series.git("reset", "--quiet", "--hard")
    return findings


# --------------------------------------------------------------------------- license


def license_check(series: ProjectSeries, commit: Commit, files: list[str]) -> list[Finding]:
    present = [f for f in files if (series.directory / f).is_file()]
    if not present:
        return []
    proc = subprocess.run([*REUSE, "--root", ".", "lint-file", *present], cwd=series.directory,
                          capture_output=True, text=True, errors="replace", env=_tool_env())
    if proc.returncode == 0:
        return []
    findings = []
    for line in proc.stdout.splitlines():
        file, sep, _ = line.partition(": ")
        if sep and file in present:
            findings.append(_finding(series, commit, "license", line, file))
    if not findings:
        why = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise InfraError(f"reuse lint-file failed in {series.project}: {why}")
    return findings


# --------------------------------------------------------------------------- shell


def looks_like_shell(root: Path, name: str) -> bool:
    """The first test of seL4_tools' is-valid-shell-script (suffix, or an executable sh script)."""
    path = root / name
    if name.endswith(_SHELL_SUFFIXES):
        return True
    if not (path.is_file() and os.access(path, os.X_OK)):
        return False
    with path.open("rb") as handle:
        first = handle.readline(200)
    return first.startswith(b"#!") and re.search(rb"\b(sh|bash|dash|ksh|zsh)\b", first) is not None


def shell_check(series: ProjectSeries, commit: Commit, files: list[str],
                toolset: Toolset) -> list[Finding] | None:
    scripts = [f for f in files if looks_like_shell(series.directory, f)]
    if not scripts:
        return None
    proc = subprocess.run(["sh", str(toolset.shell_checker), *scripts], cwd=series.directory,
                          capture_output=True, text=True, errors="replace", env=_tool_env())
    if proc.returncode == 0:
        return []
    output = (proc.stdout + proc.stderr).strip()
    if "command not found" in output:
        raise InfraError(f"is-valid-shell-script: {output.splitlines()[-1]}",
                         hint="apt-get install devscripts file")
    lines = [x for x in output.splitlines() if x.strip()]
    first = next((x for x in lines if "possible bashism" in x), lines[-1] if lines else "failed")
    bad = re.search(r'script "([^"]+)"', output)
    return [_finding(series, commit, "shell", first, bad.group(1) if bad else "", output)]
