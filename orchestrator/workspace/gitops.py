"""Small git helpers (plain ``git`` subprocesses, no library: ``orch sync`` starts fast) for
repositories whose git directory is kept apart from the checkout
(``.orch/projects/<path>.git`` + a ``.git`` gitfile). A git command that fails raises
:class:`GitError`.

Everything runs ``git --git-dir=...`` explicitly so the helpers work the same on the
workspace's checkouts and on ``git worktree`` checkouts made from the same git directory.
Every git process gets the transport allow-list of :mod:`orchestrator.workspace.transport`;
every network operation (clone, fetch, submodule update) goes through :func:`run_network`,
which puts ``--`` before URLs and paths and stops git after a timeout.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import tempfile
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path

from orchestrator import layout
from orchestrator.errors import InfraError
from orchestrator.workspace import transport

_MISSING_REF = re.compile(
    r"couldn't find remote ref|not our ref|no such remote ref|unadvertised object|"
    r"remote error: upload-pack: not our ref|fatal: invalid refspec|"
    r"could not find remote branch|Remote branch .* not found",
    re.IGNORECASE,
)


REPOSITORY_ENV = (
    "GIT_DIR", "GIT_WORK_TREE", "GIT_IMPLICIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_COMMON_DIR", "GIT_PREFIX", "GIT_GRAFT_FILE",
    "GIT_NO_REPLACE_OBJECTS", "GIT_REPLACE_REF_BASE", "GIT_SHALLOW_FILE", "GIT_INTERNAL_SUPER_PREFIX",
    "GIT_NAMESPACE",
)
"""What git exports to the commands it runs (``git bisect run``, hooks) about *its* repository
(``git rev-parse --local-env-vars``, less the ``-c`` settings): orch works in many
repositories, so it drops them at start-up, or every git call would go to that one."""


def drop_repository_env(environ: MutableMapping[str, str]) -> list[str]:
    """Remove :data:`REPOSITORY_ENV` from ``environ``; the names that were set."""
    return [name for name in REPOSITORY_ENV if environ.pop(name, None) is not None]


class GitError(Exception):
    """A git command exited non-zero: the command, its exit status and its output."""

    def __init__(self, command: Sequence[str], status: int | None, stderr: str = "",
                 stdout: str = "") -> None:
        self.command = list(command)
        self.status = status
        self.stderr = stderr
        self.stdout = stdout
        detail = stderr.strip() or stdout.strip()
        super().__init__(f"git {' '.join(self.command[1:])[:200]} exited {status}"
                         + (f": {detail[:500]}" if detail else ""))


# what GitPython gave every git process, kept so messages orch matches stay in English
_LOCALE = {"LANGUAGE": "C", "LC_ALL": "C"}


class MissingRevision(Exception):
    """The remote answered, but has no such branch, tag or object."""


def run(args: Sequence[str], *, git_dir: Path | None = None, cwd: Path | None = None,
        config: Sequence[str] = (), stdin: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """Run one git command and return its stdout (less one trailing newline); ``env`` is added
    to the environment. :class:`GitError` when git exits non-zero."""
    command = _command(args, git_dir, config)
    proc = subprocess.run(command, cwd=cwd, input=stdin, capture_output=True, encoding="utf-8",
                          errors="surrogateescape", stdin=None if stdin is not None else subprocess.DEVNULL,
                          env={**os.environ, **_LOCALE, **transport.git_environment(), **(env or {})})
    if proc.returncode != 0:
        raise GitError(command, proc.returncode, proc.stderr, proc.stdout)
    return proc.stdout.removesuffix("\n")


def _command(args: Sequence[str], git_dir: Path | None, config: Sequence[str]) -> list[str]:
    command: list[str] = ["git"]
    for item in config:
        command += ["-c", item]
    if git_dir is not None:
        command.append(f"--git-dir={git_dir}")
    return command + list(args)


def run_network(args: Sequence[str], *, what: str, git_dir: Path | None = None, cwd: Path | None = None,
                submodules: bool = False) -> str:
    """A git command that talks to a remote: run in its own process group with the transport
    allow-list (the stricter submodule one with ``submodules``) and http stall detection, and
    killed with everything it started after :func:`transport.network_timeout` seconds
    (:class:`InfraError`). Callers put ``--`` before every URL and path in ``args``."""
    command = _command(args, git_dir, transport.STALL_CONFIG)
    env = {**os.environ, **_LOCALE, **transport.git_environment(submodules=submodules)}
    timeout = transport.network_timeout()
    with subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise InfraError(f"{what}: git {args[0]} gave no result within {timeout:g} s; stopped",
                             hint=f"check the network, or set {transport.TIMEOUT_ENV}=SECONDS") from None
        except BaseException:
            _kill_group(proc)
            raise
    if proc.returncode != 0:
        raise GitError(command, proc.returncode, err, out)
    return out.rstrip("\n")


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


def try_run(args: Sequence[str], *, git_dir: Path | None = None, cwd: Path | None = None) -> str | None:
    """Like :func:`run`, but ``None`` when git exits non-zero."""
    try:
        return run(args, git_dir=git_dir, cwd=cwd)
    except GitError:
        return None


def stderr_of(error: Exception) -> str:
    """The one line of a failed git command (a :class:`GitError`, or GitPython's error, whose
    output is quoted) worth showing: its first ``fatal:``/``error:`` line, else its first line
    of output (stderr, then stdout), never a ``hint:``."""
    text = str(getattr(error, "stderr", "") or getattr(error, "stdout", "") or "")
    text = text.strip()
    if text.startswith(("stderr:", "stdout:")):  # GitPython's form: stderr: '...'
        text = text.removeprefix("stderr:").removeprefix("stdout:").strip().strip("'").strip()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("hint:")]
    fatal = [line for line in lines if line.startswith(("fatal:", "error:"))]
    return (fatal or lines or ["git failed"])[0].removeprefix("stderr: ")


def fetch(git_dir: Path, source: str, refspecs: Sequence[str], *, what: str, depth: int | None = None,
          tags: bool = True) -> None:
    """``git fetch source refspecs``; :class:`MissingRevision` when the ref or object does not
    exist there, :class:`InfraError` when the remote could not be reached. ``depth`` keeps the
    repository shallow; ``tags=False`` fetches no tags (the manifest's ``sync-tags="false"``)."""
    options = [*([f"--depth={depth}"] if depth else []), *([] if tags else ["--no-tags"])]
    before = tag_refs(git_dir)
    try:
        run_network(["fetch", "--quiet", "--no-write-fetch-head", *options, "--", source, *refspecs],
                    git_dir=git_dir, what=what)
        record_upstream_tags(git_dir, before)
    except GitError as error:
        message = stderr_of(error)
        full = str(error.stderr)
        if _MISSING_REF.search(full):
            raise MissingRevision(message) from None
        raise InfraError(f"{what}: fetching from {source} failed: {message}",
                         hint="check the URL and your network, or use --mirror DIR") from None


def clone(source: str, dest: Path, *, what: str, shared: bool = False, depth: int | None = None,
          tags: bool = True, blobless: bool = False, branch: str | None = None) -> None:
    """``git clone --no-checkout source dest`` (:class:`GitError` on failure). With ``depth``
    a shallow clone of every branch; a local path becomes a ``file://`` URL then, because git
    ignores ``--depth`` (and ``--filter``) for plain local paths. ``blobless``: a partial clone
    (``--filter=blob:none``: every commit and tree, blobs fetched when checked out).
    ``branch``: only that branch's history and the tags in it (:class:`MissingRevision` when
    the server has no such branch); later fetches still see every branch."""
    options = ["--shared"] if shared else []
    if blobless:
        options.append("--filter=blob:none")
        if transport.transport_of(source) == "file" and not source.startswith("file://"):
            source = Path(source).resolve().as_uri()
    if depth:
        options += [f"--depth={depth}", "--no-single-branch"]
        if transport.transport_of(source) == "file" and not source.startswith("file://"):
            source = Path(source).resolve().as_uri()
    elif branch:
        options += ["--single-branch", f"--branch={branch}"]
    if not tags:
        options.append("--no-tags")
    try:
        run_network(["clone", "--quiet", "--no-checkout", *options, "--", source, str(dest)], what=what)
    except GitError as error:
        if branch and not depth and _MISSING_REF.search(str(error.stderr)):
            raise MissingRevision(stderr_of(error)) from None
        raise
    if branch and not depth:
        run(["config", "remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*"], git_dir=dest / ".git")
    record_upstream_tags(dest / ".git", {})


def tag_refs(git_dir: Path) -> dict[str, str]:
    """Every ``refs/tags/*`` ref of the repository and the object it points at."""
    out = run(["for-each-ref", "--format=%(objectname) %(refname)", "refs/tags/"], git_dir=git_dir)
    return {ref: sha for sha, ref in (line.split(" ", 1) for line in out.splitlines())}


def record_upstream_tags(git_dir: Path, before: Mapping[str, str]) -> None:
    """Note every tag a fetch or clone just wrote (new, or moved since ``before``) under
    :func:`layout.remote_ref` (``refs/orch/remote/tags/...``): those are upstream's, while a
    tag the user made is no such record, so the commits only it reaches stay local work."""
    updates = "".join(f"update {layout.remote_ref(ref)} {sha}\n"
                      for ref, sha in tag_refs(git_dir).items() if before.get(ref) != sha)
    if updates:
        run(["update-ref", "--stdin"], git_dir=git_dir, stdin=updates)


def update_submodules(git_dir: Path, checkout: Path, *, what: str) -> None:
    """Check out the submodules of ``checkout`` at the commits it records (recursively), as
    ``repo sync`` does for a project with ``sync-s``. Submodule URLs come from the project's
    ``.gitmodules``, so they get the submodule transport list."""
    try:
        run_network([f"--work-tree={checkout}", "submodule", "--quiet", "update", "--init", "--recursive",
                     "--checkout"], git_dir=git_dir, cwd=checkout, what=what, submodules=True)
    except GitError as error:
        raise InfraError(f"{what}: checking out its submodules failed: {stderr_of(error)}",
                         hint=f"submodules may use {', '.join(transport.allowed_transports(submodules=True))}"
                              f" (more with {transport.EXTEND_ENV})") from None


def has_commit(git_dir: Path, sha: str) -> bool:
    """``git cat-file -e SHA^{commit}``: the object is present locally."""
    return try_run(["cat-file", "-e", f"{sha}^{{commit}}"], git_dir=git_dir) is not None


def rev_parse(git_dir: Path, rev: str) -> str | None:
    """The commit ``rev`` names, or ``None``."""
    return try_run(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], git_dir=git_dir)


def read_head(git_dir: Path) -> str | None:
    """HEAD's SHA read straight from the file when detached (no subprocess), else via git."""
    try:
        text = (git_dir / "HEAD").read_text().strip()
    except OSError:
        return None
    if not text.startswith("ref:"):
        return text or None
    return rev_parse(git_dir, "HEAD")


def head_branch(git_dir: Path) -> str | None:
    """The branch HEAD is on, ``None`` when detached."""
    try:
        text = (git_dir / "HEAD").read_text().strip()
    except OSError:
        return None
    return text.removeprefix("ref:").strip().removeprefix("refs/heads/") if text.startswith("ref:") else None


def write_gitfile(checkout: Path, git_dir: Path) -> None:
    """Point ``checkout/.git`` at ``git_dir`` with a relative gitfile (survives moving the
    workspace), written atomically."""
    checkout.mkdir(parents=True, exist_ok=True)
    relative = os.path.relpath(git_dir, checkout)
    tmp = checkout / ".git.orch-tmp"
    tmp.write_text(f"gitdir: {relative}\n")
    os.replace(tmp, checkout / ".git")


def identity_config(git_dir: Path) -> list[str]:
    """``-c`` options giving git an identity for stash/commit when the user has none set."""
    if try_run(["config", "user.email"], git_dir=git_dir):
        return []
    return ["user.name=orch", "user.email=orch@localhost"]


def worktree_changes(git_dir: Path, checkout: Path) -> tuple[int, int]:
    """(modified or staged paths, untracked paths) of a checkout; ignored files do not count.

    Read-only (``--no-optional-locks``: no index refresh is written), so it works on a full
    disk, where a failed build's tree must still be checked before it is removed."""
    out = run(["--no-optional-locks", f"--work-tree={checkout}", "status", "--porcelain=v1",
               "--untracked-files=normal"],
              git_dir=git_dir, cwd=checkout)
    modified = untracked = 0
    for line in out.splitlines():
        if line.startswith("??"):
            untracked += 1
        elif line.strip():
            modified += 1
    return modified, untracked


def local_commit_count(git_dir: Path, head: str, known: Sequence[str]) -> int:
    """Commits reachable from ``head`` but from no remote branch, no tag or other revision orch
    fetched from upstream (``refs/orch/remote/``) and no ``known`` commit. A tag the user made
    protects nothing here: the commits only it reaches are the user's work."""
    present = [k for k in known if k and has_commit(git_dir, k)]
    out = run(["rev-list", "--count", head, "--not", "--remotes", f"--glob={layout.REMOTE_REF_PREFIX}*",
               *present], git_dir=git_dir)
    return int(out or "0")


def snapshot_commit(git_dir: Path, checkout: Path, message: str) -> str:
    """A commit of everything in ``checkout`` (staged, unstaged and untracked files, not ignored
    ones) whose parent is HEAD, made through a temporary index: the checkout, its index and
    every ref stay as they are."""
    config = identity_config(git_dir)
    with tempfile.TemporaryDirectory(prefix="orch-index-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        run(["read-tree", "HEAD"], git_dir=git_dir, cwd=checkout, env=env)
        run([f"--work-tree={checkout}", "add", "-A"], git_dir=git_dir, cwd=checkout, env=env)
        tree = run(["write-tree"], git_dir=git_dir, cwd=checkout, env=env)
    return run(["commit-tree", tree, "-p", "HEAD", "-m", message], git_dir=git_dir, cwd=checkout,
               config=config)


def backup_work(git_dir: Path, checkout: Path, *, head: str | None, dirty: bool, ref: str,
                message: str, stash: bool) -> list[str]:
    """Keep a checkout's work before orch moves or removes it; returns where it went.

    ``head`` (with any local commits) is saved under ``ref``. Uncommitted changes, untracked
    files included, go either into a stash entry (``stash=True``: the checkout is left clean and
    the entry is named by its commit SHA, which stays right however many stashes follow) or into
    a commit on top of ``head`` that ``ref`` then names (the checkout is left untouched)."""
    saved: list[str] = []
    if dirty and not stash:
        head, dirty = snapshot_commit(git_dir, checkout, message), False
    if head:
        run(["update-ref", ref, head], git_dir=git_dir)
        saved.append(ref)
    if dirty:
        run([f"--work-tree={checkout}", "stash", "push", "--include-untracked", "--quiet", "-m", message],
            git_dir=git_dir, cwd=checkout, config=identity_config(git_dir))
        sha = run(["rev-parse", "refs/stash"], git_dir=git_dir)
        saved.append(f"stash {sha} ('{message}' in git stash list)")
    return saved


def alternate_object_dirs(git_dir: Path) -> list[Path]:
    """The object directories ``git_dir`` borrows from (``objects/info/alternates``, followed
    through the alternates' own alternates), as written there: a build container must see
    them at those same paths, or git inside it finds no objects (``bad object HEAD``)."""
    out: list[Path] = []
    pending = [git_dir / "objects"]
    while pending:
        objects = pending.pop()
        try:
            lines = (objects / "info" / "alternates").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            alternate = Path(os.path.normpath(objects / line)) if not os.path.isabs(line) else Path(line)
            if alternate not in out and alternate.is_dir():
                out.append(alternate)
                pending.append(alternate)
    return out
