"""Report writers: results.json round trip, the table, Markdown, JUnit XML, diff, run lookup."""

from __future__ import annotations

import copy
import io
from pathlib import Path

import pytest
from defusedxml import ElementTree as SafeET
from rich.console import Console

from orchestrator.analysis.cache import Analysis, PoolSymbol
from orchestrator.analysis.memory import KiB, MiB, Sourced, estimate
from orchestrator.boot.qemu import RunRecord
from orchestrator.build.builder import BuildResult
from orchestrator.errors import InputError
from orchestrator.layout import link_latest
from orchestrator.report.model import (
    BUILT,
    ERROR,
    EXPECTED,
    FAILED,
    PASSED,
    UNEXPECTED,
    BootSummary,
    BuildSummary,
    Expectation,
    GuestMemory,
    JobReport,
    MemorySummary,
    VariantResult,
    VmmSummary,
    boot_summary,
    build_summary,
    exit_code,
    judge,
    memory_summary,
    vmm_summary,
)
from orchestrator.report.render import diff, junit, markdown, table, verdict_line
from orchestrator.report.store import find_job, new_job_dir, read_results, write_reports


def seed_like_report() -> JobReport:
    """The seed's two variants, as the pipeline would record them."""
    four_k = VariantResult(
        name="4k",
        patchsets=["vm-2g"],
        expect=Expectation("fail", "vmm-*"),
        build=BuildSummary("built", 45.2, boot_image="images/capdl-loader-image-arm-qemu-arm-virt",
                           boot_image_sha256="a" * 64),
        boot=BootSummary("ran", "fail", "vmm-allocation",
                       matched="ram_ut_alloc_iterator@guest_ram.c:304 Failed to allocate page",
                       matched_at=3.1, seconds=3.2),
        vmm=VmmSummary(80 * MiB, "allocator_mempool", "build/vm0.instance.bin", "align_12bit", 81 * MiB),
        memory=MemorySummary(2 << 30, "devices.camkes:11", 4 * KiB, "guest_ram.c:292 (seL4_PageBits)",
                             524288, 120 * MiB, 80 * MiB, "ELF: vm0.instance.bin (align_12bit)"),
        build_record={"variant": "4k", "projects": {"kernel": "1" * 40}},
        boot_record={"verdict": "fail", "qemu": ["qemu-system-aarch64", "-m", "4096"]},
    )
    large = VariantResult(
        name="largepage",
        patchsets=["vm-2g", "largepage"],
        expect=Expectation("pass"),
        build=BuildSummary("cached", 0.1, boot_image_sha256="b" * 64),
        boot=BootSummary("ran", "pass", None, matched="buildroot login:", matched_at=21.5,
                        login_seconds=21.5, seconds=24.0,
                        guest=GuestMemory(2001, 10, 1988, available_mib=1957)),
        vmm=VmmSummary(1 * MiB, "allocator_mempool", "build/vm0.instance.bin", "align_12bit", 2 * MiB),
        memory=MemorySummary(2 << 30, "devices.camkes:11", 2 * MiB, "guest_ram.c:292 (seL4_LargePageBits)",
                             1024, 240 * KiB, 1 * MiB, "ELF: vm0.instance.bin (align_12bit)"),
    )
    for v in (four_k, large):
        v.outcome = judge(v)
    report = JobReport(
        id="20250101-120000-largepage", patchset="largepage", variants=[four_k, large],
        started="2025-01-01T12:00:00+00:00", finished="2025-01-01T12:01:00+00:00", seconds=60.0,
        orch_version="0.1.0", command=["orch", "build", "--patchset", "largepage"],
        manifest={"url": "https://example.org/manifest.git", "revision": "abc"},
        timings={"build": 45.3, "boot": 24.0, "orch": 0.7},
    )
    report.exit_code = exit_code(report.variants)
    return report


def render(report: JobReport) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=200, color_system=None).print(table(report))
    return buffer.getvalue()


def test_judging_with_and_without_expectations() -> None:
    report = seed_like_report()
    assert [v.outcome for v in report.variants] == [EXPECTED, EXPECTED]
    assert report.exit_code == 0
    four_k = report.variants[0]
    four_k.expect = None
    four_k.outcome = judge(four_k)
    assert four_k.outcome == FAILED and exit_code(report.variants) == 1
    four_k.expect = Expectation("pass")
    four_k.outcome = judge(four_k)
    assert four_k.outcome == UNEXPECTED and exit_code(report.variants) == 1
    four_k.expect = Expectation("fail", "kernel-*")
    assert judge(four_k) == UNEXPECTED
    four_k.boot.verdict = "error"
    four_k.outcome = judge(four_k)
    assert four_k.outcome == ERROR and exit_code(report.variants) == 125
    large = report.variants[1]
    large.expect = None
    assert judge(large) == PASSED
    assert judge(large, booted=False) == BUILT
    large.build.status = "built"
    assert judge(large, booted=False) == BUILT
    large.build.status = "failed"
    assert judge(large, booted=False) == FAILED


def test_infrastructure_trouble_anywhere_is_an_error_whatever_was_expected() -> None:
    for build, boot in ((BuildSummary("error", message="no Docker"), BootSummary("not-run")),
                        (BuildSummary("built"), BootSummary("error", message="QEMU missing"))):
        v = VariantResult("x", [], build, boot, expect=Expectation("fail"))
        v.outcome = judge(v)
        assert v.outcome == ERROR and exit_code([v]) == 125


def test_build_failure_is_a_failed_variant() -> None:
    failed = BuildSummary("failed", 1.0, message="ninja: build stopped")
    v = VariantResult("x", [], failed, BootSummary("skipped"))
    assert v.verdict == "build-failed"
    v.outcome = judge(v)
    assert v.outcome == FAILED
    v.expect = Expectation("pass")
    assert judge(v) == UNEXPECTED


def test_results_json_round_trip(tmp_path: Path) -> None:
    report = seed_like_report()
    written = write_reports(report, tmp_path)
    assert set(written) == {"results", "summary", "junit"}
    again = read_results(tmp_path)
    assert again == report
    assert read_results(tmp_path / "results.json") == report
    assert again.variants[1].boot.guest == GuestMemory(2001, 10, 1988, available_mib=1957)
    assert again.variants[0].build_record["projects"]["kernel"] == "1" * 40


def test_read_results_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such results file"):
        read_results(tmp_path)
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(InputError, match="not a readable orch results file"):
        read_results(tmp_path)
    (tmp_path / "results.json").write_text('{"schema": 99}')
    with pytest.raises(InputError, match="schema 99"):
        read_results(tmp_path)


def test_table_side_by_side() -> None:
    text = render(seed_like_report())
    assert "4k" in text and "largepage" in text
    assert "FAIL (vmm-allocation)" in text and "PASS" in text
    assert "expected: fail (vmm-*)" in text and "expected: pass" in text
    assert "2001 / 10 / 1988 / 1957" in text
    assert "80 MiB (vm0.instance.bin, align_12bit)" in text
    assert "120 MiB EXCEEDS 80 MiB pool" in text and "240 KiB fits in 1 MiB pool" in text
    assert "2 GiB / 4 KiB = 524288" in text and "2 GiB / 2 MiB = 1024" in text
    assert "built 45.2 s" in text and "cached" in text
    assert "21.5 s" in text


def test_unexpected_is_marked() -> None:
    report = seed_like_report()
    report.variants[1].expect = Expectation("fail")
    report.variants[1].outcome = judge(report.variants[1])
    assert "UNEXPECTED: wanted fail" in render(report)


def test_verdict_line() -> None:
    line = verdict_line(seed_like_report())
    assert line.startswith("4k: FAIL (vmm-allocation) [expected] / ")
    assert "largepage: PASS, guest 2001 MiB [expected]" in line
    assert line.endswith("exit 0")


def test_markdown() -> None:
    md = markdown(seed_like_report())
    assert md.startswith("### orch: `largepage` (4k, largepage)")
    assert "| | `4k` | `largepage` |" in md
    assert "| verdict | **FAIL (vmm-allocation)** | **PASS** |" in md
    assert "| guest MiB total/used/free/avail | - | 2001 / 10 / 1988 / 1957 |" in md
    assert "guest RAM from devices.camkes:11" in md
    assert "Reproduce: `orch build --patchset largepage`" in md
    assert "| allocator metadata (estimate) | 120 MiB EXCEEDS 80 MiB pool |" in md
    summary_part = md.split("<details>")[0]  # visible without opening the details
    assert "**estimate**" not in summary_part and "estimate: frames x 2 nodes x 120 B" in summary_part
    # every table row has the same number of cells
    rows = [line for line in md.splitlines() if line.startswith("|")]
    assert len({row.replace("\\|", "").count("|") for row in rows}) == 1


def test_junit_parses() -> None:
    report = seed_like_report()
    report.variants[1].expect = Expectation("fail")
    report.variants[1].outcome = judge(report.variants[1])
    report.exit_code = exit_code(report.variants)
    root = SafeET.fromstring(junit(report))
    assert root.tag == "testsuite" and root.get("tests") == "2" and root.get("failures") == "1"
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert set(cases) == {"4k", "largepage"}
    assert cases["4k"].find("failure") is None
    failure = cases["largepage"].find("failure")
    assert failure is not None and "wanted fail" in (failure.get("message") or "")
    assert "guest MiB total/used/free/avail: 2001" in (cases["largepage"].findtext("system-out") or "")


def test_junit_error_for_infrastructure() -> None:
    report = seed_like_report()
    report.variants[0].boot = BootSummary("error", "error", message="qemu-system-aarch64: not found")
    report.variants[0].outcome = judge(report.variants[0])
    root = SafeET.fromstring(junit(report))
    assert root.get("errors") == "1"
    error = next(c for c in root.iter("testcase") if c.get("name") == "4k").find("error")
    assert error is not None and error.get("message") == "qemu-system-aarch64: not found"


def test_diff() -> None:
    a = seed_like_report()
    b = copy.deepcopy(a)
    b.id = "later"
    assert diff(a, a) == []
    b.variants[1].boot.guest = GuestMemory(1983, 12, 1971, available_mib=1940)
    b.variants[0].vmm.mempool = 140 * MiB
    b.variants.append(VariantResult("hugepage", [], BuildSummary("built"), BootSummary("ran", "pass")))
    changes = {(d.variant, d.field): (d.a, d.b) for d in diff(a, b)}
    assert changes[("largepage", "guest MiB total/used/free/avail")] == (
        "2001 / 10 / 1988 / 1957", "1983 / 12 / 1971 / 1940")
    assert changes[("4k", "VMM mempool")] == ("80 MiB", "140 MiB")
    assert changes[("hugepage", "variant")] == ("absent", "present")


def test_job_dirs_and_lookup(tmp_path: Path) -> None:
    report = seed_like_report()
    first = new_job_dir(tmp_path, "20250101-120000-largepage")
    write_reports(report, first)
    second = new_job_dir(tmp_path, "20250102-120000-largepage")
    write_reports(report, second)
    same_second = new_job_dir(tmp_path, "20250102-120000-largepage")
    assert same_second.name == "20250102-120000-largepage.2"
    write_reports(report, same_second)
    assert find_job(tmp_path, None) == same_second.resolve()
    assert find_job(tmp_path, "20250101") == first
    assert find_job(tmp_path, str(second)) == second
    with pytest.raises(InputError, match="ambiguous"):
        find_job(tmp_path, "2025")
    with pytest.raises(InputError, match="no results for job 'nope'"):
        find_job(tmp_path, "nope")


def test_latest_link_moves_to_the_newest_directory(tmp_path: Path) -> None:
    """One ``latest`` link for results, builds, sweeps and bisections: relative, replaced."""
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        link_latest(tmp_path / name)
        assert (tmp_path / "latest").readlink() == Path(name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "latest"]


OLD_RESULTS = {  # a results.json as orch 0.1 wrote it (schema 1), trimmed to one variant
    "id": "20251125-074559-largepage", "patchset": "largepage", "schema": 1, "exit_code": 0,
    "started": "2025-11-25T07:45:59+00:00", "orch_version": "0.1.0",
    "variants": [{
        "name": "largepage", "patchsets": ["vm-2g", "largepage"], "outcome": "expected",
        "expect": {"verdict": "pass", "cause": None},
        "build": {"status": "built", "seconds": 22.5, "image": "/w/.orch/builds/largepage/x/images/img",
                  "image_sha256": "c" * 64, "build_dir": "/w/.orch/builds/largepage/x"},
        "run": {"status": "ran", "verdict": "pass", "matched": "buildroot login:", "login_seconds": 6.8,
                "seconds": 7.0, "guest": {"total": 1983, "used": 26, "free": 1954, "available": 1925}},
        "vmm": {"mempool": 1048576, "symbol": "allocator_mempool", "file": "vm0.instance.bin",
                "section": "align_12bit", "bss": 3879731},
        "memory": {}, "build_record": {"variant": "largepage"}, "run_record": {"verdict": "pass"},
    }],
}


def test_reads_results_written_by_orch_0_1(tmp_path: Path) -> None:
    """`orch report` still reads a job recorded before the run -> boot / image -> boot_image names."""
    import json

    (tmp_path / "results.json").write_text(json.dumps(OLD_RESULTS))
    job = read_results(tmp_path)
    v = job.variants[0]
    assert v.boot.verdict == "pass" and v.boot.login_seconds == 6.8
    assert v.boot.guest == GuestMemory(1983, 26, 1954, available_mib=1925)
    assert v.build.boot_image == "/w/.orch/builds/largepage/x/images/img"
    assert v.build.boot_image_sha256 == "c" * 64
    assert v.boot_record == {"verdict": "pass"} and v.expect == Expectation("pass")
    assert "largepage: PASS, guest 1983 MiB [expected]" in verdict_line(job)
    write_reports(job, tmp_path / "again")  # and it is written back in today's schema
    assert read_results(tmp_path / "again") == job
    assert json.loads((tmp_path / "again" / "results.json").read_text())["schema"] == 2


# --- the stages' results as records -------------------------------------------------------------


def a_build(tmp_path: Path, *, status: str = "pass", cached: bool = False) -> BuildResult:
    image = tmp_path / "images/capdl-loader-image-arm-qemu-arm-virt"
    image.parent.mkdir(parents=True, exist_ok=True)
    image.write_bytes(b"image")
    return BuildResult("4k", status, cached, tmp_path / "build", tmp_path / "build.log", {}, duration=45.0,
                       boot_image=image if status == "pass" else None, failed_step="build",
                       log_tail=["ninja: build stopped"])


def test_a_build_as_the_report_records_it(tmp_path: Path) -> None:
    built = build_summary(a_build(tmp_path))
    assert (built.status, built.seconds, built.cached, built.message) == ("built", 45.0, False, None)
    assert built.boot_image == str(tmp_path / "images/capdl-loader-image-arm-qemu-arm-virt")
    assert built.boot_image_sha256 is not None and len(built.boot_image_sha256) == 64
    assert (built.build_dir, built.log) == (str(tmp_path / "build"), str(tmp_path / "build.log"))
    cached = build_summary(a_build(tmp_path, cached=True))
    assert (cached.status, cached.seconds, cached.cached) == ("cached", 0.0, True)
    failed = build_summary(a_build(tmp_path, status="fail", cached=True))  # a reused failure too
    assert failed.status == "failed" and failed.boot_image is None and failed.boot_image_sha256 is None
    assert failed.message is not None and "ninja failed" in failed.message
    assert build_summary(None, "no toolchain image") == BuildSummary("error", message="no toolchain image")
    assert build_summary(None) == BuildSummary("skipped")


def test_a_boot_as_the_report_records_it() -> None:
    failing = RunRecord("image", None, "qemu-arm-virt", "fail", cause="vmm-allocation",
                        after_verdict=["Assertion failed"])
    assert boot_summary(failing, cached=False) == BootSummary("ran", "fail", "vmm-allocation", seconds=0.0,
                                                              after_verdict=["Assertion failed"])
    record = RunRecord("image", None, "qemu-arm-virt", "pass", cause=None, matched_line="buildroot login:",
                       matched_at=21.5, milestones={"login": 21.0}, duration=24.0,
                       guest_memory=GuestMemory(2001, 10, 1988, 1, 2, 1957), console_log="console.log")
    ran = boot_summary(record, cached=False)
    assert ran == BootSummary("ran", "pass", None, matched="buildroot login:", matched_at=21.5,
                              login_seconds=21.0, seconds=24.0, guest=GuestMemory(2001, 10, 1988, 1, 2, 1957),
                              console_log="console.log")
    cached = boot_summary(record, cached=True)
    assert (cached.status, cached.seconds) == ("cached", 0.0)
    record.verdict, record.error, record.guest_memory = "error", "QEMU exited 1", None
    broken = boot_summary(record, cached=False)
    assert (broken.status, broken.message, broken.guest) == ("error", "QEMU exited 1", None)
    assert boot_summary(None, cached=False, status="not-run") == BootSummary("not-run")


def test_the_vmm_pool_and_the_bookkeeping_as_the_report_records_them() -> None:
    pool = PoolSymbol("allocator_mempool", 80 * MiB, "align_12bit", "vm0.instance.bin", "ET_EXEC")
    memory = estimate(Sourced(2 << 30, "devices.camkes:6"), Sourced(4 * KiB, "guest_ram.c:4"),
                      Sourced(80 * MiB, "ELF"))
    analysis = Analysis("build", pool, 81 * MiB, memory)
    vmm = vmm_summary(analysis)
    assert vmm == VmmSummary(80 * MiB, "allocator_mempool", "vm0.instance.bin", "align_12bit", 81 * MiB)
    assert vmm.where == "vm0.instance.bin, align_12bit"
    assert vmm_summary(Analysis("build", None, 5)) == VmmSummary(bss=5)
    assert vmm_summary(None) == VmmSummary() and VmmSummary().where == "not found"
    seed = memory_summary(analysis)
    assert seed == MemorySummary(2 << 30, "devices.camkes:6", 4 * KiB, "guest_ram.c:4", 524288, 120 * MiB,
                                 80 * MiB, "ELF")
    assert seed.fits is False
    measured = memory_summary(analysis, bytes_per_frame=100.0, measured_by="sweep 1")
    assert measured == MemorySummary(2 << 30, "devices.camkes:6", 4 * KiB, "guest_ram.c:4", 524288, 52428800,
                                     80 * MiB, "ELF", 100.0, "sweep 1")
    assert measured.fits is True  # 50 MiB in an 80 MiB pool
    assert MemorySummary(metadata=80 * MiB, mempool=80 * MiB).fits is True  # exactly full still fits
    assert MemorySummary(metadata=80 * MiB + 1, mempool=80 * MiB).fits is False
    assert MemorySummary(metadata=1).fits is None and memory_summary(None) == MemorySummary()


def test_a_job_finds_its_variants_by_name() -> None:
    report = seed_like_report()
    assert report.variant("largepage") is report.variants[1]
    assert report.variant("nope") is None
