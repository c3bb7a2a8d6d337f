"""``orch upstream check --fix``: rewrite the chain's commits in the scratch clones so the
mechanical findings go away, then write the patch files back with ``orch patchset refresh``.

Each commit is re-made on the rewritten one before it: its diff is applied with
``git apply --whitespace=fix`` (trailing whitespace on added lines goes), the style tools run
on the files it touches and their change is folded into it (a fixup, squashed), and, when its
author is the user (``user.email`` of the workspace project) and it lacks one, a
``Signed-off-by:`` for that identity is added. Titles, bodies and licence headers need a
person: they are reported, not guessed. Nothing is written unless every commit re-applies.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator import layout
from orchestrator.errors import InputError
from orchestrator.patchset import apply as patchsets
from orchestrator.upstream import style
from orchestrator.upstream.checks import has_author_signoff
from orchestrator.upstream.series import Chain, Commit, ProjectSeries, read_commit
from orchestrator.upstream.tools import Toolset
from orchestrator.workspace import gitops


@dataclass(frozen=True)
class Identity:
    name: str
    email: str


@dataclass
class FixReport:
    changes: list[str] = field(default_factory=list)  # "project abc123: restyled x.c"
    refreshed: list[str] = field(default_factory=list)  # "patchset: project/file (updated)"


def user_identity(cwd: Path) -> Identity | None:
    """The user's git identity (``git var GIT_AUTHOR_IDENT``: config or environment)."""
    ident = gitops.try_run(["var", "GIT_AUTHOR_IDENT"], cwd=cwd)
    match = re.match(r"^(.*?)\s*<([^>]*)>", ident or "")
    return Identity(match.group(1), match.group(2)) if match and match.group(2) else None


def fix_chain(chain: Chain, toolset: Toolset, me: Identity | None) -> FixReport:
    """Rewrite every project's series, move the scratch ``orch/<patchset>`` branches to the
    rewritten commits and refresh the patch files of the patchsets whose commits changed."""
    report = FixReport()
    rewritten: dict[str, dict[str, str]] = {}
    for series in chain.series.values():
        rewritten[series.project] = _fix_series(series, toolset, me, report)
    changed_patchsets: list[str] = []
    for series in chain.series.values():
        mapping = rewritten[series.project]
        for ps in chain.patchsets:
            branch = layout.patchset_branch(layout.PATCHSET_NAMESPACE, ps.name)
            old = gitops.try_run(["rev-parse", "--verify", "--quiet", branch], cwd=series.directory)
            if old and mapping.get(old, old) != old:
                series.git("update-ref", branch, mapping[old])
                if ps.name not in changed_patchsets:
                    changed_patchsets.append(ps.name)
        series.commits = [read_commit(series, mapping[c.sha], c) for c in series.commits]
        series.git("checkout", "--quiet", "--force", "--detach", series.tip)
    for ps in chain.patchsets:  # requirements first, as refresh needs
        if ps.name in changed_patchsets:
            refreshed = patchsets.refresh(chain.tree, ps)
            report.refreshed += [f"{ps.name}: {p.project}/{p.file} ({p.status})"
                                 for p in refreshed.patches if p.status != "unchanged"]
    return report


def _fix_series(series: ProjectSeries, toolset: Toolset, me: Identity | None,
                report: FixReport) -> dict[str, str]:
    """Old SHA -> new SHA for each commit of the series."""
    mapping: dict[str, str] = {}
    head = series.base
    for commit in series.commits:
        head = _remake(series, commit, head, toolset, me, report)
        mapping[commit.sha] = head
    return mapping


def _remake(series: ProjectSeries, commit: Commit, onto: str, toolset: Toolset, me: Identity | None,
            report: FixReport) -> str:
    dirty_whitespace = gitops.try_run(["diff", "--check", f"{commit.sha}^", commit.sha],
                                      cwd=series.directory) is None
    series.git("checkout", "--quiet", "--force", "--detach", onto)
    diff = series.git("diff", "--binary", "--full-index", f"{commit.sha}^", commit.sha) + "\n"
    with tempfile.NamedTemporaryFile("w", suffix=".diff", delete=False, dir=series.directory.parent) as f:
        f.write(diff)
    try:
        series.git("apply", "--index", "--whitespace=fix", "--3way", f.name)
    except gitops.GitError as error:
        series.git("reset", "--quiet", "--hard")
        raise InputError(
            f"{series.project}: after fixing the commits before it, {commit.short} '{commit.subject}' "
            f"({commit.patchset}/{commit.patch}) no longer applies: {gitops.stderr_of(error)}",
            hint="nothing was written; fix that commit by hand, then `orch patchset refresh`") from None
    finally:
        Path(f.name).unlink(missing_ok=True)
    notes: list[str] = []
    if dirty_whitespace:
        notes.append("whitespace fixed")
    with contextlib.suppress(style.StyleToolFailed):  # reported by the check that follows
        style.restyle(series.directory, touched_files_index(series), toolset)
    restyled = [f for f in series.git("diff", "--name-only", "-z").split("\0") if f]
    if restyled:
        series.git("add", "--", *restyled)
        notes.append("restyled " + ", ".join(restyled))
    series.git("commit", "--quiet", "--no-verify", "--allow-empty", "-C", commit.sha)
    if me is not None and not has_author_signoff(commit) and commit.author_email.lower() == me.email.lower():
        series.git("-c", f"user.name={me.name}", "-c", f"user.email={me.email}", "commit", "--quiet",
                   "--no-verify", "--amend", "--no-edit", "--signoff")
        notes.append(f"added Signed-off-by: {me.name} <{me.email}>")
    if notes:
        report.changes.append(f"{series.project} {commit.short} {commit.subject}: {'; '.join(notes)}")
    return series.git("rev-parse", "HEAD")


def touched_files_index(series: ProjectSeries) -> list[str]:
    """The files the commit being re-made adds or modifies (staged against HEAD)."""
    out = series.git("diff", "--cached", "--name-only", "--diff-filter=rd", "-z", "HEAD")
    return [f for f in out.split("\0") if f]

