"""Paths around the CLI's catch-all: an exception while starting up or parsing, a library's
sys.exit(1), a failure while reporting a crash, argparse's errors, a worker-side entry and
`orch worker` itself. None may end as exit 1, which `git bisect run` takes for "this revision
is bad"."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator import cli
from orchestrator.cli import crash
from orchestrator.cli import worker as worker_cli
from orchestrator.cluster import worker
from orchestrator.errors import EXIT_CANNOT_TEST, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, InputError
from orchestrator.patchset import apply as patchset_lib
from orchestrator.ui import UI
from orchestrator.workspace import gitops

HOSTILE = "planted\x1b]52;c;ZXZpbA==\x07 \x1b[2J\x9b31m bug"


def _boom(*_args: object, **_kwargs: object) -> None:
    raise ValueError(HOSTILE)


def _assert_one_clean_line(err: str) -> None:
    assert err.count("\n") == 1, err
    assert "internal error: ValueError: planted" in err
    assert not any(c in err for c in "\x1b\x07\x9b"), repr(err)


def test_an_exception_while_importing_a_command_is_128(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    real = importlib.import_module

    def failing(name: str, *args: object) -> object:
        if name == "orchestrator.cli.status":
            _boom()
        return real(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib, "import_module", failing)
    assert cli.main(["status"]) == EXIT_INTERNAL
    _assert_one_clean_line(capsys.readouterr().err)


def test_an_exception_while_making_the_ui_is_128(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(UI, "create", _boom)
    assert cli.main(["patchset", "list"]) == EXIT_INTERNAL
    _assert_one_clean_line(capsys.readouterr().err)


def test_an_exception_in_the_environment_cleanup_is_128(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(gitops, "drop_repository_env", _boom)
    assert cli.main(["patchset", "list"]) == EXIT_INTERNAL
    _assert_one_clean_line(capsys.readouterr().err)


def test_a_library_calling_sys_exit_1_is_128(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    def exits(*_args: object) -> None:
        sys.exit(1)

    monkeypatch.setattr(patchset_lib, "available_patchsets", exits)
    assert cli.main(["patchset", "list"]) == EXIT_INTERNAL
    assert "sys.exit(1)" in capsys.readouterr().err


def test_a_crash_that_cannot_be_written_down_is_still_128(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(patchset_lib, "available_patchsets", _boom)
    monkeypatch.setattr(crash, "write_traceback", _boom)
    assert cli.main(["patchset", "list"]) == EXIT_INTERNAL
    err = capsys.readouterr().err
    _assert_one_clean_line(err)
    assert "could not be written" in err


def test_a_closed_stderr_during_a_crash_is_still_128(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(patchset_lib, "available_patchsets", _boom)
    monkeypatch.setattr(sys, "stderr", None)  # print() to None raises
    assert cli.main(["patchset", "list"]) == EXIT_INTERNAL


@pytest.mark.parametrize("argv", [["--no-such-option"], ["no-such-command"], ["run"],
                                  ["run", "x.elf", "--timeout", "soon"], ["sync", "-g"]])
def test_argparse_errors_are_2(argv: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "orchestrator", *argv], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- worker side


def test_worker_entry_maps_a_bug_to_128_and_sanitizes(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["t", "r", "w", "p"]
    assert worker.entry_main("x", argv, _boom) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert "internal error: ValueError: planted" in err
    assert not any(c in err for c in "\x07\x9b") and "\x1b]" not in err and "\x1b[2J" not in err


def test_worker_entry_keeps_orch_error_codes_and_sanitizes(capsys: pytest.CaptureFixture[str]) -> None:
    def bad_input(*_args: object) -> None:
        raise InputError(HOSTILE)

    assert worker.entry_main("x", ["t", "r", "w", "p"], bad_input) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "planted" in err and not any(c in err for c in "\x1b\x07\x9b")


@pytest.mark.parametrize(("status", "expected"), [(0, 0), (1, EXIT_CANNOT_TEST), (2, EXIT_CANNOT_TEST),
                                                  (130, EXIT_INTERRUPTED), (-2, EXIT_INTERRUPTED),
                                                  (-9, EXIT_CANNOT_TEST)])
def test_orch_worker_never_passes_dask_workers_1_on(status: int, expected: int, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_cli, "run_sanitized", lambda *_a, **_k: status)
    code = cli.main(["worker", "tcp://127.0.0.1:1", "--dir", str(tmp_path)])
    assert code == expected


def test_orch_worker_passes_the_dask_workers_output_through_the_sanitizer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    script = (f"import sys; sys.stdout.write({HOSTILE!r} + '\\n'); "
              f"sys.stderr.write('task failed: ' + {HOSTILE!r})")
    monkeypatch.setattr(worker_cli, "worker_command",
                        lambda *_a: ([sys.executable, "-c", script], {"PATH": "/usr/bin:/bin"}))
    assert cli.main(["worker", "tcp://127.0.0.1:1", "--dir", str(tmp_path)]) == 0
    out, err = capfd.readouterr()
    assert "planted" in err and "task failed: planted" in err
    assert not any(c in out + err for c in "\x07\x9b") and "\x1b" not in out + err


def test_dask_client_log_lines_are_sanitized() -> None:
    """Dask installs a stderr handler on the 'distributed' logger (pytest may have replaced
    it: the test adds one the way dask's config does)."""
    import io
    import logging

    from orchestrator.cluster.engine import sanitize_dask_logging

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s - %(name)s - %(levelname)s - %(message)s"))
    parent = logging.getLogger("distributed")
    parent.addHandler(handler)
    try:
        sanitize_dask_logging()
        sanitize_dask_logging()  # idempotent
        try:
            raise RuntimeError(f"worker said {HOSTILE}")
        except RuntimeError:
            logging.getLogger("distributed.client").exception("Compute Failed %s", HOSTILE)
    finally:
        parent.removeHandler(handler)
    text = stream.getvalue()
    assert "Compute Failed planted" in text and "worker said planted" in text
    assert not any(c in text for c in "\x07\x9b\x1b")


# --------------------------------------------------------------------------- SIGTERM


def _gone(pid: int, timeout: float = 30.0) -> bool:
    """Whether ``pid`` has exited (a zombie awaiting its reaper counts as gone)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def test_sigterm_during_a_boot_stops_qemu_and_exits_143(tmp_path: Path) -> None:
    """`kill PID` or `timeout` on orch run: QEMU runs in a session of its own, so it outlived
    an orch that simply died of SIGTERM. Now SIGTERM is handled as Ctrl-C is."""
    import json
    import os
    import signal
    import time

    pid_file = tmp_path / "qemu.pid"
    qemu = tmp_path / "qemu"
    qemu.write_text(f"#!/bin/sh\necho $$ > '{pid_file}'\n"
                    "printf 'Booting all finished, dropped to user space\\r\\n'\nexec sleep 600\n")
    qemu.chmod(0o755)
    image = tmp_path / "image.elf"
    image.write_bytes(b"\x7fELF")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "run", str(image), "--qemu", str(qemu),
                             "--no-login", "--json", "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "console.log").is_file() or b"Booting" not in (out / "console.log").read_bytes():
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    qemu_pid = int(pid_file.read_text())
    os.kill(proc.pid, signal.SIGTERM)
    _stdout, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "terminated" in err and "Traceback" not in err
    assert _gone(qemu_pid), "QEMU outlived orch"
    record = json.loads((out / "run.json").read_text())
    assert record["cause"] == "interrupted"
