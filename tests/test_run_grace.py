"""After a fail verdict the console is read on for a grace period: the reservation address and
the init_ram assertion that follow the decisive line reach the record, console.log and the
summary, while the verdict time stays that of the decisive line."""

from __future__ import annotations

from pathlib import Path

from orchestrator.boot.qemu import RunSpec, run_image
from orchestrator.report import model, render
from orchestrator.ui import UI
from tests import test_run

images = test_run.images  # the same fixture: the scripted bare-metal consoles


def test_lines_after_a_fail_verdict_are_kept(images: dict[str, Path], tmp_path: Path) -> None:
    record = run_image(RunSpec(image=images["fail"], output_dir=tmp_path / "out", timeout=120.0,
                               fail_grace=1.5), UI.silent())
    assert (record.verdict, record.cause) == ("fail", "vmm-allocation")
    assert record.matched_line == "ram_ut_alloc_iterator@guest_ram.c:304 Failed to allocate page"
    assert record.after_verdict[0].startswith("map_vm_memory_reservation@guest_memory.c:477 "
                                              "Failed to get frame for reservation")
    assert any("init_ram_module: 21" in line for line in record.after_verdict)
    assert record.matched_line not in record.after_verdict
    assert record.verdict_at is not None and record.matched_at is not None
    assert record.verdict_at - record.matched_at < 0.5, "the verdict is not delayed by the grace period"
    assert record.stopped_at is not None and record.stopped_at >= record.verdict_at + 1.4
    assert b"init_ram_module: 21" in (tmp_path / "out" / "console.log").read_bytes()


def test_no_grace_stops_at_the_verdict(images: dict[str, Path], tmp_path: Path) -> None:
    record = run_image(RunSpec(image=images["fail"], output_dir=tmp_path / "out", timeout=120.0,
                               fail_grace=0.0), UI.silent())
    assert record.verdict == "fail"
    assert record.stopped_at is not None and record.verdict_at is not None
    assert record.stopped_at - record.verdict_at < 1.4, "no grace: QEMU is stopped at the verdict"


def test_summary_quotes_the_lines_after_the_verdict() -> None:
    run = model.BootSummary("ran", "fail", "vmm-allocation", matched="Failed to allocate page",
                            after_verdict=["map_ram_reservation@guest_ram.c:327 Failed to map"])
    block = render.markdown_after_verdict("4k", run)
    assert "Failed to allocate page" in block and block[-2].startswith("map_ram_reservation")
    assert render.markdown_after_verdict("x", model.BootSummary("ran", "pass")) == []
