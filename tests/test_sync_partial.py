"""A cold sync from a server is a partial clone of the pin's branch by default (every commit and
tree, the checked-out blobs only; the rest comes on demand), on real git over ``file://``;
a plain local path and ``--no-partial-clone`` still clone everything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.errors import EXIT_OK
from orchestrator.workspace.manifest import Project
from orchestrator.workspace.sync import clone_branch, wants_blobless
from tests.support.cli import orch
from tests.support.git import Upstream, git, make_upstream

SHA = "0123456789abcdef0123456789abcdef01234567"


def manifest_xml(revision: str, upstream: str = "master") -> str:
    return ('<manifest><remote name="s" fetch="../seL4"/><default remote="s" revision="master"/>'
            f'<project name="kernel.git" path="kernel" revision="{revision}" upstream="{upstream}"/>'
            '</manifest>')


@pytest.fixture
def server(tmp_path: Path) -> tuple[Upstream, Upstream]:
    """kernel.git: big blobs rewritten in its history, a tag, a side branch; it answers
    partial clones, as GitHub does. And a manifest repository next to it."""
    up = make_upstream(tmp_path / "git" / "seL4", "kernel.git", {"a.c": "int a;\n"})
    for i in range(3):
        up.commit({"big/old": f"version {i}\n" * 2000}, f"old {i}")
    up.tag("v1")
    up.commit({"big/old": "now\n"}, "small again")
    up.commit({"side.c": "side\n"}, "side work", branch="feature")
    git(up.bare, "config", "uploadpack.allowFilter", "true")
    manifest = make_upstream(tmp_path / "git" / "seL4", "manifest",
                             {"default.xml": manifest_xml(up.head())}, "manifest")
    return up, manifest


def set_manifest(manifest: Upstream, xml: str) -> None:
    manifest.commit({"default.xml": xml}, "pin")


def missing_objects(git_dir: Path) -> list[str]:
    out = git(git_dir, "rev-list", "--objects", "--all", "--missing=print")
    return [line[1:] for line in out.splitlines() if line.startswith("?")]


def test_a_sync_from_a_server_is_a_partial_clone_of_the_pins_branch(
        tmp_path: Path, server: tuple[Upstream, Upstream], capsys: pytest.CaptureFixture[str]) -> None:
    up, manifest = server
    ws = tmp_path / "ws"
    code, _, err = orch(capsys, "sync", "-q", "-m", manifest.bare.as_uri(), "-w", str(ws))
    assert code == EXIT_OK, err
    git_dir = ws / ".orch/projects/kernel.git"
    assert git(git_dir, "config", "remote.origin.promisor") == "true"
    assert git(git_dir, "config", "remote.origin.partialclonefilter") == "blob:none"
    old = git(up.bare, "rev-parse", "v1:big/old")
    assert old in missing_objects(git_dir)  # history's blobs stay on the server ...
    assert git(git_dir, "rev-list", "--count", "HEAD") == "5"  # ... every commit is here
    assert git(git_dir, "rev-parse", "refs/tags/v1") == git(up.bare, "rev-parse", "refs/tags/v1")
    # only the pin's branch was fetched, but a later fetch sees every branch
    assert git(git_dir, "for-each-ref", "refs/remotes/origin/feature") == ""
    assert git(git_dir, "config", "--get-all", "remote.origin.fetch") == "+refs/heads/*:refs/remotes/origin/*"
    assert (ws / "kernel/big/old").read_text() == "now\n"
    assert json.loads((ws / ".orch/state.json").read_text())["partial_clone"] is None
    # bisect reads old revisions: the blobs come on demand from origin
    assert git(git_dir, "cat-file", "-p", old) == ("version 2\n" * 2000).strip()
    # a later pin is fetched and checked out as in a full clone
    new = up.commit({"a.c": "int a = 2;\n"}, "later")
    set_manifest(manifest, manifest_xml(new))
    code, _, err = orch(capsys, "sync", "-q", "-w", str(ws))
    assert code == EXIT_OK, err
    assert (ws / "kernel/a.c").read_text() == "int a = 2;\n"
    assert git(git_dir, "rev-parse", "HEAD") == new


def test_a_pin_on_another_branch_is_fetched_by_its_sha(
        tmp_path: Path, server: tuple[Upstream, Upstream], capsys: pytest.CaptureFixture[str]) -> None:
    up, manifest = server
    side = up.head("feature")
    set_manifest(manifest, manifest_xml(side))  # upstream says master, the pin is on feature
    ws = tmp_path / "ws"
    code, _, err = orch(capsys, "sync", "-q", "-m", manifest.bare.as_uri(), "-w", str(ws))
    assert code == EXIT_OK, err
    assert git(ws / "kernel", "rev-parse", "HEAD") == side
    assert (ws / "kernel/side.c").read_text() == "side\n"


def test_an_upstream_branch_the_server_lacks_falls_back_to_a_whole_clone(
        tmp_path: Path, server: tuple[Upstream, Upstream], capsys: pytest.CaptureFixture[str]) -> None:
    up, manifest = server
    set_manifest(manifest, manifest_xml(up.head(), upstream="no-such-branch"))
    ws = tmp_path / "ws"
    code, _, err = orch(capsys, "sync", "-q", "-m", manifest.bare.as_uri(), "-w", str(ws))
    assert code == EXIT_OK, err
    assert git(ws / "kernel", "rev-parse", "HEAD") == up.head()
    git_dir = ws / ".orch/projects/kernel.git"
    assert git(git_dir, "rev-parse", "refs/remotes/origin/feature") == up.head("feature")


def test_no_partial_clone_fetches_every_blob(
        tmp_path: Path, server: tuple[Upstream, Upstream], capsys: pytest.CaptureFixture[str]) -> None:
    _, manifest = server
    ws = tmp_path / "ws"
    code, _, err = orch(capsys, "sync", "-q", "-m", manifest.bare.as_uri(), "-w", str(ws),
                        "--no-partial-clone")
    assert code == EXIT_OK, err
    git_dir = ws / ".orch/projects/kernel.git"
    assert missing_objects(git_dir) == []
    assert git(git_dir, "config", "--default", "", "remote.origin.promisor") == ""
    assert json.loads((ws / ".orch/state.json").read_text())["partial_clone"] is False


def test_a_local_path_is_cloned_whole_by_default(
        tmp_path: Path, server: tuple[Upstream, Upstream], capsys: pytest.CaptureFixture[str]) -> None:
    _, manifest = server
    ws = tmp_path / "ws"
    code, _, err = orch(capsys, "sync", "-q", "-m", str(manifest.bare), "-w", str(ws))
    assert code == EXIT_OK, err
    git_dir = ws / ".orch/projects/kernel.git"
    assert missing_objects(git_dir) == []
    assert git(git_dir, "config", "--default", "", "remote.origin.promisor") == ""


@pytest.mark.parametrize(("partial", "url", "depth", "expected"), [
    (None, "https://github.com/seL4/seL4.git", None, True),
    (None, "git@github.com:seL4/seL4.git", None, True),
    (None, "file:///srv/git/seL4.git", None, True),
    (None, "/srv/git/seL4.git", None, False),
    (None, "https://github.com/seL4/seL4.git", 1, False),
    (False, "https://github.com/seL4/seL4.git", None, False),
    (True, "/srv/git/seL4.git", None, True),
])
def test_which_clones_are_partial(partial: bool | None, url: str, depth: int | None, expected: bool) -> None:
    assert wants_blobless(partial, url, depth) is expected


@pytest.mark.parametrize(("revision", "upstream", "expected"), [
    (SHA, "master", "master"),
    (SHA, "refs/heads/13.0.x", "13.0.x"),
    (SHA, None, None),
    ("master", None, "master"),
    ("refs/heads/dev", None, "dev"),
    ("v13.0.0", None, "v13.0.0"),
    ("refs/changes/12/345/6", None, None),
    ("6622da38", None, None),
    ("master~2", None, None),
    (SHA, "refs/tags/v1", None),
])
def test_the_branch_a_clone_fetches(revision: str, upstream: str | None, expected: str | None) -> None:
    project = Project(name="seL4", path="kernel", remote="s", revision=revision, url="u", upstream=upstream)
    assert clone_branch(project) == expected
