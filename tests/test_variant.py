"""Variant worktrees against real git: what orch does to work a user leaves in them."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.build.variant_tree import mark_ready, prepare_variant_tree, remove_variant_tree
from orchestrator.workspace.tree import ProjectCheckout, SourceTree
from tests.support.git import git, make_upstream


@pytest.fixture
def source(tmp_path: Path) -> SourceTree:
    up = make_upstream(tmp_path / "server", "kernel.git", {"README": "kernel\n", "src/a.c": "int a;\n"})
    ws = tmp_path / "ws"
    git(tmp_path, "clone", "-q", str(up.bare), str(ws / "kernel"))
    pin = git(ws / "kernel", "rev-parse", "HEAD")
    return SourceTree(ws, {"kernel": ProjectCheckout("kernel", ws / "kernel", pin)})


def prepare(source: SourceTree, key: str, warnings: list[str]) -> Path:
    """Prepare variant 'lp' and put one orch-style patch on its branch, as patchset.apply does."""
    commits = {path: c.pinned for path, c in source.projects.items()}
    variant, ready = prepare_variant_tree(source.root, "lp", source, commits, [], key,
                                          warn=warnings.append)
    assert not ready
    kernel = variant.tree.project("kernel").directory
    git(kernel, "switch", "-q", "-c", f"orch-worktree/{Path(git(kernel, 'rev-parse', '--git-dir')).name}/lp")
    (kernel / "src/a.c").write_text("int a; /* patched */\n")
    git(kernel, "commit", "-q", "-am", "orch's patch")
    mark_ready(variant, key)
    return kernel


def backups(source: SourceTree) -> list[str]:
    return git(source.projects["kernel"].directory, "for-each-ref", "--format=%(refname)",
               "refs/orch/backup/variants/lp/kernel/").split()


def test_changed_inputs_back_up_edits_and_commits_made_in_the_worktree(source: SourceTree) -> None:
    warnings: list[str] = []
    kernel = prepare(source, "one", warnings)
    (kernel / "src/mine.c").write_text("int mine;\n")
    git(kernel, "add", "src/mine.c")
    git(kernel, "commit", "-q", "-m", "my fix")  # moves orch's branch: HEAD is attached to it
    (kernel / "README").write_text("my edit\n")
    (kernel / "notes.txt").write_text("untracked\n")

    prepare(source, "two", warnings)  # the inputs changed: the tree is reset and re-patched

    [ref] = backups(source)
    user = source.projects["kernel"].directory
    assert git(user, "show", f"{ref}:README") == "my edit"
    assert git(user, "show", f"{ref}:notes.txt") == "untracked"
    assert "my fix" in git(user, "log", "--format=%s", ref)
    assert len(warnings) == 1 and ref in warnings[0], warnings
    assert "1 commit" in warnings[0] and "1 untracked file" in warnings[0]
    assert not (kernel / "notes.txt").exists()


def test_removing_the_tree_backs_up_edits(source: SourceTree) -> None:
    warnings: list[str] = []
    kernel = prepare(source, "one", warnings)
    (kernel / "README").write_text("my edit\n")
    remove_variant_tree(source.root, "lp", source, warn=warnings.append)
    [ref] = backups(source)
    assert git(source.projects["kernel"].directory, "show", f"{ref}:README") == "my edit"
    assert not kernel.exists() and len(warnings) == 1


def test_orchs_own_patches_are_not_backed_up(source: SourceTree) -> None:
    warnings: list[str] = []
    prepare(source, "one", warnings)
    prepare(source, "two", warnings)
    remove_variant_tree(source.root, "lp", source, warn=warnings.append)
    assert backups(source) == [] and warnings == []


def test_a_tree_whose_work_cannot_be_backed_up_is_kept_not_lost(source: SourceTree) -> None:
    warnings: list[str] = []
    kernel = prepare(source, "one", warnings)
    (kernel / "README").write_text("my edit\n")
    # A file where the backup ref's directory must go: the backup cannot be written.
    common = Path(git(source.projects["kernel"].directory, "rev-parse", "--git-common-dir"))
    if not common.is_absolute():
        common = source.projects["kernel"].directory / common
    (common / "refs/orch/backup/variants").mkdir(parents=True)
    (common / "refs/orch/backup/variants/lp").write_text("in the way\n")

    remove_variant_tree(source.root, "lp", source, warn=warnings.append)  # must not raise

    assert (kernel / "README").read_text() == "my edit\n"
    assert len(warnings) == 1 and "kept" in warnings[0] and str(kernel) in warnings[0], warnings


def test_nested_and_sibling_projects_are_set_up_in_parallel_outer_first(tmp_path: Path) -> None:
    """Projects are checked out a few at once; one nested in another's path only after it,
    and removed before it (a tree of many projects, several nested, as seL4 manifests nest
    tools/ and projects/)."""
    ws = tmp_path / "ws"
    paths = ["a", "a/b", "a/b/c", "d", "e", "f", "g/h"]
    projects: dict[str, ProjectCheckout] = {}
    for path in paths:
        name = path.replace("/", "_")
        up = make_upstream(tmp_path / "server", f"{name}.git", {f"{name}.txt": f"{name}\n"})
        git(tmp_path, "clone", "-q", str(up.bare), str(tmp_path / "clones" / name))
        clone = tmp_path / "clones" / name
        projects[path] = ProjectCheckout(path, clone, git(clone, "rev-parse", "HEAD"))
    source = SourceTree(ws, projects)
    commits = {path: c.pinned for path, c in projects.items()}

    variant, ready = prepare_variant_tree(ws, "v", source, commits, [], "k")

    assert not ready
    for path in paths:
        checkout = variant.tree.project(path).directory
        assert (checkout / f"{path.replace('/', '_')}.txt").is_file(), path
        assert git(checkout, "rev-parse", "HEAD") == commits[path]
    mark_ready(variant, "k")
    assert prepare_variant_tree(ws, "v", source, commits, [], "k")[1]

    remove_variant_tree(ws, "v", source)

    assert not (variant.base / "src").exists()
    for path in paths:  # every worktree pruned from its repository
        assert git(projects[path].directory, "worktree", "list", "--porcelain").count("worktree ") == 1
