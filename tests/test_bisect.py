"""`orch bisect` and the points it is built on (`orch build --at/--pin/--use-checkouts`, and
`git bisect run` with orch as the oracle), on the fixture of tests/support/bisect.py: real
git, real cross builds with cmake/ninja on the host, real QEMU.

One synced workspace serves the whole module, so later tests also show that what earlier
ones built is served from the cache."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli import main
from tests.conftest import require_tools
from tests.support.bisect import LIBS, BisectFixture, make_bisect_fixture
from tests.support.build import snapshot
from tests.support.cli import orch
from tests.support.git import git

HOST_TOOLS = ("qemu-system-aarch64", "aarch64-linux-gnu-gcc", "cmake", "ninja")
pytestmark = pytest.mark.qemu


@pytest.fixture(scope="module")
def fx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BisectFixture]:
    require_tools(*HOST_TOOLS)
    base = tmp_path_factory.mktemp("bisect")
    with pytest.MonkeyPatch.context() as mp:
        home = base / "home"
        home.mkdir()
        config = '[init]\n\tdefaultBranch = master\n[protocol "file"]\n\tallow = always\n'
        (home / ".gitconfig").write_text(config)
        for name, value in (("HOME", str(home)), ("GIT_CONFIG_NOSYSTEM", "1"),
                            ("GIT_AUTHOR_NAME", "Test Dev"), ("GIT_AUTHOR_EMAIL", "dev@example.org"),
                            ("GIT_COMMITTER_NAME", "Test Dev"), ("GIT_COMMITTER_EMAIL", "dev@example.org")):
            mp.setenv(name, value)
        fixture = make_bisect_fixture(base)
        assert main(["sync", "-q", "-w", str(fixture.workspace), "-m", fixture.manifest_url]) == 0
        yield fixture


def bisect_args(fx: BisectFixture, *extra: str) -> list[str]:
    return ["bisect", "--patchset", "largepage", "--patchsets", str(fx.patchsets), "-w", str(fx.workspace),
            "--executor", "host", *extra]


def latest(fx: BisectFixture) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((fx.workspace / ".orch/bisect/latest/bisect.json").read_text())
    return data


def test_bisect_finds_the_snapshot_then_the_commit(fx: BisectFixture, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    s = fx.snapshots
    before = snapshot(fx.workspace)
    code, out, err = orch(capsys, *bisect_args(fx, "--good", s[0], "--bad", s[-1]))
    assert code == 0, out + err
    record = latest(fx)
    assert record["schema"] == 1 and record["status"] == "found" and record["exit_code"] == 0
    assert record["first_bad_manifest"]["rev"] == s[5]
    assert record["first_bad_manifest"]["subject"] == "Updating default.xml (S5: libs, kernel)"
    assert record["last_good_manifest"]["rev"] == s[4]
    culprit = record["culprit"]
    assert culprit["project"] == LIBS and culprit["commit"] == fx.culprit
    assert culprit["subject"] == "libsel4vm: map guest RAM with 4 KiB frames"
    assert culprit["author"] == "Test Dev <dev@example.org>" and culprit["date"].startswith("2024-01-")
    assert culprit["url"] is None  # the fixture's remote is not on GitHub

    steps = record["steps"]
    by_rev = {step["rev"]: step for step in steps}
    # the skips: a snapshot where the patchset stops applying, a commit that does not build
    assert by_rev[s[3]]["verdict"] == "skip" and by_rev[s[3]]["cause"] == "patchset-does-not-apply"
    assert "0001-largepage.patch" in by_rev[s[3]]["detail"] and by_rev[s[3]]["built"] == "-"
    broken = by_rev[fx.libs_commits["L2"]]
    assert broken["verdict"] == "skip" and broken["cause"] == "build-failed" and broken["built"] == "failed"
    assert by_rev[fx.culprit]["verdict"] == "bad" and "vmm-allocation" in by_rev[fx.culprit]["cause"]
    assert by_rev[fx.libs_commits["L3"]]["verdict"] == "good"
    # each step records the exact commits it built and the era's image
    assert by_rev[fx.culprit]["pins"][LIBS] == fx.culprit
    assert by_rev[s[2]]["image"] == "orch-era:old" and by_rev[s[4]]["image_rule"] == "default"
    assert by_rev[fx.culprit]["image"] == "orch-era:v2"
    assert "VM_CONFIG_VERSION 2" in by_rev[fx.culprit]["image_rule"]

    levels = {level["level"]: level for level in record["levels"]}
    assert levels["manifest"]["points"] == 10 and levels["project"]["points"] == 7
    for level in levels.values():
        bound = math.ceil(math.log2(level["points"]))
        assert level["bound"] == bound and level["skips"] == 1
        assert level["builds"] <= bound + level["skips"], level
    assert sum(1 for step in steps if step["built"] in ("built", "failed")) == \
        levels["manifest"]["builds"] + levels["project"]["builds"]

    assert "culprit: projects/seL4_projects_libs " + fx.culprit in out
    assert "first bad snapshot: " + s[5] in out
    assert "patchset-does-not-apply" in out and "build-failed" in out
    assert "manifest step 1: 9 candidates left" in err
    reproduce = record["reproduce"]
    assert f"--at {s[4]}" in reproduce and f"--pin {LIBS}={fx.culprit}" in reproduce
    assert snapshot(fx.workspace) == before  # the user's checkouts were never touched
    for path in ("kernel", LIBS, "tools/seL4"):
        assert not (fx.workspace / ".orch/projects" / f"{path}.git" / "BISECT_START").exists()

    # the one command that reproduces the bad point: exit 1, straight from the cache
    code, out, err = orch(capsys, *reproduce.split()[1:], "-w", str(fx.workspace))
    assert code == 1, out + err
    assert "FAIL (vmm-allocation)" in out

    # run again: every build and boot comes from the cache, same answer
    code, out, err = orch(capsys, *bisect_args(fx, "--good", s[0], "--bad", s[-1]))
    assert code == 0, out + err
    again = latest(fx)
    assert again["culprit"]["commit"] == fx.culprit
    assert [level["builds"] for level in again["levels"]] == [0, 0]
    assert {step["built"] for step in again["steps"]} <= {"cached", "failed (cached)", "-"}
    assert [step["rev"] for step in again["steps"]] == [step["rev"] for step in steps]

    # the log: printed, and replayed without building anything
    code, out, _ = orch(capsys, "bisect", "--log", "-w", str(fx.workspace))
    assert code == 0 and out.startswith("# orch bisect log") and f"manifest {s[3]} skip" in out
    log = fx.workspace / "replay.log"
    log.write_text(out)
    code, out, err = orch(capsys, "bisect", "--replay", str(log), "--patchsets", str(fx.patchsets),
                          "-w", str(fx.workspace))
    assert code == 0, out + err
    replayed = latest(fx)
    assert replayed["replayed"] and replayed["culprit"]["commit"] == fx.culprit
    assert {step["built"] for step in replayed["steps"]} == {"replayed"}
    # with the original's settings (executor, images, cmake), not today's defaults
    assert [step["image"] for step in replayed["steps"]] == [step["image"] for step in steps]
    assert replayed["reproduce"] == reproduce and "--executor host" in reproduce
    # a log that lacks a step the replay needs is bad input
    log.write_text("\n".join(line for line in log.read_text().splitlines() if fx.culprit not in line) + "\n")
    code, out, err = orch(capsys, "bisect", "--replay", str(log), "--patchsets", str(fx.patchsets),
                          "-w", str(fx.workspace))
    assert code == 2 and "the log has no verdict" in err
    code, out, _ = orch(capsys, "bisect", "--json", "-w", str(fx.workspace))
    assert code == 0 and json.loads(out)["id"] == replayed["id"]


def test_bisect_exit_codes(fx: BisectFixture, capsys: pytest.CaptureFixture[str]) -> None:
    s = fx.snapshots
    code, out, err = orch(capsys, *bisect_args(fx, "--good", s[0], "--bad", s[2]))
    assert code == 1, out + err  # S2 is good too: no regression
    assert latest(fx)["status"] == "no-regression" and "no regression" in out
    code, out, err = orch(capsys, *bisect_args(fx, "--good", s[2], "--bad", s[3]))
    assert code == 125, out + err  # the only candidate cannot be tested
    assert latest(fx)["status"] == "all-skipped" and "every candidate was skipped" in out
    code, out, err = orch(capsys, *bisect_args(fx, "--good", s[5], "--bad", s[-1]))
    assert code == 2, out + err  # the good end is bad
    assert latest(fx)["status"] == "good-is-bad"
    code, _, err = orch(capsys, *bisect_args(fx, "--good", s[5], "--bad", s[0]))
    assert code == 2 and "is not an ancestor" in err
    code, _, err = orch(capsys, *bisect_args(fx, "--good", "nosuchrev", "--bad", s[0]))
    assert code == 2 and "nosuchrev" in err
    code, _, err = orch(capsys, *bisect_args(fx, "--variant", "nope", "--good", s[0], "--bad", s[1]))
    assert code == 2 and "no variant named 'nope'" in err


def test_bisect_one_project_with_a_test_command(fx: BisectFixture,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    libs = fx.libs_commits
    test = 'grep -q "Failed to allocate page" "$ORCH_IMAGE" && exit 1; exit 0'
    code, out, err = orch(capsys, *bisect_args(fx, "--project", LIBS, "--good", libs["L0"],
                                               "--bad", libs["L6"], "--test", test))
    assert code == 0, out + err
    record = latest(fx)
    assert record["culprit"]["commit"] == fx.culprit and record["first_bad_manifest"] is None
    assert [level["level"] for level in record["levels"]] == ["project"]
    assert all(step["boot"] == "-" for step in record["steps"])  # the test judged, nothing booted
    assert {step["cause"] for step in record["steps"] if step["verdict"] != "skip"} <= {"test exit 0",
                                                                                       "test exit 1"}
    # above 127 aborts (git bisect's convention), as bad input would
    code, out, err = orch(capsys, *bisect_args(fx, "--project", LIBS, "--good", libs["L3"],
                                               "--bad", libs["L6"], "--test", "exit 200"))
    assert code == 2 and "--test exited 200" in err


def test_broken_builds_as_bad_and_majority_of_boots(fx: BisectFixture,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    libs = fx.libs_commits
    code, out, err = orch(capsys, *bisect_args(fx, "--project", LIBS, "--good", libs["L1"],
                                               "--bad", libs["L2"], "--build-failure", "bad"))
    assert code == 0, out + err
    record = latest(fx)
    assert record["culprit"]["commit"] == libs["L2"]  # the commit that broke the build
    first = record["steps"][0]
    assert (first["rev"], first["verdict"], first["cause"]) == (libs["L2"], "bad", "build-failed")
    code, out, err = orch(capsys, *bisect_args(fx, "--project", LIBS, "--good", libs["L3"],
                                               "--bad", libs["L5"], "--retries", "3"))
    assert code == 0, out + err
    record = latest(fx)
    assert record["culprit"]["commit"] == fx.culprit
    booted = [s for s in record["steps"] if s["boot"] != "-"]
    assert booted and all(s["cause"].endswith("(3/3 boots)") for s in booted), booted


def test_build_at_a_manifest_revision_and_with_pins(fx: BisectFixture,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    s, libs = fx.snapshots, fx.libs_commits
    args = ["build", "--patchset", "largepage", "--variant", "largepage", "--patchsets", str(fx.patchsets),
            "-w", str(fx.workspace), "--executor", "host"]
    heads = {p: git(fx.workspace / p, "rev-parse", "HEAD") for p in ("kernel", LIBS)}
    code, out, err = orch(capsys, *args, "--at", s[4])
    assert code == 0, out + err
    results = json.loads((fx.workspace / ".orch/results/latest/results.json").read_text())
    point = results["manifest"]["point"]
    assert point["manifest_commit"] == s[4] and point["overrides"] == {}
    manifest_at_s4 = git(fx.manifest.bare, "show", f"{s[4]}:default.xml")
    assert point["pins"][LIBS]["sha"] in manifest_at_s4
    assert results["variants"][0]["build_record"]["projects"][LIBS] == point["pins"][LIBS]["sha"]
    assert "not your checked-out" not in err

    code, out, err = orch(capsys, *args, "--at", s[4], "--pin", f"{LIBS}={libs['L4'][:10]}")
    assert code == 1, out + err
    results = json.loads((fx.workspace / ".orch/results/latest/results.json").read_text())
    assert results["manifest"]["point"]["overrides"] == {LIBS: libs["L4"]}
    assert results["variants"][0]["build_record"]["projects"][LIBS] == libs["L4"]
    assert f"{LIBS} pinned to {libs['L4'][:12]}" in err

    # a commit pushed after the sync is fetched into the project's git directory
    fresh = fx.libs.commit({"README": "after the sync\n"}, "libs: pushed after the sync")
    code, out, err = orch(capsys, *args, "--pin", f"{LIBS}={fresh}", "--no-run")
    assert code == 0, out + err
    assert {p: git(fx.workspace / p, "rev-parse", "HEAD") for p in ("kernel", LIBS)} == heads

    code, _, err = orch(capsys, *args, "--at", "no-such-rev")
    assert code == 2 and "no-such-rev" in err
    code, _, err = orch(capsys, *args, "--pin", "nope=HEAD")
    assert code == 2 and "no project 'nope'" in err
    code, _, err = orch(capsys, *args, "--pin", "kernel")
    assert code == 2 and "PATH=REV" in err


def test_use_checkouts(fx: BisectFixture, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["build", "--patchset", "largepage", "--variant", "largepage", "--patchsets", str(fx.patchsets),
            "-w", str(fx.workspace), "--executor", "host"]
    checkout = fx.workspace / LIBS
    pinned = git(checkout, "rev-parse", "HEAD")
    good = fx.libs_commits["L3"]
    git(checkout, "checkout", "-q", "--detach", good)
    try:
        code, out, err = orch(capsys, *args)
        assert code == 1, out + err  # the pins (bad), with a warning that says how to build the checkout
        assert "not your checked-out commits (--use-checkouts" in err
        code, out, err = orch(capsys, *args, "--use-checkouts")
        assert code == 0, out + err
        assert f"{LIBS}: building its checked-out HEAD {good[:12]} (--use-checkouts)" in err
    finally:
        git(checkout, "checkout", "-q", "--detach", pinned)


def test_git_bisect_run_with_orch_as_the_oracle(fx: BisectFixture) -> None:
    """The README's recipe, for real: `git bisect run orch build ...` inside a project."""
    checkout = fx.workspace / LIBS
    pinned = git(checkout, "rev-parse", "HEAD")
    git(checkout, "bisect", "start", pinned, fx.libs_commits["L0"])
    try:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        proc = subprocess.run(
            ["git", "bisect", "run", sys.executable, "-m", "orchestrator", "build", "--patchset", "largepage",
             "--patchsets", str(fx.patchsets), "--variant", "largepage", "--executor", "host", "-q"],
            cwd=checkout, env=env, capture_output=True, text=True)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, output
        assert f"{fx.culprit} is the first bad commit" in output
        assert "a git bisect is in progress there" in output
        # the commit that does not build, when tested, was skipped (exit 125), not judged
        log = git(checkout, "bisect", "log")
        broken = fx.libs_commits["L2"]
        assert f"git bisect skip {broken}" in log, log
    finally:
        git(checkout, "bisect", "reset")
    assert git(checkout, "rev-parse", "HEAD") == pinned


@pytest.mark.docker
def test_bisect_in_docker(fx: BisectFixture, capsys: pytest.CaptureFixture[str], build_image: str) -> None:
    libs = fx.libs_commits
    args = ["bisect", "--patchset", "largepage", "--patchsets", str(fx.patchsets), "-w", str(fx.workspace),
            "--executor", "docker", "--image", build_image, "--boot-in", "host",
            "--project", LIBS, "--good", libs["L3"], "--bad", libs["L6"]]
    code, out, err = orch(capsys, *args)
    assert code == 0, out + err
    record = latest(fx)
    assert record["culprit"]["commit"] == fx.culprit
    assert all(step["image"] == build_image for step in record["steps"])
    assert any(step["built"] == "built" for step in record["steps"])


def test_bisect_on_a_loopback_dask_cluster(fx: BisectFixture, capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    """Two real workers, each with its own workspace: every search step judges two points at
    once (a k-ary search), and the answer is the local one."""
    from tests.support.cluster import loopback_cluster

    s = fx.snapshots
    with loopback_cluster(tmp_path / "cluster") as cluster:
        cluster.add_worker("w1")
        cluster.add_worker("w2")
        cluster.wait_for_workers(2)
        code, out, err = orch(capsys, *bisect_args(fx, "--good", s[0], "--bad", s[-1], "--cluster",
                                                   cluster.address))
        assert code == 0, out + err
        assert "2 point(s) per step" in err
        worked = [w for w in cluster.workers
                  if list((w.directory / "workspaces").glob("*/.orch/bisect/remote/*"))]
    record = latest(fx)
    assert record["first_bad_manifest"]["rev"] == s[5] and record["culprit"]["commit"] == fx.culprit
    by_rev = {step["rev"]: step for step in record["steps"]}
    assert by_rev[s[3]]["cause"] == "patchset-does-not-apply"  # the oracle's skips, judged remotely
    assert by_rev[fx.libs_commits["L2"]]["cause"] == "build-failed"
    levels = {level["level"]: level for level in record["levels"]}
    for level in levels.values():
        steps = len({step["number"] for step in record["steps"] if step["level"] == level["level"]})
        assert steps == level["steps"]
        # two points per step: at most ceil(log3(N + 1)) steps, plus one per skip
        assert math.ceil(steps / 2) <= math.ceil(math.log(level["points"] + 1, 3)) + level["skips"] + 1
    assert len(worked) == 2  # both workers judged points
