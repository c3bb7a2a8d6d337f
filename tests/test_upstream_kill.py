"""kill -9 of orch's process group in the middle of `orch upstream prepare` (210 patches over
three projects, applied and rebased in scratch clones): the user's checkouts, branches, refs,
index and files are exactly as before; the next prepare cleans the abandoned scratch clones
and finishes. A scratch clone that cannot be checked out back is reported as what it is."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator import layout
from orchestrator.cli import main
from orchestrator.errors import EXIT_CANNOT_TEST, EXIT_OK, InputError, WorkspaceError
from orchestrator.patchset import apply as patchset_lib
from orchestrator.patchset import journal as oplog
from orchestrator.upstream import series
from tests.support.git import git
from tests.support.seed import make_seed_server
from tests.test_patchset_kill import PER_PROJECT, PROJECTS, killable_workspaces, make_big_patchset

BRANCH = "refs/heads/" + layout.upstream_branch("big")
ORCH_OWN = (BRANCH, layout.UPSTREAM_BACKUP_PREFIX)
# where to kill: `git am` in a scratch clone at patch N, or once the first project's branch is written
KILL_AT: list[tuple[str, str, int]] = [
    ("am", "kernel", 2), ("am", "projects/vm-examples", PER_PROJECT - 10), ("branch", "kernel", 0),
]


def user_state(ws: Path) -> dict[str, tuple[str, ...]]:
    """Per project: HEAD, its ref, every ref but orch's upstream branch and its backups, index,
    status and every file of the checkout."""
    result: dict[str, tuple[str, ...]] = {}
    for project in PROJECTS:
        d = ws / project
        refs = [line for line in git(d, "for-each-ref").splitlines()
                if not line.split("\t")[-1].startswith(ORCH_OWN)]
        files = sorted(f"{p.relative_to(d)}:{p.read_bytes()!r}" for p in d.rglob("*")
                       if p.is_file() and ".git" not in p.relative_to(d).parts)
        result[project] = (git(d, "rev-parse", "HEAD"), git(d, "rev-parse", "--symbolic-full-name", "HEAD"),
                           *refs, git(d, "status", "--porcelain"), git(d, "ls-files", "-s"), *files)
    return result


def prepared_trees(ws: Path) -> dict[str, tuple[str, str]]:
    return {p: (git(ws / p, "rev-parse", f"{BRANCH}^{{tree}}"),
                git(ws / p, "rev-list", "--count", BRANCH, "--not", "refs/orch/pinned"))
            for p in PROJECTS}


def prepare_cli(ws: Path, patchsets: Path, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(  # type: ignore[call-overload,no-any-return]
        [sys.executable, "-m", "orchestrator", "upstream", "prepare", "--patchset", "big", "--no-push",
         "--patchsets", str(patchsets), "-w", str(ws)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def scratch_dirs(ws: Path) -> list[Path]:
    tmp = layout.tmp_dir(ws)
    return sorted(tmp.glob("upstream-*")) + sorted(tmp.glob(".new-*")) if tmp.is_dir() else []


def reached(ws: Path, point: tuple[str, str, int]) -> bool:
    kind, project, patch = point
    if kind == "branch":
        return (ws / ".orch" / "projects" / f"{project}.git" / BRANCH).is_file()
    for scratch in scratch_dirs(ws):
        try:
            if int((scratch / project / ".git" / "rebase-apply" / "next").read_text() or "0") >= patch:
                return True
        except (OSError, ValueError):
            pass
    return False


def test_kill_9_during_upstream_prepare_leaves_the_users_repos_and_the_next_run_finishes(
        tmp_path: Path) -> None:
    pristine, patchsets, reference = killable_workspaces(tmp_path)
    before = user_state(pristine)
    _out, err = prepare_cli(reference, patchsets).communicate(timeout=600)
    complete = prepared_trees(reference)
    assert all(count == str(PER_PROJECT) for _tree, count in complete.values()), err

    killed = 0
    for i, point in enumerate(KILL_AT):
        ws = tmp_path / f"round{i}"
        shutil.copytree(pristine, ws, symlinks=True)
        proc = prepare_cli(ws, patchsets, start_new_session=True)
        deadline = time.monotonic() + 300
        while proc.poll() is None and not reached(ws, point) and time.monotonic() < deadline:
            time.sleep(0.002)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            killed += 1
        proc.communicate()
        assert user_state(ws) == before, f"killed at {point}: the user's repos changed"

        again = prepare_cli(ws, patchsets)
        _out, err = again.communicate(timeout=600)
        assert again.returncode == EXIT_OK, err
        assert prepared_trees(ws) == complete, f"killed at {point}"
        assert user_state(ws) == before
        assert scratch_dirs(ws) == [], "the abandoned scratch clones are removed by the next run"
    assert killed == len(KILL_AT), "every kill should land while prepare runs"


def test_a_scratch_directory_in_use_is_not_removed(tmp_path: Path) -> None:
    with _held_scratch(tmp_path) as held:
        assert series.remove_abandoned_scratch(tmp_path) == []
        assert held.is_dir()
    abandoned = tmp_path / "upstream-dead"
    abandoned.mkdir()
    (abandoned / series.OWNER_LOCK).write_text("")
    half_made = tmp_path / ".new-x"  # no lock file yet: its maker may be about to take it
    half_made.mkdir()
    assert series.remove_abandoned_scratch(tmp_path) == [abandoned]
    assert half_made.is_dir()


class _held_scratch:
    def __init__(self, base: Path) -> None:
        self.base = base

    def __enter__(self) -> Path:
        self.path, self.owner = series._new_scratch(self.base)
        return self.path

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.path)
        self.owner.close()


def test_a_scratch_clone_that_cannot_be_checked_out_back_is_not_said_to_be_restored(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = make_seed_server(tmp_path)
    ws = tmp_path / "ws"
    assert main(["sync", "-q", "-m", str(manifest), "-w", str(ws)]) == EXIT_OK
    patchsets = make_big_patchset(ws, tmp_path / "ps")
    heads = {p: git(ws / p, "rev-parse", "HEAD") for p in PROJECTS}

    def am_fails(*_args: object) -> None:
        raise InputError("git am stopped at 0003-gen-step-2.patch")

    def checkout_fails(*_args: object, **_kwargs: object) -> None:
        raise WorkspaceError("git checkout: unable to write new index file")

    monkeypatch.setattr(patchset_lib, "_apply_project", am_fails)
    monkeypatch.setattr(oplog, "undo", checkout_fails)
    code = main(["upstream", "prepare", "--patchset", "big", "--no-push", "--patchsets", str(patchsets),
                 "-w", str(ws)])
    err = capsys.readouterr().err
    assert code == EXIT_CANNOT_TEST, err
    assert "could not restore" not in err and "retries the undo" not in err
    assert "scratch" in err and "git am stopped at 0003" in err and "unable to write new index" in err
    assert "not touched" in err
    assert {p: git(ws / p, "rev-parse", "HEAD") for p in PROJECTS} == heads
    assert scratch_dirs(ws) == []
