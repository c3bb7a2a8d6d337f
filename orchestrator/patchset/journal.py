"""The journal of a multi-project patchset operation (apply, revert), and undoing one.

Before an operation touches any project it writes, in each project's git directory, a journal
naming the operation, its process, the other projects it touches, where HEAD was, the paths it
may rewrite (and which of those did not exist) and the lock files already there. Every ref it
is about to write is added to the journal *before* it is written. When every project is done
the journals are marked committed, then removed.

So a failure, or a ``kill -9`` at any point, is undone exactly: a journal marked committed in
any project means the operation completed (the journals are just removed); otherwise every
project with a journal is put back -- HEAD, index, the recorded paths, and only the refs the
operation wrote and that still hold what it wrote. Nothing else (the user's refs in any
namespace, edits to other files, untracked files) is touched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from orchestrator import layout
from orchestrator.errors import WorkspaceError
from orchestrator.procs import process_exists

JOURNAL_FILE = layout.PATCHSET_JOURNAL
STARTED = "started"
COMMITTED = "committed"
_LOCKS = ("HEAD.lock", "index.lock", "ORIG_HEAD.lock")


@dataclass
class RefChange:
    """A ref the operation writes: ``old`` None means it creates it."""

    ref: str
    old: str | None
    new: str


@dataclass
class ProjectJournal:
    """What one project needs to be put back as it was before operation ``op``."""

    op: str
    kind: str  # "apply" | "revert"
    pid: int
    started: str
    projects: list[str]  # every project path the operation touches
    project: str
    head: str
    head_ref: str | None
    touched: list[str]  # worktree paths the operation may rewrite
    absent: list[str]  # of those, the ones that did not exist (removed again on undo)
    locks: list[str]  # lock files present before the operation (never removed)
    refs: list[RefChange] = field(default_factory=list)
    state: str = STARTED

    @classmethod
    def from_json(cls, data: dict[str, object]) -> ProjectJournal:
        refs = [RefChange(**r) for r in data.pop("refs", [])]  # type: ignore[attr-defined]
        return cls(**data, refs=refs)  # type: ignore[arg-type]


def git_dir_of(checkout: Path) -> Path | None:
    """The (per-worktree) git directory of a checkout: its ``.git`` directory, the target of a
    ``.git`` symlink, or what a ``.git`` gitfile names; None when there is none."""
    dot_git = checkout / ".git"
    if dot_git.is_symlink() or dot_git.is_dir():
        return dot_git.resolve() if dot_git.exists() else None
    try:
        text = dot_git.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None
    if not text.startswith("gitdir:"):
        return None
    target = Path(text.removeprefix("gitdir:").strip())
    return (checkout / target).resolve() if not target.is_absolute() else target


def _common_dir(git_dir: Path) -> Path:
    try:
        rel = (git_dir / "commondir").read_text().strip()
    except OSError:
        return git_dir
    return (git_dir / rel).resolve()


# An undo runs none of the user's hooks: it puts back a state they already had, and a hook
# failing (a post-checkout hook's exit status is checkout's) must not stop it half-way.
_NO_HOOKS = ("-c", "core.hooksPath=/dev/null")


def _git(checkout: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(checkout), *_NO_HOOKS, *args], input=stdin,
                          capture_output=True, text=True, errors="surrogateescape", check=False)


def _git_ok(checkout: Path, *args: str, stdin: str | None = None) -> str:
    proc = _git(checkout, *args, stdin=stdin)
    if proc.returncode != 0:
        line = (proc.stderr.strip().splitlines() or ["git failed"])[0]
        raise WorkspaceError(f"{checkout}: git {args[0]}: {line}")
    return proc.stdout


def new_operation_id() -> str:
    return uuid.uuid4().hex[:12]


class Journal:
    """One project's journal file and the writes that keep it ahead of the operation."""

    def __init__(self, git_dir: Path, checkout: Path, entry: ProjectJournal) -> None:
        self.git_dir = git_dir
        self.checkout = checkout
        self.entry = entry

    @property
    def file(self) -> Path:
        return self.git_dir / JOURNAL_FILE

    @classmethod
    def begin(cls, *, git_dir: Path, checkout: Path, op: str, kind: str, projects: Sequence[str],
              project: str, head: str, head_ref: str | None, touched: Iterable[str]) -> Journal:
        """Record the project's state before the operation changes anything in it."""
        paths = sorted(set(touched))
        absent = [p for p in paths if not os.path.lexists(checkout / p)]
        common = _common_dir(git_dir)
        locks = [name for name in _LOCKS if (git_dir / name).exists()]
        entry = ProjectJournal(op, kind, os.getpid(), datetime.now(UTC).isoformat(timespec="seconds"),
                               list(projects), project, head, head_ref, paths, absent, locks)
        entry.locks += [str(p.relative_to(common)) for p in (common / "refs").rglob("*.lock")]
        journal = cls(git_dir, checkout, entry)
        journal.save()
        return journal

    def save(self) -> None:
        tmp = self.file.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as out:
            json.dump(asdict(self.entry), out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.file)

    def will_write(self, changes: Sequence[RefChange]) -> None:
        """Note refs about to be written (call before writing them)."""
        self.entry.refs += changes
        self.save()

    def commit(self) -> None:
        self.entry.state = COMMITTED
        self.save()

    def discard(self) -> None:
        self.file.unlink(missing_ok=True)


def read_journal(git_dir: Path, checkout: Path) -> Journal | None:
    file = git_dir / JOURNAL_FILE
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        return Journal(git_dir, checkout, ProjectJournal.from_json(data))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as error:
        raise WorkspaceError(f"{file}: unreadable patchset journal ({error})",
                             hint="inspect the project by hand, then delete the file") from None


def commit_all(journals: Sequence[Journal]) -> None:
    """The operation's commit point: mark every journal, then remove them."""
    for journal in journals:
        journal.commit()
    for journal in journals:
        journal.discard()


# --------------------------------------------------------------------------- undo


@dataclass
class UndoResult:
    project: str
    notes: list[str] = field(default_factory=list)


def undo(journal: Journal, *, stale: bool) -> UndoResult:
    """Put one project back as its journal says it was, then remove the journal.

    ``stale``: the process that wrote the journal is gone, so lock files and an unfinished
    ``git am`` it left are removed (lock files that were there before it never are)."""
    entry, git_dir, checkout = journal.entry, journal.git_dir, journal.checkout
    result = UndoResult(entry.project)
    common = _common_dir(git_dir)
    if stale:
        _remove_stale_locks(entry, git_dir, common)
    if entry.kind == "apply":
        shutil.rmtree(git_dir / "rebase-apply", ignore_errors=True)
    _restore_head(entry, checkout, git_dir)
    _git_ok(checkout, "read-tree", entry.head)
    _restore_paths(entry, checkout)
    result.notes += _restore_refs(entry, checkout)
    journal.discard()
    return result


def _remove_stale_locks(entry: ProjectJournal, git_dir: Path, common: Path) -> None:
    for name in _LOCKS:
        if name not in entry.locks:
            (git_dir / name).unlink(missing_ok=True)
    for change in entry.refs:
        lock = f"{change.ref}.lock"
        if lock not in entry.locks:
            (common / lock).unlink(missing_ok=True)


def _head_now(git_dir: Path) -> str:
    try:
        return (git_dir / "HEAD").read_text().strip()
    except OSError:
        return ""


def _restore_head(entry: ProjectJournal, checkout: Path, git_dir: Path) -> None:
    wanted = f"ref: {entry.head_ref}" if entry.head_ref else entry.head
    if _head_now(git_dir) == wanted:
        return  # never moved (or a lock the user left kept it): do not touch HEAD at all
    if entry.head_ref is None:
        _git_ok(checkout, "update-ref", "--no-deref", "HEAD", entry.head)
    else:
        _git_ok(checkout, "symbolic-ref", "HEAD", entry.head_ref)


def _restore_paths(entry: ProjectJournal, checkout: Path) -> None:
    """The recorded paths back to HEAD's content; those that did not exist removed again."""
    if not entry.touched:
        return
    listed = _git_ok(checkout, "ls-tree", "-r", "-z", "--name-only", entry.head, "--",
                     *entry.touched).split("\0")
    in_head = {p for p in listed if p}
    if in_head:
        _git_ok(checkout, "checkout", "-q", entry.head, "--pathspec-from-file=-",
                "--pathspec-file-nul", stdin="\0".join(sorted(in_head)))
    for rel in entry.absent:
        if rel in in_head:
            continue
        target = checkout / rel
        if target.is_symlink() or target.is_file():
            target.unlink()
            _remove_empty_parents(target.parent, checkout)


def _remove_empty_parents(directory: Path, stop: Path) -> None:
    while directory != stop and stop in directory.parents:
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent


def _restore_refs(entry: ProjectJournal, checkout: Path) -> list[str]:
    """Refs the operation wrote go back to their old value, but only while they still hold
    what it wrote: a ref the user moved (or made) since is left alone, and said so."""
    notes: list[str] = []
    for change in reversed(entry.refs):
        proc = _git(checkout, "rev-parse", "--verify", "--quiet", change.ref)
        now = proc.stdout.strip() if proc.returncode == 0 else None
        if now == change.old:
            continue
        if now != change.new:
            notes.append(f"{change.ref} was moved since; left at {now or 'nothing'}")
            continue
        if change.old is None:
            _git_ok(checkout, "update-ref", "-d", change.ref, change.new)
        else:
            _git_ok(checkout, "update-ref", change.ref, change.old, change.new)
    return notes


# --------------------------------------------------------------------------- recovery


@dataclass
class Interrupted:
    """An operation a killed or crashed orch left behind, and what recovery did about it."""

    op: str
    kind: str
    pid: int
    started: str
    projects: list[str]
    outcome: str  # "completed" (it had committed) | "undone"
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        what = "finished" if self.outcome == "completed" else "undone: every project is back as it was"
        return (f"an interrupted `orch patchset {self.kind}` (pid {self.pid}, started {self.started}) "
                f"in {', '.join(self.projects)} was {what}")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process is not running that operation any more
    return process_exists(pid)


def find_journals(checkouts: dict[str, Path]) -> list[Journal]:
    """Every journal in the given project checkouts (path -> directory)."""
    found: list[Journal] = []
    for directory in checkouts.values():
        git_dir = git_dir_of(directory)
        journal = read_journal(git_dir, directory) if git_dir is not None else None
        if journal is not None:
            found.append(journal)
    return found


def recover(checkouts: dict[str, Path]) -> list[Interrupted]:
    """Finish or undo every interrupted operation in these checkouts (see the module doc).

    Refuses (WorkspaceError) when the process that wrote a journal is still running."""
    by_op: dict[str, list[Journal]] = {}
    for journal in find_journals(checkouts):
        by_op.setdefault(journal.entry.op, []).append(journal)
    done: list[Interrupted] = []
    for op, members in by_op.items():
        first = members[0].entry
        if _alive(first.pid):
            raise WorkspaceError(
                f"an `orch patchset {first.kind}` (pid {first.pid}) is running in "
                f"{', '.join(first.projects)}",
                hint="wait for it to finish; if that process is not orch, delete "
                     f"{JOURNAL_FILE} in those projects' git directories",
            )
        committed = any(j.entry.state == COMMITTED for j in members)
        record = Interrupted(op, first.kind, first.pid, first.started, first.projects,
                             "completed" if committed else "undone")
        for journal in members:
            if committed:
                journal.discard()
            else:
                result = undo(journal, stale=True)
                record.notes += [f"{result.project}: {n}" for n in result.notes]
        done.append(record)
    return done


def interrupted_operations(checkouts: dict[str, Path]) -> list[ProjectJournal]:
    """The journals present, without touching anything (for a read-only report)."""
    return [journal.entry for journal in find_journals(checkouts)]
