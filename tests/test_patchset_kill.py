"""kill -9 of orch's process group in the middle of a long `orch patchset apply` (hundreds of
patches over three projects): the next orch command says so and puts every project back
exactly, keeping the user's refs, branch, untracked files and edits; a new apply then works."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomli_w

from orchestrator.cli import main
from orchestrator.errors import EXIT_OK
from tests.support.git import git
from tests.support.seed import DTS, make_seed_server
from tests.test_patchset_safety import USER_REFS

PROJECTS = ["kernel", "projects/seL4_projects_libs", "projects/vm-examples"]
PER_PROJECT = 70  # 210 patches in all
# where to kill: as soon as the journals exist, or when `git am` in a project reached patch N
KILL_AT: list[tuple[str | None, int]] = [
    (None, 0), ("kernel", 2), ("projects/seL4_projects_libs", 35), ("projects/vm-examples", PER_PROJECT - 1),
]


def make_big_patchset(ws: Path, base: Path) -> Path:
    """``base/big``: per project, PER_PROJECT commits (new files, and one file edited by every
    commit) made with git in a scratch clone and exported with format-patch."""
    doc: dict[str, object] = {"description": "big", "projects": {}}
    for project in PROJECTS:
        scratch = base / "scratch" / project
        scratch.parent.mkdir(parents=True, exist_ok=True)
        git(scratch.parent, "clone", "-q", str(ws / project), str(scratch))
        out = base / "big" / project
        for i in range(PER_PROJECT):
            (scratch / "gen").mkdir(exist_ok=True)
            (scratch / "gen" / f"f{i:03}.txt").write_text(f"file {i}\n")
            with open(scratch / "counter.txt", "a") as counter:
                counter.write(f"line {i}\n")
            git(scratch, "add", "-A")
            git(scratch, "commit", "-q", "-m", f"gen: step {i}")
        git(scratch, "format-patch", "-q", "--zero-commit", "-o", str(out), f"HEAD~{PER_PROJECT}")
        entries = [{"file": f.name, "sha256": hashlib.sha256(f.read_bytes()).hexdigest()}
                   for f in sorted(out.glob("*.patch"))]
        doc["projects"][project] = {"patches": entries}  # type: ignore[index]
    (base / "big" / "patchset.toml").write_text(tomli_w.dumps(doc))
    return base


def prepare_user_state(ws: Path) -> None:
    for project in PROJECTS:
        d = ws / project
        commit = git(d, "commit-tree", git(d, "rev-parse", "HEAD^{tree}"), "-p", "HEAD", "-m", "user")
        for ref in USER_REFS:
            git(d, "update-ref", ref, commit)
        (d / "untracked-notes.txt").write_text("keep me\n")
    git(ws / "kernel", "checkout", "-q", "-b", "work")  # a user branch checked out
    dts = ws / "kernel" / DTS
    dts.write_text(dts.read_text() + "/* my uncommitted edit */\n")


def state(ws: Path) -> dict[str, tuple[str, ...]]:
    """HEAD (SHA and ref), every ref, index, status and every file, per project."""
    result: dict[str, tuple[str, ...]] = {}
    for project in PROJECTS:
        d = ws / project
        files = sorted(
            f"{p.relative_to(d)}:{hashlib.sha256(p.read_bytes()).hexdigest()}"
            for p in d.rglob("*") if p.is_file() and ".git" not in p.relative_to(d).parts)
        result[project] = (git(d, "rev-parse", "HEAD"), git(d, "rev-parse", "--symbolic-full-name", "HEAD"),
                           git(d, "for-each-ref"), git(d, "status", "--porcelain"), git(d, "ls-files", "-s"),
                           *files)
    return result


def applied_shape(ws: Path) -> dict[str, tuple[str, ...]]:
    """What a complete apply leaves, independent of commit dates: HEAD's tree, its branch,
    the number of commits above the pin, the user refs, status and files."""
    result: dict[str, tuple[str, ...]] = {}
    for project, full in state(ws).items():
        d = ws / project
        users = git(d, "for-each-ref", *USER_REFS)
        result[project] = (git(d, "rev-parse", "HEAD^{tree}"), full[1],
                           git(d, "rev-list", "--count", "HEAD", "--not", "refs/orch/pinned"), users,
                           *full[3:])
    return result


def orch_cli(*args: str, start_new_session: bool = False) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "orchestrator", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=start_new_session)


def run_cli(*args: str) -> tuple[int, str]:
    proc = orch_cli(*args)
    _out, err = proc.communicate(timeout=300)
    return proc.returncode, err


def wait_for(ws: Path, project: str | None, patch: int, proc: subprocess.Popen[str]) -> None:
    """Until the journals exist (``project`` None) or ``git am`` in ``project`` works on patch
    ``patch`` (its ``rebase-apply/next``), or the apply ends."""
    am_next = ws / ".orch" / "projects" / f"{project}.git" / "rebase-apply" / "next"
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if project is None and journals(ws):
            return
        try:
            if project is not None and int(am_next.read_text() or "0") >= patch:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.002)


def journals(ws: Path) -> list[Path]:
    return sorted((ws / ".orch" / "projects").rglob("orch-patchset-journal.json"))


def killable_workspaces(tmp_path: Path) -> tuple[Path, Path, Path]:
    """``(pristine, patchsets, reference)``: a synced seed workspace holding the user's state
    (:func:`prepare_user_state`) with the long patchset beside it, and a copy of it on which a
    test runs the operation uninterrupted, to compare the killed-and-recovered one with."""
    manifest = make_seed_server(tmp_path)
    pristine = tmp_path / "pristine"
    assert main(["sync", "-q", "-m", str(manifest), "-w", str(pristine)]) == EXIT_OK
    patchsets = make_big_patchset(pristine, tmp_path / "ps")
    prepare_user_state(pristine)
    reference = tmp_path / "reference"
    shutil.copytree(pristine, reference, symlinks=True)
    return pristine, patchsets, reference


def test_kill_9_during_a_long_apply_is_recovered_exactly(tmp_path: Path) -> None:
    pristine, patchsets, reference = killable_workspaces(tmp_path)
    before = state(pristine)
    code, err = run_cli("patchset", "apply", "big", "-w", str(reference), "--patchsets", str(patchsets))
    assert code == EXIT_OK, err
    complete = applied_shape(reference)

    interrupted = 0
    for i, point in enumerate(KILL_AT):
        ws = tmp_path / f"round{i}"
        shutil.copytree(pristine, ws, symlinks=True)
        proc = orch_cli("patchset", "apply", "big", "-w", str(ws), "--patchsets", str(patchsets),
                        start_new_session=True)
        wait_for(ws, *point, proc)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        left = journals(ws)
        # the next orch command: status, apply and revert take turns at noticing it
        command = ["status", "patchset apply big", "patchset revert big"][i % 3].split()
        code, err = run_cli(*command, "-w", str(ws), "--patchsets", str(patchsets)) \
            if command[0] == "patchset" else run_cli(*command, "-w", str(ws))
        if left:
            interrupted += 1
            assert "interrupted `orch patchset apply`" in err, err
            assert not journals(ws)
        if command[:2] == ["patchset", "apply"]:
            assert code == EXIT_OK, err
            assert applied_shape(ws) == complete
            continue
        # undone exactly, or (killed after its commit point) complete
        assert state(ws) == before or applied_shape(ws) == complete, f"killed at {point}"
        if left and "was undone" in err:
            assert state(ws) == before, f"killed at {point}"
        code, err = run_cli("patchset", "apply", "big", "-w", str(ws), "--patchsets", str(patchsets))
        assert code == EXIT_OK, err
        assert applied_shape(ws) == complete
    assert interrupted == len(KILL_AT), "every kill should land while the apply runs"


@pytest.fixture(autouse=True)
def _no_parallel_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
