"""Manifest sources as users give them: a manifest repository reached through a symlink
(relative remotes resolve against the path as given) and revisions as users write them
(abbreviated SHAs, tags, ``branch~N``), on real git."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from orchestrator.workspace.manifest import load_manifest
from tests import test_sync
from tests.support.cli import orch
from tests.support.git import git
from tests.test_sync import Server, sync_json

server = test_sync.server  # the same fixture: bare upstreams and a manifest with fetch="../seL4"


def test_symlinked_manifest_repository_resolves_relative_remotes_as_given(
        server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the manifest repository really lives elsewhere; the user reaches it as git/seL4/manifest,
    # next to the projects, as with `repo init -u`
    store = tmp_path / "store"
    store.mkdir()
    real = store / "manifest.git"
    server.manifest.bare.rename(real)
    given = server.dir / "manifest"
    given.symlink_to(real)
    ws = tmp_path / "ws"
    code, report = sync_json(capsys, ws, "-m", str(given))
    assert code == 0, report
    state = json.loads((ws / ".orch/state.json").read_text())
    assert state["manifest"]["source"]["url"] == str(given)
    assert state["manifest"]["remotes_base"] == str(given)
    assert state["manifest"]["remotes"]["seL4"] == str(server.dir)
    code, out, err = orch(capsys, "manifest", "-w", str(ws), "--pinned")
    assert code == 0, err
    assert f"resolved against {given}" in out
    pinned = tmp_path / "pinned.xml"
    pinned.write_text(out)
    assert {p.url for p in load_manifest(pinned).projects} == {
        f"{server.dir}/kernel.git", f"{server.dir}/tools.git", f"{server.dir}/libs"}


def test_relative_manifest_path_is_kept_as_given(server: Server, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    link = tmp_path / "mirrors" / "seL4"
    link.parent.mkdir()
    link.symlink_to(server.dir)
    monkeypatch.chdir(tmp_path)
    code, report = sync_json(capsys, tmp_path / "ws", "-m", os.path.join("mirrors", "seL4", "manifest"))
    assert code == 0, report
    state = json.loads((tmp_path / "ws/.orch/state.json").read_text())
    assert state["manifest"]["remotes_base"] == str(link / "manifest")
    assert state["manifest"]["remotes"]["seL4"] == str(link)


def test_abbreviated_sha_tag_and_ancestry_pick_the_manifest_commit(
        server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = server.manifest.head()
    server.write_manifest("", "an empty manifest after the pin")
    ws = tmp_path / "ws"
    code, report = sync_json(capsys, ws, "-m", str(server.manifest.bare), "-b", first[:8])
    assert code == 0, report
    state = json.loads((ws / ".orch/state.json").read_text())
    assert state["manifest"]["commit"] == first and len(state["projects"]) == 3
    # an existing workspace: the abbreviation is resolved after fetching
    code, report = sync_json(capsys, ws, "-b", "master")
    assert code == 0 and json.loads((ws / ".orch/state.json").read_text())["projects"] == {}
    code, report = sync_json(capsys, ws, "-b", "master~1")
    assert code == 0, report
    assert json.loads((ws / ".orch/state.json").read_text())["manifest"]["commit"] == first


def test_ambiguous_or_unknown_abbreviation_is_bad_input(
        server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = orch(capsys, "sync", "-w", str(tmp_path / "ws"), "-m", str(server.manifest.bare),
                          "-b", "deadbeef")
    assert code == 2 and "deadbeef does not exist" in err
    # 1500 commits on a side branch (one fast-import): two of them share a 4-digit prefix
    stream = "".join(f"commit refs/heads/many\ncommitter t <t@t> {1700000000 + i} +0000\n"
                     f"data {len(str(i))}\n{i}\n" for i in range(1500))
    subprocess.run(["git", "fast-import", "--quiet"], cwd=server.manifest.bare, input=stream, text=True,
                   check=True)
    by_prefix: dict[str, str] = {}
    for sha in git(server.manifest.bare, "rev-list", "many").split():
        if sha[:4] in by_prefix:
            break
        by_prefix[sha[:4]] = sha
    else:
        pytest.skip("no shared 4-digit prefix")
    code, _, err = orch(capsys, "sync", "-w", str(tmp_path / "ws2"), "-m", str(server.manifest.bare),
                          "-b", sha[:4])
    assert code == 2 and "ambiguous" in err and sha[:12] in err


def test_build_takes_the_same_manifest_options_as_sync(server: Server, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from orchestrator.cli import build_parser
    args = build_parser().parse_args(["build", "--patchset", "p", "-m", "URL", "-b", "abc1234",
                                      "--manifest-file", "x.xml", "--manifest-url", "U"])
    assert (args.manifest, args.manifest_rev, args.manifest_file, args.manifest_url) == (
        "URL", "abc1234", "x.xml", "U")
