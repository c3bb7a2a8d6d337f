"""What every runtime offers, tuxmake-style: the :class:`Runtime` protocol and the records
that cross it.

A runtime runs commands somewhere (this machine, or a container of an image on a Docker
engine) in two ways: a batch :class:`Job` (named steps run in order, output streamed, e.g. a
build: :meth:`Runtime.run`) and an interactive :class:`Process` (stdin written, stdout and
stderr read as they come, stopped for good with :meth:`Process.kill`, e.g. QEMU for a boot:
:meth:`Runtime.start`). Directories are made visible at the same paths everywhere
(:class:`Bind`), since CMake caches and QEMU command lines name absolute paths. Machinery
failures raise :class:`InfraError`.
"""

from __future__ import annotations

import shlex
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from orchestrator.digest import sha256_bytes
from orchestrator.errors import InfraError
from orchestrator.ui import UI

LABEL_VARIANT = "orch.variant"  # labels a build job carries (container labels in Docker)
LABEL_WORKSPACE = "orch.workspace"
STEP_MARK = "::orch-step::"
FAILED_MARK = "::orch-failed::"
POLL = 0.2  # seconds between checks of a running job's deadline and cancel flag


@dataclass(frozen=True)
class Bind:
    """A host directory the command needs, visible at the same path (read-only unless said)."""

    path: Path
    read_only: bool = True


@dataclass(frozen=True)
class Step:
    """One named command of a job, e.g. ``configure`` = ``../src/init-build.sh -D...``."""

    name: str
    argv: tuple[str, ...]


@dataclass
class Job:
    """Commands to run in ``workdir`` with ``env``; ``output`` receives the raw log bytes."""

    name: str
    workdir: Path
    steps: Sequence[Step]
    output: Callable[[bytes], None]
    env: dict[str, str] = field(default_factory=dict)
    binds: Sequence[Bind] = ()
    labels: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class JobOutcome:
    """How a job ended: exit code, the step that failed (if any), timeout or interruption."""

    exit_code: int
    failed_step: str | None = None
    timed_out: bool = False
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.interrupted


@dataclass(frozen=True)
class RuntimeInfo:
    """What ran the build, for the record and the cache key: the image pinned by ID/digest,
    or the host toolchain's versions."""

    name: str
    image: str | None = None
    image_id: str | None = None
    repo_digests: tuple[str, ...] = ()
    toolchain: str = ""

    @property
    def identity(self) -> str:
        """A stable string that changes whenever the build environment changes."""
        return self.image_id or sha256_bytes(self.toolchain)


@dataclass
class Output:
    """What an interactive process printed since the last read."""

    stdout: bytes = b""
    stderr: bytes = b""


class CommandNotFound(InfraError):
    """The interactive command's program does not exist where the runtime runs it."""


class Process(Protocol):
    """A started interactive command: its output as it comes, its stdin, and its end."""

    @property
    def stdout_open(self) -> bool:
        """False once its stdout reached end of file."""
        ...

    @property
    def streams_open(self) -> bool:
        """True while stdout or stderr may still deliver bytes."""
        ...

    @property
    def returncode(self) -> int | None:
        """Its exit status once it ended (negative: killed by that signal), else None."""
        ...

    def read(self, timeout: float) -> Output:
        """Wait up to ``timeout`` seconds for output; whatever came (maybe nothing)."""
        ...

    def write(self, data: bytes) -> bool:
        """Send ``data`` to its stdin; False if it can no longer take input."""
        ...

    def poll(self) -> int | None:
        """Its exit status if it has ended, without waiting."""
        ...

    def wait(self, timeout: float) -> int | None:
        """Its exit status, waiting up to ``timeout`` seconds for it to end."""
        ...

    def kill(self) -> None:
        """End it for good (its whole process group, or its container) and clean up after it.
        Safe to call twice, from another thread too."""
        ...

    def close(self) -> None:
        """Release its streams (after :meth:`kill` and the last :meth:`read`)."""
        ...


class Runtime(Protocol):
    """Where commands run: ``host`` or ``docker`` (a container of the build's image)."""

    name: str

    def describe(self) -> str:
        """``host`` or ``docker:IMAGE``: recorded with each boot and part of its cache key."""
        ...

    def info(self, ui: UI) -> RuntimeInfo:
        """Check the runtime can run builds (engine up, image present or pulled, tools found)."""
        ...

    def run(self, job: Job) -> JobOutcome:
        """Run a batch job to its end, its timeout or its cancellation."""
        ...

    def reproducer(self, job: Job) -> str:
        """A shell command line that runs ``job`` by hand, without orch."""
        ...

    def start(self, argv: Sequence[str], cwd: Path, binds: Sequence[Bind],
              labels: dict[str, str] | None = None) -> Process:
        """Start an interactive command in ``cwd``; raises :class:`CommandNotFound` when its
        program is missing, :class:`InfraError` when it cannot be started at all."""
        ...

    def stop_all(self) -> None:
        """Kill every process this runtime started and refuse to start more (Ctrl-C)."""
        ...


class Started:
    """The processes a runtime started, so Ctrl-C in one thread can stop boots in others."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._processes: list[Process] = []
        self._stopped = False

    def add(self, start: Callable[[], Process]) -> Process:
        """Start one (under the lock, so a concurrent :meth:`stop_all` cannot miss it)."""
        with self._lock:
            if self._stopped:
                raise InfraError("interrupted before the command started")
            process = start()
            self._processes.append(process)
            return process

    def stop_all(self) -> None:
        with self._lock:
            self._stopped = True
            processes = list(self._processes)
        for process in processes:
            process.kill()


def job_script(job: Job) -> str:
    """The POSIX shell script both runtimes run: each step announced, the first failing one
    reported with its exit code (``::orch-failed:: <step> <rc>``), and the job stopped there."""
    lines = ["set -u", f"cd {shlex.quote(str(job.workdir))}"]
    for step in job.steps:
        command = shlex.join(step.argv)
        lines.append(f"printf '%s\\n' {shlex.quote(f'{STEP_MARK} {step.name}: {command}')}")
        lines.append(
            f"{command} || {{ rc=$?; printf '%s %s\\n' {shlex.quote(f'{FAILED_MARK} {step.name}')} \"$rc\"; "
            'exit "$rc"; }'
        )
    return "\n".join(lines) + "\n"


def plain_script(job: Job) -> str:
    """The job as a person would type it: ``cd <workdir> && step && step``."""
    return " && ".join([f"cd {shlex.quote(str(job.workdir))}", *(shlex.join(s.argv) for s in job.steps)])


class StepWatcher:
    """Feeds output through to the job and remembers the step the script says failed."""

    def __init__(self, sink: Callable[[bytes], None]) -> None:
        self.sink = sink
        self.failed: str | None = None
        self._pending = b""

    def __call__(self, chunk: bytes) -> None:
        self.sink(chunk)
        data = self._pending + chunk
        lines = data.split(b"\n")
        self._pending = lines.pop()[-4096:]
        for line in lines:
            if line.startswith(FAILED_MARK.encode()):
                parts = line.decode(errors="replace").split()
                self.failed = parts[1] if len(parts) > 1 else "?"


def stop_reason(job: Job, errors: Sequence[BaseException], deadline: float | None) -> str | None:
    """Why a running job must be stopped now, if it must: its log pump failed, the user
    interrupted, or its time ran out."""
    if errors:
        return "error"
    if job.cancel.is_set():
        return "interrupted"
    if deadline is not None and time.monotonic() > deadline:
        return "timeout"
    return None


def stopped_outcome(reason: str) -> JobOutcome:
    return JobOutcome(exit_code=-1, timed_out=reason == "timeout", interrupted=reason == "interrupted")


def distinct_dirs(paths: Sequence[Path]) -> list[Path]:
    """The directories to bind: no directory that another one already contains."""
    unique = sorted({p.resolve() for p in paths}, key=lambda p: len(p.parts))
    kept: list[Path] = []
    for path in unique:
        if not any(path.is_relative_to(k) for k in kept):
            kept.append(path)
    return kept
