"""Patchsets on a source tree: apply (atomically, as commits on ``orch/<name>`` branches),
revert to the pinned revisions, refresh the patch files from edited commits, import, and
tell which patchsets are applied where.

This is the library API the CLI and the build module call; it works the same on the user's
workspace and on a build variant's ``git worktree`` checkouts (whose branches live in
``orch-worktree/<worktree>/<name>`` so two trees never share a checked-out branch).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import git
from git.exc import GitCommandError
from git.index import IndexFile
from git.refs.symbolic import SymbolicReference

from orchestrator import layout
from orchestrator.digest import git_blob_id, sha256_file
from orchestrator.errors import InputError, OrchError, WorkspaceError
from orchestrator.patchset import journal as oplog
from orchestrator.patchset.config import (
    PatchRef,
    Patchset,
    available_patchsets,
    check_name,
    import_target_dir,
    load_patchset,
    patchset_search_path,
    resolve,
    write_config,
)
from orchestrator.patchset.derive import derive_build
from orchestrator.patchset.dryrun import (
    CheckReport,
    HunkResult,
    PatchResult,
    Status,
    check_parsed,
    parse_series,
    safe_path,
)
from orchestrator.patchset.patchfile import (
    ParsedPatch,
    format_mail,
    parse_diff,
    parse_patch_file,
    patch_file_name,
    same_patch,
    split_repo_diff,
)
from orchestrator.workspace import gitops
from orchestrator.workspace.tree import ProjectCheckout, SourceTree

__all__ = [
    "ApplyReport",
    "CheckReport",
    "Patchset",
    "RefreshReport",
    "RevertReport",
    "applied_patchsets",
    "apply",
    "available_patchsets",
    "check",
    "import_patchset",
    "import_target_dir",
    "load_patchset",
    "patchset_search_path",
    "refresh",
    "require_applicable",
    "resolve",
    "revert",
]

_P = TypeVar("_P")
_R = TypeVar("_R")


# --------------------------------------------------------------------------- git plumbing


@dataclass
class _Repo:
    """One project checkout opened with gitpython, plus the branch namespace orch uses in it."""

    checkout: ProjectCheckout
    repo: git.Repo
    namespace: str

    @property
    def path(self) -> str:
        return self.checkout.path

    def run(self, *args: str) -> str:
        out = self.repo.git.execute(["git", *args], strip_newline_in_stdout=True)
        return out if isinstance(out, str) else ""

    def run_both(self, *args: str) -> str:
        """stdout and stderr together (git am reports its 3-way fallback on both)."""
        _status, out, err = self.repo.git.execute(["git", *args], with_extended_output=True)
        return f"{out}\n{err}"

    def head(self) -> tuple[str, str | None]:
        """(HEAD's SHA, the ref HEAD points to or None when detached), read from files."""
        sha = SymbolicReference.dereference_recursive(self.repo, "HEAD")
        ref = None if self.repo.head.is_detached else self.repo.head.reference.path
        return sha, ref

    def ref_sha(self, ref: str) -> str | None:
        try:
            return SymbolicReference.dereference_recursive(self.repo, ref)
        except (ValueError, OSError):
            return None

    def branch(self, patchset: str) -> str:
        return layout.patchset_branch(self.namespace, patchset)

    def orch_refs(self) -> dict[str, str]:
        prefix = f"refs/heads/{self.namespace}/"
        refs: dict[str, str] = {}
        for ref in SymbolicReference._iter_items(self.repo, prefix.rstrip("/")):
            path = str(ref.path)
            sha = self.ref_sha(path)
            if sha and path.startswith(prefix):
                refs[path] = sha
        return refs

    def dirty_files(self) -> list[str]:
        out = self.run("status", "--porcelain=v1", "-z", "--untracked-files=no")
        return [entry[3:] for entry in out.split("\0") if len(entry) > 3]

    def staged_files(self) -> list[str]:
        """Paths whose index entry differs from HEAD's."""
        return self.run("diff", "--cached", "--name-only", "-z").split("\0")[:-1]

    def edited_files(self, paths: Iterable[str]) -> list[str]:
        """Those of ``paths`` whose worktree content differs from the index (no git process,
        except for a sparse index, which GitPython cannot read)."""
        try:
            entries = IndexFile(self.repo).entries
        except Exception:  # GitPython refuses a sparse index's directory entries
            wanted = sorted(paths)
            if not wanted:
                return []
            out = self.run("diff", "--no-ext-diff", "--name-only", "-z", "--", *wanted)
            return sorted(p for p in out.split("\0") if p)
        edited: list[str] = []
        for rel in sorted(paths):
            entry = entries.get((rel, 0))
            if entry is None:
                continue  # untracked: git am itself refuses to overwrite it
            file = Path(self.checkout.directory) / rel
            if file.is_symlink():
                data = os.readlink(file).encode()
            elif file.is_file():
                data = file.read_bytes()
            else:
                edited.append(rel)
                continue
            if git_blob_id(data) != entry.binsha:
                edited.append(rel)
        return edited

    def write_ref(self, ref: str, sha: str | None) -> None:
        """Create, move (``sha``) or delete (None) a ref, in-process."""
        if sha is None:
            SymbolicReference.delete(self.repo, ref)
        else:
            SymbolicReference(self.repo, ref).set_reference(git.Commit(self.repo, bytes.fromhex(sha)))

    def detach(self, sha: str) -> None:
        """Point HEAD at ``sha`` directly (index and worktree untouched)."""
        self.repo.head.set_reference(git.Commit(self.repo, bytes.fromhex(sha)))

    def attach(self, ref: str) -> None:
        """Make HEAD the symbolic ref ``ref`` (which points at HEAD's commit already)."""
        self.repo.head.set_reference(git.Head(self.repo, ref))

    def am_in_progress(self) -> bool:
        return (Path(self.repo.git_dir) / "rebase-apply").exists()



def _namespace(repo: git.Repo) -> str:
    git_dir, common = Path(repo.git_dir).resolve(), Path(repo.common_dir).resolve()
    return layout.namespace_for(None if git_dir == common else git_dir.name)


def _open(checkout: ProjectCheckout) -> _Repo:
    try:
        repo = git.Repo(checkout.directory)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise WorkspaceError(
            f"{checkout.path}: {checkout.directory} is not a git checkout",
            hint="run `orch sync` first",
        ) from None
    return _Repo(checkout, repo, _namespace(repo))


def _timestamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")


# --------------------------------------------------------------------------- reports


@dataclass(frozen=True)
class AppliedCommit:
    patchset: str
    patch: str
    commit: str


@dataclass
class ProjectApply:
    project: str
    branch: str  # the branch HEAD is on afterwards
    base: str  # HEAD before
    commits: list[AppliedCommit] = field(default_factory=list)
    already_applied: list[str] = field(default_factory=list)  # patchset names
    merged: list[str] = field(default_factory=list)  # "patch: file" merged three-way
    backups: list[str] = field(default_factory=list)


@dataclass
class ApplyReport:
    patchsets: list[str]
    projects: list[ProjectApply] = field(default_factory=list)
    check: CheckReport = field(default_factory=CheckReport)
    recovered: list[oplog.Interrupted] = field(default_factory=list)

    @property
    def noop(self) -> bool:
        return all(not p.commits for p in self.projects)


@dataclass(frozen=True)
class ProjectRevert:
    project: str
    was: str  # branch or SHA HEAD was on
    now: str  # the pinned SHA
    changed: bool
    backup: str | None = None
    warning: str | None = None  # e.g. the user's post-checkout hook failed (the checkout did not)


@dataclass
class RevertReport:
    projects: list[ProjectRevert] = field(default_factory=list)
    recovered: list[oplog.Interrupted] = field(default_factory=list)


@dataclass(frozen=True)
class RefreshedPatch:
    project: str
    file: str
    sha256: str
    status: str  # unchanged | updated | added | removed


@dataclass
class RefreshReport:
    patchset: str
    patches: list[RefreshedPatch] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(p.status != "unchanged" for p in self.patches)


# --------------------------------------------------------------------------- check


def check(tree: SourceTree, patchsets: Sequence[Patchset]) -> CheckReport:
    """Dry run, per patch and hunk: patchsets orch already applied in a project (their branch
    is in HEAD) report ``already-applied``; the rest are simulated against the checkout."""
    parsed = parse_series(patchsets)
    for project in _projects_in_order(patchsets):
        tree.project(project)
    _check_paths(tree, parsed)
    plans = _plan(tree, patchsets)
    simulated = check_parsed(tree, _pending_view(patchsets, plans), parsed)
    by_key = {(r.patchset, r.project, r.patch): r for r in simulated.patches}
    results: list[PatchResult] = []
    for ps in patchsets:
        for project, refs in ps.projects.items():
            for ref in refs:
                key = (ps.name, project, ref.file)
                results.append(by_key.get(key) or _applied_result(ps, ref, parsed[key]))
    return CheckReport(results)


def _applied_result(patchset: Patchset, ref: PatchRef, patch: ParsedPatch) -> PatchResult:
    hunks = [
        HunkResult(change.path, hunk.header, Status.ALREADY_APPLIED,
                   f"on branch {layout.PATCHSET_NAMESPACE}/{patchset.name}")
        for change in patch.changes
        for hunk in change.hunks
    ]
    return PatchResult(patchset.name, ref.project, ref.file, patch.subject, Status.ALREADY_APPLIED, hunks)


# --------------------------------------------------------------------------- apply


@dataclass
class _Snapshot:
    head: str
    head_ref: str | None
    refs: dict[str, str]


@dataclass
class _Plan:
    repo: _Repo
    snapshot: _Snapshot
    pending: list[tuple[Patchset, list[PatchRef]]]
    already: list[str]
    journal: oplog.Journal | None = None


def _projects_in_order(patchsets: Sequence[Patchset]) -> list[str]:
    order: list[str] = []
    for ps in patchsets:
        order += [p for p in ps.projects if p not in order]
    return order


def _applied_in(repo: _Repo, snapshot: _Snapshot, names: Sequence[str]) -> set[str]:
    """Which of ``names`` have their branch in HEAD's history above the pinned commit."""
    if snapshot.head == repo.checkout.pinned:
        return set()
    candidates = {n: snapshot.refs.get(repo.branch(n)) for n in names}
    if not any(candidates.values()):
        return set()
    history = set(_above_pin(repo, snapshot.head))
    return {n for n, sha in candidates.items() if sha and sha in history}


def _above_pin(repo: _Repo, head: str) -> list[str]:
    """Commits in HEAD's history that the pinned commit lacks, newest first (at most 10000)."""
    return repo.run("rev-list", "--max-count=10000", head, "--not", repo.checkout.pinned).split()


def _check_paths(tree: SourceTree, parsed: dict[tuple[str, str, str], ParsedPatch]) -> None:
    for (name, project, file), patch in parsed.items():
        checkout = tree.project(project).directory
        for change in patch.changes:
            for rel in (change.source, change.target):
                if rel is not None:
                    safe_path(checkout, rel, f"{name}: {project}/{file}")


def _failure_message(result: PatchResult) -> str:
    hunk = result.first_failure()
    where = f"{result.patchset}: {result.project}/{result.patch}"
    if hunk is None:
        return f"{where}: does not apply"
    return f"{where}: {hunk.file}: hunk {hunk.header}: {hunk.reason}"


def _touched_paths(plan_pending: Sequence[tuple[Patchset, list[PatchRef]]],
                   parsed: dict[tuple[str, str, str], ParsedPatch]) -> set[str]:
    paths: set[str] = set()
    for ps, refs in plan_pending:
        for ref in refs:
            for change in parsed[(ps.name, ref.project, ref.file)].changes:
                paths.update(p for p in (change.source, change.target) if p is not None)
    return paths


def _plan(tree: SourceTree, patchsets: Sequence[Patchset],
          parsed: dict[tuple[str, str, str], ParsedPatch] | None = None) -> list[_Plan]:
    """Per project: its state now, which patchsets are on it already, which are to apply.
    With ``parsed``, refuse (listing them) files the pending patches touch that have
    uncommitted edits."""
    plans: list[_Plan] = []
    dirty: list[str] = []
    staged: list[str] = []
    for project in _projects_in_order(patchsets):
        repo = _open(tree.project(project))
        if parsed is not None:
            _refuse_git_am_in_progress(repo)
        head, head_ref = repo.head()
        snapshot = _Snapshot(head, head_ref, repo.orch_refs())
        touching = [ps for ps in patchsets if project in ps.projects]
        applied = _applied_in(repo, snapshot, [ps.name for ps in touching])
        pending = [(ps, ps.projects[project]) for ps in touching if ps.name not in applied]
        if pending and parsed is not None:
            files = repo.edited_files(_touched_paths(pending, parsed))
            if files:
                dirty.append(f"{project}: {', '.join(files)}")
            index = repo.staged_files()
            if index:
                staged.append(f"{project}: {', '.join(index)}")
        plans.append(_Plan(repo, snapshot, pending, [ps.name for ps in touching if ps.name in applied]))
    if dirty:
        raise WorkspaceError(
            "uncommitted edits in files the patchset changes: " + "; ".join(dirty),
            hint="commit or stash them first; nothing was applied",
        )
    if staged:  # git am refuses a dirty index, and undoing it would unstage the user's work
        raise WorkspaceError(
            "staged changes (git am needs a clean index): " + "; ".join(staged),
            hint="commit them or `git restore --staged` them first; nothing was applied",
        )
    return plans


def _pending_view(patchsets: Sequence[Patchset], plans: Sequence[_Plan]) -> list[Patchset]:
    """The patchsets reduced to the (project, patchset) pairs not applied yet."""
    pending = {(ps.name, p.repo.path) for p in plans for ps, _ in p.pending}
    return [
        replace(ps, projects={k: v for k, v in ps.projects.items() if (ps.name, k) in pending})
        for ps in patchsets
    ]


def _in_parallel(plans: Sequence[_P], work: Callable[[_P], _R]) -> list[_R]:
    """Run ``work`` for every plan concurrently (one git process chain per project); raise the
    first failure in plan order once all have finished."""
    if len(plans) <= 1:
        return [work(p) for p in plans]
    with ThreadPoolExecutor(max_workers=min(len(plans), 8)) as pool:
        futures = [pool.submit(work, p) for p in plans]
        wait(futures)
    for future in futures:
        error = future.exception()
        if error is not None:
            raise error
    return [f.result() for f in futures]


def apply(tree: SourceTree, patchsets: Sequence[Patchset], *, three_way: bool = False) -> ApplyReport:
    """Apply ``patchsets`` (requirements first, as from :func:`resolve`) to the tree.

    Each project's series becomes commits (``git am``); each patchset's branch points at its
    own top and HEAD ends on the last one. Atomic: if anything fails, every project is put
    back exactly as it was (HEAD, branch, refs, index, worktree) and the error names the
    patch and hunk. Patchsets already applied in a project are skipped; all of them -> no-op.
    """
    parsed = parse_series(patchsets)
    for project in _projects_in_order(patchsets):
        tree.project(project)
    _check_paths(tree, parsed)
    recovered = recover_interrupted(tree)
    plans = _plan(tree, patchsets, parsed)
    report = ApplyReport([ps.name for ps in patchsets], recovered=recovered)
    report.check = check_parsed(tree, _pending_view(patchsets, plans), parsed)
    problems = [r for r in report.check.patches if r.status is not Status.APPLIES]
    if problems and not three_way:
        first = problems[0]
        if first.status is Status.ALREADY_APPLIED:
            raise WorkspaceError(
                f"{first.patchset}: {first.project}/{first.patch}: already in the tree, but not on "
                f"orch's branch for '{first.patchset}'",
                hint="run `orch patchset revert` first; nothing was applied",
            )
        raise InputError(_failure_message(first), hint="nothing was applied; try --3way if context drifted")
    started = [p for p in plans if p.pending]
    operation = oplog.new_operation_id()
    try:
        for plan in started:
            plan.journal = _begin_journal(plan.repo, operation, "apply", [p.repo.path for p in started],
                                          plan.snapshot, _touched_paths(plan.pending, parsed))
        report.projects = _in_parallel(plans, lambda plan: _apply_project(plan, three_way))
    except BaseException:
        _rollback([p.journal for p in plans if p.journal is not None])
        raise
    oplog.commit_all([p.journal for p in started if p.journal is not None])
    return report


def recover_interrupted(tree: SourceTree) -> list[oplog.Interrupted]:
    """Finish or undo any patchset operation a killed orch left in this tree."""
    return oplog.recover({path: c.directory for path, c in tree.projects.items()})


def _begin_journal(repo: _Repo, operation: str, kind: str, projects: list[str], snapshot: _Snapshot,
                   touched: Iterable[str]) -> oplog.Journal:
    return oplog.Journal.begin(
        git_dir=Path(repo.repo.git_dir), checkout=Path(repo.checkout.directory), op=operation, kind=kind,
        projects=projects, project=repo.path, head=snapshot.head, head_ref=snapshot.head_ref,
        touched=touched)


def _fallback_identity(repo: _Repo) -> list[str]:
    """``-c`` options so `git am` can commit for a user with no git identity configured
    (the patch's own author is kept; only the committer falls back to orch)."""
    options = gitops.identity_config(Path(repo.repo.git_dir))
    return [arg for option in options for arg in ("-c", option)]


def _am(plan: _Plan, refs: list[tuple[Patchset, PatchRef]], three_way: bool) -> str:
    args = ["am", "--3way" if three_way else "--no-3way"]
    if not three_way:
        args.append("--quiet")
    try:
        return plan.repo.run_both(*_fallback_identity(plan.repo), *args, *[str(r.path) for _, r in refs])
    except GitCommandError as error:
        output = f"{error.stdout}\n{error.stderr}"
        number = re.search(r"Patch failed at (\d+)", output)
        index = int(number.group(1)) - 1 if number else 0
        patchset, ref = refs[min(index, len(refs) - 1)]
        detail = re.search(r"error: patch failed: (\S+)", output)
        no_base = re.search(r"sha1 information is lacking or useless \((.+?)\)", output)
        if three_way and no_base:
            raise InputError(
                f"{patchset.name}: {ref.project}/{ref.file}: the three-way merge needs the blob the "
                f"patch was made against for {no_base.group(1)}, and this repository does not have it",
                hint="the patch's `index` lines name sources other than these; rebase it by hand, "
                     "then `orch patchset refresh`. Every project was put back as it was",
            ) from None
        why = f"patch failed at {detail.group(1)}" if detail else gitops.stderr_of(error)
        raise InputError(
            f"{patchset.name}: {ref.project}/{ref.file}: git am failed: {why}",
            hint="every project was put back as it was" + ("" if three_way else "; try --3way"),
        ) from None


def _merged(output: str) -> list[str]:
    merged: list[str] = []
    subject = ""
    for line in output.splitlines():
        if line.startswith("Applying: "):
            subject = line.removeprefix("Applying: ")
        elif line.startswith("Auto-merging "):
            merged.append(f"{subject}: {line.removeprefix('Auto-merging ')}")
    return merged


def _apply_project(plan: _Plan, three_way: bool) -> ProjectApply:
    """One ``git am`` of the project's pending series on a detached HEAD, then the branches
    (each patchset's at its own top) and HEAD on the last one, written without more processes."""
    repo, snap = plan.repo, plan.snapshot
    if not plan.pending:
        top = repo.branch(plan.already[-1]) if plan.already else (snap.head_ref or snap.head)
        branch = top.removeprefix("refs/heads/")
        return ProjectApply(repo.path, branch, snap.head, already_applied=plan.already)
    result = ProjectApply(repo.path, "", snap.head, already_applied=list(plan.already))
    if snap.head_ref is not None:
        repo.detach(snap.head)
    series = [(ps, ref) for ps, refs in plan.pending for ref in refs]
    output = _am(plan, series, three_way)
    result.merged = _merged(output) if three_way else []
    head = repo.head()[0]
    shas = [head] if len(series) == 1 else repo.run(
        "rev-list", f"--max-count={len(series)}", "--reverse", "HEAD").split()
    result.commits = [
        AppliedCommit(ps.name, ref.file, sha) for (ps, ref), sha in zip(series, shas, strict=True)
    ]
    tops = {c.patchset: c.commit for c in result.commits}  # the last commit of each patchset
    changes: list[oplog.RefChange] = []
    for name, top in tops.items():
        branch = repo.branch(name)
        old = repo.ref_sha(branch)
        if old is not None and old != top:
            backup = _free_ref(repo, f"{layout.patchset_backup_prefix(repo.namespace)}/{name}-{_timestamp()}")
            changes.append(oplog.RefChange(backup, None, old))
            result.backups.append(backup.removeprefix("refs/heads/"))
        changes.append(oplog.RefChange(branch, old, top))
    if plan.journal is not None:
        plan.journal.will_write(changes)
    for change in changes:
        repo.write_ref(change.ref, change.new)
    last_branch = repo.branch(plan.pending[-1][0].name)
    repo.attach(last_branch)
    result.branch = last_branch.removeprefix("refs/heads/")
    return result


def _free_ref(repo: _Repo, ref: str) -> str:
    """``ref``, or ``ref-2``, ``ref-3``... when a ref of that name exists already (never overwrite)."""
    candidate, n = ref, 1
    while repo.ref_sha(candidate) is not None:
        n += 1
        candidate = f"{ref}-{n}"
    return candidate


def _rollback(journals: Sequence[oplog.Journal]) -> None:
    """Put every project the operation started on back as its journal says: HEAD, index, the
    paths the operation touched, and only the refs it wrote (other edits, untracked files and
    every other ref, in any namespace, stay as they are)."""
    errors: list[str] = []
    for journal in reversed(journals):
        try:
            oplog.undo(journal, stale=False)
        except OrchError as error:
            errors.append(f"{journal.entry.project}: {error.message}")
    if errors:
        raise RollbackError("could not restore " + "; ".join(errors),
                            hint="the next `orch patchset apply` or `revert` retries the undo",
                            failures=errors)


@dataclass
class RollbackError(WorkspaceError):
    """An apply failed and putting one or more projects back failed too (``failures``: one
    ``project: reason`` each); the error that made the apply fail is the ``__context__``."""

    failures: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- revert


def revert(tree: SourceTree, patchsets: Sequence[Patchset] | None = None) -> RevertReport:
    """Put the projects the patchsets touch (all projects for None) back on their pinned SHAs.

    Refuses, listing the files, where a project has uncommitted edits. Commits are never lost:
    orch's branches keep theirs, and a detached HEAD no branch holds gets a backup branch.
    All or nothing: if one project cannot be moved, every project is put back as it was.
    """
    paths = list(tree.projects) if patchsets is None else _projects_in_order(patchsets)
    recovered = recover_interrupted(tree)
    repos = [_open(tree.project(p)) for p in paths]
    heads = {repo.path: repo.head() for repo in repos}
    moving = [r for r in repos if heads[r.path] != (r.checkout.pinned, None)]
    for repo in moving:
        _refuse_git_am_in_progress(repo)
    edits = _in_parallel(moving, lambda repo: repo.dirty_files())
    dirty = [f"{repo.path}: {', '.join(files)}" for repo, files in zip(moving, edits, strict=True) if files]
    if dirty:
        raise WorkspaceError(
            "uncommitted edits, not reverting: " + "; ".join(dirty),
            hint="commit them (then `orch patchset refresh`) or stash them; nothing was changed",
        )
    operation = oplog.new_operation_id()
    journals: dict[str, oplog.Journal] = {}
    try:
        for repo in moving:
            head, head_ref = heads[repo.path]
            touched = _paths_between(repo, head, repo.checkout.pinned)
            journals[repo.path] = _begin_journal(repo, operation, "revert", [r.path for r in moving],
                                                 _Snapshot(head, head_ref, {}), touched)
        reverted = _in_parallel(moving, lambda repo: _revert_project(repo, *heads[repo.path],
                                                                     journals[repo.path]))
    except BaseException:
        _rollback(list(journals.values()))
        raise
    oplog.commit_all(list(journals.values()))
    moved = {r.project: r for r in reverted}
    report = RevertReport(recovered=recovered)
    for repo in repos:
        pinned = repo.checkout.pinned
        report.projects.append(moved.get(repo.path) or ProjectRevert(repo.path, pinned, pinned, False))
    return report


def _paths_between(repo: _Repo, one: str, other: str) -> list[str]:
    """Paths whose content differs between two commits (what a checkout from one to the other
    may write)."""
    out = repo.run("diff", "--name-only", "--no-renames", "-z", one, other)
    return [p for p in out.split("\0") if p]


def _refuse_git_am_in_progress(repo: _Repo) -> None:
    if repo.am_in_progress():
        raise WorkspaceError(
            f"{repo.path}: a `git am` is in progress there (not orch's: orch journals its own)",
            hint="finish it (`git am --continue`) or drop it (`git am --abort`) first; nothing was changed",
        )


def _revert_project(repo: _Repo, head: str, head_ref: str | None, journal: oplog.Journal) -> ProjectRevert:
    backup = None
    if head_ref is None and not repo.run("for-each-ref", "--count=1", "--contains", head, "refs/heads"):
        backup = _free_ref(repo, f"{layout.patchset_backup_prefix(repo.namespace)}/detached-{_timestamp()}")
        journal.will_write([oplog.RefChange(backup, None, head)])
        repo.write_ref(backup, head)
    warning = None
    try:
        repo.run("checkout", "--quiet", "--detach", repo.checkout.pinned)
    except GitCommandError as error:
        if repo.head() != (repo.checkout.pinned, None):
            raise WorkspaceError(f"{repo.path}: cannot check out the pin: {gitops.stderr_of(error)}",
                                 hint="nothing was changed in any project") from None
        # git checked out the pin; only the user's post-checkout hook failed
        warning = f"checked out the pin, but the post-checkout hook failed: {gitops.stderr_of(error)}"
    was = head_ref.removeprefix("refs/heads/") if head_ref else head
    short = backup.removeprefix("refs/heads/") if backup else None
    return ProjectRevert(repo.path, was, repo.checkout.pinned, True, short, warning)


# --------------------------------------------------------------------------- status


def applied_patchsets(tree: SourceTree) -> dict[str, list[str]]:
    """Project path -> the patchsets whose branches are in its HEAD above the pin, bottom first."""
    result: dict[str, list[str]] = {}
    for path, checkout in tree.projects.items():
        try:
            repo = _open(checkout)
            head, _ = repo.head()
        except (OrchError, ValueError):
            continue
        if head == checkout.pinned:
            continue
        refs = repo.orch_refs()
        if not refs:
            continue
        position = {sha: -i for i, sha in enumerate(_above_pin(repo, head))}
        prefix = f"refs/heads/{repo.namespace}/"
        names = sorted(
            (position[sha], ref.removeprefix(prefix)) for ref, sha in refs.items() if sha in position
        )
        if names:
            result[path] = [name for _, name in names]
    return result


# --------------------------------------------------------------------------- refresh


def refresh(tree: SourceTree, patchset: Patchset) -> RefreshReport:
    """Regenerate ``patchset``'s patch files and sha256s from the commits on its branches.

    The commits of a project are those on ``orch/<name>`` above the pinned SHA and above any
    other orch branch it contains (the required patchsets, which must all still be below it:
    commits of theirs rewritten on this branch stop the refresh). File names stay as they were,
    by position; extra commits get new ``git format-patch`` names, missing ones are removed.
    """
    report = RefreshReport(patchset.name)
    generated: dict[str, list[Path]] = {}
    with tempfile.TemporaryDirectory(prefix="orch-refresh-") as scratch:
        for project in patchset.projects:
            repo = _open(tree.project(project))
            branch = repo.branch(patchset.name)
            if repo.ref_sha(branch) is None:
                raise WorkspaceError(
                    f"{patchset.name}: not applied in {project} "
                    f"(no branch {branch.removeprefix('refs/heads/')})",
                    hint=f"run `orch patchset apply {patchset.name}` and edit the commits there",
                )
            _require_below(repo, patchset, project, branch)
            below = [
                r for r in repo.run("for-each-ref", "--format=%(refname)", "--merged", branch,
                                    f"refs/heads/{repo.namespace}/").split() if r != branch
            ]
            out = Path(scratch) / project
            repo.run("format-patch", "--quiet", "--zero-commit", "--no-signature", "-o", str(out),
                     branch, "--not", repo.checkout.pinned, *below)
            generated[project] = sorted(out.glob("*.patch"))
            if not generated[project]:
                raise WorkspaceError(f"{patchset.name}: {branch} in {project} has no commits above the pin")
        new_projects: dict[str, list[PatchRef]] = {}
        for project, files in generated.items():
            new_projects[project] = _replace_series(patchset, project, files, report)
    patchset.projects = new_projects
    write_config(patchset)
    return report


def _require_below(repo: _Repo, patchset: Patchset, project: str, branch: str) -> None:
    """Each required patchset's branch (as it is now) must be below ``branch``: otherwise its
    commits were rewritten on ``branch`` and which commits are whose cannot be told."""
    for required in patchset.requires:
        below = repo.branch(required)
        if repo.ref_sha(below) is None:
            continue
        try:
            repo.run("merge-base", "--is-ancestor", below, branch)
        except GitCommandError:
            short = below.removeprefix("refs/heads/")
            raise WorkspaceError(
                f"{patchset.name}: in {project}, {branch.removeprefix('refs/heads/')} no longer contains "
                f"{short}: the commits of required patchset '{required}' were rewritten there",
                hint=f"make the change on {short}, run `orch patchset refresh {required}` first, "
                     f"then re-apply {patchset.name} on top",
            ) from None


def _replace_series(
    patchset: Patchset, project: str, files: list[Path], report: RefreshReport
) -> list[PatchRef]:
    old = patchset.projects[project]
    target_dir = patchset.directory / project
    target_dir.mkdir(parents=True, exist_ok=True)
    refs: list[PatchRef] = []
    taken = {r.file for r in old}
    for i, source in enumerate(files):
        name = old[i].file if i < len(old) else source.name
        if i >= len(old) and name in taken:
            name = f"{Path(name).stem}-{i + 1}.patch"
        target = target_dir / name
        before = target.read_bytes() if target.is_file() else None
        data = source.read_bytes()
        if before is not None and before != data and same_patch(before.decode(errors="replace"),
                                                                 data.decode(errors="replace")):
            data = before  # only the mail's formatting differs: keep the file as it is
        if before != data:
            target.write_bytes(data)
        digest = sha256_file(target)
        status = "added" if i >= len(old) else ("unchanged" if before == data else "updated")
        report.patches.append(RefreshedPatch(project, name, digest, status))
        refs.append(PatchRef(project, name, digest, target))
    for stale in old[len(files):]:
        stale.path.unlink(missing_ok=True)
        report.patches.append(RefreshedPatch(project, stale.file, stale.sha256, "removed"))
    return refs


# --------------------------------------------------------------------------- import


def _read_utf8(source: Path) -> str:
    try:
        return source.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        byte = error.object[error.start]
        raise InputError(f"{source}: not UTF-8: byte offset {error.start} (0x{byte:02x})",
                         hint="orch keeps imported diffs as UTF-8 mail; re-encode it (iconv) first") from None
    except OSError as error:
        raise InputError(f"{source}: cannot read: {error.strerror}") from None


def _git_identity() -> str:
    try:
        ident = git.Git().execute(["git", "var", "GIT_AUTHOR_IDENT"], strip_newline_in_stdout=True)
        return re.sub(r"\s+\d+ [+-]\d{4}$", "", str(ident))
    except GitCommandError:
        return "orch user <orch@localhost>"


def _series_from_dir(source: Path, project: str | None) -> dict[str, list[Path]]:
    if project is not None:
        files = sorted(source.glob("*.patch"))
        if not files:
            raise InputError(f"{source}: no *.patch files")
        return {project.strip("/"): files}
    loose = sorted(source.glob("*.patch"))
    if loose:
        raise InputError(
            f"{source}: patch files directly in the directory; which project do they belong to?",
            hint="put them in DIR/<project path>/ or pass --project PATH",
        )
    series: dict[str, list[Path]] = {}
    for file in sorted(source.rglob("*.patch")):
        series.setdefault(file.parent.relative_to(source).as_posix(), []).append(file)
    if not series:
        raise InputError(f"{source}: no *.patch files under it (expected DIR/<project path>/*.patch)")
    return series


def import_patchset(
    name: str,
    source: Path,
    target_root: Path,
    *,
    project: str | None = None,
    description: str | None = None,
    subject: str | None = None,
    author: str | None = None,
    force: bool = False,
) -> Patchset:
    """Create ``target_root/name`` from ``repo diff`` output or a directory of format-patch files."""
    check_name(name)
    directory = target_root / name
    if directory.exists() and not force:
        raise InputError(f"{directory} already exists", hint="pick another name or pass --force")
    staged: dict[str, list[tuple[str, bytes]]] = {}
    if source.is_dir():
        for proj, files in _series_from_dir(source, project).items():
            for file in files:
                parse_patch_file(file)
            staged[proj] = [(f.name, f.read_bytes()) for f in files]
    elif source.is_file():
        text = _read_utf8(source)
        who = author or _git_identity()
        if project is not None:
            sections = {project.strip("/"): text}
            parse_diff(text, source.name)
        else:
            sections = split_repo_diff(text, source.name)
        for proj, diff in sections.items():
            component = proj.rstrip("/").rsplit("/", 1)[-1]
            subj = subject or f"{component}: {description or name}"
            body = f"Imported by orch from {source.name}."
            mail = format_mail(diff, subject=subj, body=body, author=who)
            staged[proj] = [(patch_file_name(1, subj), mail.encode())]
    else:
        raise InputError(f"{source}: no such file or directory")
    if directory.exists():
        shutil.rmtree(directory)
    text_description = description or f"imported from {source.name}"
    patchset = Patchset(name=name, directory=directory, description=text_description)
    for proj, series in staged.items():
        (directory / proj).mkdir(parents=True, exist_ok=True)
        refs: list[PatchRef] = []
        for file_name, data in series:
            path = directory / proj / file_name
            path.write_bytes(data)
            refs.append(PatchRef(proj, file_name, sha256_file(path), path))
        patchset.projects[proj] = refs
    touched = [change.path for refs in patchset.projects.values() for ref in refs
               for change in parse_patch_file(ref.path).changes]
    derived = derive_build(name, list(patchset.requires), touched)
    patchset.build, patchset.variants = derived.build, derived.variants
    write_config(patchset)
    return patchset


def require_applicable(tree: SourceTree, chains: Mapping[str, Sequence[Patchset]]) -> None:
    """Dry-run each variant's patchsets (``variant -> patchsets in apply order``) before
    anything builds; the first hunk that does not apply is an :class:`InputError` naming the
    variant, patchset, patch file, file and hunk."""
    for name, chain in chains.items():
        if not chain:
            continue
        result = check(tree, chain)
        if not result.ok:
            failure = result.failures()[0]
            hunk = failure.first_failure()
            where = f"{failure.patchset}: {failure.project}/{failure.patch}"
            detail = f"{hunk.file}: hunk {hunk.header}: {hunk.reason}" if hunk else "does not apply"
            raise InputError(f"variant '{name}': {where}: {detail}",
                             hint="nothing was built; refresh the patch (`orch patchset refresh`)")
