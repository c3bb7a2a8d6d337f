"""The runner's Docker launcher with a real container: the same verdicts as on the host, and
no container or QEMU left behind. The QEMU image is derived once from the test base image
(ORCH_TEST_BASE_IMAGE) and cached by a tag naming its Dockerfile's hash."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from orchestrator.boot.qemu import DockerLauncher, RunSpec, run_image
from orchestrator.ui import UI
from tests.conftest import missing, require_tools
from tests.support.baremetal import BAREMETAL_TOOLS, build_scenario

pytestmark = [pytest.mark.docker, pytest.mark.qemu]

BASE_IMAGE = os.environ.get("ORCH_TEST_BASE_IMAGE", "orch-test-base:bookworm")
DOCKERFILE = f"""FROM {BASE_IMAGE}
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \\
        qemu-system-arm ipxe-qemu >/dev/null && rm -rf /var/lib/apt/lists/*
"""


@pytest.fixture(scope="module")
def client():  # type: ignore[no-untyped-def]
    from docker.client import from_env
    from docker.errors import DockerException

    try:
        engine = from_env()
        engine.ping()
    except DockerException as err:
        missing(f"no Docker engine: {err}")
    return engine


@pytest.fixture(scope="module")
def qemu_image(client) -> str:  # type: ignore[no-untyped-def]
    from docker.errors import ImageNotFound

    tag = "orch-test-qemu:" + hashlib.sha256(DOCKERFILE.encode()).hexdigest()[:12]
    try:
        client.images.get(tag)
        return tag
    except ImageNotFound:
        pass
    try:
        client.images.get(BASE_IMAGE)
    except ImageNotFound:
        missing(f"base image {BASE_IMAGE} not present (set ORCH_TEST_BASE_IMAGE)")
    client.images.build(fileobj=io.BytesIO(DOCKERFILE.encode()), tag=tag, rm=True, pull=False)
    return tag


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    require_tools(*BAREMETAL_TOOLS)
    out = tmp_path_factory.mktemp("baremetal-docker")
    return {s: build_scenario(s, out) for s in ("fail", "login", "silent")}


def our_containers(client) -> list[str]:  # type: ignore[no-untyped-def]
    return [c.name for c in client.containers.list(all=True) if c.name.startswith("orch-run-")]


def test_docker_failure_and_login(client, qemu_image: str, images: dict[str, Path],  # type: ignore[no-untyped-def]
                                  tmp_path: Path) -> None:
    before = set(our_containers(client))
    launcher = DockerLauncher(qemu_image)
    fail = run_image(RunSpec(image=images["fail"], launcher=launcher, timeout=120.0,
                             output_dir=tmp_path / "fail"), UI.silent())
    assert (fail.verdict, fail.cause, fail.launcher) == ("fail", "vmm-allocation", f"docker:{qemu_image}")
    login = run_image(RunSpec(image=images["login"], launcher=launcher, memory="4096",
                              output_dir=tmp_path / "login"), UI.silent())
    assert login.verdict == "pass" and len(login.retries) == 1  # Debian's QEMU 7.2 in there too
    assert login.guest_memory is not None and login.guest_memory.total_mib == 1983
    timeout = run_image(RunSpec(image=images["silent"], launcher=launcher, timeout=20.0, boot_timeout=2.0,
                                output_dir=tmp_path / "silent"), UI.silent())
    assert (timeout.verdict, timeout.cause) == ("timeout", "boot-timeout")
    assert set(our_containers(client)) <= before, "a run container was left behind"


def test_docker_image_without_qemu_is_an_infrastructure_error(images: dict[str, Path],  # type: ignore[no-untyped-def]
                                                               client, tmp_path: Path) -> None:
    try:
        client.images.get(BASE_IMAGE)
    except Exception:
        missing(f"base image {BASE_IMAGE} not present")
    record = run_image(RunSpec(image=images["fail"], launcher=DockerLauncher(BASE_IMAGE)), UI.silent())
    assert (record.verdict, record.cause, record.exit_code) == ("error", "qemu-missing", 125)
