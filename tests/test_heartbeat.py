"""Off a terminal (CI logs) a long step prints a heartbeat line per running task, with its last
status (ninja's [n/m]), so the log never sits silent for minutes."""

from __future__ import annotations

import io
import threading
import time

from rich.console import Console

from orchestrator.ui import UI, _PlainTracker


def test_a_running_task_beats_with_its_status_and_a_finished_one_does_not() -> None:
    out = io.StringIO()
    tracker = _PlainTracker(Console(file=out, width=200))
    build = tracker.add("build 4k")
    boot = tracker.add("boot 4k")
    tracker.advance(build, 0, status="[120/392]")
    tracker.done(boot, "FAIL (8.4 s)")
    tracker.beat()
    lines = out.getvalue().splitlines()
    assert lines[0] == "boot 4k: FAIL (8.4 s)"
    assert lines[1].startswith("build 4k: running 0m0") and lines[1].endswith("([120/392])")
    assert len(lines) == 2


def test_the_heartbeat_thread_beats_until_stopped() -> None:
    out = io.StringIO()
    tracker = _PlainTracker(Console(file=out, width=200), heartbeat=0.05)
    task = tracker.add("build largepage")
    tracker.advance(task, 0, status="[7/9]")
    beater = threading.Thread(target=tracker.run_heartbeat, daemon=True)
    beater.start()
    deadline = time.monotonic() + 10
    while out.getvalue().count("running") < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    tracker.stop.set()
    beater.join(timeout=2)
    assert not beater.is_alive() and out.getvalue().count("build largepage: running") >= 2


def test_off_a_terminal_the_tracker_is_the_plain_one() -> None:
    ui = UI(out=Console(file=io.StringIO()), err=Console(file=io.StringIO(), force_terminal=False))
    with ui.tracker() as tracker:
        assert isinstance(tracker, _PlainTracker)
