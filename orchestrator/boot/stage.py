"""The boot stage of `orch build`: every built variant boots in QEMU, in parallel, after all
builds are done (a stuck boot never holds a build); an identical earlier boot is reused
(:mod:`.cache`). Ctrl-C stops every QEMU the runtime started before it propagates. The stage times itself.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.boot.cache import boot_dir, boot_key, forget, remembered_boot
from orchestrator.boot.qemu import RunRecord, RunSpec, qemu_argv_from_simulate, run_image
from orchestrator.build.builder import BuildResult
from orchestrator.build.spec import BuildSpec
from orchestrator.digest import sha256_file_or_none
from orchestrator.errors import InputError
from orchestrator.runtime import make_runtime
from orchestrator.runtime.base import Runtime
from orchestrator.ui import UI


@dataclass(frozen=True)
class BootSettings:
    """How the stage boots: where QEMU runs, how many at once, the per-boot timeout."""

    root: Path  # the workspace (its boot cache)
    boot_in: str = "auto"  # auto | host | docker
    executor: str = "docker"  # where the builds ran (auto boots in Docker without a host QEMU)
    jobs: int = 0  # 0: every variant at once
    timeout: float | None = None
    reboot: bool = False  # boot again even when an identical boot is cached
    fail_grace: float = 2.0  # seconds the console is read on after a fail verdict


@dataclass(frozen=True)
class Boot:
    """One variant's boot: its record, whether it was reused, the directory holding it."""

    record: RunRecord
    cached: bool
    directory: Path


@dataclass
class BootStage:
    """The stage's boots by variant, and its time: wall-clock, and inside QEMU."""

    boots: dict[str, Boot] = field(default_factory=dict)
    seconds: float = 0.0
    qemu_seconds: float = 0.0


def boot_runtime(settings: BootSettings, toolchain_image: str) -> Runtime:
    """Where QEMU runs: in a container of the toolchain image when asked, or when builds run in
    Docker and this machine has no QEMU of its own; else on the host."""
    if settings.boot_in == "docker" or (
        settings.boot_in == "auto" and settings.executor == "docker"
        and shutil.which("qemu-system-aarch64") is None
    ):
        return make_runtime("docker", toolchain_image)
    return make_runtime("host", toolchain_image)


_MEMORY_IN_SCRIPT = re.compile(r"-m\s+(?:size=)?([0-9]+[MGK]?)\b")


def run_spec_for(build: BuildResult, platform: str, timeout: float | None,
                 fail_grace: float = 2.0) -> RunSpec:
    """How to boot a build: its ``simulate`` script when orch can read it, else the platform's
    QEMU command with the memory the script names."""
    assert build.boot_image is not None
    simulate, memory = build.simulate, None
    if simulate is not None:
        try:
            qemu_argv_from_simulate(simulate)
        except InputError:
            found = _MEMORY_IN_SCRIPT.search(simulate.read_text(errors="replace"))
            memory = found.group(1) if found else None
            simulate = None
    extra: dict[str, Any] = {"timeout": timeout} if timeout else {}
    return RunSpec(image=build.boot_image, platform=platform, simulate=simulate, memory=memory,
                   fail_grace=fail_grace, **extra)


def boot(build: BuildResult, spec: BuildSpec, settings: BootSettings, runtime: Runtime, ui: UI,
         on_milestone: Callable[[str, float], None] | None = None) -> Boot:
    """Boot one build, or reuse an identical earlier boot."""
    run_spec = run_spec_for(build, spec.platform, settings.timeout, settings.fail_grace)
    image_sha = sha256_file_or_none(run_spec.image) or ""
    directory = boot_dir(settings.root, boot_key(run_spec, image_sha, runtime))
    if not settings.reboot:
        remembered = remembered_boot(directory, image_sha)
        if remembered is not None:
            return Boot(remembered, True, directory)
    forget(directory)
    run_spec = dataclasses.replace(run_spec, output_dir=directory, runtime=runtime,
                                   on_milestone=on_milestone)
    return Boot(run_image(run_spec, ui), False, directory)


def boot_builds(builds: Sequence[BuildResult], spec: BuildSpec, settings: BootSettings, ui: UI) -> BootStage:
    """Boot every build, in parallel; Ctrl-C kills every QEMU before it propagates."""
    stage = BootStage()
    if not builds:
        return stage
    started = time.monotonic()
    runtime = boot_runtime(settings, spec.toolchain_image)
    workers = settings.jobs or len(builds)
    with ui.tracker() as tracker, concurrent.futures.ThreadPoolExecutor(
        max_workers=workers, thread_name_prefix="boot"
    ) as pool:
        tasks = {b.variant: tracker.add(f"boot {b.variant}") for b in builds}

        def show_milestone(variant: str) -> Callable[[str, float], None]:
            return lambda name, at: tracker.advance(tasks[variant], 0, status=f"{name} at {at:.1f} s")

        futures = {pool.submit(boot, b, spec, settings, runtime, UI.silent() if workers > 1 else ui,
                               show_milestone(b.variant)): b
                   for b in builds}
        try:
            for future in concurrent.futures.as_completed(futures):
                build = futures[future]
                done = future.result()
                stage.boots[build.variant] = done
                state = "cached" if done.cached else f"{done.record.duration:.1f} s"
                tracker.done(tasks[build.variant], f"{str(done.record.verdict).upper()} ({state})")
        except BaseException:
            runtime.stop_all()
            concurrent.futures.wait(futures)
            raise
    stage.seconds = round(time.monotonic() - started, 3)
    stage.qemu_seconds = round(sum(b.record.duration for b in stage.boots.values() if not b.cached), 3)
    return stage
