"""Shared pytest setup: markers for real Docker/QEMU tests and the CI switch that turns
their skips into failures (``ORCH_REQUIRE_DOCKER=1``, one switch for every real component)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.support.git import Upstream

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


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
"""The reference data beside the repository (``../shared/data``): a real seL4 manifest, real
consoles. CI has it; a missing file there is a failure, not a skip."""


def shared_data(relative: str) -> Path:
    """``../shared/data/<relative>``; skips without it locally, fails in CI (``CI`` or
    ``ORCH_REQUIRE_DOCKER=1`` set)."""
    path = SHARED_DATA / relative
    if not path.exists():
        reason = f"reference data {path} is missing (expected at ../shared/data beside the repository)"
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI is set)")
        missing(reason)
    return path


def require_tools(*names: str) -> None:
    for name in names:
        if shutil.which(name) is None:
            missing(f"{name} not found on PATH")


def isolate_git(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """A git identity and no user/system git config leaking in, with ``home`` as HOME."""
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


@pytest.fixture(autouse=True)
def _isolated_git(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets a git identity and no user/system git config leaking in."""
    isolate_git(monkeypatch, tmp_path_factory.mktemp("home"))


# -- read-only upstream fixtures, made once per pytest run ----------------------------------------
# Tests clone and fetch these; none may commit or push to them (make your own with
# tests.support.git.make_upstream for that).


@pytest.fixture(scope="session")
def seed_upstreams(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Upstream]:
    """Bare upstreams of the seed's three projects, keyed by manifest path."""
    from tests.support.seed import make_seed_upstreams

    with pytest.MonkeyPatch.context() as monkeypatch:
        isolate_git(monkeypatch, tmp_path_factory.mktemp("home"))
        return make_seed_upstreams(tmp_path_factory.mktemp("seed") / "server")


@pytest.fixture(scope="session")
def seed_manifest_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed's upstreams plus a manifest repository with a relative remote, for ``orch sync -m``."""
    from tests.support.seed import make_seed_server

    with pytest.MonkeyPatch.context() as monkeypatch:
        isolate_git(monkeypatch, tmp_path_factory.mktemp("home"))
        return make_seed_server(tmp_path_factory.mktemp("seed-server"))


# -- the runtimes: every executor scenario runs on the host and, with --docker, in Docker --------

BASE_IMAGE = os.environ.get("ORCH_TEST_BASE_IMAGE", "orch-test-base:bookworm")
RUNTIMES = ["host", pytest.param("docker", marks=pytest.mark.docker)]


@pytest.fixture(params=RUNTIMES)
def runtime_name(request: pytest.FixtureRequest) -> str:
    """``host`` or ``docker``: a test taking this runs once per runtime."""
    return str(request.param)


@pytest.fixture(scope="session")
def docker_client() -> Any:
    """The SDK client for the engine the tests use (DOCKER_HOST or the local socket)."""
    import docker.errors
    from docker.client import DockerClient

    try:
        engine = DockerClient.from_env()
        engine.ping()
    except (docker.errors.DockerException, OSError) as exc:
        missing(f"no reachable Docker engine: {exc}")
    return engine


@pytest.fixture(scope="session")
def base_image(docker_client: Any) -> str:
    import docker.errors

    try:
        docker_client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        missing(f"base image {BASE_IMAGE} not found (make it with debootstrap + docker import, see .ci/run)")
    return BASE_IMAGE


@pytest.fixture(scope="session")
def build_image(docker_client: Any, base_image: str) -> str:
    """The ``build-min`` image on the base image, built once per machine (cached by tag)."""
    from tests.support.build import ensure_build_image

    return ensure_build_image(docker_client, base_image)


@pytest.fixture(scope="session")
def qemu_image(docker_client: Any, base_image: str) -> str:
    """The base image with Debian's QEMU, built once per machine (cached by tag)."""
    from tests.support.baremetal import ensure_qemu_image

    return ensure_qemu_image(docker_client, base_image)


@pytest.fixture(scope="session")
def baremetal_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The bare-metal console programs, compiled once per pytest run (tests only read them)."""
    from tests.support.baremetal import BAREMETAL_TOOLS, SCENARIOS, SMALL_GUEST, build_scenario

    require_tools(*BAREMETAL_TOOLS)
    out = tmp_path_factory.mktemp("baremetal")
    built = {s: build_scenario(s, out) for s in SCENARIOS}
    built["login-small"] = build_scenario("login", out, name="login-small", **SMALL_GUEST)
    return built
