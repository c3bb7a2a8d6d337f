"""The patchset journal on real git repositories: an interrupted operation is undone exactly
(HEAD, the recorded paths, the refs it wrote, its stale locks), a committed one is finished, a
running one is refused, and nothing that was there before is touched."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.errors import WorkspaceError
from orchestrator.patchset import journal as oplog
from tests.support.git import git

BRANCH = "refs/heads/orch/fix"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    checkout = tmp_path / "kernel"
    checkout.mkdir()
    git(checkout, "init", "-q", "-b", "master")
    (checkout / "a.c").write_text("int a;\n")
    git(checkout, "add", "a.c")
    git(checkout, "commit", "-q", "-m", "base")
    return checkout


@pytest.fixture
def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture
def live_process() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


def begin(repo: Path, *, op: str = "op1", project: str = "kernel", pid: int | None = None) -> oplog.Journal:
    head = git(repo, "rev-parse", "HEAD")
    journal = oplog.Journal.begin(git_dir=repo / ".git", checkout=repo, op=op, kind="apply",
                                  projects=["kernel", "libs"], project=project, head=head,
                                  head_ref="refs/heads/master", touched=["a.c", "new/dir/b.c"])
    if pid is not None:
        journal.entry.pid = pid
        journal.save()
    return journal


def half_applied(repo: Path, journal: oplog.Journal) -> str:
    """What a killed `git am` leaves: a commit on the patch branch, HEAD on it, the work tree
    changed, a new file in new directories, rebase-apply and lock files."""
    git(repo, "checkout", "-q", "-b", "orch/fix")
    (repo / "a.c").write_text("int a = 1;\n")
    (repo / "new/dir").mkdir(parents=True)
    (repo / "new/dir/b.c").write_text("int b;\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "patch 1")
    new = git(repo, "rev-parse", "HEAD")
    journal.will_write([oplog.RefChange(BRANCH, None, new)])
    (repo / "a.c").write_text("int a = 2; /* half of patch 2 */\n")
    (repo / ".git/rebase-apply").mkdir()
    (repo / ".git/HEAD.lock").write_text("")
    (repo / ".git/refs/heads/orch/fix.lock").write_text("")
    return new


def test_an_interrupted_apply_is_undone_exactly(repo: Path, dead_pid: int) -> None:
    base = git(repo, "rev-parse", "HEAD")
    (repo / ".git/refs/heads/mine.lock").write_text("")  # the user's, there before orch began
    journal = begin(repo, pid=dead_pid)
    half_applied(repo, journal)
    assert [e.op for e in oplog.interrupted_operations({"kernel": repo})] == ["op1"]
    assert (repo / ".git/rebase-apply").is_dir(), "listing the journals touches nothing"

    done = oplog.recover({"kernel": repo})
    assert [(d.op, d.outcome) for d in done] == [("op1", "undone")]
    assert "every project is back as it was" in done[0].describe()
    assert git(repo, "symbolic-ref", "HEAD") == "refs/heads/master"
    assert git(repo, "rev-parse", "HEAD") == base
    assert (repo / "a.c").read_text() == "int a;\n"
    assert not (repo / "new").exists(), "the directories the patch created are gone too"
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "for-each-ref", "--format=%(refname)", "refs/heads/orch/") == ""
    assert not (repo / ".git/rebase-apply").exists()
    assert not (repo / ".git/HEAD.lock").exists() and not (repo / ".git/refs/heads/orch/fix.lock").exists()
    assert (repo / ".git/refs/heads/mine.lock").exists(), "a lock that was there before stays"
    assert oplog.interrupted_operations({"kernel": repo}) == []


def test_a_ref_the_user_moved_since_is_left_alone(repo: Path, dead_pid: int) -> None:
    journal = begin(repo, pid=dead_pid)
    half_applied(repo, journal)
    (repo / ".git/refs/heads/orch/fix.lock").unlink()
    (repo / ".git/HEAD.lock").unlink()
    git(repo, "commit", "-q", "-am", "the user's own work on the branch")
    mine = git(repo, "rev-parse", "HEAD")
    done = oplog.recover({"kernel": repo})
    assert git(repo, "rev-parse", BRANCH) == mine
    assert done[0].notes == [f"kernel: {BRANCH} was moved since; left at {mine}"]


def test_a_journal_of_this_very_process_is_undone(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD")
    journal = begin(repo)  # this process crashed out of the operation it began
    half_applied(repo, journal)
    assert [d.outcome for d in oplog.recover({"kernel": repo})] == ["undone"]
    assert git(repo, "rev-parse", "HEAD") == base


def test_a_running_operation_is_refused_and_not_disturbed(repo: Path,
                                                          live_process: subprocess.Popen[bytes]) -> None:
    journal = begin(repo, pid=live_process.pid)
    new = half_applied(repo, journal)
    running = rf"an `orch patchset apply` \(pid {live_process.pid}\) is running"
    with pytest.raises(WorkspaceError, match=running):
        oplog.recover({"kernel": repo})
    with pytest.raises(subprocess.TimeoutExpired):  # checking whether it runs sent it no signal
        live_process.wait(timeout=0.5)
    assert git(repo, "rev-parse", "HEAD") == new and (repo / ".git" / oplog.JOURNAL_FILE).is_file()


def test_a_committed_operation_is_finished_not_undone(repo: Path, tmp_path: Path, dead_pid: int) -> None:
    other = tmp_path / "libs"
    other.mkdir()
    git(other, "init", "-q", "-b", "master")
    git(other, "commit", "-q", "--allow-empty", "-m", "base")
    first = begin(repo, pid=dead_pid)
    second = oplog.Journal.begin(git_dir=other / ".git", checkout=other, op="op1", kind="apply",
                                 projects=["kernel", "libs"], project="libs",
                                 head=git(other, "rev-parse", "HEAD"), head_ref="refs/heads/master",
                                 touched=[])
    second.entry.pid = dead_pid
    new = half_applied(repo, first)
    second.commit()  # killed between marking the journals committed and removing them
    done = oplog.recover({"kernel": repo, "libs": other})
    assert [(d.op, d.outcome) for d in done] == [("op1", "completed")]
    assert "was finished" in done[0].describe()
    assert git(repo, "rev-parse", "HEAD") == new
    assert oplog.interrupted_operations({"kernel": repo, "libs": other}) == []


def test_an_unreadable_journal_is_one_line_naming_it(repo: Path) -> None:
    (repo / ".git" / oplog.JOURNAL_FILE).write_text("{not json")
    with pytest.raises(WorkspaceError, match=r"orch-patchset-journal.json: unreadable patchset journal"):
        oplog.recover({"kernel": repo})
