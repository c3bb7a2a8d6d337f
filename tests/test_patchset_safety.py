"""Failed and interrupted patchset operations never lose the user's refs or work.

Every failure path of `apply` and `revert` is run with user refs planted under every namespace
orch writes in; the rollback must delete only what the failed operation itself created.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest

from orchestrator.errors import InputError, WorkspaceError
from orchestrator.patchset import apply as lib
from orchestrator.patchset import journal as oplog
from orchestrator.workspace.tree import SourceTree
from tests.support.git import git
from tests.support.seed import make_seed_tree, worktree_tree
from tests.test_patchset import SHIPPED, snapshot

LIBS = "projects/seL4_projects_libs"
EXAMPLES = "projects/vm-examples"

# one user ref under each namespace orch writes (layout.py lists them)
USER_REFS = [
    "refs/orch/user-made",
    "refs/orch/remote/user-tag",
    "refs/orch/backup/20250101T000000",
    "refs/orch/backup/variants/v/kernel/20250101T000000",
    "refs/heads/orch/user-branch",
    "refs/heads/orch/largepage-notes",
    "refs/heads/orch-worktree/elsewhere/largepage",
    "refs/heads/orch-backup/orch/largepage-20250101T000000000000",
    "refs/heads/orch-backup/orch/detached-20250101T000000000000",
    "refs/heads/orch-backup/orch/mine",
]


@pytest.fixture
def tree(tmp_path: Path) -> SourceTree:
    return make_seed_tree(tmp_path)


def plant_user_refs(tree: SourceTree) -> None:
    """A user commit (reachable from nothing else) behind every planted ref, in every project."""
    for checkout in tree.projects.values():
        d = checkout.directory
        tree_id = git(d, "rev-parse", "HEAD^{tree}")
        commit = git(d, "commit-tree", tree_id, "-p", "HEAD", "-m", "user work")
        for ref in USER_REFS:
            git(d, "update-ref", ref, commit)


def refs_of(tree: SourceTree) -> dict[str, str]:
    return {p: git(c.directory, "for-each-ref") for p, c in tree.projects.items()}


def install_hook(tree: SourceTree, project: str, name: str, script: str) -> None:
    """Make ``script`` the project's git hook ``name``."""
    d = tree.project(project).directory
    hooks = Path(git(d, "rev-parse", "--git-path", "hooks"))
    hooks = hooks if hooks.is_absolute() else d / hooks
    hooks.mkdir(parents=True, exist_ok=True)
    (hooks / name).write_text(script)
    (hooks / name).chmod(0o755)


def failing_hook(tree: SourceTree, project: str) -> None:
    install_hook(tree, project, "applypatch-msg", "#!/bin/sh\necho 'rejected by hook' >&2\nexit 1\n")


def no_journals(tree: SourceTree) -> bool:
    return not oplog.find_journals({p: c.directory for p, c in tree.projects.items()})


def assert_failed_apply_leaves_everything_as_it_was(tree: SourceTree) -> None:
    """An apply of largepage that a hook in the third project rejects changes nothing."""
    failing_hook(tree, LIBS)
    before = snapshot(tree)
    with pytest.raises(InputError):
        lib.apply(tree, lib.resolve(["largepage"], SHIPPED))
    assert snapshot(tree) == before
    assert no_journals(tree)


def test_failed_apply_keeps_user_refs_in_every_namespace(tree: SourceTree) -> None:
    plant_user_refs(tree)
    assert_failed_apply_leaves_everything_as_it_was(tree)


def test_failed_apply_restores_a_branch_it_moved_and_deletes_only_its_own_backup(tree: SourceTree) -> None:
    """The patchset's branch exists (from an older apply) in every project: apply moves it and
    keeps the old one on a new backup branch; the hook in the third project fails; the branch
    goes back and only the backup this apply made is deleted."""
    chain = lib.resolve(["largepage"], SHIPPED)
    lib.apply(tree, chain)
    lib.revert(tree, chain)
    for checkout in tree.projects.values():  # an older orch/largepage, different commits
        d = checkout.directory
        old = git(d, "commit-tree", git(d, "rev-parse", "HEAD^{tree}"), "-p", "HEAD", "-m", "old")
        git(d, "update-ref", "refs/heads/orch/largepage", old)
    plant_user_refs(tree)
    failing_hook(tree, LIBS)
    before = snapshot(tree)
    with pytest.raises(InputError):
        lib.apply(tree, chain)
    assert snapshot(tree) == before


def test_failed_apply_in_a_worktree_keeps_user_refs(tree: SourceTree, tmp_path: Path) -> None:
    """The variant-worktree namespace (orch-worktree/<tree>/...) rolls back the same way."""
    wt = worktree_tree(tree, tmp_path / "wt")
    plant_user_refs(wt)
    for checkout in wt.projects.values():
        name = Path(git(checkout.directory, "rev-parse", "--git-dir")).name
        git(checkout.directory, "update-ref", f"refs/heads/orch-worktree/{name}/mine", "HEAD")
    failing_hook(wt, LIBS)
    before, main_before = snapshot(wt), snapshot(tree)
    with pytest.raises(InputError):
        lib.apply(wt, lib.resolve(["largepage"], SHIPPED))
    assert snapshot(wt) == before
    assert snapshot(tree) == main_before


def test_failed_apply_is_rolled_back_though_a_post_checkout_hook_fails(tree: SourceTree) -> None:
    """The user's post-checkout hook in the first project exits 1 (printing nothing): the
    rollback of that project still completes (it used to stop half-way, every retry too)."""
    install_hook(tree, "kernel", "post-checkout", "#!/bin/sh\nexit 1\n")
    assert_failed_apply_leaves_everything_as_it_was(tree)


def test_revert_is_all_or_nothing_with_a_stale_head_lock_in_the_second_project(tree: SourceTree) -> None:
    chain = lib.resolve(["largepage"], SHIPPED)
    lib.apply(tree, chain)
    plant_user_refs(tree)
    for checkout in tree.projects.values():  # detached work: revert would back it up
        git(checkout.directory, "checkout", "-q", "--detach")
    second = lib._projects_in_order(chain)[1]
    d = tree.project(second).directory
    lock = Path(git(d, "rev-parse", "--absolute-git-dir")) / "HEAD.lock"
    lock.write_text("")
    before = snapshot(tree)
    with pytest.raises(WorkspaceError) as error:
        lib.revert(tree, chain)
    assert second in error.value.message and "HEAD.lock" in error.value.message
    assert snapshot(tree) == before  # the first and third are back on the patch branch too
    assert lock.exists()  # the user's lock is theirs to remove
    assert no_journals(tree)
    lock.unlink()
    report = lib.revert(tree, chain)
    assert all(p.changed for p in report.projects)


def test_revert_reports_a_failing_post_checkout_hook_as_a_warning(tree: SourceTree) -> None:
    chain = lib.resolve(["largepage"], SHIPPED)
    lib.apply(tree, chain)
    install_hook(tree, "kernel", "post-checkout", "#!/bin/sh\necho 'hook says no' >&2\nexit 3\n")
    report = lib.revert(tree, chain)
    kernel = next(p for p in report.projects if p.project == "kernel")
    assert kernel.changed and kernel.warning is not None and "post-checkout" in kernel.warning
    assert git(tree.project("kernel").directory, "rev-parse", "HEAD") == tree.project("kernel").pinned


def test_apply_refuses_a_git_am_of_the_users_in_progress(tree: SourceTree) -> None:
    d = tree.project("kernel").directory
    (Path(git(d, "rev-parse", "--absolute-git-dir")) / "rebase-apply").mkdir()
    with pytest.raises(WorkspaceError) as error:
        lib.apply(tree, lib.resolve(["largepage"], SHIPPED))
    assert "kernel" in error.value.message and "git am" in error.value.message


# --------------------------------------------------------------------------- the journal


def journal_of(tree: SourceTree, project: str) -> Path:
    d = tree.project(project).directory
    return Path(git(d, "rev-parse", "--absolute-git-dir")) / oplog.JOURNAL_FILE


def test_a_journal_left_by_a_dead_process_is_undone_by_the_next_apply(tree: SourceTree) -> None:
    """Simulate a kill after the first project finished: its branch written, HEAD on it."""
    chain = lib.resolve(["largepage"], SHIPPED)
    plant_user_refs(tree)
    (tree.project("kernel").directory / "untracked-notes.txt").write_text("keep me\n")
    before = snapshot(tree)
    lib.apply(tree, chain)
    # rewrite the journals as a killed apply would have left them: begun, not committed
    for path, checkout in tree.projects.items():
        d = checkout.directory
        pinned = checkout.pinned
        head = git(d, "rev-parse", "HEAD")
        written = [line.split() for line in git(
            d, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/orch/").splitlines()]
        entry = oplog.ProjectJournal(
            op="deadbeef", kind="apply", pid=2**22 + 7, started="2026-01-01T00:00:00+00:00",
            projects=list(tree.projects), project=path, head=pinned, head_ref=None,
            touched=git(d, "diff", "--name-only", pinned, head).split(), absent=[], locks=[],
            refs=[oplog.RefChange(ref, None, sha) for ref, sha in written
                  if ref not in USER_REFS])
        journal_of(tree, path).write_text(json.dumps(asdict(entry)))
    (Path(git(tree.project(LIBS).directory, "rev-parse", "--absolute-git-dir")) / "HEAD.lock").write_text("")
    recovered = lib.recover_interrupted(tree)
    assert [r.outcome for r in recovered] == ["undone"]
    assert "interrupted `orch patchset apply`" in recovered[0].describe()
    assert snapshot(tree) == before
    assert no_journals(tree)


def test_a_committed_journal_means_the_operation_finished(tree: SourceTree) -> None:
    chain = lib.resolve(["largepage"], SHIPPED)
    lib.apply(tree, chain)
    after = snapshot(tree)
    for path, checkout in tree.projects.items():
        entry = oplog.ProjectJournal(
            op="cafe", kind="apply", pid=2**22 + 7, started="2026-01-01T00:00:00+00:00",
            projects=list(tree.projects), project=path, head=checkout.pinned, head_ref=None,
            touched=[], absent=[], locks=[], state=oplog.COMMITTED if path == LIBS else oplog.STARTED)
        journal_of(tree, path).write_text(json.dumps(asdict(entry)))
    recovered = lib.recover_interrupted(tree)
    assert [r.outcome for r in recovered] == ["completed"]
    assert snapshot(tree) == after
    assert no_journals(tree)


def test_a_journal_of_a_running_process_is_left_alone(tree: SourceTree) -> None:
    import subprocess

    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        entry = oplog.ProjectJournal(
            op="live", kind="revert", pid=sleeper.pid, started="now", projects=["kernel"],
            project="kernel", head=tree.project("kernel").pinned, head_ref=None, touched=[], absent=[],
            locks=[])
        journal_of(tree, "kernel").write_text(json.dumps(asdict(entry)))
        with pytest.raises(WorkspaceError) as error:
            lib.apply(tree, lib.resolve(["largepage"], SHIPPED))
        assert f"pid {sleeper.pid}" in error.value.message
        assert journal_of(tree, "kernel").exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_ref_the_user_moved_after_the_crash_is_left_where_they_put_it(tree: SourceTree) -> None:
    chain = lib.resolve(["largepage"], SHIPPED)
    lib.apply(tree, chain)
    d = tree.project("kernel").directory
    head = git(d, "rev-parse", "HEAD")
    mine = git(d, "commit-tree", git(d, "rev-parse", "HEAD^{tree}"), "-p", "HEAD", "-m", "mine")
    git(d, "update-ref", "refs/heads/orch/largepage", mine)
    entry = oplog.ProjectJournal(
        op="moved", kind="apply", pid=2**22 + 7, started="then", projects=["kernel"], project="kernel",
        head=tree.project("kernel").pinned, head_ref=None, touched=[], absent=[], locks=[],
        refs=[oplog.RefChange("refs/heads/orch/largepage", None, head)])
    journal_of(tree, "kernel").write_text(json.dumps(asdict(entry)))
    recovered = lib.recover_interrupted(tree)
    assert git(d, "rev-parse", "refs/heads/orch/largepage") == mine
    assert any("was moved since" in note for note in recovered[0].notes)


# --------------------------------------------------------------------------- bad input


def test_non_utf8_patchset_toml_names_the_file_and_offset(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from orchestrator.cli import main

    (tmp_path / "latin").mkdir()
    (tmp_path / "latin" / "patchset.toml").write_bytes(b'description = "caf\xe9"\n')
    for argv in (["patchset", "list"], ["patchset", "show", "latin"]):
        assert main([*argv, "--patchsets", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert "patchset.toml: not UTF-8: byte offset 18 (0xe9)" in err.replace("\n", "")
    with pytest.raises(InputError) as error:
        lib.resolve(["latin"], [tmp_path])
    assert "byte offset 18" in error.value.message


def test_non_utf8_repo_diff_import_names_the_file_and_offset(tmp_path: Path) -> None:
    diff = tmp_path / "repo.diff"
    diff.write_bytes(b"project kernel/\ndiff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+\xff\n")
    with pytest.raises(InputError) as error:
        lib.import_patchset("latin", diff, tmp_path / "out")
    assert str(diff) in error.value.message and "byte offset 67 (0xff)" in error.value.message
    assert not (tmp_path / "out" / "latin").exists()


def test_unknown_patchset_keys_warn_with_a_guess(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from orchestrator.cli import main
    from tests.test_patchset import make_patchset, simple_patch

    make_patchset(tmp_path, "typo", {"kernel": {"0001-a.patch": simple_patch("a", "x", "y")}})
    config = tmp_path / "typo" / "patchset.toml"
    config.write_text(config.read_text().replace("requires", "require").replace(
        "sha256 =", "sha265 = \"x\"\nsha256 =") + "\n[projects.kernel.extra]\n")
    ps = lib.load_patchset("typo", [tmp_path])
    assert any("unknown key 'require' ignored (did you mean 'requires'?)" in w for w in ps.warnings)
    assert any("unknown key 'sha265' ignored (did you mean 'sha256'?)" in w for w in ps.warnings)
    assert any("[projects.\"kernel\"]: unknown key 'extra'" in w for w in ps.warnings)
    assert main(["patchset", "show", "typo", "--patchsets", str(tmp_path)]) == 0
    assert "did you mean 'requires'?" in capsys.readouterr().err


def test_a_dash_name_is_refused_with_a_consistent_hint() -> None:
    from orchestrator.patchset.config import check_name

    with pytest.raises(InputError) as error:
        check_name("-rf")
    assert error.value.hint is not None and "start with a letter or digit" in error.value.hint
    assert check_name("my-fix.v2") == "my-fix.v2"


def test_import_warns_about_a_project_the_manifest_lacks(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from orchestrator.cli import main
    from tests.support.seed import make_seed_server

    manifest = make_seed_server(tmp_path)
    ws = tmp_path / "ws"
    assert main(["sync", "-q", "-m", str(manifest), "-w", str(ws)]) == 0
    diff = tmp_path / "one.diff"
    diff.write_text("diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n")
    capsys.readouterr()
    code = main(["patchset", "import", "typo", str(diff), "--project", "kernal", "-w", str(ws),
                 "--patchsets", str(tmp_path / "ps")])
    err = capsys.readouterr().err
    assert code == 0
    assert "project 'kernal' is not in the workspace's manifest (did you mean 'kernel'?)" in err


SYMLINK_THEN_WRITE = """From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001
From: A <a@example.org>
Date: Fri, 24 Jul 2026 12:00:00 +0000
Subject: [PATCH] a link, and a file through it

---
diff --git a/lnk b/lnk
new file mode 120000
index 0000000..1111111
--- /dev/null
+++ b/lnk
@@ -0,0 +1 @@
+src
\\ No newline at end of file
diff --git a/lnk/new.c b/lnk/new.c
new file mode 100644
index 0000000..2222222
--- /dev/null
+++ b/lnk/new.c
@@ -0,0 +1 @@
+int x;
"""


def test_check_says_a_patch_writing_through_a_symlink_it_creates_fails(tree: SourceTree,
                                                                       tmp_path: Path) -> None:
    from tests.test_patchset import make_patchset

    make_patchset(tmp_path, "linky", {"kernel": {"0001-link.patch": SYMLINK_THEN_WRITE}})
    chain = lib.resolve(["linky"], [tmp_path])
    report = lib.check(tree, chain)
    assert not report.ok
    failing = report.patches[0].first_failure()
    assert failing is not None and failing.file == "lnk/new.c"
    assert "beyond a symbolic link (lnk)" in failing.reason
    before = snapshot(tree)
    with pytest.raises(InputError) as error:
        lib.apply(tree, chain)
    assert "beyond a symbolic link" in error.value.message
    assert snapshot(tree) == before


# --------------------------------------------------------------------------- the journal alone
# journal.recover on a plain repository: what a killed or crashed apply leaves, undone exactly

BRANCH = "refs/heads/orch/fix"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    checkout = tmp_path / "kernel"
    checkout.mkdir()
    git(checkout, "init", "-q", "-b", "master")
    (checkout / "a.c").write_text("int a;\n")
    (checkout / "README").write_text("not touched by the patches\n")
    git(checkout, "add", "a.c", "README")
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


def test_a_ref_noted_but_never_written_is_no_problem(repo: Path, dead_pid: int) -> None:
    journal = begin(repo, pid=dead_pid)
    head = git(repo, "rev-parse", "HEAD")
    journal.will_write([oplog.RefChange(BRANCH, None, head)])  # killed before writing it
    done = oplog.recover({"kernel": repo})
    assert [(d.outcome, d.notes) for d in done] == [("undone", [])]
    assert git(repo, "for-each-ref", "--format=%(refname)", "refs/heads/orch/") == ""


def test_a_git_failure_while_undoing_is_one_line_naming_the_command(repo: Path, dead_pid: int) -> None:
    journal = begin(repo, pid=dead_pid)
    journal.entry.head = "0" * 40  # a journal naming a commit the repository lacks
    journal.save()
    with pytest.raises(WorkspaceError) as exc:
        oplog.recover({"kernel": repo})
    assert exc.value.message.startswith(f"{repo}: git read-tree: fatal: ")
    assert "\n" not in exc.value.message


def test_every_ref_is_put_back_whatever_the_refs_after_it_hold(repo: Path, dead_pid: int) -> None:
    """Undo walks all the refs: one never written, one the user moved and one the user deleted
    since do not stop it from putting back the refs noted before them."""
    base = git(repo, "rev-parse", "HEAD")
    ours = git(repo, "commit-tree", git(repo, "rev-parse", "HEAD^{tree}"), "-p", base, "-m", "ours")
    theirs = git(repo, "commit-tree", git(repo, "rev-parse", "HEAD^{tree}"), "-p", base, "-m", "theirs")
    journal = begin(repo, pid=dead_pid)
    created, moved_back, moved, gone, never = (f"refs/heads/orch/{n}" for n in
                                                ("created", "moved-back", "moved", "gone", "never"))
    for ref in (moved_back, gone):  # branches that existed before the operation
        git(repo, "update-ref", ref, base)
    journal.will_write([oplog.RefChange(created, None, ours), oplog.RefChange(moved_back, base, ours),
                        oplog.RefChange(moved, None, ours), oplog.RefChange(gone, base, ours),
                        oplog.RefChange(never, None, ours)])
    for ref in (created, moved_back, moved, gone):
        git(repo, "update-ref", ref, ours)
    # killed before writing `never`; then the user moved one ref and deleted another
    git(repo, "update-ref", moved, theirs)
    git(repo, "update-ref", "-d", gone)

    done = oplog.recover({"kernel": repo})
    assert done[0].notes == [f"kernel: {gone} was moved since; left at nothing",
                             f"kernel: {moved} was moved since; left at {theirs}"]
    assert git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/orch/") == (
        f"{moved} {theirs}\n{moved_back} {base}")


def test_undo_leaves_edits_to_files_the_operation_does_not_touch(repo: Path, dead_pid: int) -> None:
    journal = begin(repo, pid=dead_pid)
    half_applied(repo, journal)
    (repo / "README").write_text("the user's edit, made after the crash\n")
    (repo / "notes.txt").write_text("untracked\n")
    oplog.recover({"kernel": repo})
    assert (repo / "a.c").read_text() == "int a;\n"
    assert (repo / "README").read_text() == "the user's edit, made after the crash\n"
    assert (repo / "notes.txt").read_text() == "untracked\n"


def test_undo_restores_paths_named_like_options_with_spaces_or_not_utf8(repo: Path, dead_pid: int) -> None:
    odd = ["-p.c", "two words.c", "caf\udce9.c"]  # the last is the byte 0xe9, not UTF-8
    for name in odd:
        (repo / name).write_text(f"{name!r} at the base\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "odd names")
    head = git(repo, "rev-parse", "HEAD")
    journal = oplog.Journal.begin(git_dir=repo / ".git", checkout=repo, op="odd", kind="apply",
                                  projects=["kernel"], project="kernel", head=head,
                                  head_ref="refs/heads/master", touched=[*odd, "new name.c"])
    journal.entry.pid = dead_pid
    journal.save()
    for name in [*odd, "new name.c"]:
        (repo / name).write_text("half of a patch\n")
    oplog.recover({"kernel": repo})
    assert [(repo / name).read_text() for name in odd] == [f"{name!r} at the base\n" for name in odd]
    assert not (repo / "new name.c").exists()
    assert git(repo, "status", "--porcelain") == ""


def test_a_failing_post_checkout_hook_does_not_stop_the_undo(repo: Path, dead_pid: int) -> None:
    """The user's post-checkout hook is not run by an undo: a hook failing silently made every
    undo stop half-way (refs and new files left) and fail again on each retry."""
    base = git(repo, "rev-parse", "HEAD")
    journal = begin(repo, pid=dead_pid)
    half_applied(repo, journal)
    hook = repo / ".git/hooks/post-checkout"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text("#!/bin/sh\nexit 1\n")
    hook.chmod(0o755)
    assert [d.outcome for d in oplog.recover({"kernel": repo})] == ["undone"]
    assert git(repo, "rev-parse", "HEAD") == base and (repo / "a.c").read_text() == "int a;\n"
    assert not (repo / "new").exists()
    assert git(repo, "for-each-ref", "--format=%(refname)", "refs/heads/orch/") == ""
    assert oplog.interrupted_operations({"kernel": repo}) == []


@pytest.mark.parametrize("existed", [False, True], ids=["created", "moved"])
def test_a_ref_moved_while_undo_runs_is_not_overwritten(repo: Path, dead_pid: int, existed: bool,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The ref is written back only if it still holds what the operation wrote *at the write*:
    one the user moves between undo's check and its write makes the undo fail, not clobber it."""
    base = git(repo, "rev-parse", "HEAD")
    ours = git(repo, "commit-tree", git(repo, "rev-parse", "HEAD^{tree}"), "-p", base, "-m", "ours")
    theirs = git(repo, "commit-tree", git(repo, "rev-parse", "HEAD^{tree}"), "-p", base, "-m", "theirs")
    journal = begin(repo, pid=dead_pid)
    journal.will_write([oplog.RefChange(BRANCH, base if existed else None, ours)])
    git(repo, "update-ref", BRANCH, ours)
    check = oplog._git

    def user_moves_the_ref_after_the_check(checkout: Path, *args: str,
                                           stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        proc = check(checkout, *args, stdin=stdin)
        if args[0] == "rev-parse" and BRANCH in args:
            git(repo, "update-ref", BRANCH, theirs)
        return proc

    monkeypatch.setattr(oplog, "_git", user_moves_the_ref_after_the_check)
    with pytest.raises(WorkspaceError, match="git update-ref"):
        oplog.recover({"kernel": repo})
    assert git(repo, "rev-parse", BRANCH) == theirs
