"""Running `orch` in-process from a test: its exit code and what it printed."""

from __future__ import annotations

import pytest

from orchestrator.cli import main


def orch(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``orch ARGS...`` through the CLI's main: (exit code, stdout, stderr)."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err
