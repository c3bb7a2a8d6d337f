"""The CLI contract: help, version, global options before or after the command."""

from __future__ import annotations

import argparse
import io
import sys
from typing import Any

import pytest

from orchestrator.cli import _run, main


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("sync", "status", "manifest", "patchset", "build", "run", "report", "image"):
        assert command in out


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


class _Terminal(io.StringIO):
    """A stdout that says it is a TTY."""

    def isatty(self) -> bool:
        return True


def test_no_color_gives_plain_text_even_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.ui import UI

    monkeypatch.setattr(sys, "stdout", _Terminal())
    ui = UI.create(color=False)
    assert ui.out.is_terminal
    with ui.out.capture() as captured:
        ui.out.print("[bold red]FAIL[/] (vmm-allocation)")
    assert captured.get() == "FAIL (vmm-allocation)\n"


def test_no_color_in_the_environment_is_no_color_on_a_terminal(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """NO_COLOR=1 means what --no-color means: no colours and no styles (bold) either."""
    monkeypatch.setattr(sys, "stdout", _Terminal())
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("TERM", "xterm-256color")  # a terminal rich would style
    for variable in ("FORCE_COLOR", "TTY_COMPATIBLE", "COLUMNS"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(sys, "stderr", _Terminal())
    printed: list[str] = []

    def command(args: object, ui: Any) -> int:
        with ui.out.capture() as captured:
            ui.out.print("[bold red]FAIL[/] (vmm-allocation)")
        printed.append(captured.get())
        return 0

    assert _run(argparse.Namespace(func=command)) == 0
    assert printed == ["FAIL (vmm-allocation)\n"]


def test_no_color_is_accepted_before_and_after_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    parser_args = [["--no-color", "report", "--help"], ["report", "--no-color", "--help"]]
    for argv in parser_args:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
