"""The build library with real git worktrees and real cmake/ninja/cross gcc: two variants,
artifacts, metadata, cache, incremental builds and the failure paths (broken build, timeout,
Ctrl-C, disk full), each leaving no worktree behind. The scenarios that depend on where the
commands run are run on the host runtime and, with --docker, in containers of the build
image (metadata pinned to the image, no container left behind either)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from orchestrator.build.builder import (
    BuildContext,
    BuildResult,
    _Interrupted,
    _Pipeline,
    build_variant,
    build_variants,
    source_date_epoch,
)
from orchestrator.build.spec import VariantSpec, override
from orchestrator.build.variant_tree import worktrees_of
from orchestrator.errors import EXIT_CANNOT_TEST, EXIT_FAIL, InfraError, OrchError, WorkspaceError
from orchestrator.layout import sel4_cache_dir
from orchestrator.runtime.base import LABEL_WORKSPACE, Runtime
from orchestrator.runtime.docker import DockerRuntime
from orchestrator.runtime.host import HostRuntime
from tests.conftest import require_tools
from tests.support.build import IMAGE_NAME, BuildWorkspace, make_build_workspace, snapshot
from tests.support.cli import CTRL_C_ABLE

BUILD_TOOLS = ("cmake", "ninja", "aarch64-linux-gnu-gcc")

METADATA_KEYS = {"variant", "status", "app", "platform", "cmake", "patchsets", "patches", "manifest",
                 "projects", "executor", "orch_version", "start", "end", "duration", "artifacts",
                 "reproducer", "inputs_hash", "log"}


@pytest.fixture
def ws(tmp_path: Path) -> BuildWorkspace:
    require_tools(*BUILD_TOOLS)
    return make_build_workspace(tmp_path)


@pytest.fixture
def runtime(runtime_name: str, request: pytest.FixtureRequest) -> Runtime:
    """Where the build commands run: this machine, or containers of the build image."""
    if runtime_name == "host":
        require_tools(*BUILD_TOOLS)
        return HostRuntime()
    return DockerRuntime(image=request.getfixturevalue("build_image"))


def context(ws: BuildWorkspace, runtime: Runtime | None = None, **kwargs: object) -> BuildContext:
    return BuildContext(root=ws.root, tree=ws.tree, spec=ws.spec(), runtime=runtime or HostRuntime(),
                        **kwargs)  # type: ignore[arg-type]


def containers(ws_root: Path) -> list[Any]:
    """Build containers of the workspace still on the engine (there must be none)."""
    from docker.client import DockerClient

    return list(DockerClient.from_env().containers.list(
        all=True, filters={"label": f"{LABEL_WORKSPACE}={ws_root}"}))


def assert_no_container(runtime: Runtime, ws_root: Path) -> None:
    if isinstance(runtime, DockerRuntime):
        assert containers(ws_root) == []


def assert_nothing_left(ws: BuildWorkspace, variant: str) -> None:
    for checkout in ws.tree.projects.values():
        leftovers = [p for p in worktrees_of(checkout.directory) if ".orch/variants" in str(p)]
        assert leftovers == [], leftovers
        branches = subprocess.run(  # the variant's patchset branches, made in the user's repo
            ["git", "-C", str(checkout.directory), "for-each-ref", "--format=%(refname)",
             "refs/heads/orch-worktree/", "refs/heads/orch-backup/orch-worktree/"],
            capture_output=True, text=True, check=True).stdout.split()
        assert branches == [], branches
    assert not (ws.root / ".orch" / "variants" / variant / "src").exists()


def test_two_variants_differ_as_the_patchset_says(ws: BuildWorkspace, runtime: Runtime) -> None:
    before = snapshot(ws.root)
    results = build_variants(context(ws, runtime), ws.variants(), jobs=2)
    assert [(r.variant, r.status, r.cached) for r in results] == [("4k", "pass", False),
                                                                  ("largepage", "pass", False)]
    four_k, large = results
    assert four_k.boot_image is not None and large.boot_image is not None
    assert b"Failed to allocate page" in four_k.boot_image.read_bytes()
    assert b"buildroot login" in large.boot_image.read_bytes()
    assert b"buildroot login" not in four_k.boot_image.read_bytes()
    assert four_k.simulate is not None and os.access(four_k.simulate, os.X_OK)
    assert large.boot_image.relative_to(large.output_dir) == Path(IMAGE_NAME)
    assert snapshot(ws.root) == before  # the user's checkouts and links are untouched
    assert_no_container(runtime, ws.root)
    # files in the build dir belong to the invoking user, not root-in-a-container
    built = ws.root / ".orch" / "variants" / "4k" / "build" / "build.ninja"
    assert built.stat().st_uid == os.getuid()


def test_variants_share_the_workspaces_sel4_cache(ws: BuildWorkspace) -> None:
    """init-build.sh takes its cache from beside itself (not from SEL4_CACHE_DIR): every variant
    tree links that to .orch/sel4-cache, replacing a cache of the variant's own."""
    stale = ws.root / ".orch" / "variants" / "4k" / "src" / ".sel4_cache"
    stale.mkdir(parents=True)
    (stale / "old").write_text("a cache of 4k's own")
    build_variants(context(ws), ws.variants())
    shared = sel4_cache_dir(ws.root)
    assert (shared / "configure.log").read_text().splitlines() == ["configured", "configured"]
    for variant in ("4k", "largepage"):
        link = ws.root / ".orch" / "variants" / variant / "src" / ".sel4_cache"
        assert link.is_symlink() and link.resolve() == shared.resolve()
    assert not (shared / "old").exists()


def test_metadata_is_complete(ws: BuildWorkspace, runtime: Runtime) -> None:
    result = build_variant(context(ws, runtime), ws.spec().variant("largepage"),
                           ws.chain(["vm-2g", "largepage"]))
    on_disk = json.loads((result.output_dir / "metadata.json").read_text())
    assert on_disk == result.metadata
    assert set(on_disk) >= METADATA_KEYS
    assert on_disk["projects"] == {p: c.pinned for p, c in ws.tree.projects.items()}
    assert [p["patchset"] for p in on_disk["patches"]] == ["vm-2g", "largepage"]
    assert all(len(p["sha256"]) == 64 for p in on_disk["patches"])
    assert on_disk["cmake"] == ["-DCAMKES_VM_APP=vm_minimal", "-DPLATFORM=qemu-arm-virt", "-DAARCH64=1"]
    executor = on_disk["executor"]
    if isinstance(runtime, DockerRuntime):  # pinned to the image's ID, reproducible by `docker run`
        pinned = runtime.client().images.get(runtime.image).id
        assert executor == {"name": "docker", "image": runtime.image, "image_id": pinned,
                            "repo_digests": executor["repo_digests"], "toolchain": None}
        assert on_disk["reproducer"].startswith("docker run --rm --network none -u ")
        assert pinned in on_disk["reproducer"]
    else:
        assert executor["name"] == "host" and "cmake" in executor["toolchain"]
    image = next(a for a in on_disk["artifacts"] if a["name"] == IMAGE_NAME)
    assert image["size"] == (result.output_dir / IMAGE_NAME).stat().st_size
    assert "init-build.sh" in on_disk["reproducer"] and "ninja" in on_disk["reproducer"]
    assert on_disk["manifest"]["source"]["file"] == "default.xml"
    src = ws.root / ".orch" / "variants" / "largepage" / "src"
    assert (src / "init-build.sh").resolve() == (src / "tools/seL4/cmake-tool/init-build.sh").resolve()
    assert (result.output_dir / "build.log").read_text()
    assert (result.output_dir.parent / "latest").resolve() == result.output_dir.resolve()


def test_cache_and_a_changed_patch_rebuilds_only_its_variants(ws: BuildWorkspace, runtime: Runtime) -> None:
    first = build_variants(context(ws, runtime), ws.variants())
    again = build_variants(context(ws, runtime), ws.variants())
    assert [r.cached for r in again] == [True, True]
    assert [r.output_dir for r in again] == [r.output_dir for r in first]

    ws.edit_patch("largepage", "map guest RAM", "map all guest RAM")
    changed = build_variants(context(ws, runtime), ws.variants())
    assert [(r.variant, r.cached) for r in changed] == [("4k", True), ("largepage", False)]
    assert changed[1].output_dir != first[1].output_dir


def test_rebuild_reuses_the_tree_incrementally(ws: BuildWorkspace) -> None:
    variant = ws.spec().variant("4k")
    first = build_variant(context(ws), variant, ws.chain(["vm-2g"]))
    assert first.metadata["configured"] is True
    forced = build_variant(context(ws, rebuild=True), variant, ws.chain(["vm-2g"]))
    assert not forced.cached and forced.metadata["configured"] is False and forced.ok


def test_changed_settings_cmake_configures_afresh(ws: BuildWorkspace) -> None:
    """vm-2g changes QEMU_MEMORY in settings.cmake: the base variant and vm-2g share nothing."""
    spec = override(ws.spec(), variants=["4k=vm-2g"])
    ctx = replace(context(ws), spec=spec)
    build_variant(ctx, spec.variants[0], ws.chain(["vm-2g"]))
    base = override(ws.spec(), variants=["4k="])
    result = build_variant(replace(ctx, spec=base), base.variants[0], [])
    assert result.ok and result.metadata["configured"] is True
    assert result.metadata["patches"] == []


def test_ninja_failure_is_a_fail_result_and_leaves_nothing(ws: BuildWorkspace, runtime: Runtime) -> None:
    broken = VariantSpec("broken", ("vm-2g",), cmake=("-DBREAK_BUILD=1",))
    result = build_variant(context(ws, runtime), broken, ws.chain(["vm-2g"]))
    assert result.status == "fail" and result.failed_step == "build"
    assert any("broken on purpose" in line for line in result.log_tail)
    error = result.error()
    assert error is not None and error.exit_code == EXIT_FAIL
    assert "ninja failed" in error.message and str(result.log) in error.message
    assert result.metadata["status"] == "fail"
    assert_nothing_left(ws, "broken")
    assert_no_container(runtime, ws.root)
    again = build_variant(context(ws, runtime), broken, ws.chain(["vm-2g"]))
    assert not again.cached and again.status == "fail"  # failures are never cached


def test_init_build_failure_names_the_step(ws: BuildWorkspace, runtime: Runtime) -> None:
    spec = replace(ws.spec(), cmake=("-DCAMKES_VM_APP=vm_minimal", "-DPLATFORM=qemu-arm-virt"))
    result = build_variant(replace(context(ws, runtime), spec=spec), spec.variant("4k"), ws.chain(["vm-2g"]))
    assert result.status == "fail" and result.failed_step == "configure"
    assert any("Unable to find valid cross-compiling GCC" in line for line in result.log_tail)
    error = result.error()
    assert error is not None and "init-build.sh failed" in error.message
    assert_nothing_left(ws, "4k")


def test_timeout_is_an_infra_error_and_leaves_nothing(ws: BuildWorkspace, runtime: Runtime) -> None:
    slow = VariantSpec("slow", (), cmake=("-DSLOW_SECONDS=60",))
    with pytest.raises(InfraError) as caught:
        build_variant(context(ws, runtime, timeout=8.0), slow, [])
    assert caught.value.exit_code == EXIT_CANNOT_TEST and "timed out" in caught.value.message
    assert_nothing_left(ws, "slow")
    assert_no_container(runtime, ws.root)


def test_bad_patch_leaves_no_worktree(ws: BuildWorkspace) -> None:
    largepage = ws.patchsets["largepage"]
    with pytest.raises(WorkspaceError) as caught:  # the second copy finds the first one's commits
        build_variant(context(ws), VariantSpec("lp-only", ("largepage",)), [largepage, largepage])
    assert "already in the tree, but not on orch's branch for 'largepage'" in caught.value.message
    assert_nothing_left(ws, "lp-only")


def test_parallel_jobs_build_the_same_images(ws: BuildWorkspace, runtime: Runtime) -> None:
    results = build_variants(context(ws, runtime), ws.variants(), jobs=2)
    assert all(r.ok for r in results)
    again = build_variants(context(ws, runtime, rebuild=True), ws.variants(), jobs=1)
    for a, b in zip(results, again, strict=True):
        assert a.metadata["artifacts"] == b.metadata["artifacts"]  # reproducible, order-independent


def test_the_reproducer_rebuilds_the_same_image(ws: BuildWorkspace, runtime: Runtime) -> None:
    result = build_variant(context(ws, runtime), ws.spec().variant("largepage"),
                           ws.chain(["vm-2g", "largepage"]))
    build = ws.root / ".orch" / "variants" / "largepage" / "build"
    subprocess.run(["rm", "-rf", str(build)], check=True)
    build.mkdir()
    proc = subprocess.run(result.metadata["reproducer"], shell=True, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (build / ws.spec().boot_image_name).read_bytes() == result.boot_image.read_bytes()  # type: ignore[union-attr]


@pytest.mark.docker
def test_missing_image_with_a_failing_pull(build_image: str, ws: BuildWorkspace) -> None:
    with pytest.raises(InfraError) as caught:
        build_variants(context(ws, DockerRuntime(image="orch-test/no-such-image:1")), ws.variants())
    assert caught.value.exit_code == EXIT_CANNOT_TEST
    assert "no-such-image:1 is not available locally and pulling it failed" in caught.value.message
    assert caught.value.hint and "orch image build" in caught.value.hint
    assert not (ws.root / ".orch" / "variants" / "4k" / "src").exists()


CTRL_C_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[2])
    from orchestrator.build.builder import BuildContext, build_variant
    from orchestrator.build.spec import VariantSpec
    from orchestrator.runtime import make_runtime
    from tests.support.build import make_build_workspace
    ws = make_build_workspace(Path(sys.argv[1]))
    name, image = sys.argv[3].partition(":")[::2]
    ctx = BuildContext(root=ws.root, tree=ws.tree, spec=ws.spec(), runtime=make_runtime(name, image))
    print("READY", flush=True)
    try:
        result = build_variant(ctx, VariantSpec("slow", (), cmake=("-DSLOW_SECONDS=60",)), [])
        print("FINISHED", result.status, result.metadata.get("failed_step"), result.log_tail, flush=True)
    except KeyboardInterrupt:
        print("INTERRUPTED", flush=True)
        sys.exit(130)
""")


def interrupt_build(tmp_path: Path, runtime: Runtime, started: object) -> subprocess.CompletedProcess[str]:
    """Run a slow build in a child process, Ctrl-C it once ``started()`` is true."""
    repo = Path(__file__).resolve().parent.parent
    where = f"docker:{runtime.image}" if isinstance(runtime, DockerRuntime) else "host"
    proc = subprocess.Popen([sys.executable, "-c", CTRL_C_SCRIPT, str(tmp_path), str(repo), where],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **CTRL_C_ABLE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not started() and proc.poll() is None:  # type: ignore[operator]
        time.sleep(0.2)
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_ctrl_c_stops_the_build_and_leaves_nothing(tmp_path: Path, runtime: Runtime) -> None:
    require_tools(*BUILD_TOOLS)
    log = tmp_path / "ws" / ".orch" / "builds" / "slow"

    def sleeping() -> bool:
        return any("::orch-step:: build" in p.read_text(errors="replace") for p in log.glob("*/build.log"))

    done = interrupt_build(tmp_path, runtime, sleeping)
    assert done.returncode == 130, done.stdout + done.stderr
    assert "INTERRUPTED" in done.stdout
    assert not (tmp_path / "ws" / ".orch" / "variants" / "slow" / "src").exists()
    for project in ("kernel", "tools/seL4"):
        listing = subprocess.run(["git", "-C", str(tmp_path / "ws" / project), "worktree", "list"],
                                 capture_output=True, text=True).stdout
        assert ".orch/variants" not in listing
    ps = subprocess.run(["pgrep", "-f", "sleep 60"], capture_output=True, text=True)
    assert ps.stdout.strip() == "" or all(
        str(tmp_path) not in Path(f"/proc/{pid}/cwd").resolve().as_posix()
        for pid in ps.stdout.split() if Path(f"/proc/{pid}").exists())
    assert_no_container(runtime, tmp_path / "ws")


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


def test_disk_full_is_one_infra_line(runtime: Runtime, small_disk: Path) -> None:
    ws = make_build_workspace(small_disk)
    fill = VariantSpec("fill", (), cmake=("-DFILL_MB=64",))
    with pytest.raises(InfraError) as caught:
        build_variant(context(ws, runtime), fill, [])
    assert "disk full" in caught.value.message
    assert_no_container(runtime, ws.root)
    assert_nothing_left(ws, "fill")


def test_result_error_is_none_on_success(tmp_path: Path) -> None:
    result = BuildResult("v", "pass", False, tmp_path, tmp_path / "build.log", {})
    assert result.error() is None


def test_build_row_shows_the_step_and_ninjas_progress() -> None:
    import io

    from orchestrator.build.builder import _Log
    from orchestrator.ui import UI

    statuses: list[str | None] = []

    class Recorder:
        def add(self, name: str, total: float | None = None) -> int:
            return 1

        def advance(self, task: int, amount: float = 1.0, status: str | None = None) -> None:
            statuses.append(status)

        def done(self, task: int, status: str) -> None:
            pass

    log = _Log(io.BytesIO(), UI.silent(), "4k", Recorder(), 1)
    log(b"::orch-step:: configure\n-- Configuring done\n[1/20] Building C object a.o\n[20/2")
    log(b"0] Linking C executable capdl-loader\n")
    assert statuses == ["configuring", "ninja 1/20", "ninja 20/20"]


def test_identical_inputs_under_another_name_share_the_build(ws: BuildWorkspace) -> None:
    variant = ws.spec().variant("4k")
    first = build_variant(context(ws), variant, ws.chain(["vm-2g"]))
    renamed = replace(variant, name="same-as-4k")
    again = build_variant(context(ws), renamed, ws.chain(["vm-2g"]))
    assert again.cached and again.ok and again.output_dir == first.output_dir
    assert again.metadata["inputs_hash"] == first.metadata["inputs_hash"]


def test_rebuild_never_overwrites_a_successful_build(ws: BuildWorkspace) -> None:
    variant = ws.spec().variant("4k")
    first = build_variant(context(ws), variant, ws.chain(["vm-2g"]))
    assert first.boot_image is not None
    before = first.boot_image.read_bytes()
    forced = build_variant(context(ws, rebuild=True), variant, ws.chain(["vm-2g"]))
    assert forced.ok and not forced.cached
    assert forced.output_dir != first.output_dir and forced.output_dir.name.startswith(first.output_dir.name)
    assert first.boot_image.read_bytes() == before and (first.output_dir / "metadata.json").is_file()
    assert first.metadata["reproducible"] is None, "a first build has nothing to compare with"
    assert forced.metadata["reproducible"] == {"compared_with": first.output_dir.name, "identical": True,
                                               "differ": []}
    assert source_date_epoch(ws.tree)["SOURCE_DATE_EPOCH"].isdigit()
    # the next run reuses a build of those inputs, without building again
    assert build_variant(context(ws), variant, ws.chain(["vm-2g"])).cached


class WatchingRuntime(HostRuntime):
    """The host runtime, noting at each build's start which variant trees are ready and how
    many builds run at once."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root
        self.running = 0
        self.most_at_once = 0
        self.ready_at_start: dict[str, list[str]] = {}
        self.first_started = threading.Event()
        self._count = threading.Lock()

    def ready_trees(self) -> list[str]:
        return sorted(p.parent.name for p in (self.root / ".orch" / "variants").glob("*/tree.key"))

    def run(self, job: Any) -> Any:
        with self._count:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            if not self.first_started.is_set():
                self.first_started.set()
                deadline = time.monotonic() + 30  # the next tree is prepared meanwhile
                while time.monotonic() < deadline and len(self.ready_trees()) < 2:
                    time.sleep(0.05)
            self.ready_at_start[job.name] = self.ready_trees()
            return super().run(job)
        finally:
            with self._count:
                self.running -= 1


def test_the_next_tree_is_prepared_while_a_variant_builds(ws: BuildWorkspace) -> None:
    """With one build slot the builds run one after another, but the second variant's tree
    (worktrees, patches) is made while the first builds, not after it."""
    watching = WatchingRuntime(ws.root)
    results = build_variants(context(ws, watching), ws.variants(), jobs=1)
    assert [(r.variant, r.status) for r in results] == [("4k", "pass"), ("largepage", "pass")]
    assert watching.most_at_once == 1
    assert watching.ready_at_start["4k"] == ["4k", "largepage"]
    large = ws.root / ".orch" / "variants" / "largepage" / "src"
    assert (ws.root / ".orch" / "variants" / "largepage" / "tree.key").is_file() and large.is_dir()


def test_a_tree_that_cannot_be_made_stops_nothing_already_building(ws: BuildWorkspace) -> None:
    """The second variant's patch breaks while the first builds: the first still builds, the
    error is the second's, and nothing of the second's tree is left."""
    ws.edit_patch("largepage", "-#define FRAME_SIZE_BITS 12", "-#define FRAME_SIZE_BITS 13")
    watching = WatchingRuntime(ws.root)
    with pytest.raises(OrchError) as caught:
        build_variants(context(ws, watching), ws.variants(), jobs=1)
    assert caught.value.message.startswith("largepage: kernel/0001-largepage.patch: src/frames.h: hunk")
    assert "4k" in watching.ready_at_start
    assert (ws.root / ".orch" / "variants" / "4k" / "tree.key").is_file()  # built and kept
    for checkout in ws.tree.projects.values():
        assert not [p for p in worktrees_of(checkout.directory) if "variants/largepage" in str(p)]
    assert not (ws.root / ".orch" / "variants" / "largepage" / "src").exists()


def test_ctrl_c_ends_a_wait_for_a_tree_turn_or_a_build_slot() -> None:
    cancel = threading.Event()
    pipeline = _Pipeline(1, cancel)
    with pipeline.building(0):
        cancel.set()
        with pytest.raises(_Interrupted), pipeline.building(1):  # the one slot is taken
            pass
        with pytest.raises(_Interrupted), pipeline.preparing(1):  # plan 0 never passed its turn
            pass
    with pipeline.preparing(0):  # its own turn needs no waiting
        pass
    with pytest.raises(_Interrupted), pipeline.building(2):  # plan 1 never took its slot
        pass
    cancel.clear()
    pipeline.pass_turn(1)
    with pipeline.building(2):  # plan 1 needed no slot (cached, or its tree failed)
        pass


class CtrlCDuringRuntime(HostRuntime):
    """The host runtime; the first build it runs is cancelled (the main thread's answer to
    Ctrl-C) as it starts."""

    def run(self, job: Any) -> Any:
        assert job.cancel is not None
        job.cancel.set()
        return super().run(job)


def test_ctrl_c_keeps_the_tree_of_a_variant_still_waiting_to_build(ws: BuildWorkspace) -> None:
    """Ctrl-C during the first build: the variant waiting for a build slot keeps its kept
    tree and build directory (the next build of it stays incremental); the one that was
    building is taken down as before."""
    build_variants(context(ws), ws.variants(), jobs=1)
    large = ws.root / ".orch" / "variants" / "largepage"
    ninja_file = large / "build" / "build.ninja"
    assert ninja_file.is_file()
    with pytest.raises(KeyboardInterrupt):
        build_variants(context(ws, CtrlCDuringRuntime(), rebuild=True), ws.variants(), jobs=1)
    assert ninja_file.is_file() and (large / "tree.key").is_file()
    assert not (ws.root / ".orch" / "variants" / "4k" / "src").exists()
