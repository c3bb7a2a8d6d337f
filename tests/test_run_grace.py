"""After a fail verdict the console is read on for a grace period: the reservation address and
the init_ram assertion that follow the decisive line reach the record, console.log and the
summary, while the verdict time stays that of the decisive line."""

from __future__ import annotations

from pathlib import Path

from orchestrator.boot.qemu import RunSpec, lines_after, run_image
from orchestrator.report import model, render
from orchestrator.ui import UI
from tests import test_run

images = test_run.images  # the same fixture: the scripted bare-metal consoles


def test_lines_after_a_fail_verdict_are_kept(images: dict[str, Path], tmp_path: Path) -> None:
    record = run_image(RunSpec(image=images["fail"], output_dir=tmp_path / "out", timeout=120.0,
                               fail_grace=1.5, fail_grace_quiet=0.0), UI.silent())
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


def test_a_silent_console_ends_the_grace_early(images: dict[str, Path], tmp_path: Path) -> None:
    """The guest hangs silently after its last line: QEMU is stopped once the console has been
    quiet for fail_grace_quiet, well before fail_grace, and the lines are all kept."""
    record = run_image(RunSpec(image=images["fail"], output_dir=tmp_path / "out", timeout=120.0,
                               fail_grace=30.0, fail_grace_quiet=0.5), UI.silent())
    assert record.verdict == "fail"
    assert any("init_ram_module: 21" in line for line in record.after_verdict)
    assert record.stopped_at is not None and record.verdict_at is not None
    assert record.stopped_at - record.verdict_at < 20.0, "the grace did not end when the console fell silent"


def _slow_guest(tmp_path: Path, pause: float) -> Path:
    """A stand-in QEMU: the failure line, ``pause`` seconds of silence, one more line, then silence."""
    script = tmp_path / "slow-qemu"
    script.write_text("#!/bin/sh\nprintf 'Booting all finished, dropped to user space\\r\\n'\n"
                      "printf 'ram_ut_alloc_iterator@guest_ram.c:304 Failed to allocate page\\r\\n'\n"
                      f"sleep {pause}\nprintf 'after the pause\\r\\n'\nexec sleep 600\n")
    script.chmod(0o755)
    return script


def test_the_grace_waits_out_a_pause_shorter_than_the_quiet_period(tmp_path: Path) -> None:
    image = tmp_path / "image.elf"
    image.write_bytes(b"\x7fELF")
    spec = RunSpec(image=image, qemu=str(_slow_guest(tmp_path, 0.3)), login=None, timeout=120.0,
                   fail_grace=60.0, fail_grace_quiet=5.0)
    record = run_image(spec, UI.silent())
    assert record.verdict == "fail"
    assert record.after_verdict == ["after the pause"]


def test_a_pause_longer_than_the_quiet_period_ends_the_grace(tmp_path: Path) -> None:
    image = tmp_path / "image.elf"
    image.write_bytes(b"\x7fELF")
    spec = RunSpec(image=image, qemu=str(_slow_guest(tmp_path, 30)), login=None, timeout=120.0,
                   fail_grace=60.0, fail_grace_quiet=0.2)
    record = run_image(spec, UI.silent())
    assert record.verdict == "fail" and record.after_verdict == []
    assert record.stopped_at is not None and record.stopped_at < 25.0


def test_lines_after_reads_only_what_follows_the_decisive_line() -> None:
    data = b"x" * 100 + b"\r\nboom\r\n\x1b[31mnext\x1b[0m\r\n\r\nlast"
    assert lines_after(data, "boom") == ["next", "last"]
    assert lines_after(b"nothing here\n", "boom") == []


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
