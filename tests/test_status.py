"""`orch status` and `orch manifest [--pinned]` on a real synced workspace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from orchestrator.cli.status import status_table
from orchestrator.workspace.manifest import load_manifest
from orchestrator.workspace.sync import ProjectStatus
from tests import test_sync
from tests.support.cli import orch
from tests.support.git import git
from tests.test_sync import Server

server = test_sync.server  # the same fixtures: upstreams + manifest repository, synced workspace
synced = test_sync.synced


def status_rows(capsys: pytest.CaptureFixture[str], ws: Path) -> dict[str, dict]:  # type: ignore[type-arg]
    code, out, err = orch(capsys, "status", "-w", str(ws), "--json")
    assert code == 0, err
    return {row["path"]: row for row in json.loads(out)}


def test_status_of_a_clean_workspace(server: Server, synced: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    rows = status_rows(capsys, synced)
    assert set(rows) == {"kernel", "tools/seL4", "projects/libs"}
    kernel = rows["kernel"]
    assert kernel["pinned"] == server.kernel_pin and kernel["head"] == server.kernel_pin
    assert kernel["at_pinned"] and not kernel["dirty"] and kernel["local_commits"] == 0
    assert rows["tools/seL4"]["links_ok"] is True
    code, out, _ = orch(capsys, "status", "-w", str(synced))
    assert code == 0 and "kernel" in out and "clean" in out


def test_status_shows_dirt_local_commits_and_broken_links(server: Server, synced: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    kernel = synced / "kernel"
    (kernel / "new.c").write_text("int n;\n")
    git(kernel, "add", "new.c")
    git(kernel, "commit", "-q", "-m", "local")
    (kernel / "README").write_text("edited\n")
    (kernel / "scratch.txt").write_text("x\n")
    (synced / "init-build.sh").unlink()
    rows = status_rows(capsys, synced)
    k = rows["kernel"]
    assert not k["at_pinned"] and k["local_commits"] == 1
    assert k["dirty"] and k["modified"] == 1 and k["untracked"] == 1
    assert rows["tools/seL4"]["links_ok"] is False
    assert any("init-build.sh" in p for p in rows["tools/seL4"]["problems"])


def test_status_found_from_a_subdirectory(synced: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(synced / "kernel/src")
    code, out, _ = orch(capsys, "status", "--json")
    assert code == 0 and len(json.loads(out)) == 3


def test_status_outside_a_workspace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = orch(capsys, "status", "-w", str(tmp_path))
    assert code == 2 and "not an orch workspace" in err


def test_manifest_pinned_is_a_fully_pinned_standalone_manifest(
        server: Server, synced: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "pinned.xml"
    code, _, err = orch(capsys, "manifest", "-w", str(synced), "--pinned", "-o", str(out_file))
    assert code == 0, err
    pinned = load_manifest(out_file)
    by_path = {p.path: p for p in pinned.projects}
    assert by_path["kernel"].revision == server.kernel_pin
    assert by_path["kernel"].upstream == "master"
    assert by_path["projects/libs"].revision == server.libs.head("release")
    assert by_path["projects/libs"].upstream == "release"
    assert by_path["tools/seL4"].upstream == "refs/tags/v1.0"
    assert by_path["tools/seL4"].linkfiles[0].dest == "init-build.sh"
    assert by_path["kernel"].url == str(server.dir / "kernel.git")
    # the pinned manifest syncs a second, identical workspace
    code, _, err = orch(capsys, "sync", "-q", "-w", str(tmp_path / "again"), "-m", str(out_file))
    assert code == 0, err
    assert git(tmp_path / "again/projects/libs", "rev-parse", "HEAD") == server.libs.head("release")


def test_manifest_json_and_unpinned(synced: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = orch(capsys, "manifest", "-w", str(synced))
    assert code == 0 and 'revision="release"' in out
    code, out, _ = orch(capsys, "manifest", "-w", str(synced), "--pinned", "--json")
    data = json.loads(out)
    assert data["pinned"] is True and "<manifest>" in data["xml"]
    assert {p["path"] for p in data["projects"]} == {"kernel", "tools/seL4", "projects/libs"}


def test_status_table_keeps_long_project_paths_whole_at_80_columns() -> None:
    """Piped output is 80 columns wide; the real workspace's paths came out as 'projects/se…'."""
    paths = ["projects/seL4_projects_libs", "projects/global-components", "projects/camkes-vm-images"]
    rows = [ProjectStatus(p, p, "0e06bebf4a3f0c21317c6877e0079f637e021562", None, None, True, False,
                          0, 0, 0, True, ["a long note that may wrap as much as it likes " * 2])
            for p in paths]
    console = Console(width=80, record=True, color_system=None)
    console.print(status_table(rows))
    text = console.export_text()
    for path in paths:
        assert path in text
    assert "0e06bebf4a3f" in text
