"""The points each level of ``orch bisect`` searches.

Level 1: the manifest repository's first-parent commits between good (exclusive) and bad
(inclusive) that change the manifest file; each is a full set of pins (a snapshot).

Level 2: between the last good and the first bad snapshot, every commit of every project whose
pin changed, projects added or removed included, ordered as ChromeOS bisect-kit does: each
project's commits in ``git rev-list`` order, interleaved across projects by commit time, so
state k is "the good snapshot plus the first k changes" and the last state is the bad
snapshot exactly. A single changed project is plain ``git rev-list`` order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import InputError
from orchestrator.workspace import gitops
from orchestrator.workspace.point import ManifestRev, Pin, Point, ensure_project, manifest_rev
from orchestrator.workspace.sync import Workspace


@dataclass(frozen=True)
class Commit:
    """A project commit as the answer shows it."""

    sha: str
    subject: str
    author: str
    date: str  # author date, ISO 8601
    time: int  # committer time, seconds (the interleaving key)


@dataclass(frozen=True)
class Change:
    """One step of level 2: project ``path`` moves to ``commit`` (None: removed)."""

    path: str
    commit: Commit | None
    pin: Pin | None  # the project's pin with this commit (None when removed)
    url: str = ""

    @property
    def sha(self) -> str | None:
        return self.commit.sha if self.commit else None

    def describe(self) -> str:
        if self.commit is None:
            return f"{self.path}: removed"
        return f"{self.path} {self.commit.sha[:12]} {self.commit.subject}"


def manifest_snapshots(git_dir: Path, good: str, bad: str, file: str) -> list[ManifestRev]:
    """Level 1's points: ``good..bad`` first-parent commits that change ``file``, oldest first
    (the last one has the bad revision's pins even when bad itself did not touch the file)."""
    if gitops.try_run(["merge-base", "--is-ancestor", good, bad], git_dir=git_dir) is None:
        raise InputError(f"--good {good[:12]} is not an ancestor of --bad {bad[:12]} in the manifest "
                         "repository",
                         hint="give --good an older snapshot on the same branch")
    shas = gitops.run(["rev-list", "--first-parent", "--reverse", f"{good}..{bad}", "--", file],
                      git_dir=git_dir).split()
    if not shas:
        raise InputError(f"no manifest commit between {good[:12]} and {bad[:12]} changes {file}",
                         hint="both revisions pin the same commits: nothing to bisect")
    return [manifest_rev(git_dir, sha) for sha in shas]


_LOG_FORMAT = "%H%x00%s%x00%an <%ae>%x00%aI%x00%ct"


def _commits(git_dir: Path, args: Sequence[str]) -> list[Commit]:
    out = gitops.run(["log", f"--format={_LOG_FORMAT}", *args], git_dir=git_dir)
    commits = []
    for line in out.splitlines():
        sha, subject, author, date, time = line.split("\0")
        commits.append(Commit(sha, subject, author, date, int(time)))
    return commits


def commit_info(workspace: Workspace, pin: Pin) -> Commit:
    return _commits(ensure_project(workspace, pin), ["-1", pin.sha])[0]


def project_history(workspace: Workspace, old: Pin, new: Pin) -> list[Commit]:
    """The commits taking ``old`` to ``new``, oldest first, in ``git rev-list`` order; the last
    one is always ``new`` (a pin moved backwards or sideways is one change)."""
    git_dir = ensure_project(workspace, new)
    ensure_project(workspace, old)
    commits = _commits(git_dir, ["--reverse", "--topo-order", f"{old.sha}..{new.sha}"])
    if not commits or commits[-1].sha != new.sha:
        commits = [*[c for c in commits if c.sha != new.sha], *_commits(git_dir, ["-1", new.sha])]
    return commits


def changes_between(workspace: Workspace, good: Point, bad: Point) -> list[Change]:
    """Level 2's changes from snapshot ``good`` to snapshot ``bad`` in bisect-kit order."""
    per_project: list[list[Change]] = []
    for path in sorted(set(good.pins) | set(bad.pins)):
        old, new = good.pins.get(path), bad.pins.get(path)
        if new is None:
            per_project.append([Change(path, None, None)])
        elif old is None:
            per_project.append([Change(path, commit_info(workspace, new), new, new.url)])
        elif old.sha != new.sha:
            per_project.append([Change(path, c, _at(new, c.sha), new.url)
                                for c in project_history(workspace, old, new)])
    return interleave(per_project)


def _at(pin: Pin, sha: str) -> Pin:
    return Pin(pin.path, pin.name, pin.url, sha, "bisect", pin.upstream, pin.linkfiles, pin.copyfiles)


def interleave(per_project: Sequence[Sequence[Change]]) -> list[Change]:
    """Merge each project's ordered changes by commit time, keeping every project's own order
    (a commit never comes before an older one of its own project); removals first."""
    queues = [list(changes) for changes in per_project if changes]
    merged: list[Change] = []
    while queues:
        def key(index: int) -> tuple[int, int]:
            head = queues[index][0]
            return (head.commit.time if head.commit else -1, index)
        best = min(range(len(queues)), key=key)
        merged.append(queues[best].pop(0))
        if not queues[best]:
            queues.pop(best)
    return merged


def state(good: Point, changes: Sequence[Change], k: int) -> Point:
    """The good snapshot plus the first ``k`` changes."""
    point = good
    for change in changes[:k]:
        if change.pin is None:
            point = point.without(change.path)
        else:
            point = point.with_pin(change.path, change.pin.sha, "bisect", base=change.pin)
    return point


_GITHUB = re.compile(r"^(?:https?://|ssh://git@|git@|git://)github\.com[:/]+([^/]+)/([^/]+?)(?:\.git)?/?$")


def github_url(remote: str, sha: str) -> str | None:
    """The commit's page when the project's remote is on GitHub."""
    match = _GITHUB.match(remote.strip())
    return f"https://github.com/{match[1]}/{match[2]}/commit/{sha}" if match else None
