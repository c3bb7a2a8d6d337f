"""Real-Docker builds of the fixture workspace: two variants in containers, metadata pinned
to the image, the cache, and the faults (missing image, broken build, Ctrl-C, disk full)
each leaving no container and no worktree behind."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.build.builder import BuildContext, build_variant, build_variants
from orchestrator.build.spec import VariantSpec
from orchestrator.errors import EXIT_CANNOT_TEST, EXIT_FAIL, InfraError
from orchestrator.runtime.executor import LABEL_VARIANT, LABEL_WORKSPACE, DockerExecutor
from tests.conftest import missing
from tests.support.build import BuildWorkspace, ensure_build_image, make_build_workspace, snapshot
from tests.test_build import assert_nothing_left, interrupt_build

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def client() -> Any:
    import docker.errors
    from docker.client import DockerClient

    try:
        engine = DockerClient.from_env()
        engine.ping()
    except (docker.errors.DockerException, OSError) as exc:
        missing(f"no reachable Docker engine: {exc}")
    return engine


@pytest.fixture(scope="module")
def image(client: Any) -> str:
    import docker.errors

    base = os.environ.get("ORCH_TEST_BASE_IMAGE", "orch-test-base:bookworm")
    try:
        client.images.get(base)
    except docker.errors.ImageNotFound:
        missing(f"base image {base} not found (make it with debootstrap + docker import, see .ci/run)")
    return ensure_build_image(client, base)


@pytest.fixture
def ws(tmp_path: Path) -> BuildWorkspace:
    return make_build_workspace(tmp_path)


def ctx(ws: BuildWorkspace, image: str, **kwargs: Any) -> BuildContext:
    return BuildContext(root=ws.root, tree=ws.tree, spec=ws.spec(), executor=DockerExecutor(image=image),
                        **kwargs)


def containers(client: Any, ws: BuildWorkspace) -> list[Any]:
    return list(client.containers.list(all=True, filters={"label": f"{LABEL_WORKSPACE}={ws.root}"}))


def test_two_variants_in_containers(client: Any, image: str, ws: BuildWorkspace) -> None:
    before = snapshot(ws.root)
    results = build_variants(ctx(ws, image), ws.variants(), jobs=2)
    assert [(r.variant, r.status) for r in results] == [("4k", "pass"), ("largepage", "pass")]
    four_k, large = results
    assert four_k.image and b"Failed to allocate page" in four_k.image.read_bytes()
    assert large.image and b"buildroot login" in large.image.read_bytes()
    meta = json.loads((large.output_dir / "metadata.json").read_text())
    pinned = client.images.get(image).id
    assert meta["executor"] == {"name": "docker", "image": image, "image_id": pinned,
                                "repo_digests": meta["executor"]["repo_digests"], "toolchain": None}
    assert meta["reproducer"].startswith("docker run --rm --network none -u ")
    assert pinned in meta["reproducer"]
    assert snapshot(ws.root) == before
    assert containers(client, ws) == []
    # files in the build dir belong to the invoking user, not root-in-a-container
    built = ws.root / ".orch" / "variants" / "4k" / "build" / "build.ninja"
    assert built.stat().st_uid == os.getuid()

    again = build_variants(ctx(ws, image), ws.variants())
    assert [r.cached for r in again] == [True, True]


def test_the_reproducer_rebuilds_the_same_image(client: Any, image: str, ws: BuildWorkspace) -> None:
    result = build_variant(ctx(ws, image), ws.spec().variant("largepage"), ws.chain(["vm-2g", "largepage"]))
    build = ws.root / ".orch" / "variants" / "largepage" / "build"
    subprocess.run(["rm", "-rf", str(build)], check=True)
    build.mkdir()
    proc = subprocess.run(result.metadata["reproducer"], shell=True, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (build / ws.spec().image_name).read_bytes() == result.image.read_bytes()  # type: ignore[union-attr]


def test_missing_image_with_a_failing_pull(image: str, ws: BuildWorkspace) -> None:
    with pytest.raises(InfraError) as caught:
        build_variants(ctx(ws, "orch-test/no-such-image:1"), ws.variants())
    assert caught.value.exit_code == EXIT_CANNOT_TEST
    assert "no-such-image:1 is not available locally and pulling it failed" in caught.value.message
    assert caught.value.hint and "orch image build" in caught.value.hint
    assert not (ws.root / ".orch" / "variants" / "4k" / "src").exists()


def test_broken_build_leaves_no_container(client: Any, image: str, ws: BuildWorkspace) -> None:
    broken = VariantSpec("broken", ("vm-2g",), cmake=("-DBREAK_BUILD=1",))
    result = build_variant(ctx(ws, image), broken, ws.chain(["vm-2g"]))
    assert result.status == "fail" and result.failed_step == "build"
    error = result.error()
    assert error is not None and error.exit_code == EXIT_FAIL
    assert any("broken on purpose" in line for line in result.log_tail)
    assert containers(client, ws) == []
    assert_nothing_left(ws, "broken")


def test_timeout_kills_the_container(client: Any, image: str, ws: BuildWorkspace) -> None:
    slow = VariantSpec("slow", (), cmake=("-DSLOW_SECONDS=60",))
    with pytest.raises(InfraError, match="timed out"):
        build_variant(ctx(ws, image, timeout=8.0), slow, [])
    assert containers(client, ws) == []
    assert_nothing_left(ws, "slow")


def test_ctrl_c_removes_the_container(client: Any, image: str, tmp_path: Path) -> None:
    def running() -> bool:
        return bool(client.containers.list(filters={"label": f"{LABEL_VARIANT}=slow",
                                                    "status": "running"}))

    done = interrupt_build(tmp_path, image, running)
    assert done.returncode == 130, done.stderr[-2000:]
    remaining = client.containers.list(all=True, filters={
        "label": f"{LABEL_WORKSPACE}={tmp_path / 'ws'}"})
    assert remaining == []
    assert not (tmp_path / "ws" / ".orch" / "variants" / "slow" / "src").exists()


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A 24 MiB tmpfs, so a build can really run out of space."""
    mount_point = Path(tempfile.mkdtemp(prefix="orch-small-disk-"))
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        mount_point.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
        mount_point.rmdir()


def test_disk_full_is_one_infra_line(client: Any, image: str, small_disk: Path) -> None:
    ws = make_build_workspace(small_disk)
    fill = VariantSpec("fill", (), cmake=("-DFILL_MB=64",))
    with pytest.raises(InfraError) as caught:
        build_variant(ctx(ws, image), fill, [])
    assert "disk full" in caught.value.message
    assert containers(client, ws) == []
    assert_nothing_left(ws, "fill")
