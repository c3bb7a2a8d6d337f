"""`orch sweep`: the search (exact threshold within ceil(log2((HI-LO)/step)) + 1 probes), the
monotonicity check, the results (table, JSON, CSV, chart), the fit, the budget and resume;
fast tests with a stand-in probe, and real builds + QEMU on the fixture VMM (marked qemu)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import signal
import struct
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.errors import InputError
from orchestrator.sweep import probe as probe_module
from orchestrator.sweep import results
from orchestrator.sweep.plan import PointResult, PointTask, ProbeRecord, Search, parse_axis, parse_search
from orchestrator.sweep.search import minimize, violations
from tests.conftest import require_tools
from tests.support.cli import CTRL_C_ABLE
from tests.support.e2e import E2EFixture
from tests.support.sweep import expected_minimum, make_sweep_fixture

MiB = 1024 * 1024
GiB = 1024 * MiB
HOST_TOOLS = ("qemu-system-aarch64", "aarch64-linux-gnu-gcc", "cmake", "ninja")


def record(value: int, ok: bool, param: str = "mempool", **others: int) -> ProbeRecord:
    return ProbeRecord(point=0, settings={param: value, **others}, ok=ok, verdict="pass" if ok else "fail",
                       cause=None if ok else "vmm-allocation")


# --- the search -------------------------------------------------------------------------------


@pytest.mark.parametrize("lo, hi, step", [(0, 64, 1), (1, 256, 1), (0, 100, 4), (3, 10, 1), (0, 2, 1)])
def test_minimize_is_exact_within_the_bound(lo: int, hi: int, step: int) -> None:
    search = Search("mempool", lo, hi, step)
    bound = math.ceil(math.log2((hi - lo) / step)) + 1
    assert search.max_probes == bound
    for threshold in range(lo + 2 * step, hi + 1, step):
        probed: list[int] = []

        def probe(value: int, threshold: int = threshold, probed: list[int] = probed) -> ProbeRecord:
            probed.append(value)
            return record(value, value >= threshold)

        found = minimize(search, probe)
        assert found.minimum == threshold, (threshold, probed)
        assert found.below is not None and found.below.settings["mempool"] == threshold - step
        assert len(probed) <= bound and len(set(probed)) == len(probed)


def test_minimize_at_the_edges() -> None:
    search = Search("mempool", 0, 64, 1)
    nothing = minimize(search, lambda v: record(v, False))
    assert nothing.minimum is None and "fails even at the top" in nothing.notes[0]
    everything = minimize(search, lambda v: record(v, True))
    assert everything.minimum == 0 and "may be lower" in everything.notes[0]
    just_above = minimize(search, lambda v: record(v, v >= 1))
    assert just_above.minimum == 1 and just_above.below is not None


def test_violations_are_a_pass_below_a_fail_at_the_same_other_values() -> None:
    records = [record(32, False, ram=1), record(33, True, ram=1), record(40, False, ram=1),
               record(48, True, ram=1), record(10, True, ram=2), record(60, False, ram=3)]
    assert violations(records, "mempool") == [(33, 40)]
    assert violations([record(1, False), record(2, True)], "mempool") == []


def test_parse_search_and_axes() -> None:
    assert parse_search("mempool=1M..256M", "1M") == Search("mempool", MiB, 256 * MiB, MiB)
    assert parse_axis("ram=512M,1G,2G", "--grid").values == (512 * MiB, GiB, 2 * GiB)
    with pytest.raises(InputError, match=r"expected NAME=LO\.\.HI"):
        parse_search("mempool=1M-2M", None)
    with pytest.raises(InputError, match="not a multiple"):
        parse_search("mempool=0..10M", "3M")
    with pytest.raises(InputError, match="HI must be above LO"):
        parse_search("mempool=8M..1M", None)


# --- results ----------------------------------------------------------------------------------


def _result(tmp_path: Path) -> results.SweepResult:
    from orchestrator.sweep.plan import Axis, SweepPlan

    plan = SweepPlan("sweep", "vmm", Search("mempool", 0, 256 * MiB, MiB),
                     grid=(Axis("ram", (512 * MiB, GiB), ("512M", "1G")),
                           Axis("frames", (4096, 2 * MiB), ("4k", "2m"))),
                     values=())
    points = []
    grid = [(512 * MiB, 4096), (512 * MiB, 2 * MiB), (GiB, 4096), (GiB, 2 * MiB)]
    for index, (ram, frame) in enumerate(grid):
        minimum = expected_minimum(ram, frame)
        at = {"ram": ram, "frames": frame}
        probes = [ProbeRecord(point=index, settings={**at, "mempool": minimum}, ok=True,
                              verdict="pass", build="built", build_seconds=2.0 if index < 2 else 0.5,
                              configured=index < 2, guest_ram=ram, frame_size=frame),
                  ProbeRecord(point=index, settings={**at, "mempool": minimum - MiB},
                              ok=False, verdict="fail", cause="vmm-allocation", build="built",
                              build_seconds=0.5, guest_ram=ram, frame_size=frame)]
        points.append(PointResult(index, {"ram": ram, "frames": frame}, minimum, probes[1], probes, 2, 1.0,
                                  guest_ram=ram, frame_size=frame))
    return results.SweepResult("s1", plan, points, started="now", command=["orch", "sweep"])


def test_fit_results_files_and_chart(tmp_path: Path) -> None:
    result = _result(tmp_path)
    fit = result.fit()
    assert fit is not None and fit.points == 2 and round(fit.bytes_per_frame) == 256
    times = result.build_times()
    assert times.clean_builds == 2 and times.clean_seconds == 2.0 and times.probe_seconds == 0.5
    written = results.write(result, tmp_path)
    data = json.loads(written["json"].read_text())
    assert data["points"][0]["minimum"] == 33 * MiB and len(data["probes"]) == 8
    assert data["fit"]["bytes_per_frame"] == pytest.approx(256.0)
    assert results.read(tmp_path).points[2].minimum == 65 * MiB
    rows = list(csv.DictReader(io.StringIO(written["csv"].read_text())))
    assert len(rows) == 8 and rows[1]["verdict"] == "fail" and rows[1]["mempool"] == str(32 * MiB)
    assert_png(written["png"], 800, 500)
    assert written["svg"].read_text().lstrip().startswith("<?xml")
    summary = written["markdown"].read_text()
    assert "![minimum mempool against guest RAM](sweep.png)" in summary
    assert "| 512 MiB | 4 KiB | 33 MiB |" in summary
    assert "256.0 B per 4 KiB frame" in summary


def assert_png(path: Path, width: int, height: int) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == (width, height)


# --- the runner with a stand-in probe ---------------------------------------------------------


@pytest.fixture
def fx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> E2EFixture:
    monkeypatch.setenv("COLUMNS", "200")
    fixture = make_sweep_fixture(tmp_path)
    fixture.workspace.mkdir()
    return fixture


def sweep_args(fx: E2EFixture, *extra: str) -> list[str]:
    return ["sweep", "--patchset", "sweep", "--patchsets", str(fx.patchsets), "-w", str(fx.workspace),
            "-m", fx.manifest_url, "--executor", "host", *extra]


def fake_probe(calls: list[dict[str, int]], interrupt_after: int | None = None):  # type: ignore[no-untyped-def]
    def probe(env: object, settings: list[object]) -> ProbeRecord:
        values = {s.name: s.value for s in settings}  # type: ignore[attr-defined]
        if interrupt_after is not None and len(calls) >= interrupt_after:
            raise KeyboardInterrupt()
        calls.append(values)
        ok = values["mempool"] >= expected_minimum(values.get("ram", 512 * MiB), values.get("frames", 4096))
        return ProbeRecord(point=env.task.index, settings=values, ok=ok,  # type: ignore[attr-defined]
                           verdict="pass" if ok else "fail", build="built", build_seconds=0.1,
                           guest_ram=values.get("ram", 512 * MiB), frame_size=values.get("frames", 4096))
    return probe


def test_budget_asks_for_yes(fx: E2EFixture, capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, int]] = []
    monkeypatch.setattr(probe_module, "probe", fake_probe(calls))
    code = main(sweep_args(fx, "--minimize", "mempool=0..256M", "--step", "1M", "--grid", "ram=512M,1G,2G",
                           "--max-builds", "20"))
    err = capsys.readouterr().err
    assert code == 2 and "may need 27 builds, more than --max-builds 20" in err and "--yes" in err
    assert calls == [] and not (fx.workspace / ".orch/sweeps/latest").exists()


def test_interrupted_sweep_resumes_without_redoing_probes(fx: E2EFixture, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, int]] = []
    monkeypatch.setattr(probe_module, "probe", fake_probe(calls, interrupt_after=5))
    args = sweep_args(fx, "--minimize", "mempool=0..128M", "--step", "1M", "--grid", "ram=512M,1G")
    assert main(args) == 130
    err = capsys.readouterr().err
    assert "interrupted after 5 probe(s)" in err and "orch sweep --resume" in err
    first = list(calls)
    calls.clear()
    monkeypatch.setattr(probe_module, "probe", fake_probe(calls))
    assert main(["sweep", "--resume", "-w", str(fx.workspace), "--executor", "host"]) == 0
    out = capsys.readouterr().out
    assert not any(c in first for c in calls)  # nothing done twice
    assert len(first) + len(calls) <= 2 * 8
    data = json.loads((fx.workspace / ".orch/sweeps/latest/sweep.json").read_text())
    assert [p["minimum"] for p in data["points"]] == [33 * MiB, 65 * MiB]
    assert len(data["probes"]) == len(first) + len(calls)
    assert "fitted allocator cost: 256.0 B per 4 KiB frame" in out

    assert main(["report", "--sweep", "-w", str(fx.workspace)]) == 0
    shown = capsys.readouterr().out
    assert "33 MiB" in shown and "65 MiB" in shown and "256.0 B per 4 KiB frame" in shown
    assert main(["report", "--sweep", "latest", "--markdown", "-w", str(fx.workspace)]) == 0
    assert "![minimum mempool against guest RAM](sweep.png)" in capsys.readouterr().out


def test_build_table_uses_the_measured_cost() -> None:
    from orchestrator.analysis.cache import Analysis
    from orchestrator.analysis.memory import Sourced, estimate
    from orchestrator.report import model, render

    analysis = Analysis(scanned="build", memory=estimate(
        Sourced(2 * GiB, "devices.camkes:11"), Sourced(4096, "guest_ram.c:292"),
        Sourced(80 * MiB, "default")))
    seed = model.memory_summary(analysis)
    assert seed.metadata == 120 * MiB and seed.bytes_per_frame is None
    measured = model.memory_summary(analysis, 256.0, "orch sweep S1 (3 points)")
    assert measured.metadata == 128 * MiB and measured.bytes_per_frame_source == "orch sweep S1 (3 points)"
    variant = model.VariantResult(name="4k", patchsets=[], build=model.BuildSummary("built"),
                                  boot=model.BootSummary("ran"), memory=measured)
    assert render.metadata_text(variant) == "128 MiB EXCEEDS 80 MiB pool (measured 256 B/frame)"
    report = model.JobReport(id="r", patchset="p", variants=[variant])
    assert "256.0 bytes per frame, measured by orch sweep S1 (3 points)" in render.markdown(report)
    # the caption, the Markdown note and JUnit say measured, never the seed's "not measured"
    assert "measured by orch sweep S1 (3 points)" in str(render.table(report).caption)
    assert "not measured" not in render.markdown(report) and "not measured" not in render.junit(report)
    assert "2 nodes x 120 bytes (the seed's formula" in render.markdown(
        model.JobReport(id="r", patchset="p", variants=[replace(variant, memory=seed)]))


def test_unknown_parameter_is_refused_before_building(fx: E2EFixture,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(sweep_args(fx, "--minimize", "pool=0..1M")) == 2
    assert "no parameter 'pool'" in capsys.readouterr().err


# --- real builds and QEMU ---------------------------------------------------------------------


@pytest.mark.qemu
def test_real_sweep_finds_the_exact_threshold(fx: E2EFixture, capsys: pytest.CaptureFixture[str]) -> None:
    require_tools(*HOST_TOOLS)
    code = main(sweep_args(fx, "--minimize", "mempool=0..128M", "--step", "1M", "--grid", "ram=512M,1G",
                           "--grid", "frames=4k"))
    out, err = capsys.readouterr()
    assert code == 0, out + err
    directory = (fx.workspace / ".orch/sweeps/latest").resolve()
    data = json.loads((directory / "sweep.json").read_text())
    bound = math.ceil(math.log2(128)) + 1
    for point, ram in zip(data["points"], (512 * MiB, GiB), strict=True):
        assert point["minimum"] == expected_minimum(ram, 4096)
        assert point["probes"] <= bound
        assert point["below"]["verdict"] == "fail" and point["below"]["cause"] == "vmm-allocation"
        assert point["guest_ram"] == ram and point["frame_size"] == 4096
    assert data["fit"]["bytes_per_frame"] == pytest.approx(256.0)
    rows = list(csv.DictReader(io.StringIO((directory / "sweep.csv").read_text())))
    assert len(rows) == len(data["probes"]) and {r["verdict"] for r in rows} == {"pass", "fail"}
    assert all(r["build"] == "built" for r in rows)
    clean = [r for r in rows if r["configured"] == "True"]
    # one clean build per RAM size (QEMU_MEMORY is a configure input); the rest incremental
    assert len(clean) == 2
    assert_png(directory / "sweep.png", 800, 500)
    assert "33 MiB" in out and "65 MiB" in out and "256.0 B per 4 KiB frame" in out
    assert "build times: clean" in out

    # orch build's bookkeeping now uses the measured cost, and says which sweep measured it
    code = main(["build", "--patchset", "sweep", "--patchsets", str(fx.patchsets), "-w", str(fx.workspace),
                 "--executor", "host", "--no-run", "--set", "ram=2G"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "128 MiB EXCEEDS" in out and "(measured 256 B/frame)" in out  # 2 GiB / 4 KiB x 256 B
    summary = (fx.workspace / ".orch/results/latest/summary.md").read_text()
    assert f"measured by orch sweep {directory.name} (2 points)" in summary


@pytest.mark.qemu
def test_real_plain_grid_warns_about_a_planted_non_monotone_point(
        fx: E2EFixture, capsys: pytest.CaptureFixture[str]) -> None:
    require_tools(*HOST_TOOLS)
    code = main(sweep_args(fx, "--values", "mempool=32M,33M,40M", f"--cmake=-DGLITCH_POOL={40 * MiB:#x}"))
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "not monotone: passes at 33 MiB but fails at 40 MiB" in out
    data = json.loads((fx.workspace / ".orch/sweeps/latest/sweep.json").read_text())
    assert [(p["settings"]["mempool"] // MiB, p["verdict"]) for p in data["probes"]] == [
        (32, "fail"), (33, "pass"), (40, "fail")]
    assert data["points"][0]["violations"] == [[33 * MiB, 40 * MiB]]


@pytest.mark.qemu
def test_real_ctrl_c_then_resume(fx: E2EFixture) -> None:
    require_tools(*HOST_TOOLS)
    argv = [sys.executable, "-m", "orchestrator",
            *sweep_args(fx, "--minimize", "mempool=0..64M", "--step", "1M")]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **CTRL_C_ABLE)
    journal = fx.workspace / ".orch/sweeps/latest/probes.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if journal.is_file() and len(journal.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGINT)
    _out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "orch sweep --resume" in err
    before = [json.loads(line) for line in journal.read_text().splitlines()]
    assert 2 <= len(before) < 7
    resume = [sys.executable, "-m", "orchestrator", "sweep", "--resume", "-w", str(fx.workspace)]
    resumed = subprocess.run(resume, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    after = [json.loads(line) for line in journal.read_text().splitlines()]
    values = [r["settings"]["mempool"] for r in after]
    assert len(values) == len(set(values))  # no probe done twice
    assert after[:len(before)] == before
    data = json.loads((journal.parent / "sweep.json").read_text())
    assert data["points"][0]["minimum"] == 33 * MiB and data["points"][0]["probes"] <= 7


def test_a_timed_out_probe_is_booted_once_more(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hang (no decisive line before the timeout) says nothing about the value: the probe is
    booted again and the second verdict counts. In the real sweep a 1 GiB guest at 80 MiB hung
    once under load and passed when booted again, which moved the found minimum from 72 to 81."""
    MiB = 1 << 20
    boots: list[int] = []
    hung_once: set[int] = set()

    def fake_probe(env: object, full: list[object]) -> ProbeRecord:
        value = next(s.value for s in full if s.name == "mempool")  # type: ignore[attr-defined]
        boots.append(value)
        if value == 80 * MiB and value not in hung_once:
            hung_once.add(value)
            return ProbeRecord(0, {"mempool": value}, False, "timeout", "test-timeout")
        ok = value >= 72 * MiB
        return ProbeRecord(0, {"mempool": value}, ok, "pass" if ok else "fail",
                           None if ok else "vmm-allocation")

    monkeypatch.setattr(probe_module, "probe", fake_probe)
    monkeypatch.setattr(probe_module, "_load", lambda task: object())
    task = PointTask(sweep="s", index=0, workspace="ws", patchset="p", variant="v", tree="t",
                     point=(), search=Search("mempool", 64 * MiB, 96 * MiB, MiB))
    seen: list[str] = []
    result = probe_module.run_point(task, on_probe=lambda _task, record: seen.append(record.verdict))

    assert result.minimum == 72 * MiB
    assert boots.count(80 * MiB) == 2 and seen.count("timeout") == 1  # both journaled
    assert any("80 MiB: the boot timed out; booted again: pass" in note for note in result.notes)
    assert result.new_probes == len(boots)


def test_measured_cost_skips_a_fit_over_one_point(tmp_path: Path) -> None:
    """A one-point sweep's "fit" is a ratio through the origin, not a slope: `orch build` keeps
    using the newest fit over two points or more (a one-point re-check must not replace it)."""
    sweeps = tmp_path / ".orch" / "sweeps"
    for name, points, cost in (("20261202-010000-a", 3, 256.0), ("20261202-020000-b", 1, 264.0)):
        (sweeps / name).mkdir(parents=True)
        (sweeps / name / "sweep.json").write_text(json.dumps(
            {"complete": True, "fit": {"bytes_per_frame": cost, "points": points}}))
    found = results.measured_cost(tmp_path)
    assert found is not None and found.bytes_per_frame == 256.0
    assert found.source == "orch sweep 20261202-010000-a (3 points)"
