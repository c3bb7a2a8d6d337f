"""Shared pytest setup: markers for real Docker/QEMU tests and the CI switch that turns
their skips into failures (``ORCH_REQUIRE_DOCKER=1``, one switch for every real component)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REQUIRE_REAL = os.environ.get("ORCH_REQUIRE_DOCKER") == "1"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--docker", action="store_true", help="run the (slow) real-Docker tests too")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--docker") or REQUIRE_REAL:
        return
    skip = pytest.mark.skip(reason="real-Docker test: run with --docker")
    for item in items:
        if "docker" in item.keywords:
            item.add_marker(skip)


def missing(reason: str) -> None:
    """Skip for a missing real component, or fail when CI requires every real component."""
    if REQUIRE_REAL:
        pytest.fail(f"{reason} (ORCH_REQUIRE_DOCKER=1 makes this a failure)")
    pytest.skip(reason)


def require_tools(*names: str) -> None:
    for name in names:
        if shutil.which(name) is None:
            missing(f"{name} not found on PATH")


@pytest.fixture(autouse=True)
def _isolated_git(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets a git identity and no user/system git config leaking in."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Test Dev")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "dev@example.org")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Test Dev")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "dev@example.org")
    monkeypatch.delenv("ORCH_PATCHSETS", raising=False)
    monkeypatch.delenv("ORCH_MIRROR", raising=False)
    # `python -m orchestrator` in a subprocess imports the tree under test, not whatever
    # checkout an editable install points at.
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    Path(home, ".gitconfig").write_text(
        '[init]\n\tdefaultBranch = master\n[protocol "file"]\n\tallow = always\n'
    )
