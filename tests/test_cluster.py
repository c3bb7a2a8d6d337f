"""Fanning points out: task data, merging split results, the GitHub matrix, and a real Dask
scheduler with real `orch worker`s on 127.0.0.1 running the fixture build (real git, real
builds, real QEMU): the same results as a local run, a worker killed mid-build, Ctrl-C."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.cluster.engine import LocalEngine, cluster_address
from orchestrator.cluster.matrix import (
    GITHUB_MATRIX_LIMIT,
    MatrixPoint,
    build_points,
    github_matrix,
    github_workflow,
    sweep_points,
)
from orchestrator.cluster.task import PatchFile, PointResult, PointTask, pack_patchsets, unpack_patchsets
from orchestrator.errors import InputError
from orchestrator.report import model as rep
from orchestrator.report.merge import merge_reports
from orchestrator.sweep import probe as probe_module
from tests.conftest import require_tools
from tests.support.build import make_patch
from tests.support.cli import CTRL_C_ABLE, orch
from tests.support.cluster import loopback_cluster, processes_under
from tests.support.e2e import E2EFixture, make_e2e_fixture
from tests.support.sweep import MiB, expected_minimum, make_sweep_fixture
from tests.test_sweep import fake_probe

HOST_TOOLS = ("qemu-system-aarch64", "aarch64-linux-gnu-gcc", "cmake", "ninja")


# --- task data --------------------------------------------------------------------------------


def test_patchsets_travel_by_value_and_are_checked(tmp_path: Path) -> None:
    source = tmp_path / "sets" / "mine"
    (source / "kernel").mkdir(parents=True)
    (source / "patchset.toml").write_text("description = 'x'\n")
    (source / "kernel" / "0001.patch").write_bytes(b"diff\n")
    files = pack_patchsets([source])
    assert sorted(f.path for f in files) == ["mine/kernel/0001.patch", "mine/patchset.toml"]
    out = unpack_patchsets(files, tmp_path / "out")
    assert (out / "mine" / "kernel" / "0001.patch").read_bytes() == b"diff\n"

    damaged = PatchFile("mine/patchset.toml", b"changed", files[1].sha256)
    with pytest.raises(InputError, match="sha256 mismatch"):
        unpack_patchsets([damaged], tmp_path / "again")
    with pytest.raises(InputError, match="relative path"):
        unpack_patchsets([PatchFile.of("../escape", b"x")], tmp_path / "again")


def test_task_key_is_the_content() -> None:
    a = PointTask("run", "4k", "largepage", "https://example.org/m.git", "abc", None, ("--variant", "4k"),
                  (PatchFile.of("largepage/patchset.toml", b"a"),))
    same = PointTask("run", "4k", "largepage", "https://example.org/m.git", "abc", None, ("--variant", "4k"),
                     (PatchFile.of("largepage/patchset.toml", b"a"),))
    other = PointTask("run", "4k", "largepage", "https://example.org/m.git", "abc", None, ("--variant", "4k"),
                      (PatchFile.of("largepage/patchset.toml", b"b"),))
    assert a.key() == same.key() != other.key()
    argv = a.build_argv(Path("/p"), Path("/r"))
    assert argv[:4] == ["build", "--patchset", "largepage", "--patchsets"]
    assert argv[argv.index("-b"):argv.index("-b") + 2] == ["-b", "abc"]
    assert argv[-2:] == ["--variant", "4k"]


def test_result_files_never_land_outside_the_directory(tmp_path: Path) -> None:
    result = PointResult("4k", 0, files={"../../evil": b"x"})
    with pytest.raises(InputError, match="outside"):
        result.write(tmp_path / "points" / "4k")
    assert not (tmp_path / "evil").exists()
    ok = PointResult("4k", 0, files={"results.json": b"{}", "4k/console.log": b"hello"})
    ok.write(tmp_path / "ok")
    assert (tmp_path / "ok" / "4k" / "console.log").read_bytes() == b"hello"
    point = json.loads((tmp_path / "ok" / "point.json").read_text())
    assert point["files"] == ["4k/console.log", "results.json"]


def test_cluster_address_is_checked(tmp_path: Path) -> None:
    assert cluster_address(None, {}) is None
    assert cluster_address("host:8786", {}) == "tcp://host:8786"
    assert cluster_address(None, {"ORCH_CLUSTER": "tcp://a:1"}) == "tcp://a:1"
    (tmp_path / ".orch").mkdir()
    (tmp_path / ".orch" / "config.toml").write_text('cluster = "tcp://cfg:8786"\n')
    assert cluster_address(None, {}, tmp_path) == "tcp://cfg:8786"
    assert cluster_address("tcp://given:1", {"ORCH_CLUSTER": "tcp://env:1"}, tmp_path) == "tcp://given:1"
    with pytest.raises(InputError, match="not a Dask scheduler address"):
        cluster_address("http://host:8786", {})


# --- the GitHub matrix ------------------------------------------------------------------------


def test_github_matrix_shape_and_limit() -> None:
    matrix = github_matrix(build_points("largepage", ["4k", "largepage"]))
    assert matrix == {"include": [
        {"point": "4k", "command": "build", "args": "--patchset largepage --point 4k"},
        {"point": "largepage", "command": "build", "args": "--patchset largepage --point largepage"}]}
    github_matrix(build_points("x", [f"p{i}" for i in range(GITHUB_MATRIX_LIMIT)]))
    with pytest.raises(InputError, match="at most 256 jobs"):
        github_matrix(build_points("x", [f"p{i}" for i in range(GITHUB_MATRIX_LIMIT + 1)]))
    with pytest.raises(InputError, match="appears twice"):
        github_matrix(build_points("x", ["a", "a"]))
    with pytest.raises(InputError, match="not 'rm'"):
        github_matrix([MatrixPoint("a", "rm", "-rf /")])
    assert sweep_points(["--patchset", "s"], ["ram=1"])[0].args == "--patchset s --point 0 --yes"


def test_matrix_cli_and_workflow_validate_against_the_schema(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = orch(capsys, "matrix", "--github", "largepage")
    assert code == 0
    assert [j["point"] for j in json.loads(out)["include"]] == ["4k", "largepage"]
    workflow = tmp_path / "orch.yml"
    workflow.write_text(github_workflow("largepage"))
    checker = shutil.which("check-jsonschema")
    assert checker is not None, "check-jsonschema (a test dependency) is not installed"
    proc = subprocess.run([checker, "--builtin-schema", "vendor.github-workflows", str(workflow)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    workflow.write_text(github_workflow("largepage").replace("runs-on", "runs_on"))
    proc = subprocess.run([checker, "--builtin-schema", "vendor.github-workflows", str(workflow)],
                          capture_output=True, text=True)
    assert proc.returncode != 0  # the check really checks


# --- merging split results --------------------------------------------------------------------


def _variant(name: str, verdict: str, outcome: str) -> rep.VariantResult:
    v = rep.VariantResult(name, ["vm-2g"], rep.BuildSummary("built"), rep.BootSummary("ran", verdict=verdict))
    v.outcome = outcome
    return v


def test_merge_judges_again_and_refuses_overlaps(tmp_path: Path) -> None:
    a = rep.JobReport("a", "largepage", [_variant("4k", "fail", "expected")],
                      timings={"qemu": 2.0, "total": 5})
    b = rep.JobReport("b", "largepage", [_variant("largepage", "pass", "unexpected")],
                      timings={"qemu": 3.0, "total": 7})
    merged = merge_reports([(tmp_path / "a", a), (tmp_path / "b", b)], "m")
    assert [v.name for v in merged.variants] == ["4k", "largepage"]
    assert merged.exit_code == 1 and merged.timings == {"qemu": 5.0, "total": 7.0}
    with pytest.raises(InputError, match="also in"):
        merge_reports([(tmp_path / "a", a), (tmp_path / "a2", a)], "m")
    other = rep.JobReport("c", "vm-2g", [_variant("x", "pass", "pass")])
    with pytest.raises(InputError, match="of one patchset"):
        merge_reports([(tmp_path / "a", a), (tmp_path / "c", other)], "m")


def test_report_merge_cli_rejects_a_directory_without_results(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    code, _, err = orch(capsys, "report", "-w", str(tmp_path), "--merge", str(tmp_path / "empty"))
    assert code == 2 and "no results.json" in err


# --- real runs: split, merged, distributed ----------------------------------------------------


def _figures(results: dict[str, object]) -> list[tuple[object, ...]]:
    """What must be identical between a local run and a merged/distributed one."""
    out: list[tuple[object, ...]] = []
    for v in results["variants"]:  # type: ignore[attr-defined]
        out.append((v["name"], v["patchsets"], v["outcome"], v["boot"]["verdict"], v["boot"]["cause"],
                    v["boot"]["guest"], v["vmm"], v["memory"], v["build"]["boot_image_sha256"]))
    return out


@pytest.fixture
def fx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> E2EFixture:
    monkeypatch.setenv("COLUMNS", "200")
    return make_e2e_fixture(tmp_path)


@pytest.mark.qemu
def test_merge_of_split_points_equals_the_single_run(fx: E2EFixture, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    require_tools(*HOST_TOOLS)
    base = ["build", "--patchset", "largepage", "--patchsets", str(fx.patchsets), "-w", str(fx.workspace),
            "--executor", "host", "-q"]
    code, out, err = orch(capsys, *base, "-m", fx.manifest_url, "--results", str(tmp_path / "whole"))
    assert code == 0, out + err
    for point in ("4k", "largepage"):
        code, out, err = orch(capsys, *base, "--point", point, "--results", str(tmp_path / point))
        assert code == 0, out + err
    code, out, err = orch(capsys, "report", "-w", str(fx.workspace), "--merge", str(tmp_path / "4k"),
                          str(tmp_path / "largepage"), "--results", str(tmp_path / "merged"))
    assert code == 0, out + err
    whole = json.loads((tmp_path / "whole" / "results.json").read_text())
    merged = json.loads((tmp_path / "merged" / "results.json").read_text())
    assert _figures(merged) == _figures(whole)
    assert merged["exit_code"] == whole["exit_code"] == 0
    assert (tmp_path / "merged" / "4k" / "console.log").read_bytes() == (
        tmp_path / "whole" / "4k" / "console.log").read_bytes()
    table = (tmp_path / "merged" / "summary.md").read_text()
    assert "| verdict | **FAIL (vmm-allocation)** | **PASS** |" in table


@pytest.mark.qemu
def test_build_on_a_loopback_dask_cluster_matches_the_local_run(
        fx: E2EFixture, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_tools(*HOST_TOOLS)
    base = ["build", "--patchset", "largepage", "--patchsets", str(fx.patchsets), "-w", str(fx.workspace),
            "--executor", "host", "-q"]
    code, out, err = orch(capsys, *base, "-m", fx.manifest_url, "--results", str(tmp_path / "local"))
    assert code == 0, out + err
    with loopback_cluster(tmp_path / "cluster") as cluster:
        cluster.add_worker("w1")
        cluster.add_worker("w2")
        cluster.wait_for_workers(2)
        code, out, err = orch(capsys, *base, "--cluster", cluster.address,
                              "--results", str(tmp_path / "dist"))
        assert code == 0, out + err
        local = json.loads((tmp_path / "local" / "results.json").read_text())
        dist = json.loads((tmp_path / "dist" / "results.json").read_text())
        assert _figures(dist) == _figures(local)
        points = {p.name: json.loads((p / "point.json").read_text())
                  for p in (tmp_path / "dist" / "points").iterdir()}
        assert sorted(points) == ["4k", "largepage"]  # every point exactly once
        assert all(p["exit_code"] == 0 or p["point_id"] == "4k" for p in points.values())
        # each worker synced its own cached workspace: nothing came from the client's
        assert any((w.directory / "workspaces").is_dir() for w in cluster.workers)


HANG_TOML = """description = "the guest hangs after seL4 boots (a point that runs until its timeout)"
requires = ["vm-2g"]

[build]
app = "vm_minimal"
platform = "qemu-arm-virt"
cmake = ["-DCAMKES_VM_APP=vm_minimal", "-DPLATFORM=qemu-arm-virt", "-DAARCH64=1"]

[variants.hang]
patchsets = ["vm-2g", "hang"]
"""


def add_hang_patchset(fx: E2EFixture) -> None:
    """A patchset whose one variant boots a guest that never decides: QEMU runs until --timeout."""
    patch = make_patch(fx.kernel.scratch, {"src/frames.h": ("#define SCENARIO SCENARIO_FAIL",
                                                            "#define SCENARIO SCENARIO_SEL4_HANG")},
                       "hang after seL4 boots")
    directory = fx.patchsets / "hang" / "kernel"
    directory.mkdir(parents=True)
    (directory / "0001-hang.patch").write_text(patch)
    sha = hashlib.sha256(patch.encode()).hexdigest()
    (fx.patchsets / "hang" / "patchset.toml").write_text(
        HANG_TOML + f'\n[projects."kernel"]\npatches = [{{ file = "0001-hang.patch", sha256 = "{sha}" }}]\n')


def qemu_under(directory: Path) -> bool:
    return any("qemu-system" in p for p in processes_under(directory))


def hang_build(fx: E2EFixture, cluster_address: str, results: Path, timeout: int) -> list[str]:
    return [sys.executable, "-m", "orchestrator", "build", "--patchset", "hang", "--patchsets",
            str(fx.patchsets), "-w", str(fx.workspace), "-m", fx.manifest_url, "--executor", "host",
            "--timeout", str(timeout), "--cluster", cluster_address, "--results", str(results),
            "--json", "-q"]


@pytest.mark.qemu
def test_a_killed_worker_loses_nothing_and_leaves_nothing(fx: E2EFixture, tmp_path: Path) -> None:
    require_tools(*HOST_TOOLS)
    add_hang_patchset(fx)
    with loopback_cluster(tmp_path / "cluster") as cluster:
        first = cluster.add_worker("w1")
        cluster.wait_for_workers(1)
        client = subprocess.Popen(hang_build(fx, cluster.address, tmp_path / "dist", 15),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while not qemu_under(first.directory):  # the point is booting on w1
            assert time.monotonic() < deadline and client.poll() is None, client.communicate()
            time.sleep(0.1)
        first.kill()
        killed = time.monotonic()
        while processes_under(first.directory):  # orch build and QEMU go with the worker
            assert time.monotonic() - killed < 8, processes_under(first.directory)
            time.sleep(0.2)
        cluster.add_worker("w2")
        out, err = client.communicate(timeout=600)
        assert client.returncode == 1, out + err  # the retried point ran to its verdict elsewhere
        results = json.loads(out)
        assert [(v["name"], v["boot"]["verdict"]) for v in results["variants"]] == [("hang", "timeout")]
        point = json.loads((tmp_path / "dist" / "points" / "hang" / "point.json").read_text())
        assert point["worker"] != "" and "w1" not in point["attempt"]
        assert sorted(p.name for p in (tmp_path / "dist" / "points").iterdir()) == ["hang"]


@pytest.mark.qemu
def test_ctrl_c_leaves_nothing_running_on_any_worker(fx: E2EFixture, tmp_path: Path) -> None:
    require_tools(*HOST_TOOLS)
    add_hang_patchset(fx)
    with loopback_cluster(tmp_path / "cluster") as cluster:
        workers = [cluster.add_worker("w1"), cluster.add_worker("w2")]
        cluster.wait_for_workers(2)
        client = subprocess.Popen(hang_build(fx, cluster.address, tmp_path / "dist", 300),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **CTRL_C_ABLE)
        deadline = time.monotonic() + 120
        while not any(qemu_under(w.directory) for w in workers):
            assert time.monotonic() < deadline and client.poll() is None, client.communicate()
            time.sleep(0.1)
        client.send_signal(signal.SIGINT)
        _out, err = client.communicate(timeout=60)
        assert client.returncode == 130, err
        stopped = time.monotonic()
        while any(processes_under(w.directory) for w in workers):
            assert time.monotonic() - stopped < 20, [processes_under(w.directory) for w in workers]
            time.sleep(0.2)
        assert all(w.proc.poll() is None for w in workers)  # the workers themselves live on


def test_local_engine_runs_points_through_the_worker_code(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A point that cannot run (no reachable manifest) is a 125 result, never a verdict."""
    monkeypatch.setenv("ORCH_WORKER_DIR", str(tmp_path / "w"))
    task = PointTask("run", "4k", "largepage", str(tmp_path / "no-such-manifest.git"))
    [result] = LocalEngine(dict(os.environ)).run([task])
    assert result.exit_code == 125 and result.error and "exit" in result.error


@pytest.mark.qemu
def test_sweep_on_a_loopback_cluster_matches_the_local_sweep(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    require_tools(*HOST_TOOLS)
    monkeypatch.setenv("COLUMNS", "200")
    sweep_fx = make_sweep_fixture(tmp_path / "fx")
    sweep_fx.workspace.mkdir()
    args = ["sweep", "--patchset", "sweep", "--patchsets", str(sweep_fx.patchsets),
            "-w", str(sweep_fx.workspace), "-m", sweep_fx.manifest_url, "--executor", "host",
            "--minimize", "mempool=0..128M", "--step", "1M", "--grid", "ram=512M,1G", "--json", "-q"]
    code, out, err = orch(capsys, *args)
    assert code == 0, out + err
    local = json.loads(out)
    with loopback_cluster(tmp_path / "cluster") as cluster:
        cluster.add_worker("w1")
        cluster.add_worker("w2")
        cluster.wait_for_workers(2)
        code, out, err = orch(capsys, *args, "--cluster", cluster.address)
        assert code == 0, out + err
    dist = json.loads(out)

    def found(data: dict[str, object]) -> list[tuple[object, ...]]:
        return [(p["point"], p["minimum"], p["probes"], p["below"]["verdict"], p["below"]["cause"])
                for p in data["points"]]  # type: ignore[attr-defined]

    assert found(dist) == found(local)
    assert [p["minimum"] for p in dist["points"]] == [expected_minimum(512 * MiB, 4096),
                                                      expected_minimum(1024 * MiB, 4096)]
    # every probe of every point came back once, and the journal holds them for --resume
    assert len(dist["probes"]) == len(local["probes"])
    journal = (sweep_fx.workspace / ".orch/sweeps/latest/probes.jsonl").read_text().splitlines()
    assert len(journal) == len(dist["probes"])
    # the client's workspace built nothing new: the probes ran in the workers' own workspaces
    assert all(any((w.directory / "workspaces").glob("*/.orch/builds")) for w in cluster.workers)


def test_sweep_matrix_jobs_merge_into_the_single_sweep(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A CI matrix of a sweep: one job per grid point (--point I --results DIR), then
    `orch report --merge`: the same minima, probes and chart as the sweep run in one go."""
    calls: list[dict[str, int]] = []
    monkeypatch.setattr(probe_module, "probe", fake_probe(calls))
    monkeypatch.setenv("COLUMNS", "200")
    fx = make_sweep_fixture(tmp_path / "fx")
    fx.workspace.mkdir()
    where = ["--patchsets", str(fx.patchsets), "-w", str(fx.workspace), "-m", fx.manifest_url]
    sweep = ["sweep", "--patchset", "sweep", "--executor", "host", "--minimize", "mempool=0..128M",
             "--step", "1M", "--grid", "ram=512M,1G"]
    code, out, err = orch(capsys, *sweep, *where, "--matrix")
    assert code == 0, err
    matrix = json.loads(out)["include"]
    assert [(j["point"], j["command"], j["label"]) for j in matrix] == [
        ("point-0", "sweep", "ram=512 MiB"), ("point-1", "sweep", "ram=1 GiB")]
    assert calls == []  # --matrix builds nothing

    code, out, err = orch(capsys, *sweep, *where, "--json", "-q")
    assert code == 0, err
    whole = json.loads(out)
    code, out, err = orch(capsys, "matrix", "--github", "latest", "-w", str(fx.workspace))
    assert code == 0, err
    stored = json.loads(out)["include"]  # the same jobs from the stored plan (variant resolved)
    assert [(j["point"], j["label"]) for j in stored] == [(j["point"], j["label"]) for j in matrix]
    assert [shlex.split(j["args"])[-3:] for j in stored] == [["--point", "0", "--yes"],
                                                              ["--point", "1", "--yes"]]

    for job in matrix:
        args = [job["command"], *shlex.split(job["args"]), *where, "--results", str(tmp_path / job["point"])]
        code, out, err = orch(capsys, *args, "-q")
        assert code == 0, out + err
    code, out, err = orch(capsys, "report", "-w", str(fx.workspace), "--json", "--merge",
                          str(tmp_path / "point-1"), str(tmp_path / "point-0"),
                          "--results", str(tmp_path / "merged"))
    assert code == 0, out + err
    merged = json.loads(out)
    assert [(p["index"], p["minimum"]) for p in merged["points"]] == [
        (p["index"], p["minimum"]) for p in whole["points"]]
    assert merged["fit"] == whole["fit"] and merged["complete"] is True
    assert len(merged["probes"]) == len(whole["probes"])
    assert (tmp_path / "merged" / "sweep.png").is_file() and (tmp_path / "merged" / "sweep.csv").is_file()

    code, _, err = orch(capsys, "report", "-w", str(fx.workspace), "--merge", str(tmp_path / "point-0"),
                        str(tmp_path / "point-0"), "--results", str(tmp_path / "again"))
    assert code == 2 and "also in" in err
