"""`orch manifest --resolve SOURCE`: a manifest resolved (includes, local manifests, groups)
without syncing, like `repo manifest` after `repo init`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import orch
from tests.support.git import make_manifest_repo

KEYS = {"name", "path", "remote", "url", "revision", "upstream", "dest_branch", "groups", "linkfiles",
        "copyfiles", "clone_depth", "sync_s", "sync_c", "sync_tags"}
TOP = """<manifest>
  <remote name="seL4" fetch="../seL4"/>
  <default remote="seL4" revision="master"/>
  <notice>Read me first.</notice>
  <include name="extra.xml" revision="stable" groups="extra"/>
  <project name="seL4.git" path="kernel" upstream="master" dest-branch="master">
    <linkfile src="tool.sh" dest="tool.sh"/>
  </project>
  <project name="docs" groups="notdefault"/>
</manifest>
"""
EXTRA = '<manifest><project name="libs" path="projects/libs" clone-depth="1"/></manifest>'


@pytest.fixture
def manifest_dir(tmp_path: Path) -> Path:
    d = tmp_path / "manifests"
    d.mkdir()
    (d / "default.xml").write_text(TOP)
    (d / "extra.xml").write_text(EXTRA)
    return d


def test_resolve_a_file_prints_every_project_with_the_same_keys(
        tmp_path: Path, manifest_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = orch(capsys, "manifest", "-w", str(tmp_path / "ws"), "--json", "--resolve",
                         str(manifest_dir / "default.xml"), "--manifest-url", "https://github.com/seL4/m.git")
    assert code == 0, err
    data = json.loads(out)
    assert data["notice"] == "Read me first."
    rows = {p["path"]: p for p in data["projects"]}
    assert set(rows) == {"kernel", "projects/libs"}  # docs is notdefault
    assert all(set(p) == KEYS for p in data["projects"])
    assert rows["kernel"]["url"] == "https://github.com/seL4/seL4.git"
    assert rows["kernel"]["linkfiles"] == [{"src": "tool.sh", "dest": "tool.sh"}]
    assert (rows["kernel"]["upstream"], rows["kernel"]["dest_branch"]) == ("master", "master")
    libs = rows["projects/libs"]
    assert (libs["revision"], libs["groups"], libs["clone_depth"]) == ("stable", ["extra"], 1)
    assert not (tmp_path / "ws").exists(), "resolving writes nothing into the workspace"


def test_resolve_applies_groups_and_the_workspaces_local_manifests(
        tmp_path: Path, manifest_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    local = tmp_path / "ws" / ".orch" / "local_manifests"
    local.mkdir(parents=True)
    (local / "mine.xml").write_text('<manifest><remove-project name="seL4.git"/>'
                                    '<project name="mytool" path="tools/mine" groups="extra"/></manifest>')
    code, out, err = orch(capsys, "manifest", "-w", str(tmp_path / "ws"), "--json", "-g",
                         "all,-default,extra", "--resolve", str(manifest_dir / "default.xml"),
                         "--manifest-url", "https://e.org/a/m")
    assert code == 0, err
    # all,-default,extra: the last entry naming a group of the project decides; docs is
    # notdefault, so -default does not drop it
    assert [p["path"] for p in json.loads(out)["projects"]] == ["projects/libs", "docs", "tools/mine"]


def test_resolve_a_manifest_repository_at_a_revision(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    repo = make_manifest_repo(tmp_path / "git" / "seL4", "manifest",
                              {"default.xml": TOP, "extra.xml": EXTRA})
    first = repo.commits[0]
    repo.commit({"default.xml": TOP.replace('path="kernel"', 'path="kernel2"')}, "move the kernel")
    code, out, err = orch(capsys, "manifest", "-w", str(tmp_path / "ws"), "--json",
                         "--resolve", str(repo.bare), "-b", first[:10])
    assert code == 0, err
    data = json.loads(out)
    assert data["manifest_commit"] == first
    kernel = next(p for p in data["projects"] if p["name"] == "seL4.git")
    assert (kernel["path"], kernel["url"]) == ("kernel", str(tmp_path / "git" / "seL4" / "seL4.git"))
    code, out, err = orch(capsys, "manifest", "-w", str(tmp_path / "ws"), "--resolve", str(repo.bare))
    assert code == 0, err
    assert "kernel2" in out and "2 projects" in out
    assert not (tmp_path / "ws").exists()


def test_a_bad_manifest_gets_the_same_one_line_error_as_sync(
        tmp_path: Path, manifest_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (manifest_dir / "extra.xml").write_text('<manifest><project name="../escape"/></manifest>')
    args = ["-w", str(tmp_path / "ws"), "--resolve", str(manifest_dir / "default.xml"),
            "--manifest-url", "https://e.org/a/m"]
    code, _out, err = orch(capsys, "manifest", *args)
    assert code == 2
    assert err.splitlines()[0] == ('error: extra.xml: <project name="../escape">: invalid name "../escape": '
                                   "bad component: ..")
    code, _out, sync_err = orch(capsys, "sync", "-w", str(tmp_path / "ws"),
                               "-m", str(manifest_dir / "default.xml"), "--manifest-url", "https://e.org/a/m")
    assert code == 2 and sync_err.splitlines()[0] == err.splitlines()[0]
