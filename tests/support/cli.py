"""Running `orch` from a test: in-process (its exit code and what it printed), or as a child
process that Ctrl-C reaches."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import TypedDict

import pytest

from orchestrator.cli import main


def orch(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``orch ARGS...`` through the CLI's main: (exit code, stdout, stderr)."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _hear_ctrl_c() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class PopenOptions(TypedDict):
    """The keyword arguments of ``subprocess.Popen`` that :data:`CTRL_C_ABLE` sets."""

    preexec_fn: Callable[[], None]


CTRL_C_ABLE: PopenOptions = {"preexec_fn": _hear_ctrl_c}
"""``subprocess.Popen(..., **CTRL_C_ABLE)`` for a child a test interrupts with SIGINT: a test run
started in the background (``pytest &``, ``nohup``) ignores SIGINT and its children inherit
that, so Python would never raise KeyboardInterrupt in them and the test would see the job
finish instead; this gives the child the terminal's default back."""
