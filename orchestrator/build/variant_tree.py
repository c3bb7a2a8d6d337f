"""Per-variant source trees: cheap ``git worktree`` checkouts of the synced workspace.

A variant ``v`` of a workspace lives in ``.orch/variants/v/``: ``src/`` mirrors the workspace
(one detached worktree per project at ``src/<project path>``, plus the manifest's linkfiles
and copyfiles, e.g. ``init-build.sh``), ``build/`` is its build directory. The user's
checkouts are only read (``git worktree add`` writes into the project's git dir, never its
files). A tree is kept after a successful build, so the next build of the same variant is
incremental; :func:`remove_variant_tree` deletes it and prunes the worktrees on failure.

Work a user leaves in a variant's worktree (edits, untracked files, commits beyond what orch
put there) is never thrown away: before a worktree is reset or removed it is committed under
``refs/orch/backup/variants/<variant>/<project path>/<stamp>`` in the project's repository.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import git

from orchestrator import layout
from orchestrator.errors import InfraError, WorkspaceError
from orchestrator.workspace import gitops
from orchestrator.workspace.manifest import FileLink
from orchestrator.workspace.state import recorded_links
from orchestrator.workspace.tree import ProjectCheckout, SourceTree

_READY = "tree.key"
_HEADS = "heads.json"  # each worktree's HEAD as orch left it (patches applied)
_PARAMS = "params.json"  # the generated parameter commits on top: their key and the patched HEADs
Warn = Callable[[str], None]
SETUP_WORKERS = 4
"""Projects checked out at once when a tree is made or removed: git's checkout is part CPU
(inflating objects), part file system, so a few at a time beat one after another even on two
cores (a cold 19-project seL4 tree was about 10 s one by one)."""


class RepoLocks:
    """One lock per project repository, shared by every variant built at once: two ``git
    worktree add`` in the same repository race for its ``worktrees/`` entry, while different
    repositories do not touch each other."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def of(self, path: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(path, threading.Lock())


def _nesting_waves(paths: Sequence[str]) -> list[list[str]]:
    """``paths`` in waves: a project comes one wave after the deepest project it is nested in
    (its directory exists only once the outer one is checked out)."""
    def depth(path: str) -> int:
        return sum(1 for other in paths if other != path and path.startswith(other.rstrip("/") + "/"))
    waves: dict[int, list[str]] = {}
    for path in paths:
        waves.setdefault(depth(path), []).append(path)
    return [waves[k] for k in sorted(waves)]


def _for_each_project(paths: Sequence[str], work: Callable[[str], None]) -> None:
    """``work(path)`` for every project, a few at once, outer projects before nested ones.
    Every started call finishes before the first error is raised."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=SETUP_WORKERS,
                                               thread_name_prefix="tree") as pool:
        for wave in _nesting_waves(paths):
            futures = [pool.submit(work, path) for path in wave]
            concurrent.futures.wait(futures)
            for future in futures:
                if (error := future.exception()) is not None:
                    raise error


@dataclass(frozen=True)
class VariantTree:
    """A variant's directories and the :class:`SourceTree` of its worktrees."""

    name: str
    base: Path  # .orch/variants/<name>
    tree: SourceTree  # rooted at base/src

    @property
    def src(self) -> Path:
        return self.base / "src"

    @property
    def build(self) -> Path:
        return self.base / "build"


def variant_base(root: Path, name: str) -> Path:
    return layout.variant_dir(root, name)


def _repo(directory: Path) -> git.Repo:
    return git.Repo(directory)


def _git(directory: Path, *args: str) -> str:
    """``git ARGS`` in ``directory``; an :class:`InfraError` naming the command when it fails."""
    try:
        return gitops.run(args, cwd=directory)
    except gitops.GitError as exc:
        raise InfraError(f"git {' '.join(args[:2])} in {directory} failed: "
                         f"{gitops.stderr_of(exc)[:300]}") from None


def head_commit(checkout: Path) -> str:
    """The commit checked out in ``checkout`` (what a variant of it builds)."""
    return _git(checkout, "rev-parse", "HEAD")


def _common_dir(directory: Path) -> Path:
    return Path(_repo(directory).common_dir).resolve()


def workspace_links(root: Path, tree: SourceTree) -> list[FileLink]:
    """The workspace's linkfiles/copyfiles: as recorded by sync, else found as symlinks in
    ``root`` that point into a project (copyfiles cannot be found that way)."""
    recorded = recorded_links(root)
    if recorded is not None:
        return [link for link in recorded if link.project in tree.projects]
    links: list[FileLink] = []
    projects = sorted(tree.projects.values(), key=lambda c: len(str(c.directory)), reverse=True)
    for entry in sorted(root.iterdir()):
        if not entry.is_symlink():
            continue
        target = entry.resolve()
        for checkout in projects:
            directory = checkout.directory.resolve()
            if target.is_relative_to(directory):
                links.append(FileLink(str(target.relative_to(directory)), entry.name, project=checkout.path))
                break
    return links


def _ready_key(base: Path) -> str | None:
    try:
        return (base / _READY).read_text().strip()
    except OSError:
        return None


def _worktree_matches(directory: Path, source: ProjectCheckout, commit: str | None) -> bool:
    """``directory`` is a worktree of ``source``'s repository (with ``commit`` checked out,
    unless ``commit`` is None)."""
    if not (directory / ".git").is_file():
        return False
    try:
        return _common_dir(directory) == _common_dir(source.directory) and (
            commit is None or head_commit(directory) == commit)
    except (InfraError, gitops.GitError, git.GitError):
        return False


def _add_worktree(source: ProjectCheckout, directory: Path, commit: str) -> None:
    if directory.exists() or directory.is_symlink():
        _remove_worktree(source, directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    _git(source.directory, "worktree", "add", "--detach", "--force", "-q", str(directory), commit)


def _drop_patch_branches(directory: Path) -> None:
    """Delete the branches patchset.apply made for this worktree (``orch-worktree/<name>/*``
    and their backups) from the shared repository, so none pile up in the user's repo."""
    repo = _repo(directory)
    name = Path(repo.git_dir).name
    namespace = layout.namespace_for(name)
    prefixes = [layout.patchset_branch(namespace, ""), layout.patchset_backup_prefix(namespace) + "/"]
    refs = _git(directory, "for-each-ref", "--format=%(refname)", *prefixes).split()
    if refs:
        gitops.run(["update-ref", "--stdin"], cwd=directory, stdin="".join(f"delete {r}\n" for r in refs))


def _reset_worktree(directory: Path, commit: str) -> None:
    """Back to ``commit`` exactly (undoing earlier patches); unchanged files keep their mtime."""
    _git(directory, "checkout", "-q", "--detach", "-f", commit)
    _git(directory, "clean", "-q", "-fdx")
    _drop_patch_branches(directory)


def _orch_heads(base: Path) -> dict[str, str]:
    try:
        heads = json.loads((base / _HEADS).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in heads.items()} if isinstance(heads, dict) else {}


def _save_user_work(base: Path, path: str, pinned: str, warn: Warn | None) -> None:
    """Back up what the user did in the worktree ``base/src/path`` before orch resets or removes
    it: uncommitted changes (untracked files too) and commits that neither the pinned commit nor
    the HEAD orch left there (its patches, or without a record, its patch branches) contain."""
    directory = base / "src" / path
    if not (directory / ".git").is_file():
        return
    try:
        git_dir = Path(_git(directory, "rev-parse", "--absolute-git-dir"))
        head = gitops.read_head(git_dir)
        modified, untracked = gitops.worktree_changes(git_dir, directory)
        orch_head = _orch_heads(base).get(path)
        known = [pinned, orch_head] if orch_head else [pinned, *_patch_branches(directory)]
        local = gitops.local_commit_count(git_dir, head, known) if head and head != pinned else 0
        if not (modified or untracked or local):
            return
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        ref = layout.variant_backup_ref(base.name, path, stamp)
        gitops.backup_work(git_dir, directory, head=head, dirty=bool(modified or untracked), ref=ref,
                           message=f"orch variant {base.name} backup {stamp}", stash=False)
    except (InfraError, gitops.GitError, git.GitError) as exc:
        raise WorkspaceError(f"{directory}: could not back up your work there before resetting it: "
                             f"{exc}", hint="save it yourself, then build again") from None
    if warn is not None:
        what = [f"{n} {word}{'s' * (n != 1)}" for n, word in
                ((modified, "uncommitted change"), (untracked, "untracked file"), (local, "commit"))
                if n]
        warn(f"variant {base.name}: your {', '.join(what)} in {directory} saved as {ref} "
             f"(see: git -C {path} show {ref})")


def _patch_branches(directory: Path) -> list[str]:
    name = Path(_repo(directory).git_dir).name
    prefix = layout.patchset_branch(layout.namespace_for(name), "")
    return _git(directory, "for-each-ref", "--format=%(refname)", prefix).split()


def _remove_worktree(source: ProjectCheckout, directory: Path) -> None:
    if (directory / ".git").is_file():
        with contextlib.suppress(InfraError, gitops.GitError, git.GitError):
            _drop_patch_branches(directory)
    with contextlib.suppress(InfraError, gitops.GitError, git.GitError):
        _git(source.directory, "worktree", "remove", "--force", "--force", str(directory))
    if directory.is_symlink() or directory.is_file():
        directory.unlink()
    elif directory.exists():
        shutil.rmtree(directory)
    with contextlib.suppress(InfraError, gitops.GitError, git.GitError):
        _git(source.directory, "worktree", "prune")


def _place_links(src: Path, tree: SourceTree, links: Sequence[FileLink]) -> None:
    for link in links:
        dest = src / link.dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_symlink() or dest.is_file():
            dest.unlink()
        target = tree.project(link.project).directory / link.src
        if link.copy:
            shutil.copy2(target, dest)
        else:
            dest.symlink_to(os.path.relpath(target, dest.parent))


def prepare_variant_tree(
    root: Path,
    name: str,
    source: SourceTree,
    commits: Mapping[str, str],
    links: Sequence[FileLink],
    key: str,
    locks: RepoLocks | None = None,
    warn: Warn | None = None,
) -> tuple[VariantTree, bool]:
    """The variant's tree with every project at ``commits[path]`` and the links in place.

    Returns ``(tree, ready)``: ``ready`` is True when the tree was left by an earlier
    :func:`mark_ready` with the same ``key`` and is reused untouched (its patches applied,
    mtimes kept, so ninja rebuilds nothing); otherwise the worktrees are (re)set to the
    pristine commits and the caller applies its patchsets, then calls :func:`mark_ready`.
    The user's work in a worktree is backed up first (``warn`` says where)."""
    base = variant_base(root, name)
    src = base / "src"
    projects = {
        path: ProjectCheckout(path=path, directory=src / path, pinned=commits[path])
        for path in source.projects
    }
    variant = VariantTree(name=name, base=base, tree=SourceTree(root=src, projects=projects))
    repo_locks = locks or RepoLocks()
    heads = _orch_heads(base)  # what orch left checked out: patched (and parameter) commits
    if _ready_key(base) == key and all(
            _worktree_matches(src / path, source.projects[path], heads.get(path, commits[path]))
            for path in source.projects):
        return variant, True
    # A worktree of the right repository is reset in place (git touches only the files that
    # differ, so unchanged files keep their mtimes and the build stays incremental).
    matches = {path: _worktree_matches(src / path, source.projects[path], None) for path in source.projects}
    (base / _READY).unlink(missing_ok=True)
    (base / _PARAMS).unlink(missing_ok=True)
    src.mkdir(parents=True, exist_ok=True)
    (base / "build").mkdir(parents=True, exist_ok=True)

    def set_up(path: str) -> None:
        _save_user_work(base, path, commits[path], warn)
        if matches[path]:
            _reset_worktree(src / path, commits[path])
        else:
            with repo_locks.of(path):
                _add_worktree(source.projects[path], src / path, commits[path])

    _for_each_project(list(source.projects), set_up)
    (base / _HEADS).unlink(missing_ok=True)
    _place_links(src, variant.tree, links)
    return variant, False


def mark_ready(variant: VariantTree, key: str) -> None:
    """Record that the tree holds exactly the inputs ``key`` describes (patches applied), and
    each worktree's HEAD: commits beyond it are the user's."""
    heads = {path: head_commit(checkout.directory) for path, checkout in variant.tree.projects.items()}
    (variant.base / _HEADS).write_text(json.dumps(heads, indent=1) + "\n")
    (variant.base / _READY).write_text(key + "\n")


def set_parameter_layer(variant: VariantTree, key: str | None,
                        apply: Callable[[SourceTree], Mapping[str, str]]) -> bool:
    """Put the generated parameter commits described by ``key`` on top of the patched tree
    (``apply`` makes them; None: no parameters). Only the files the previous and the new
    parameter commits edit are rewritten, so a build after a parameter change recompiles only
    what depends on them. Returns whether anything changed. Call after :func:`mark_ready`."""
    state_file = variant.base / _PARAMS
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        state = None
    if isinstance(state, dict) and state.get("key") == key:
        return False
    heads = _orch_heads(variant.base)
    base = {str(k): str(v) for k, v in state["base"].items()} if isinstance(state, dict) else heads
    for path, checkout in variant.tree.projects.items():
        target = base.get(path)
        if target is not None and head_commit(checkout.directory) != target:
            _git(checkout.directory, "checkout", "-q", "--detach", "-f", target)
    new_heads = {**base, **(apply(variant.tree) if key is not None else {})}
    (variant.base / _HEADS).write_text(json.dumps(new_heads, indent=1) + "\n")
    state_file.write_text(json.dumps({"key": key, "base": base}, indent=1) + "\n")
    return True


def remove_variant_tree(root: Path, name: str, source: SourceTree, *, keep_build: bool = False,
                        locks: RepoLocks | None = None, warn: Warn | None = None) -> None:
    """Remove the variant's worktrees (pruned from each project's git dir) and its files, after
    backing up the user's work in them (``warn`` says where). A worktree whose work cannot be
    backed up is kept, with a warning, rather than lost; this runs on failure paths, so it
    never raises over the error that brought it here."""
    base = variant_base(root, name)
    repo_locks = locks or RepoLocks()
    kept: list[Path] = []

    def take_down(path: str) -> None:
        directory = base / "src" / path
        if not (directory.exists() or directory.is_symlink()):
            return
        try:
            _save_user_work(base, path, source.projects[path].pinned, warn)
        except WorkspaceError as exc:
            kept.append(directory)
            if warn is not None:
                warn(f"variant {name}: kept {directory}: {exc.message}")
            return
        with repo_locks.of(path):
            _remove_worktree(source.projects[path], directory)

    # nested projects first: removing an outer worktree would take an inner one's files along
    for wave in reversed(_nesting_waves(list(source.projects))):
        _for_each_project(wave, take_down)
    (base / _READY).unlink(missing_ok=True)
    (base / _HEADS).unlink(missing_ok=True)
    (base / _PARAMS).unlink(missing_ok=True)
    if (base / "src").exists() and not kept:
        shutil.rmtree(base / "src")
    if not keep_build and (base / "build").exists():
        shutil.rmtree(base / "build")


def worktrees_of(checkout: Path) -> list[Path]:
    """Every linked worktree of ``checkout``'s repository (for tests and `orch status`)."""
    listing = _git(checkout, "worktree", "list", "--porcelain")
    paths = [Path(line.split(" ", 1)[1]) for line in listing.splitlines() if line.startswith("worktree ")]
    return paths


@contextlib.contextmanager
def variant_lock(root: Path, name: str) -> Iterator[None]:
    """Hold the variant for this process: a second orch building it at once gets one line."""
    lock_dir = root / layout.VARIANTS_DIR
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{name}.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WorkspaceError(
                f"variant '{name}' is being built by another orch process",
                hint=f"wait for it, or remove {lock_dir / (name + '.lock')} if no orch is running",
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
