"""`orch sync` against real git: bare upstreams and a manifest repository with a relative
remote (``fetch="../seL4"``), driven through the real CLI."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.errors import EXIT_USAGE, InfraError
from orchestrator.layout import CHECKOUT_JOURNAL as JOURNAL
from orchestrator.workspace.sync import Workspace
from tests.support.cli import orch
from tests.support.git import Upstream, git, make_manifest_repo, make_upstream


@dataclass
class Server:
    """``<tmp>/git/seL4/{manifest, kernel.git, tools.git, libs}`` plus the pins used."""

    dir: Path
    manifest: Upstream
    kernel: Upstream
    tools: Upstream
    libs: Upstream
    kernel_pin: str  # not the branch tip: reachable only through upstream="master"

    def write_manifest(self, body: str, message: str = "update", file: str = "default.xml") -> str:
        return self.manifest.commit({file: manifest_xml(body)}, message)


def manifest_xml(body: str) -> str:
    return ('<?xml version="1.0"?>\n<manifest>\n  <remote name="seL4" fetch="../seL4"/>\n'
            f'  <default remote="seL4" revision="master"/>\n{body}\n</manifest>\n')


def default_body(server: Server) -> str:
    return f"""
  <project name="kernel.git" path="kernel" revision="{server.kernel_pin}" upstream="master"
           dest-branch="master"/>
  <project name="tools.git" path="tools/seL4" revision="refs/tags/v1.0">
    <linkfile src="cmake-tool/init-build.sh" dest="init-build.sh"/>
    <copyfile src="settings.cmake" dest="easy-settings.cmake"/>
  </project>
  <project name="libs" path="projects/libs" revision="release"/>
"""


@pytest.fixture
def server(tmp_path: Path) -> Server:
    seL4 = tmp_path / "git" / "seL4"
    kernel = make_upstream(seL4, "kernel.git", {"README": "kernel v1\n", "src/a.c": "int a;\n"})
    pin = kernel.commit({"src/b.c": "int b;\n"}, "kernel: b")
    kernel.commit({"src/c.c": "int c;\n"}, "kernel: c (after the pin)")
    tools = make_upstream(seL4, "tools.git", {"cmake-tool/init-build.sh": "#!/bin/sh\necho init\n",
                                              "settings.cmake": "set(X 1)\n"})
    tools.tag("v1.0")
    tools.commit({"settings.cmake": "set(X 2)\n"}, "tools: after the tag")
    libs = make_upstream(seL4, "libs", {"libs.c": "int libs;\n"})
    libs.commit({"libs.c": "int libs_release;\n"}, "libs release", branch="release")
    manifest = make_manifest_repo(seL4, "manifest", {"default.xml": "<manifest/>"})
    s = Server(seL4, manifest, kernel, tools, libs, pin)
    s.write_manifest(default_body(s), "manifest")
    return s


def sync_json(capsys: pytest.CaptureFixture[str], ws: Path, *args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    code, out, err = orch(capsys, "sync", "-w", str(ws), "--json", "-q", *args)
    assert out, err
    return code, json.loads(out)


def actions(report: dict) -> dict[str, str]:  # type: ignore[type-arg]
    return {p["path"]: p["action"] for p in report["projects"]}


@pytest.fixture
def synced(server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    ws = tmp_path / "ws"
    code, report = sync_json(capsys, ws, "-m", str(server.manifest.bare))
    assert code == 0, report
    return ws


# --- the happy path --------------------------------------------------------------------------


def test_cold_sync_lays_out_the_workspace_like_repo(server: Server, synced: Path) -> None:
    ws = synced
    kernel = ws / "kernel"
    assert (kernel / ".git").is_file(), "the checkout has a gitfile, never a .git directory"
    assert (ws / ".orch/projects/kernel.git").is_dir()
    assert git(kernel, "rev-parse", "HEAD") == server.kernel_pin
    assert subprocess.run(["git", "symbolic-ref", "-q", "HEAD"], cwd=kernel).returncode == 1  # detached
    assert not (kernel / "src/c.c").exists() and (kernel / "src/b.c").is_file()
    assert git(ws / "tools/seL4", "rev-parse", "HEAD") == git(server.tools.bare, "rev-parse", "v1.0^{commit}")
    assert (ws / "projects/libs/libs.c").read_text() == "int libs_release;\n"
    link = ws / "init-build.sh"
    assert link.is_symlink() and os.readlink(link) == "tools/seL4/cmake-tool/init-build.sh"
    assert (ws / "easy-settings.cmake").read_text() == "set(X 1)\n"
    # musllibc's build does `rm -f src/.git` on a copy of the tree: a gitfile makes that work
    copy = ws.parent / "copy"
    shutil.copytree(kernel, copy)
    subprocess.run(["rm", "-f", str(copy / ".git")], check=True)


def test_state_records_source_and_every_project(server: Server, synced: Path) -> None:
    state = json.loads((synced / ".orch/state.json").read_text())
    source = state["manifest"]["source"]
    assert source["url"] == str(server.manifest.bare) and source["file"] == "default.xml"
    assert state["manifest"]["commit"] == server.manifest.head()
    kernel = state["projects"]["kernel"]
    assert kernel["name"] == "kernel.git"
    assert kernel["url"] == str(server.dir / "kernel.git")
    assert kernel["sha"] == server.kernel_pin and kernel["upstream"] == "master"
    assert kernel["dest_branch"] == "master"
    tools = state["projects"]["tools/seL4"]
    assert tools["linkfiles"] == [{"src": "cmake-tool/init-build.sh", "dest": "init-build.sh"}]
    assert tools["copyfiles"] == [{"src": "settings.cmake", "dest": "easy-settings.cmake"}]
    tree = Workspace(synced).tree()
    assert tree.project("kernel").pinned == server.kernel_pin
    assert tree.project("kernel").directory == synced / "kernel"
    assert Workspace(synced).git_dir("kernel") == synced / ".orch/projects/kernel.git"


def test_noop_resync_fetches_nothing_and_says_so(server: Server, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    tools_sha = git(server.tools.bare, "rev-parse", "v1.0^{commit}")
    server.write_manifest(default_body(server).replace("refs/tags/v1.0", tools_sha)
                          .replace('revision="release"', f'revision="{server.libs.head("release")}"'))
    ws = tmp_path / "pinned"
    code, report = sync_json(capsys, ws, "-m", str(server.manifest.bare), "-b", server.manifest.head())
    assert code == 0, report
    # every upstream (and the manifest repository) unreachable: a no-op re-sync needs none of them
    server.dir.rename(server.dir.with_name("moved"))
    code, out, err = orch(capsys, "sync", "-w", str(ws))
    assert code == 0, err
    assert "nothing to do" in out
    code, report = sync_json(capsys, ws)
    assert report["nothing_to_do"] is True and set(actions(report).values()) == {"unchanged"}


def test_branch_revisions_are_refetched_like_repo(server: Server, synced: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, report = sync_json(capsys, synced, "-b", server.manifest.head())
    assert code == 0
    server.dir.rename(server.dir.with_name("moved"))
    code, report = sync_json(capsys, synced)
    assert code == 125
    assert actions(report)["kernel"] == "unchanged" and actions(report)["projects/libs"] == "failed"


def test_resync_reuses_the_recorded_source_and_follows_updates(
        server: Server, synced: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new_libs = server.libs.commit({"libs.c": "int libs_v2;\n"}, "libs v2", branch="release")
    code, report = sync_json(capsys, synced)
    assert code == 0
    assert actions(report)["projects/libs"] == "updated"
    assert actions(report)["kernel"] == "unchanged"
    assert git(synced / "projects/libs", "rev-parse", "HEAD") == new_libs
    # a new manifest commit on the recorded branch is picked up too
    server.write_manifest(default_body(server).replace(server.kernel_pin, server.kernel.head()))
    code, report = sync_json(capsys, synced)
    assert code == 0 and actions(report)["kernel"] == "updated"
    assert git(synced / "kernel", "rev-parse", "HEAD") == server.kernel.head()


def test_stale_linkfile_is_removed_when_the_manifest_drops_it(
        server: Server, synced: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server.write_manifest(default_body(server).replace(
        '<linkfile src="cmake-tool/init-build.sh" dest="init-build.sh"/>', ""))
    code, report = sync_json(capsys, synced)
    assert code == 0
    assert not (synced / "init-build.sh").is_symlink()
    removed = {"kind": "linkfile", "dest": "init-build.sh", "action": "removed", "reason": None}
    assert removed in report["links"]


@pytest.mark.parametrize(("dest", "kind"), [("init-build.sh", "linkfile"),
                                           ("easy-settings.cmake", "copyfile")])
def test_a_file_of_the_users_where_a_link_goes_is_left_alone_with_exit_2(
        server: Server, tmp_path: Path, dest: str, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A file the user put where a linkfile/copyfile goes is kept, and the sync says so with exit
    2 (a workspace state to resolve), not 1, which `git bisect run` reads as a bad revision."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / dest).write_text("mine\n")
    code, report = sync_json(capsys, ws, "-m", str(server.manifest.bare))
    assert code == EXIT_USAGE, report
    assert set(actions(report).values()) == {"cloned"}, "every project is checked out"
    skipped = [x for x in report["links"] if x["action"] == "skipped"]
    assert [(x["kind"], x["dest"]) for x in skipped] == [(kind, dest)]
    assert (ws / dest).read_text() == "mine\n"


def test_manifest_from_a_local_file_with_manifest_url(server: Server, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    xml = tmp_path / "mine.xml"
    xml.write_text(manifest_xml(f'<project name="kernel.git" path="kernel" revision="{server.kernel_pin}"/>'))
    ws = tmp_path / "ws2"
    code, _out, err = orch(capsys, "sync", "-w", str(ws), "-m", str(xml))
    assert code == 2 and 'mine.xml: <remote name="seL4">: relative fetch' in err
    code, report = sync_json(capsys, ws, "-m", str(xml), "--manifest-url", str(server.manifest.bare))
    assert code == 0 and actions(report) == {"kernel": "cloned"}


def test_local_manifests_add_drop_and_extend(server: Server, synced: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    extra = make_upstream(server.dir, "extra", {"x": "x\n"})
    local = synced / ".orch/local_manifests"
    local.mkdir(parents=True)
    (local / "10-drop.xml").write_text('<manifest><remove-project name="libs"/></manifest>')
    (local / "20-more.xml").write_text(
        f'<manifest><project name="extra" path="tools/extra"/>'
        f'<extend-project name="kernel.git" revision="{server.kernel.commits[0]}"/></manifest>')
    code, report = sync_json(capsys, synced)
    assert code == 0
    assert actions(report) == {"kernel": "updated", "tools/seL4": "unchanged", "tools/extra": "cloned"}
    assert report["orphans"] == ["projects/libs"]
    assert (synced / "projects/libs/libs.c").exists(), "a dropped project is left in place"
    assert git(synced / "kernel", "rev-parse", "HEAD") == server.kernel.commits[0]
    assert git(synced / "tools/extra", "rev-parse", "HEAD") == extra.head()


def test_groups_filter(server: Server, synced: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server.write_manifest(default_body(server).replace('path="projects/libs"',
                                                       'path="projects/libs" groups="notdefault"'))
    code, report = sync_json(capsys, synced)
    assert code == 0 and "projects/libs" not in actions(report)
    code, report = sync_json(capsys, synced, "-g", "all")
    assert "projects/libs" in actions(report)


@pytest.mark.parametrize("value", ["default notdefault", "default,\tnotdefault", " default , notdefault "])
def test_groups_split_on_whitespace_as_well_as_commas(server: Server, synced: Path, value: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """repo splits -g on commas and whitespace: 'default notdefault' is two groups, not one
    group named 'default notdefault' (which would select nothing and drop every project)."""
    server.write_manifest(default_body(server).replace('path="projects/libs"',
                                                       'path="projects/libs" groups="notdefault"'))
    code, report = sync_json(capsys, synced, "-g", value)
    assert code == 0, report
    assert {"kernel", "projects/libs"} <= set(actions(report))
    state = json.loads((synced / ".orch/state.json").read_text())
    assert state["manifest"]["groups"] == ["default", "notdefault"]


# --- mirrors ---------------------------------------------------------------------------------


def test_mirror_is_used_first_and_shares_objects(server: Server, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in ("kernel.git", "tools.git", "libs"):
        # names with and without .git both resolve
        target = mirror / ("libs.git" if name == "libs" else name.removesuffix(".git"))
        git(tmp_path, "clone", "-q", "--mirror", str(server.dir / name), str(target))
    ws = tmp_path / "ws-mirror"
    code, report = sync_json(capsys, ws, "-m", str(server.manifest.bare), "--mirror", str(mirror))
    assert code == 0, report
    kernel_git = ws / ".orch/projects/kernel.git"
    alternates = (kernel_git / "objects/info/alternates").read_text()
    assert str(mirror / "kernel") in alternates
    assert git(ws / "kernel", "config", "remote.origin.url") == str(server.dir / "kernel.git")
    assert git(ws / "kernel", "rev-parse", "HEAD") == server.kernel_pin
    # objects come from the mirror: the clone holds no packs of its own
    assert not list((kernel_git / "objects/pack").glob("*.pack"))


def test_mirror_from_environment(server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = tmp_path / "m"
    git(tmp_path, "clone", "-q", "--mirror", str(server.dir / "kernel.git"), str(mirror / "kernel.git"))
    monkeypatch.setenv("ORCH_MIRROR", str(mirror))
    code, _ = sync_json(capsys, tmp_path / "w", "-m", str(server.manifest.bare))
    assert code == 0
    assert (tmp_path / "w/.orch/projects/kernel.git/objects/info/alternates").is_file()


# --- bad input -------------------------------------------------------------------------------


def test_revision_missing_upstream_names_file_and_element(server: Server, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    server.write_manifest('<project name="kernel.git" path="kernel" revision="' + "d" * 40 + '"/>'
                          '<project name="libs" path="libs" revision="no-such-branch"/>')
    code, _out, err = orch(capsys, "sync", "-w", str(tmp_path / "w"), "-m", str(server.manifest.bare))
    assert code == 2
    kernel = 'default.xml: <project name="kernel.git" path="kernel">'
    assert f"{kernel}: revision {'d' * 40} does not exist" in err
    assert 'default.xml: <project name="libs" path="libs">: revision no-such-branch does not exist' in err
    assert not (tmp_path / "w/kernel").exists()


def test_bad_manifest_fails_before_touching_anything(server: Server, synced: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    server.write_manifest('<project name="kernel.git" path="../evil"/>')
    code, _out, err = orch(capsys, "sync", "-w", str(synced))
    assert code == 2
    assert 'error: default.xml: <project name="kernel.git" path="../evil">: invalid path "../evil"' in err
    assert git(synced / "kernel", "rev-parse", "HEAD") == server.kernel_pin


def test_manifest_source_that_is_neither_file_directory_nor_url_is_bad_input(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = orch(capsys, "sync", "-w", str(tmp_path / "w"), "-m", str(tmp_path / "typo.xml"))
    assert code == 2
    assert err.startswith(f"error: -m {tmp_path / 'typo.xml'}: no such manifest file")
    assert len(err.splitlines()) == 2  # the error and its hint, no traceback


def test_unreachable_upstream_is_infrastructure(server: Server, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    xml = tmp_path / "m.xml"
    xml.write_text('<manifest><remote name="r" fetch="' + str(tmp_path / "nowhere") + '"/>'
                   '<project name="x" remote="r" revision="master"/></manifest>')
    code, _out, err = orch(capsys, "sync", "-w", str(tmp_path / "w"), "-m", str(xml))
    assert code == 125 and "failed: x:" in err


def test_a_project_that_never_synced_is_recorded_and_blocks_reuse(
        server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A first sync that cannot check a project out leaves the workspace without it; orch status
    says so and `orch build` refuses to reuse the workspace (it used to build without it, or
    fail later with 'project ... is not in the workspace manifest')."""
    server.write_manifest(default_body(server) + '  <project name="gone.git" path="projects/gone"/>\n')
    ws = tmp_path / "ws"
    code, report = sync_json(capsys, ws, "-m", str(server.manifest.bare))
    assert code == 125 and actions(report)["projects/gone"] == "failed"
    workspace = Workspace(ws)
    assert set(workspace.state().failed) == {"projects/gone"}
    assert "projects/gone" not in workspace.tree().projects
    rows = {row.path: row for row in workspace.status()}
    assert rows["projects/gone"].problems[0].startswith("never synced: ")
    with pytest.raises(InfraError, match=r"projects/gone was never synced"):
        workspace.require_complete()
    local = ws / ".orch" / "local_manifests"
    local.mkdir(parents=True, exist_ok=True)
    (local / "drop.xml").write_text('<manifest><remove-project name="gone.git"/></manifest>\n')
    code, report = sync_json(capsys, ws)
    assert code == 0, report
    assert Workspace(ws).state().failed == {}
    Workspace(ws).require_complete()


# --- nothing lost ----------------------------------------------------------------------------


def move_kernel_pin(server: Server) -> str:
    new = server.kernel.head()
    server.write_manifest(default_body(server).replace(server.kernel_pin, new))
    return new


def test_dirty_project_is_skipped_and_survives(server: Server, synced: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    (synced / "kernel/README").write_text("my edit\n")
    (synced / "kernel/notes.txt").write_text("untracked\n")
    new = move_kernel_pin(server)
    code, report = sync_json(capsys, synced)
    assert code == EXIT_USAGE
    kernel = next(p for p in report["projects"] if p["path"] == "kernel")
    assert kernel["action"] == "skipped"
    assert "1 uncommitted change" in kernel["reason"] and "1 untracked file" in kernel["reason"]
    assert (synced / "kernel/README").read_text() == "my edit\n"
    assert git(synced / "kernel", "rev-parse", "HEAD") == server.kernel_pin
    # --force moves it, but the edit and the untracked file are kept in a stash
    code, report = sync_json(capsys, synced, "--force")
    assert code == 0
    kernel = next(p for p in report["projects"] if p["path"] == "kernel")
    assert kernel["action"] == "forced" and kernel["backup"]
    assert git(synced / "kernel", "rev-parse", "HEAD") == new
    assert git(synced / "kernel", "show", "stash@{0}:README") == "my edit"
    assert git(synced / "kernel", "show", "stash@{0}^3:notes.txt") == "untracked"


def test_forced_backup_names_the_stash_by_sha(server: Server, synced: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """``stash@{0}`` names another stash once the user stashes again: the SHA does not."""
    kernel = synced / "kernel"
    (kernel / "README").write_text("my edit\n")
    move_kernel_pin(server)
    code, report = sync_json(capsys, synced, "--force")
    assert code == 0
    backup = " ".join(next(p["backup"] for p in report["projects"] if p["path"] == "kernel"))
    sha = re.search(r"\b[0-9a-f]{40}\b", backup)
    assert sha, backup
    (kernel / "README").write_text("a later edit\n")
    git(kernel, "stash", "push", "-q", "-m", "mine")
    assert git(kernel, "show", f"{sha[0]}:README") == "my edit"
    assert "orch sync backup" in git(kernel, "stash", "list"), "still in the stash list"


def test_edits_in_the_manifest_checkout_stop_sync_unless_forced(
        server: Server, synced: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clone = synced / ".orch" / "manifest"
    (clone / "default.xml").write_text("<manifest/>\n")
    (clone / "extra.xml").write_text("mine\n")
    move_kernel_pin(server)  # a new manifest commit: sync must move the checkout
    code, _out, err = orch(capsys, "sync", "-w", str(synced), "-q")
    assert code == 2
    assert "default.xml" in err and "extra.xml" in err and "local_manifests" in err, err
    assert (clone / "default.xml").read_text() == "<manifest/>\n"
    code, report = sync_json(capsys, synced, "--force")
    assert code == 0, report
    sha = re.search(r"\b[0-9a-f]{40}\b", " ".join(report["manifest_backup"]))
    assert sha, report["manifest_backup"]
    assert git(clone, "show", f"{sha[0]}:default.xml") == "<manifest/>"
    assert git(clone, "show", f"{sha[0]}^3:extra.xml") == "mine"
    assert "<manifest/>" not in (clone / "default.xml").read_text()


def test_local_commits_are_skipped_then_backed_up(server: Server, synced: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    kernel = synced / "kernel"
    (kernel / "mine.c").write_text("int mine;\n")
    git(kernel, "add", "mine.c")
    git(kernel, "commit", "-q", "-m", "my work")
    mine = git(kernel, "rev-parse", "HEAD")
    new = move_kernel_pin(server)
    code, report = sync_json(capsys, synced)
    assert code == EXIT_USAGE
    reason = next(p["reason"] for p in report["projects"] if p["path"] == "kernel")
    assert "1 local commit not upstream" in reason
    assert git(kernel, "rev-parse", "HEAD") == mine
    code, report = sync_json(capsys, synced, "--force")
    assert code == 0
    assert git(kernel, "rev-parse", "HEAD") == new
    backups = git(kernel, "for-each-ref", "--format=%(objectname)", "refs/orch/backup/").splitlines()
    assert mine in backups


def test_a_commit_only_a_tag_of_the_users_reaches_is_local_work(server: Server, synced: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    kernel = synced / "kernel"
    (kernel / "mine.c").write_text("int mine;\n")
    git(kernel, "add", "mine.c")
    git(kernel, "commit", "-q", "-m", "my work")
    git(kernel, "tag", "my-experiment")
    mine = git(kernel, "rev-parse", "HEAD")
    code, out, _ = orch(capsys, "status", "-w", str(synced), "--json")
    assert {r["path"]: r for r in json.loads(out)}["kernel"]["local_commits"] == 1
    move_kernel_pin(server)
    code, report = sync_json(capsys, synced)
    assert code == EXIT_USAGE, report
    reason = next(p["reason"] for p in report["projects"] if p["path"] == "kernel")
    assert "1 local commit not upstream" in reason
    assert git(kernel, "rev-parse", "HEAD") == mine, "the checkout stays on the user's work"


def tag_a_side_release(server: Server) -> str:
    """Upstream tags ``side-1.0`` on a kernel commit that no branch holds; its SHA."""
    side = server.kernel.commit({"src/side.c": "int side;\n"}, "kernel: a side release", branch="side")
    server.kernel.tag("side-1.0", side)
    git(server.kernel.bare, "branch", "-D", "side")
    return side


def test_a_commit_only_an_upstream_tag_reaches_is_not_local_work(tmp_path: Path, server: Server,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    # upstream tags a commit that no branch holds; the clone fetches it, the user checks it out
    tag_a_side_release(server)
    ws = tmp_path / "ws"
    code, report = sync_json(capsys, ws, "-m", str(server.manifest.bare))
    assert code == 0, report
    kernel = ws / "kernel"
    git(kernel, "checkout", "-q", "side-1.0")
    code, out, _ = orch(capsys, "status", "-w", str(ws), "--json")
    assert {r["path"]: r for r in json.loads(out)}["kernel"]["local_commits"] == 0
    new = move_kernel_pin(server)
    code, report = sync_json(capsys, ws)
    assert code == 0, report
    assert git(kernel, "rev-parse", "HEAD") == new


def test_a_tag_a_later_sync_fetches_is_upstream_too(server: Server, synced: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # after the first sync upstream tags a commit no branch holds and the manifest pins it
    side = tag_a_side_release(server)
    body = default_body(server)
    server.write_manifest(body.replace(server.kernel_pin, "refs/tags/side-1.0"))
    code, report = sync_json(capsys, synced)
    kernel = synced / "kernel"
    assert code == 0 and git(kernel, "rev-parse", "HEAD") == side, report
    server.write_manifest(body)
    assert sync_json(capsys, synced)[0] == 0
    git(kernel, "checkout", "-q", "side-1.0")  # the user goes back to the fetched release
    new = move_kernel_pin(server)
    code, report = sync_json(capsys, synced)
    assert code == 0, report
    assert git(kernel, "rev-parse", "HEAD") == new


def test_commit_on_a_branch_is_not_local_work_once_pushed(server: Server, synced: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    kernel = synced / "kernel"
    git(kernel, "checkout", "-q", "-b", "topic")
    new = move_kernel_pin(server)
    code, _report = sync_json(capsys, synced)
    assert code == 0 and git(kernel, "rev-parse", "HEAD") == new
    assert git(kernel, "rev-parse", "topic") == server.kernel_pin, "the user's branch stays"


def test_checkout_with_a_git_directory_is_left_alone(server: Server, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    ws = tmp_path / "w"
    git(tmp_path, "clone", "-q", str(server.dir / "kernel.git"), str(ws / "kernel"))
    code, report = sync_json(capsys, ws, "-m", str(server.manifest.bare))
    assert code == EXIT_USAGE
    assert "is a directory, not an orch checkout" in next(
        p["reason"] for p in report["projects"] if p["path"] == "kernel")
    assert (ws / "kernel/.git").is_dir()


def test_checkout_that_is_the_users_own_worktree_is_left_alone(server: Server, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A project path holding a `git worktree` of the user's own clone (a ``.git`` gitfile
    pointing elsewhere) is not orch's: its files, gitfile and commits stay untouched."""
    mine = tmp_path / "my-kernel"
    git(tmp_path, "clone", "-q", str(server.dir / "kernel.git"), str(mine))
    ws = tmp_path / "w"
    ws.mkdir()
    git(mine, "worktree", "add", "-q", "-b", "wip", str(ws / "kernel"))
    (ws / "kernel/README").write_text("my uncommitted edit\n")
    gitfile = (ws / "kernel/.git").read_text()
    code, report = sync_json(capsys, ws, "-m", str(server.manifest.bare))
    assert code == EXIT_USAGE
    assert "not an orch checkout" in next(p["reason"] for p in report["projects"] if p["path"] == "kernel")
    assert (ws / "kernel/.git").read_text() == gitfile
    assert (ws / "kernel/README").read_text() == "my uncommitted edit\n"
    assert git(ws / "kernel", "rev-parse", "--abbrev-ref", "HEAD") == "wip"


def test_half_clone_and_interrupted_checkout_are_repaired(server: Server, synced: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    ws = synced
    # a clone killed before it was renamed into place
    leftover = ws / ".orch/projects/projects/extra.git.partial"
    leftover.mkdir(parents=True)
    (leftover / "HEAD").write_text("garbage")
    # a checkout killed half-way: journal present, index.lock left behind, files half-updated
    git_dir = ws / ".orch/projects/kernel.git"
    new = move_kernel_pin(server)
    (git_dir / JOURNAL).write_text(new + "\n")
    (git_dir / "index.lock").write_text("")
    (ws / "kernel/src/c.c").write_text("int c;\n")
    # the state file never got written
    (ws / ".orch/state.json").unlink()
    extra = make_upstream(server.dir, "extra", {"x": "x\n"})
    server.write_manifest(default_body(server).replace(server.kernel_pin, new)
                          + '<project name="extra" path="projects/extra"/>')
    code, report = sync_json(capsys, ws, "-m", str(server.manifest.bare))
    assert code == 0, report
    assert actions(report)["kernel"] == "repaired"
    assert actions(report)["projects/extra"] == "cloned"
    assert not leftover.exists() and not (git_dir / JOURNAL).exists()
    assert git(ws / "kernel", "rev-parse", "HEAD") == new
    assert git(ws / "kernel", "status", "--porcelain") == ""
    assert git(ws / "projects/extra", "rev-parse", "HEAD") == extra.head()
    assert json.loads((ws / ".orch/state.json").read_text())["projects"]["kernel"]["sha"] == new


def test_killed_sync_recovers(server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Kill a real `orch sync` process at a few points in time; the next sync must succeed."""
    ws = tmp_path / "killed"
    for delay in (0.3, 0.5, 0.7, 0.9):
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "sync", "-q", "-w", str(ws),
                                 "-m", str(server.manifest.bare)])
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    code, report = sync_json(capsys, ws, "-m", str(server.manifest.bare))
    assert code == 0, report
    assert git(ws / "kernel", "rev-parse", "HEAD") == server.kernel_pin
    for p in ("kernel", "tools/seL4", "projects/libs"):
        assert git(ws / p, "status", "--porcelain") == ""


def test_no_repo_arguments_without_workspace_uses_the_shipped_default() -> None:
    from orchestrator.workspace.sync import ManifestSource

    source = ManifestSource.shipped_default()
    assert source.url == "https://github.com/seL4/camkes-vm-examples-manifest.git"
    assert source.file == "default.xml"
    assert source.revision == "8714f47c56f11da240a6b45f45a8686462f03912"


def test_staging_directories_are_per_process_and_dead_ones_are_removed(tmp_path: Path) -> None:
    """A kill -9 leaves orch's git child writing into its staging directory for a while; the next
    sync must neither collide with it nor leave it behind once its owner is gone."""
    from orchestrator.workspace.sync import staging_dir

    git_dir = tmp_path / "projects" / "kernel.git"
    git_dir.parent.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left_by_dead = git_dir.with_name(f"kernel.git.partial.{dead.pid}")
    left_by_live = git_dir.with_name(f"kernel.git.partial.{os.getppid()}")
    # the doubly-suffixed staging directory of orch versions that staged a clone twice
    left_by_dead_older = git_dir.with_name(f"kernel.git.partial.{dead.pid}.partial-clone.{dead.pid}")
    for leftover in (left_by_dead, left_by_live, left_by_dead_older):
        (leftover / "objects").mkdir(parents=True)

    mine = staging_dir(git_dir, ".partial")

    assert mine == git_dir.with_name(f"kernel.git.partial.{os.getpid()}")
    assert not left_by_dead.exists() and left_by_live.exists()
    assert not left_by_dead_older.exists()


def test_a_clone_stages_in_one_per_process_directory_next_to_its_git_dir(
        server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``<name>.git.partial.<pid>`` for a project (``.partial-clone.<pid>`` for the manifest
    repository), never a staging name inside another one's; nothing staged is left after."""
    from orchestrator.workspace import gitops

    real_clone = gitops.clone
    staged: list[Path] = []

    def recording_clone(source: str, dest: Path, **kwargs: object) -> None:
        staged.append(dest)
        real_clone(source, dest, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(gitops, "clone", recording_clone)
    ws = tmp_path / "ws"
    code, report = sync_json(capsys, ws, "-m", str(server.manifest.bare))
    assert code == 0, report
    meta, pid = ws / ".orch", os.getpid()
    assert sorted(staged) == sorted([
        meta / f"manifest.git.partial-clone.{pid}",
        meta / "projects" / f"kernel.git.partial.{pid}",
        meta / "projects" / f"projects/libs.git.partial.{pid}",
        meta / "projects" / f"tools/seL4.git.partial.{pid}",
    ])
    assert not [p for p in meta.rglob("*") if ".partial" in p.name], "staging directories left behind"
    pins = {p["path"]: p["sha"] for p in report["projects"]}
    assert {path: git(ws / path, "rev-parse", "HEAD") for path in pins} == pins
