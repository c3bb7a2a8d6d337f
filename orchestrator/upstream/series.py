"""The commits a patchset chain makes, as ``orch patchset apply`` makes them, in scratch clones.

For ``NAME`` and every patchset it requires, each project's series is applied with
``git am`` (:func:`orchestrator.patchset.apply.apply`) in a ``git clone --shared`` of the
workspace project under ``.orch/tmp/``, checked out at the pinned revision. The user's
checkouts, branches and edits are never touched; the scratch clones go away afterwards.
"""

from __future__ import annotations

import fcntl
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from orchestrator import layout
from orchestrator.errors import InfraError, OrchError
from orchestrator.patchset import apply as patchsets
from orchestrator.patchset.config import Patchset, verify_checksums
from orchestrator.workspace import gitops
from orchestrator.workspace.tree import ProjectCheckout, SourceTree


@dataclass(frozen=True)
class Commit:
    sha: str
    patchset: str
    patch: str  # the patch file it was made from
    subject: str
    author_name: str
    author_email: str
    message: str

    @property
    def short(self) -> str:
        return self.sha[:12]


@dataclass
class ProjectSeries:
    """One project's commits of the chain, oldest first, on top of ``base`` (the pin)."""

    project: str
    directory: Path  # the scratch clone
    base: str
    commits: list[Commit] = field(default_factory=list)

    @property
    def tip(self) -> str:
        return self.commits[-1].sha if self.commits else self.base

    def git(self, *args: str, stdin: str | None = None) -> str:
        return gitops.run(list(args), cwd=self.directory, stdin=stdin)


@dataclass
class Chain:
    """The scratch tree with the chain applied."""

    patchsets: list[Patchset]
    tree: SourceTree
    series: dict[str, ProjectSeries]  # project path -> series, in chain order

    @property
    def name(self) -> str:
        return self.patchsets[-1].name


def projects_of(chain: list[Patchset]) -> list[str]:
    order: list[str] = []
    for ps in chain:
        order += [p for p in ps.projects if p not in order]
    return order


SCRATCH_PREFIX = "upstream-"
OWNER_LOCK = ".owner.lock"  # held (flock) by the orch process using the scratch directory


@contextmanager
def applied_chain(workspace_root: Path, tree: SourceTree, chain: list[Patchset]) -> Iterator[Chain]:
    """Scratch clones of the chain's projects with the chain applied; removed on exit (and,
    after a kill -9, by the next call: see :func:`remove_abandoned_scratch`)."""
    verify_checksums(chain)
    base = layout.tmp_dir(workspace_root)
    base.mkdir(parents=True, exist_ok=True)
    remove_abandoned_scratch(base)
    scratch, owner = _new_scratch(base)
    try:
        projects = {p: _clone(tree.project(p), scratch) for p in projects_of(chain)}
        scratch_tree = SourceTree(scratch, projects)
        report = _apply_in_scratch(scratch_tree, chain)
        by_sha = {c.commit: c for p in report.projects for c in p.commits}
        series: dict[str, ProjectSeries] = {}
        for path, checkout in projects.items():
            s = ProjectSeries(path, checkout.directory, checkout.pinned)
            shas = s.git("rev-list", "--reverse", "HEAD", "--not", checkout.pinned).split()
            s.commits = [_commit(s, sha, by_sha[sha].patchset, by_sha[sha].patch) for sha in shas]
            series[path] = s
        yield Chain(chain, scratch_tree, series)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        owner.close()


def _new_scratch(base: Path) -> tuple[Path, IO[str]]:
    """A new scratch directory and its owner lock, held: locked before the directory gets its
    ``upstream-`` name, so no other orch ever sees it unowned."""
    making = Path(tempfile.mkdtemp(prefix=".new-", dir=base))
    owner = (making / OWNER_LOCK).open("w")
    fcntl.flock(owner, fcntl.LOCK_EX)
    scratch = base / (SCRATCH_PREFIX + making.name.removeprefix(".new-"))
    making.rename(scratch)
    return scratch, owner


def remove_abandoned_scratch(base: Path) -> list[Path]:
    """Remove the scratch directories under ``base`` whose orch process is gone (killed before
    it could clean up: nobody holds their owner lock); those in use are left alone."""
    removed: list[Path] = []
    for scratch in sorted([*base.glob(f"{SCRATCH_PREFIX}*"), *base.glob(".new-*")]):
        lock = scratch / OWNER_LOCK
        try:
            with lock.open() as handle:  # no lock file: not set up yet, leave it
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(scratch, ignore_errors=True)
                removed.append(scratch)
        except BlockingIOError:
            continue  # another orch is using it
        except OSError:
            continue  # no lock file yet, no permission, or gone meanwhile
    return removed


def _apply_in_scratch(scratch_tree: SourceTree, chain: list[Patchset]) -> patchsets.ApplyReport:
    """``patchsets.apply`` in the scratch clones. Its errors speak of the user's projects
    ("could not restore", "the next apply retries the undo"); here nothing of the user's was
    touched and the clones are thrown away, so a failed rollback is said as what it is."""
    try:
        return patchsets.apply(scratch_tree, chain)
    except patchsets.RollbackError as error:
        cause = error.__context__
        why = f" ({cause})" if isinstance(cause, OrchError) else \
            f" ({type(cause).__name__}: {cause})" if cause is not None else ""
        raise InfraError(
            f"{chain[-1].name}: applying the chain in scratch clones failed{why}, and a scratch "
            f"clone could not be checked out again: {'; '.join(error.failures)}",
            hint="your checkouts and branches were not touched; the scratch clones are removed") from None


def _clone(checkout: ProjectCheckout, scratch: Path) -> ProjectCheckout:
    target = scratch / checkout.path
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        gitops.run(["clone", "--quiet", "--shared", "--no-checkout", "--", str(checkout.directory),
                    str(target)])
        gitops.run(["checkout", "--quiet", "--detach", checkout.pinned], cwd=target)
        for option in gitops.identity_config(target / ".git"):
            key, value = option.split("=", 1)
            gitops.run(["config", key, value], cwd=target)
    except gitops.GitError as error:
        raise InfraError(f"{checkout.path}: cannot make a scratch clone: {gitops.stderr_of(error)}") from None
    return ProjectCheckout(checkout.path, target, checkout.pinned)


def _commit(series: ProjectSeries, sha: str, patchset: str, patch: str) -> Commit:
    fields = series.git("log", "-1", "--format=%an%x00%ae%x00%s%x00%B", sha).split("\0", 3)
    name, email, subject, message = [*fields, "", "", "", ""][:4]
    return Commit(sha, patchset, patch, subject, name, email, message)


def read_commit(series: ProjectSeries, sha: str, like: Commit) -> Commit:
    """The commit ``sha`` with ``like``'s patchset and patch file (after a rewrite)."""
    return _commit(series, sha, like.patchset, like.patch)


def touched_files(series: ProjectSeries, sha: str) -> list[str]:
    """Files the commit adds or modifies (seL4's CI: ``git diff --name-only --diff-filter=rd``)."""
    out = series.git("diff", "--name-only", "--diff-filter=rd", "-z", f"{sha}^", sha)
    return [f for f in out.split("\0") if f]


def added_files(series: ProjectSeries, sha: str) -> set[str]:
    out = series.git("diff", "--name-only", "--diff-filter=A", "-z", f"{sha}^", sha)
    return {f for f in out.split("\0") if f}
