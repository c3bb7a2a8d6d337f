"""Set-up the benchmarks share: the git environment they run in and the test build image."""

from __future__ import annotations

import os
from pathlib import Path

BASE_IMAGE_DEFAULT = "orch-test-base:bookworm"


def git_identity() -> None:
    """A git author and committer for the fixtures' commits, unless the caller set one."""
    for key in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
        os.environ.setdefault(key, "bench")
    for key in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        os.environ.setdefault(key, "bench@example.org")


def isolate(home: Path) -> None:
    """The same git setup the tests use: an identity and no user config (``home`` as HOME)."""
    home.mkdir(parents=True, exist_ok=True)
    config = '[init]\n\tdefaultBranch = master\n[protocol "file"]\n\tallow = always\n'
    (home / ".gitconfig").write_text(config)
    os.environ.update({
        "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@example.org",
        "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@example.org",
    })


def build_image() -> str:
    """The tests' ``build-min`` image on ``$ORCH_TEST_BASE_IMAGE`` (built once, cached by tag)."""
    from docker.client import DockerClient

    from tests.support.build import ensure_build_image

    base_image = os.environ.get("ORCH_TEST_BASE_IMAGE", BASE_IMAGE_DEFAULT)
    return ensure_build_image(DockerClient.from_env(), base_image)
