"""`orch patchset` end to end: sync the seed fixture's manifest, then drive the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.errors import EXIT_FAIL, EXIT_OK, EXIT_USAGE
from tests.support.cli import orch
from tests.support.git import git
from tests.support.seed import DEVICES

EXAMPLES = "projects/vm-examples"


@pytest.fixture
def ws(tmp_path: Path, capsys: pytest.CaptureFixture[str], seed_manifest_repo: Path) -> Path:
    root = tmp_path / "ws"
    code, _, err = orch(capsys, "sync", "-q", "-m", str(seed_manifest_repo), "-w", str(root))
    assert code == EXIT_OK, err
    return root


def test_list_and_show(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = orch(capsys, "patchset", "list", "--json")
    assert code == EXIT_OK
    names = {p["name"]: p for p in json.loads(out)["patchsets"]}
    assert names["largepage"]["requires"] == ["vm-2g"]
    code, out, _ = orch(capsys, "patchset", "show", "largepage", "--json")
    data = json.loads(out)
    assert data["patches"][0]["subject"] == "libsel4vm: map guest RAM with 2 MiB frames"
    assert data["variants"]["4k"]["expect"]["verdict"] == "fail"


def test_list_shows_a_broken_patchset_beside_the_others(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "patchset.toml").write_text("description = [unclosed\n")
    code, out, err = orch(capsys, "patchset", "list", "--json", "--patchsets", str(tmp_path))
    assert code == EXIT_USAGE
    rows = {p["name"]: p for p in json.loads(out)["patchsets"]}
    assert "largepage" in rows and "patchset.toml" in rows["broken"]["error"]
    assert "broken" in err
    code, out, _ = orch(capsys, "patchset", "list", "--patchsets", str(tmp_path))
    assert code == EXIT_USAGE and "largepage" in out and "broken" in out


def test_check_apply_status_revert_on_a_synced_workspace(ws: Path, capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # a wide terminal, so status rows are not cut
    code, out, _ = orch(capsys, "patchset", "check", "largepage", "-w", str(ws), "--json")
    assert code == EXIT_OK
    report = json.loads(out)
    assert report["ok"] and {h["status"] for p in report["patches"] for h in p["hunks"]} == {"applies"}

    code, out, err = orch(capsys, "patchset", "apply", "largepage", "-w", str(ws), "--json")
    assert code == EXIT_OK, err
    applied = {p["project"]: p for p in json.loads(out)["projects"]}
    assert applied[EXAMPLES]["branch"] == "orch/largepage"
    assert [c["patchset"] for c in applied[EXAMPLES]["commits"]] == ["vm-2g", "largepage"]
    assert "vm0.allocator_mempool_size = 0x100000;" in (ws / EXAMPLES / DEVICES).read_text()

    code, out, err = orch(capsys, "patchset", "apply", "largepage", "-w", str(ws))
    assert code == EXIT_OK and "already applied, nothing to do" in err

    code, out, err = orch(capsys, "status", "-w", str(ws))
    assert code == EXIT_OK, err
    row = next(line for line in out.splitlines() if line.startswith(EXAMPLES))
    assert "vm-2g, largepage" in row

    code, out, _ = orch(capsys, "patchset", "check", "largepage", "-w", str(ws))
    assert code == EXIT_OK and "already-applied" in out

    code, out, err = orch(capsys, "patchset", "revert", "largepage", "-w", str(ws), "--json")
    assert code == EXIT_OK, err
    assert all(p["changed"] for p in json.loads(out)["projects"])
    pinned = git(ws / ".orch/projects/projects/vm-examples.git", "rev-parse", "refs/orch/pinned") \
        if (ws / ".orch/projects/projects/vm-examples.git").is_dir() else None
    head = git(ws / EXAMPLES, "rev-parse", "HEAD")
    assert pinned is None or head == pinned
    assert "0x100000" not in (ws / EXAMPLES / DEVICES).read_text()


def test_check_exit_code_and_failure_row(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    devices = ws / EXAMPLES / DEVICES
    devices.write_text(devices.read_text().replace("#define VM_RAM_SIZE 0x20000000", "#define VM_RAM_SIZE 1"))
    code, out, _ = orch(capsys, "patchset", "check", "vm-2g", "-w", str(ws), "--json")
    assert code == EXIT_FAIL
    failing = [h for p in json.loads(out)["patches"] for h in p["hunks"] if h["status"] == "fails"]
    assert failing == [{"file": DEVICES, "header": "@@ -8,7 +8,7 @@", "status": "fails",
                        "reason": "context not found", "offset": 0}]


def test_import_writes_into_the_first_patchsets_dir_and_refresh(ws: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    mine = tmp_path / "mine"
    shipped = Path(__file__).resolve().parent.parent / "patchsets" / "vm-2g"
    code, _, err = orch(capsys, "patchset", "--patchsets", str(mine), "import", "two", str(shipped))
    assert code == EXIT_OK, err
    assert (mine / "two" / "patchset.toml").is_file()
    code, _, err = orch(capsys, "patchset", "apply", "two", "--patchsets", str(mine), "-w", str(ws))
    assert code == EXIT_OK, err
    code, _, err = orch(capsys, "patchset", "refresh", "two", "--patchsets", str(mine), "-w", str(ws))
    assert code == EXIT_OK, err
    assert "already match" in err


def test_import_into_the_default_dir_is_found_from_there(ws: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORCH_PATCHSETS", raising=False)
    monkeypatch.setenv("COLUMNS", "300")
    monkeypatch.chdir(tmp_path)
    shipped = Path(__file__).resolve().parent.parent / "patchsets" / "vm-2g"
    code, _, err = orch(capsys, "patchset", "import", "two", str(shipped))
    assert code == EXIT_OK, err
    assert (tmp_path / "patchsets" / "two" / "patchset.toml").is_file()
    assert "next: orch patchset check two" in err
    code, _, err = orch(capsys, "patchset", "check", "two", "-w", str(ws))
    assert code == EXIT_OK, err
    # From another directory ./patchsets is another place: say how to reach it.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, _, err = orch(capsys, "patchset", "import", "three", str(shipped), "--patchsets", "../x")
    assert code == EXIT_OK, err


def test_bad_input_is_one_line_and_exit_2(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = orch(capsys, "patchset", "apply", "no-such", "-w", str(ws))
    assert code == EXIT_USAGE
    assert "unknown patchset 'no-such'" in err.splitlines()[0]


def test_sync_leaves_an_applied_patchset_alone_and_says_how_to_proceed(
    ws: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "300")
    code, _, err = orch(capsys, "patchset", "apply", "largepage", "-w", str(ws))
    assert code == EXIT_OK, err
    head = git(ws / EXAMPLES, "rev-parse", "HEAD")
    code, out, err = orch(capsys, "sync", "-w", str(ws), "--json")
    assert code == EXIT_USAGE  # a workspace state to resolve, not a failed test
    skipped = {p["path"]: p for p in json.loads(out)["projects"] if p["action"] == "skipped"}
    assert "patchset 'largepage' is applied: `orch patchset revert` first" in skipped[EXAMPLES]["reason"]
    assert git(ws / EXAMPLES, "rev-parse", "HEAD") == head
