"""Patchsets against real git checkouts of the seed fixture: check, apply, revert, refresh."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w

from orchestrator.errors import InputError, WorkspaceError
from orchestrator.patchset import apply as lib
from orchestrator.patchset.config import PatchRef, Patchset, parse_config, patchset_search_path, write_config
from orchestrator.patchset.dryrun import Status
from orchestrator.shipped import shipped_dir
from orchestrator.workspace.tree import ProjectCheckout, SourceTree
from tests.support.git import Upstream, git
from tests.support.seed import DEVICES, DTS, GUEST_RAM, SETTINGS, VM_MINIMAL, clone_tree, worktree_tree

SHIPPED = [shipped_dir("patchsets")]
LIBS = "projects/seL4_projects_libs"
EXAMPLES = "projects/vm-examples"


@pytest.fixture
def tree(tmp_path: Path, seed_upstreams: dict[str, Upstream]) -> SourceTree:
    """A synced-looking workspace cloned from the session's seed upstreams."""
    return clone_tree(tmp_path / "ws", seed_upstreams)


def read(tree: SourceTree, project: str, rel: str) -> str:
    return (tree.project(project).directory / rel).read_text()


def snapshot(tree: SourceTree) -> dict[str, tuple[str, ...]]:
    """Everything apply must restore: HEAD, its ref, all refs, index/worktree status, files."""
    state: dict[str, tuple[str, ...]] = {}
    for path, checkout in tree.projects.items():
        d = checkout.directory
        files = sorted(
            f"{p.relative_to(d)}:{hashlib.sha256(p.read_bytes()).hexdigest()}"
            for p in d.rglob("*") if p.is_file() and ".git" not in p.relative_to(d).parts
        )
        head_ref = git(d, "rev-parse", "--symbolic-full-name", "HEAD")
        state[path] = (
            git(d, "rev-parse", "HEAD"), head_ref, git(d, "for-each-ref"),
            git(d, "status", "--porcelain"), git(d, "ls-files", "-s"), *files,
        )
    return state


def make_patchset(base: Path, name: str, projects: dict[str, dict[str, str]],
                  requires: list[str] | None = None, *, sha_override: str | None = None) -> Path:
    """A patchset directory under ``base`` from {project: {file name: patch text}}."""
    directory = base / name
    doc: dict[str, object] = {"description": name, "requires": requires or [], "projects": {}}
    for project, patches in projects.items():
        (directory / project).mkdir(parents=True, exist_ok=True)
        entries = []
        for file, text in patches.items():
            (directory / project / file).write_text(text)
            digest = sha_override or hashlib.sha256(text.encode()).hexdigest()
            entries.append({"file": file, "sha256": digest})
        doc["projects"][project] = {"patches": entries}  # type: ignore[index]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "patchset.toml").write_text(tomli_w.dumps(doc))
    return base


def simple_patch(path: str, old: str, new: str, *, header: str = "@@ -1,1 +1,1 @@") -> str:
    return (
        f"From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n"
        f"From: A <a@example.org>\nDate: Fri, 24 Jul 2026 12:00:00 +0000\nSubject: [PATCH] x: y\n\n"
        f"body\n\nSigned-off-by: A <a@example.org>\n---\n"
        f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n{header}\n-{old}\n+{new}\n"
    )


# --------------------------------------------------------------------------- shipped patchsets


def test_resolve_puts_requirements_first_once() -> None:
    assert [p.name for p in lib.resolve(["largepage", "vm-2g"], SHIPPED)] == ["vm-2g", "largepage"]
    largepage = lib.load_patchset("largepage", SHIPPED)
    assert largepage.requires == ["vm-2g"]
    assert list(largepage.projects) == [LIBS, EXAMPLES]
    assert largepage.variants["largepage"]["patchsets"] == ["vm-2g", "largepage"]
    assert largepage.build["platform"] == "qemu-arm-virt"


def test_shipped_patches_are_format_patch_mails_with_signoff() -> None:
    for ps in lib.resolve(["largepage"], SHIPPED):
        for ref in ps.patches():
            text = ref.path.read_text()
            assert text.startswith("From 0000000000000000000000000000000000000000")
            assert "Signed-off-by: orch maintainers <orch@example.org>" in text
            assert hashlib.sha256(ref.path.read_bytes()).hexdigest() == ref.sha256
    libsel4vm = lib.load_patchset("largepage", SHIPPED).projects[LIBS][0].path.read_text()
    assert "Subject: [PATCH] libsel4vm: map guest RAM with 2 MiB frames" in libsel4vm
    assert "(2 GiB / 4 KiB) * 2 * (sizeof(node) + overhead)" in libsel4vm


def test_shipped_patchsets_check_and_apply_cleanly_to_the_seed_fixture(tree: SourceTree) -> None:
    chain = lib.resolve(["largepage"], SHIPPED)
    report = lib.check(tree, chain)
    assert report.ok
    assert {h.status for p in report.patches for h in p.hunks} == {Status.APPLIES}
    assert all(h.offset == 0 for p in report.patches for h in p.hunks)

    applied = lib.apply(tree, chain)
    assert not applied.noop
    assert "0x0 0x40000000 0x0 0x80000000" in read(tree, "kernel", DTS)
    assert "PAGE_ALIGN_2M(current_addr)" in read(tree, LIBS, GUEST_RAM)
    assert "int page_size = seL4_LargePageBits;" in read(tree, LIBS, GUEST_RAM)
    devices = read(tree, EXAMPLES, DEVICES)
    assert "#define VM_RAM_SIZE 0x80000000" in devices
    assert '"0x80000000:30",' in devices and "vm0.allocator_mempool_size = 0x100000;" in devices
    assert 'set(QEMU_MEMORY "4096")' in read(tree, EXAMPLES, SETTINGS)
    assert "vm0.cnode_size_bits = 18;" in read(tree, EXAMPLES, VM_MINIMAL)

    examples = tree.project(EXAMPLES).directory
    assert git(examples, "symbolic-ref", "HEAD") == "refs/heads/orch/largepage"
    assert git(examples, "log", "--format=%s|%an", "orch/vm-2g", "-1") == (
        "vm_minimal: give the qemu-arm-virt guest 2 GiB RAM|orch maintainers")
    assert git(examples, "rev-parse", "orch/largepage~1") == git(examples, "rev-parse", "orch/vm-2g")
    assert git(tree.project("kernel").directory, "symbolic-ref", "HEAD") == "refs/heads/orch/vm-2g"
    assert lib.applied_patchsets(tree) == {
        "kernel": ["vm-2g"], LIBS: ["largepage"], EXAMPLES: ["vm-2g", "largepage"]}


def test_apply_twice_is_a_noop_and_check_says_already_applied(tree: SourceTree) -> None:
    chain = lib.resolve(["largepage"], SHIPPED)
    lib.apply(tree, chain)
    before = snapshot(tree)
    again = lib.apply(tree, chain)
    assert again.noop
    assert all(p.already_applied for p in again.projects)
    assert snapshot(tree) == before
    assert {p.status for p in lib.check(tree, chain).patches} == {Status.ALREADY_APPLIED}


def test_apply_vm2g_then_largepage_stacks_on_top(tree: SourceTree) -> None:
    lib.apply(tree, lib.resolve(["vm-2g"], SHIPPED))
    report = lib.apply(tree, lib.resolve(["largepage"], SHIPPED))
    examples = next(p for p in report.projects if p.project == EXAMPLES)
    assert examples.already_applied == ["vm-2g"]
    assert [c.patchset for c in examples.commits] == ["largepage"]
    assert lib.applied_patchsets(tree)[EXAMPLES] == ["vm-2g", "largepage"]


# --------------------------------------------------------------------------- check report


def test_check_reports_each_hunk_with_file_header_and_reason(tree: SourceTree) -> None:
    kernel_dts = tree.project("kernel").directory / DTS
    kernel_dts.write_text(kernel_dts.read_text().replace("\t\t\tno-map;", "\t\t\tno-map; /* x */"))
    devices = tree.project(EXAMPLES).directory / DEVICES
    devices.write_text("/* a */\n/* b */\n/* c */\n" + devices.read_text())
    settings = tree.project(EXAMPLES).directory / SETTINGS
    settings.write_text(settings.read_text().replace("31\nendif()", "31\nendif() # x"))
    (tree.project(LIBS).directory / GUEST_RAM).unlink()

    report = lib.check(tree, lib.resolve(["largepage"], SHIPPED))
    assert not report.ok
    hunks = {(p.project, h.file, h.header.split(" @@")[0]): h for p in report.patches for h in p.hunks}
    dts = hunks[("kernel", DTS, "@@ -13,7 +13,7")]
    assert (dts.status, dts.reason) == (Status.FAILS, "context not found")
    moved = hunks[(EXAMPLES, DEVICES, "@@ -8,7 +8,7")]
    assert (moved.status, moved.offset, moved.reason) == (Status.APPLIES, 3, "offset +3 lines")
    fuzz = hunks[(EXAMPLES, SETTINGS, "@@ -32,7 +32,7")]
    assert fuzz.status is Status.FAILS and fuzz.reason.startswith("needs fuzz")
    missing = hunks[(LIBS, GUEST_RAM, "@@ -169,14 +169,14")]
    assert (missing.status, missing.reason) == (Status.FAILS, "file missing")
    # the largepage hunk on devices.camkes is judged against the tree after vm-2g's patch
    on_top = hunks[(EXAMPLES, DEVICES, "@@ -42,5 +42,7")]
    assert on_top.status is Status.APPLIES


# --------------------------------------------------------------------------- atomicity


def test_failure_in_the_third_project_restores_every_project_exactly(tree: SourceTree) -> None:
    kernel = tree.project("kernel").directory
    git(kernel, "checkout", "-q", "-b", "work")  # a user branch: must stay checked out and unmoved
    hooks = Path(git(tree.project(LIBS).directory, "rev-parse", "--git-path", "hooks"))
    if not hooks.is_absolute():
        hooks = tree.project(LIBS).directory / hooks
    hooks.mkdir(parents=True, exist_ok=True)
    hook = hooks / "applypatch-msg"
    hook.write_text("#!/bin/sh\necho 'rejected by hook' >&2\nexit 1\n")
    hook.chmod(0o755)
    for checkout in tree.projects.values():
        (checkout.directory / "untracked-notes.txt").write_text("keep me\n")
    before = snapshot(tree)

    chain = lib.resolve(["largepage"], SHIPPED)
    order = [p for ps in chain for p in ps.projects]
    assert list(dict.fromkeys(order))[2] == LIBS  # it really is the third project
    with pytest.raises(InputError) as error:
        lib.apply(tree, chain)
    assert "0001-libsel4vm-map-guest-RAM-with-2-MiB-frames.patch" in error.value.message
    assert snapshot(tree) == before
    assert git(kernel, "symbolic-ref", "HEAD") == "refs/heads/work"


def test_failing_hunk_is_named_and_nothing_is_applied(tree: SourceTree) -> None:
    settings = tree.project(EXAMPLES).directory / SETTINGS
    d = tree.project(EXAMPLES).directory
    settings.write_text(settings.read_text().replace('QEMU_MEMORY "2048"', 'QEMU_MEMORY "1024"'))
    git(d, "commit", "-q", "-am", "drift")
    before = snapshot(tree)
    with pytest.raises(InputError) as error:
        lib.apply(tree, lib.resolve(["largepage"], SHIPPED))
    message = error.value.message
    assert "0001-vm_minimal-give-the-qemu-arm-virt-guest-2-GiB-of-RAM.patch" in message
    assert '@@ -32,7 +32,7 @@ if(${PLATFORM} STREQUAL "odroidc2")' in message
    assert "context not found" in message
    assert snapshot(tree) == before


def with_fixture_index_lines(tree: SourceTree, name: str, base: Path) -> list[Path]:
    """A copy of shipped patchset ``name`` whose ``index`` lines name the fixture's pre-image
    blobs. The shipped patches were made against the real upstream sources, so their
    ``index`` lines name upstream blobs, which a three-way merge needs as the base and the
    fixture does not have."""
    shutil.copytree(SHIPPED[0] / name, base / name)
    config = base / name / "patchset.toml"
    text = config.read_text()
    for patch in sorted((base / name).rglob("*.patch")):
        project = str(patch.parent.relative_to(base / name))
        checkout = tree.project(project)
        lines, path = patch.read_text().splitlines(keepends=True), ""
        for i, line in enumerate(lines):
            if line.startswith("diff --git a/"):
                path = line.split()[2][2:]
            elif line.startswith("index ") and ".." in line:
                blob = git(checkout.directory, "rev-parse", "--short", f"{checkout.pinned}:{path}")
                lines[i] = f"index {blob}..{line.split('..', 1)[1]}"
        before = hashlib.sha256(patch.read_bytes()).hexdigest()
        patch.write_text("".join(lines))
        text = text.replace(before, hashlib.sha256(patch.read_bytes()).hexdigest())
    config.write_text(text)
    return [base]


def drift_settings_cmake(tree: SourceTree) -> SourceTree:
    """Upstream moved on: the context of vm-2g's settings.cmake hunk changed."""
    d = tree.project(EXAMPLES).directory
    settings = d / SETTINGS
    settings.write_text(settings.read_text().replace("31\nendif()", "31\nendif() # x"))
    git(d, "commit", "-q", "-am", "upstream moved on")
    return SourceTree(tree.root, {**tree.projects, EXAMPLES: ProjectCheckout(
        EXAMPLES, d, git(d, "rev-parse", "HEAD"))})


def test_three_way_without_the_base_blob_says_why(tree: SourceTree) -> None:
    """The shipped patches name upstream's blobs; on other sources --3way cannot build the
    merge base, and the error says so instead of git's 'sha1 information is lacking'."""
    moved = drift_settings_cmake(tree)
    before = snapshot(moved)
    with pytest.raises(InputError, match=r"vm-2g: projects/vm-examples/0001-.*: the three-way merge "
                                         r"needs the blob the patch was made against") as caught:
        lib.apply(moved, lib.resolve(["vm-2g"], SHIPPED), three_way=True)
    assert "index" in (caught.value.hint or "")
    assert snapshot(moved) == before


def test_three_way_merges_drifted_context_and_reports_it(tree: SourceTree, tmp_path: Path) -> None:
    moved = drift_settings_cmake(tree)
    d = tree.project(EXAMPLES).directory
    settings = d / SETTINGS
    chain = lib.resolve(["vm-2g"], with_fixture_index_lines(tree, "vm-2g", tmp_path / "own"))
    with pytest.raises(InputError):
        lib.apply(moved, chain)
    report = lib.apply(moved, chain, three_way=True)
    examples = next(p for p in report.projects if p.project == EXAMPLES)
    assert any(SETTINGS in m for m in examples.merged)
    text = settings.read_text()
    assert 'set(QEMU_MEMORY "4096")' in text and "endif() # x" in text


# --------------------------------------------------------------------------- revert


def test_revert_restores_pins_and_keeps_commits_on_branches(tree: SourceTree) -> None:
    pristine = snapshot(tree)
    chain = lib.resolve(["largepage"], SHIPPED)
    lib.apply(tree, chain)
    d = tree.project(EXAMPLES).directory
    (d / "extra.txt").write_text("mine\n")
    git(d, "add", "extra.txt")
    git(d, "commit", "-q", "-m", "my own work")
    mine = git(d, "rev-parse", "HEAD")
    report = lib.revert(tree, chain)
    assert all(p.changed for p in report.projects)
    after = snapshot(tree)
    for path in tree.projects:
        assert after[path][0] == tree.project(path).pinned
        assert after[path][1] == "HEAD"  # detached
    assert git(d, "rev-parse", "orch/largepage") == mine  # the user's commit is kept
    assert {p: s[5:] for p, s in after.items()} == {p: s[5:] for p, s in pristine.items()}


def test_revert_keeps_a_detached_head_commit_on_a_backup_branch(tree: SourceTree) -> None:
    d = tree.project("kernel").directory
    (d / "note.txt").write_text("x\n")
    git(d, "add", "note.txt")
    git(d, "commit", "-q", "-m", "detached work")
    work = git(d, "rev-parse", "HEAD")
    report = lib.revert(tree, None)
    kernel = next(p for p in report.projects if p.project == "kernel")
    assert kernel.backup is not None
    assert git(d, "rev-parse", kernel.backup) == work


def test_revert_refuses_uncommitted_edits_and_lists_them(tree: SourceTree) -> None:
    chain = lib.resolve(["largepage"], SHIPPED)
    lib.apply(tree, chain)
    (tree.project(EXAMPLES).directory / VM_MINIMAL).write_text("edited\n")
    before = snapshot(tree)
    with pytest.raises(WorkspaceError) as error:
        lib.revert(tree, chain)
    assert f"{EXAMPLES}: {VM_MINIMAL}" in error.value.message
    assert snapshot(tree) == before


def test_apply_refuses_uncommitted_edits(tree: SourceTree) -> None:
    (tree.project(LIBS).directory / GUEST_RAM).write_text("edited\n")
    before = snapshot(tree)
    with pytest.raises(WorkspaceError) as error:
        lib.apply(tree, lib.resolve(["largepage"], SHIPPED))
    assert GUEST_RAM in error.value.message
    assert snapshot(tree) == before


# --------------------------------------------------------------------------- round trip


def repo_diff_text(tree: SourceTree) -> str:
    """`repo diff` of the tree with the shipped largepage applied, with prose around it."""
    chain = lib.resolve(["largepage"], SHIPPED)
    lib.apply(tree, chain)
    parts = ["I tried this on qemu-arm-virt:\n\n"]
    for path, checkout in tree.projects.items():
        parts.append(f"project {path}/\n")
        parts.append(git(checkout.directory, "diff", checkout.pinned, "HEAD") + "\n\n")
    parts.append("Running\n\nWelcome to Buildroot\n")
    lib.revert(tree, chain)
    return "".join(parts)


def tree_ids(tree: SourceTree) -> dict[str, str]:
    return {p: git(c.directory, "rev-parse", "HEAD^{tree}") for p, c in tree.projects.items()}


def test_round_trip_import_apply_amend_refresh_revert_apply(tree: SourceTree, tmp_path: Path) -> None:
    source = tmp_path / "seed.txt"
    source.write_text(repo_diff_text(tree))
    user_dir = tmp_path / "mine"
    ps = lib.import_patchset("seedfix", source, user_dir, description="the seed's fix")
    assert list(ps.projects) == ["kernel", LIBS, EXAMPLES]
    search = patchset_search_path([user_dir], {})
    chain = lib.resolve(["seedfix"], search)
    lib.apply(tree, chain)

    d = tree.project(EXAMPLES).directory
    devices = d / DEVICES
    devices.write_text(devices.read_text().replace("0x100000; // 1MB", "0x200000; // 2MB"))
    git(d, "commit", "-q", "-a", "--amend", "--no-edit")
    amended = tree_ids(tree)
    old_files = {r.file for r in ps.patches()}

    report = lib.refresh(tree, lib.load_patchset("seedfix", search))
    assert {p.status for p in report.patches if p.project == EXAMPLES} == {"updated"}
    assert {p.status for p in report.patches if p.project != EXAMPLES} == {"unchanged"}
    refreshed = lib.load_patchset("seedfix", search)
    assert {r.file for r in refreshed.patches()} == old_files
    assert "0x200000; // 2MB" in refreshed.projects[EXAMPLES][0].path.read_text()

    lib.revert(tree, [refreshed])
    assert all(git(c.directory, "rev-parse", "HEAD") == c.pinned for c in tree.projects.values())
    lib.apply(tree, lib.resolve(["seedfix"], search))
    assert tree_ids(tree) == amended


def test_refresh_refuses_commits_of_a_required_patchset_rewritten_on_its_branch(
        tree: SourceTree, tmp_path: Path) -> None:
    """Amending vm-2g's commit while on largepage's branch must not put it into largepage."""
    mine = tmp_path / "mine"
    shutil.copytree(SHIPPED[0], mine)
    search = [mine]
    lib.apply(tree, lib.resolve(["largepage"], search))
    d = tree.project(EXAMPLES).directory
    top = git(d, "rev-parse", "HEAD")
    git(d, "checkout", "-q", "--detach", "HEAD~1")  # vm-2g's commit
    devices = d / DEVICES
    devices.write_text(devices.read_text() + "/* amended */\n")
    git(d, "commit", "-q", "-a", "--amend", "--no-edit")
    git(d, "cherry-pick", top)
    git(d, "branch", "-f", "orch/largepage", "HEAD")
    git(d, "checkout", "-q", "orch/largepage")
    before = {p.relative_to(mine): p.read_bytes() for p in mine.rglob("*") if p.is_file()}

    with pytest.raises(WorkspaceError) as error:
        lib.refresh(tree, lib.load_patchset("largepage", search))
    assert "orch patchset refresh vm-2g" in str(error.value.hint)
    assert {p.relative_to(mine): p.read_bytes() for p in mine.rglob("*") if p.is_file()} == before


def test_import_from_a_directory_of_format_patch_files(tmp_path: Path, tree: SourceTree) -> None:
    shipped = lib.load_patchset("vm-2g", SHIPPED)
    ps = lib.import_patchset("copy", shipped.directory, tmp_path / "ps")
    assert {(r.project, r.file, r.sha256) for r in ps.patches()} == {
        (r.project, r.file, r.sha256) for r in shipped.patches()
    }
    assert lib.check(tree, [ps]).ok


def test_import_keeps_the_first_user_dir_else_cwd() -> None:
    env = {"ORCH_PATCHSETS": os.pathsep.join(["/env/a", "/env/b"])}
    assert lib.patchset_search_path(["cli"], env) == [Path("cli"), Path("/env/a"), Path("/env/b"), *SHIPPED]
    assert lib.import_target_dir([], env) == Path("/env/a")
    assert lib.import_target_dir([], {}) == Path("patchsets")


# --------------------------------------------------------------------------- bad input


def assert_refused(tree: SourceTree, base: Path, name: str, expected: str) -> None:
    before = snapshot(tree)
    search = [base, *SHIPPED]
    with pytest.raises(InputError) as error:
        lib.apply(tree, lib.resolve([name], search))
    assert expected in error.value.message
    assert snapshot(tree) == before


def test_bad_input_parent_path(tree: SourceTree, tmp_path: Path) -> None:
    base = make_patchset(tmp_path, "dotdot", {"kernel": {"0001-x.patch": simple_patch("../x", "a", "b")}})
    assert_refused(tree, base, "dotdot", "leaves its project")


def test_bad_input_absolute_path(tree: SourceTree, tmp_path: Path) -> None:
    text = "--- /etc/hosts\n+++ /etc/hosts\n@@ -1,1 +1,1 @@\n-a\n+b\n"
    base = make_patchset(tmp_path, "abs", {"kernel": {"0001-x.patch": text}})
    assert_refused(tree, base, "abs", "is absolute")


def test_bad_input_symlink_escape(tree: SourceTree, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("a\n")
    (tree.project("kernel").directory / "escape").symlink_to(outside)
    patch = simple_patch("escape/victim", "a", "b")
    base = make_patchset(tmp_path / "ps", "escape", {"kernel": {"0001-x.patch": patch}})
    assert_refused(tree, base, "escape", "outside its project through a symlink")
    assert (outside / "victim").read_text() == "a\n"


def test_bad_input_project_not_in_manifest(tree: SourceTree, tmp_path: Path) -> None:
    base = make_patchset(tmp_path, "nope", {"projects/nope": {"0001-x.patch": simple_patch("x", "a", "b")}})
    assert_refused(tree, base, "nope", "'projects/nope' is not in the workspace manifest")


def test_bad_input_malformed_diff(tree: SourceTree, tmp_path: Path) -> None:
    text = simple_patch(DTS, "a", "b", header="@@ -1,5 +1,5 @@")  # hunk shorter than its header says
    base = make_patchset(tmp_path, "bad", {"kernel": {"0001-x.patch": text + "garbage\n"}})
    assert_refused(tree, base, "bad", "bad: kernel/0001-x.patch: malformed diff")


def test_bad_input_no_diff_names_patchset_project_and_file(tree: SourceTree, tmp_path: Path) -> None:
    base = make_patchset(tmp_path, "prose", {"kernel": {"0001-x.patch": "just prose, no diff\n"}})
    assert_refused(tree, base, "prose", "prose: kernel/0001-x.patch: no diff found")


def test_bad_input_binary_diff(tree: SourceTree, tmp_path: Path) -> None:
    text = ("diff --git a/logo.png b/logo.png\nnew file mode 100644\nindex 0000000..1111111\n"
            "GIT binary patch\nliteral 3\nKcmZ?wf&c&j0RR91\n\nliteral 0\nHcmV?d00001\n\n")
    base = make_patchset(tmp_path, "bin", {"kernel": {"0001-x.patch": text}})
    assert_refused(tree, base, "bin", "binary diffs are not supported")


def test_bad_input_checksum_mismatch(tree: SourceTree, tmp_path: Path) -> None:
    base = make_patchset(tmp_path, "sum", {"kernel": {"0001-x.patch": simple_patch(DTS, "a", "b")}},
                         sha_override="0" * 64)
    assert_refused(tree, base, "sum", "checksum mismatch for kernel/0001-x.patch")


def test_bad_input_requires_cycle(tree: SourceTree, tmp_path: Path) -> None:
    make_patchset(tmp_path, "a", {}, requires=["b"])
    make_patchset(tmp_path, "b", {}, requires=["a"])
    assert_refused(tree, tmp_path, "a", "requires-cycle: a -> b -> a")


def test_bad_input_unknown_patchset(tree: SourceTree, tmp_path: Path) -> None:
    assert_refused(tree, tmp_path, "no-such", "unknown patchset 'no-such'")


def test_bad_config_tables_are_refused(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "patchset.toml").write_text('build = "nope"\n')
    with pytest.raises(InputError, match="'build' must be a table"):
        lib.load_patchset("x", [tmp_path])


# --------------------------------------------------------------------------- worktrees


def test_apply_on_git_worktrees_works_alongside_the_workspace(tree: SourceTree, tmp_path: Path) -> None:
    chain = lib.resolve(["largepage"], SHIPPED)
    lib.apply(tree, chain)
    variant = worktree_tree(tree, tmp_path / "variant")
    report = lib.apply(variant, chain)
    assert not report.noop
    assert "vm0.cnode_size_bits = 18;" in read(variant, EXAMPLES, VM_MINIMAL)
    branch = git(variant.project(EXAMPLES).directory, "symbolic-ref", "HEAD")
    assert branch.startswith("refs/heads/orch-worktree/") and branch.endswith("/largepage")
    assert lib.applied_patchsets(variant) == lib.applied_patchsets(tree)
    lib.revert(variant, chain)
    assert git(tree.project(EXAMPLES).directory, "symbolic-ref", "HEAD") == "refs/heads/orch/largepage"


def test_apply_works_for_a_user_with_no_git_identity(tree: SourceTree,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh machine with no user.email: `git am` must still commit (the patch's author is
    kept, the committer falls back to orch) instead of failing with 'unable to auto-detect'."""
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("EMAIL", "")
    lib.apply(tree, lib.resolve(["largepage"], SHIPPED))
    libs = tree.project(LIBS).directory
    assert git(libs, "log", "-1", "--format=%an <%ae>") == "orch maintainers <orch@example.org>"
    assert git(libs, "log", "-1", "--format=%ce") == "orch@localhost"


def test_apply_refuses_staged_changes_and_keeps_them_staged(tree: SourceTree) -> None:
    """git am refuses a dirty index; the user's `git add` must survive the refusal staged,
    in every project (a rollback must not unstage it)."""
    for checkout in tree.projects.values():
        (checkout.directory / "mine.txt").write_text("staged work\n")
        git(checkout.directory, "add", "mine.txt")
    before = snapshot(tree)
    with pytest.raises(WorkspaceError) as error:
        lib.apply(tree, lib.resolve(["largepage"], SHIPPED))
    assert "staged" in error.value.message and "kernel: mine.txt" in error.value.message
    assert snapshot(tree) == before


def test_a_written_patchset_toml_reads_back_the_same(tmp_path: Path) -> None:
    directory = tmp_path / "new" / "dir" / "fix"  # import may write where nothing exists yet
    patch = PatchRef("kernel", "0001-fix.patch", "ab" * 32, directory / "kernel/0001-fix.patch")
    written = Patchset("fix", directory, description="the largepage fix", requires=["base"],
                       projects={"kernel": [patch]}, build={"app": "vm_minimal"},
                       variants={"big": {"memory": {"guest_ram": "2G"}}},
                       params={"frame": {"file": "x.c", "values": ["4K", "2M"]}})
    write_config(written)
    back = parse_config("fix", directory)
    assert back == written


def test_patchset_toml_is_written_as_utf8_whatever_the_locale(tmp_path: Path) -> None:
    """TOML is UTF-8: an orch running under an ASCII locale (C, no UTF-8 mode) writes a
    description with non-ASCII text byte for byte as one under a UTF-8 locale does."""
    description = "Größe: 2 MiB, café"
    write_config(Patchset("fix", tmp_path / "here", description=description))
    script = ("import sys; from pathlib import Path; "
              "from orchestrator.patchset.config import Patchset, write_config; "
              f"write_config(Patchset('fix', Path(sys.argv[1]), description={description!a}))")
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "ascii")], env=env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    written = [(tmp_path / d / "patchset.toml").read_bytes() for d in ("here", "ascii")]
    assert written[0] == written[1] and description.encode() in written[0]
    assert parse_config("fix", tmp_path / "ascii").description == description
