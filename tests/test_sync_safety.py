"""Project checkouts never write outside the workspace through a symlink; nested projects."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from orchestrator.errors import EXIT_USAGE
from tests.support.cli import orch
from tests.support.git import git, make_upstream
from tests.test_sync import Server, actions, default_body, server, sync_json

__all__ = ["server"]


def symlink_upstream(server: Server, target: Path) -> None:
    """``evilsym.git``: a repository whose commit holds ``lnk -> target`` (outside everything)."""
    up = make_upstream(server.dir, "evilsym.git", {"README": "x\n"})
    os.symlink(str(target), up.scratch / "lnk")
    git(up.scratch, "add", "lnk")
    git(up.scratch, "commit", "-q", "-m", "a link out")
    git(up.scratch, "push", "-q", "origin", "master")


def test_a_project_nested_under_a_committed_symlink_is_refused(
        server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outside = tmp_path / "somewhere"
    outside.mkdir()
    symlink_upstream(server, outside)
    server.write_manifest(default_body(server) + """
  <project name="evilsym.git" path="a"/>
  <project name="libs" path="a/lnk/b" revision="release"/>
""")
    ws = tmp_path / "ws"
    code, report = sync_json(capsys, ws, "-m", str(server.manifest.bare))
    assert code == EXIT_USAGE
    assert actions(report)["a/lnk/b"] == "failed"
    reason = next(p["reason"] for p in report["projects"] if p["path"] == "a/lnk/b")
    assert "a/lnk is a symlink" in reason
    assert list(outside.iterdir()) == []  # nothing was written through the link
    assert actions(report)["kernel"] == "cloned"


def test_a_symlink_in_the_workspace_above_a_project_is_refused(
        server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    ws = tmp_path / "ws"
    ws.mkdir()
    os.symlink(outside, ws / "projects")  # projects/libs would land in elsewhere/libs
    os.symlink(outside, ws / "kernel")  # the project path itself
    code, report = sync_json(capsys, ws, "-m", str(server.manifest.bare))
    assert code == EXIT_USAGE
    assert actions(report)["projects/libs"] == "failed"
    assert actions(report)["kernel"] == "failed"
    assert actions(report)["tools/seL4"] == "cloned"
    assert list(outside.iterdir()) == []


def test_nested_projects_leave_the_outer_one_clean(server: Server, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    server.write_manifest(default_body(server) + """
  <project name="libs" path="kernel/nested/libs" revision="release"/>
""")
    ws = tmp_path / "ws"
    code, report = sync_json(capsys, ws, "-m", str(server.manifest.bare))
    assert code == 0, report
    assert (ws / "kernel" / "nested" / "libs" / "libs.c").is_file()
    code, out, _ = orch(capsys, "status", "-w", str(ws), "--json")
    rows = {r["path"]: r for r in json.loads(out)}
    assert not rows["kernel"]["dirty"], rows["kernel"]
    code, report = sync_json(capsys, ws)
    assert code == 0 and actions(report)["kernel"] == "unchanged", report


def test_status_after_an_interrupted_first_sync_says_so(server: Server, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    ws = tmp_path / "ws"
    code, _ = sync_json(capsys, ws, "-m", str(server.manifest.bare))
    assert code == 0
    state_file = ws / ".orch" / "state.json"
    state = json.loads(state_file.read_text())
    state["projects"], state["synced_at"] = {}, None  # what a first sync writes before any project
    state_file.write_text(json.dumps(state))
    code, out, err = orch(capsys, "status", "-w", str(ws))
    assert code == EXIT_USAGE
    assert "first `orch sync` was interrupted" in err and out == ""
