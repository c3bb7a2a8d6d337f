"""`orch build` refuses bad input before it syncs, builds or boots anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main


def test_unknown_patchset_fails_before_any_sync(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # No workspace and no network: a sync would be attempted (and fail with 125) if the
    # patchset name were not checked first.
    code = main(["build", "--patchset", "no-such-patchset", "-w", str(tmp_path), "--no-run"])
    err = capsys.readouterr().err
    assert code == 2
    assert "no-such-patchset" in err
    assert not (tmp_path / ".orch").exists()


def test_unknown_variant_fails_before_any_sync(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["build", "--patchset", "largepage", "--variant", "nope", "-w", str(tmp_path), "--no-run"])
    err = capsys.readouterr().err
    assert code == 2
    assert "nope" in err
    assert not (tmp_path / ".orch").exists()
