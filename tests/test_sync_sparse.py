"""Sparse and partial checkouts on real git: a project whose repository lacks some blobs (as
snapshots of camkes-vm-examples do, under paths vm_minimal never reads) syncs with
``--sparse``, and status and patchset apply work on its sparse index; ``--partial-clone``
fetches commits and trees only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.errors import EXIT_CANNOT_TEST, EXIT_OK, EXIT_USAGE
from tests.support.cli import orch
from tests.support.git import Upstream, git, make_upstream
from tests.support.seed import DEVICES, make_seed_server

EXAMPLES = "projects/vm-examples"


def drop_blob(bare: Path, path: str) -> str:
    """Delete the loose blob of ``path`` at master from ``bare``: the repository now lacks it,
    like a snapshot without its large files."""
    sha = git(bare, "rev-parse", f"master:{path}")
    (bare / "objects" / sha[:2] / sha[2:]).unlink()
    return sha


@pytest.fixture
def lacking(tmp_path: Path) -> Path:
    """The seed server, with camkes-vm-examples lacking the blob of apps/x86/big/bzimage."""
    manifest = make_seed_server(tmp_path)
    bare = manifest.parent / "camkes-vm-examples.git"
    scratch = tmp_path / "git" / "scratch" / "camkes-vm-examples-extra"
    git(tmp_path, "clone", "-q", str(bare), str(scratch))
    up = Upstream(bare, scratch)
    up.commit({"apps/x86/big/bzimage": "a large kernel image\n" * 100}, "x86 image")
    drop_blob(bare, "apps/x86/big/bzimage")
    return manifest


def test_sparse_leaves_out_paths_whose_blobs_are_missing(lacking: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    ws = tmp_path / "ws"
    code, out, err = orch(capsys, "sync", "-q", "--json", "-m", str(lacking), "-w", str(ws))
    assert code == EXIT_CANNOT_TEST, "a missing blob in the checkout is infrastructure trouble"
    failed = {p["path"]: p for p in json.loads(out)["projects"] if p["action"] == "failed"}
    assert list(failed) == [EXAMPLES] and "bzimage" in failed[EXAMPLES]["reason"]

    code, out, err = orch(capsys, "sync", "-q", "--json", "-w", str(ws), "--sparse", f"{EXAMPLES}=apps/Arm")
    assert code == EXIT_OK, out + err
    assert (ws / EXAMPLES / DEVICES).is_file() and not (ws / EXAMPLES / "apps/x86").exists()
    state = json.loads((ws / ".orch/state.json").read_text())
    assert state["sparse"] == {EXAMPLES: ["apps/Arm"]} and EXAMPLES in state["projects"]
    assert git(ws / EXAMPLES, "config", "index.sparse") == "true"

    # remembered: a plain re-sync is a no-op
    code, out, err = orch(capsys, "sync", "-q", "--json", "-w", str(ws))
    assert code == EXIT_OK and json.loads(out)["nothing_to_do"], out

    # every command works on the sparse index
    code, out, err = orch(capsys, "status", "--json", "-w", str(ws))
    assert code == EXIT_OK, err
    row = next(r for r in json.loads(out) if r["path"] == EXAMPLES)
    assert not row["dirty"] and row["at_pinned"]
    code, out, err = orch(capsys, "patchset", "apply", "largepage", "-w", str(ws), "--json")
    assert code == EXIT_OK, err
    assert "vm0.allocator_mempool_size = 0x100000;" in (ws / EXAMPLES / DEVICES).read_text()
    code, out, err = orch(capsys, "patchset", "revert", "--all", "-w", str(ws))
    assert code == EXIT_OK, err


def test_sparse_from_config_and_back_to_full(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = make_seed_server(tmp_path)
    ws = tmp_path / "ws"
    (ws / ".orch").mkdir(parents=True)
    config = ws / ".orch/config.toml"
    config.write_text(f'[sparse]\n"{EXAMPLES}" = []\n')
    code, _, err = orch(capsys, "sync", "-q", "-m", str(manifest), "-w", str(ws))
    assert code == EXIT_OK, err
    assert not (ws / EXAMPLES / "apps").exists(), "top-level files only"
    state = json.loads((ws / ".orch/state.json").read_text())
    assert state["projects"][EXAMPLES]["sparse"] == [] and state["sparse"] == {}
    code, _, err = orch(capsys, "sync", "-q", "-w", str(ws), "--no-sparse", EXAMPLES)
    assert code == EXIT_USAGE and "config.toml" in err
    config.write_text("")
    code, _, err = orch(capsys, "sync", "-q", "-w", str(ws))
    assert code == EXIT_OK, err
    assert (ws / EXAMPLES / DEVICES).is_file()
    assert json.loads((ws / ".orch/state.json").read_text())["projects"][EXAMPLES]["sparse"] is None
    # given on the command line: remembered until --no-sparse
    code, _, err = orch(capsys, "sync", "-q", "-w", str(ws), "--sparse", f"{EXAMPLES}=apps/Arm/vm_minimal")
    assert code == EXIT_OK, err
    code, _, err = orch(capsys, "sync", "-q", "-w", str(ws))
    assert code == EXIT_OK and (ws / EXAMPLES / DEVICES).is_file()
    assert not any(p.name != "vm_minimal" for p in (ws / EXAMPLES / "apps/Arm").iterdir())
    code, _, err = orch(capsys, "sync", "-q", "-w", str(ws), "--no-sparse", EXAMPLES)
    assert code == EXIT_OK, err
    assert json.loads((ws / ".orch/state.json").read_text())["projects"][EXAMPLES]["sparse"] is None


@pytest.mark.parametrize("bad", ["nosuch/project=apps", f"{EXAMPLES}=../up", f"{EXAMPLES}=apps/*",
                                 "projects-without-equals"])
def test_bad_sparse_is_one_line_of_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             bad: str) -> None:
    manifest = make_seed_server(tmp_path)
    code, _, err = orch(capsys, "sync", "-q", "-m", str(manifest), "-w", str(tmp_path / "ws"),
                        "--sparse", bad)
    assert code == EXIT_USAGE and "error:" in err and "Traceback" not in err


def test_partial_clone_fetches_commits_and_trees_only(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    server = tmp_path / "git" / "seL4"
    up = make_upstream(server, "kernel.git", {"a.c": "int a;\n", "big/blob": "x" * 5000})
    for i in range(3):
        up.commit({f"big/old{i}": f"old {i}\n" * 500}, f"old {i}")
    up.commit({f"big/old{i}": "" for i in range(3)}, "truncate")
    git(up.bare, "config", "uploadpack.allowFilter", "true")
    manifest = make_upstream(server, "manifest", {"default.xml": (
        '<manifest><remote name="s" fetch="../seL4"/><default remote="s" revision="master"/>'
        '<project name="kernel.git" path="kernel"/></manifest>')})
    ws = tmp_path / "ws"
    code, _, err = orch(capsys, "sync", "-q", "-m", str(manifest.bare), "-w", str(ws), "--partial-clone")
    assert code == EXIT_OK, err
    git_dir = ws / ".orch/projects/kernel.git"
    assert git(git_dir, "config", "remote.origin.promisor") == "true"
    assert git(git_dir, "config", "remote.origin.partialclonefilter") == "blob:none"
    # the old blobs were never fetched; every commit is there for bisect
    old = git(up.bare, "rev-parse", "master~1:big/old0")
    missing = git(git_dir, "rev-list", "--objects", "--missing=print", "HEAD").splitlines()
    assert f"?{old}" in missing
    assert git(git_dir, "rev-list", "--count", "HEAD") == "5"
    assert (ws / "kernel/big/blob").read_text() == "x" * 5000
    assert json.loads((ws / ".orch/state.json").read_text())["partial_clone"] is True
