"""Executors: where a build's commands run. One interface, two implementations.

:class:`DockerExecutor` runs them in a container of the build image through the Docker SDK
(honouring ``DOCKER_HOST``): the directories a build needs are bind-mounted at the same
paths (CMake caches absolute paths), it runs as the invoking uid:gid with a tmpfs HOME and no
network, its output is streamed to the caller, and the container is removed however the job
ends. :class:`HostExecutor` runs the same commands with :mod:`subprocess`, for native
toolchains. Both take a :class:`Job` (named steps run in order, stopping at the first that
fails) and return a :class:`JobOutcome`; machinery failures raise :class:`InfraError`.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from orchestrator.digest import sha256_bytes
from orchestrator.errors import InfraError, InputError
from orchestrator.runtime.docker import connect, engine_error, sdk_errors
from orchestrator.ui import UI

CONTAINER_HOME = "/orch-home"
LABEL_VARIANT = "orch.variant"
LABEL_WORKSPACE = "orch.workspace"
_STEP = "::orch-step::"
_FAILED = "::orch-failed::"
_POLL = 0.2


@dataclass(frozen=True)
class Bind:
    """A host directory the job needs, mounted at the same path (read-only unless said)."""

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
class ExecutorInfo:
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


class Executor(Protocol):
    name: str

    def info(self, ui: UI) -> ExecutorInfo:
        """Check the executor can run (daemon up, image present or pulled, tools found)."""
        ...

    def run(self, job: Job) -> JobOutcome: ...

    def reproducer(self, job: Job) -> str:
        """A shell command line that runs ``job`` by hand, without orch."""
        ...


def job_script(job: Job) -> str:
    """The POSIX shell script both executors run: each step announced, the first failing one
    reported with its exit code (``::orch-failed:: <step> <rc>``), and the job stopped there."""
    lines = ["set -u", f"cd {shlex.quote(str(job.workdir))}"]
    for step in job.steps:
        command = shlex.join(step.argv)
        lines.append(f"printf '%s\\n' {shlex.quote(f'{_STEP} {step.name}: {command}')}")
        lines.append(
            f"{command} || {{ rc=$?; printf '%s %s\\n' {shlex.quote(f'{_FAILED} {step.name}')} \"$rc\"; "
            'exit "$rc"; }'
        )
    return "\n".join(lines) + "\n"


def plain_script(job: Job) -> str:
    """The job as a person would type it: ``cd <workdir> && step && step``."""
    return " && ".join([f"cd {shlex.quote(str(job.workdir))}", *(shlex.join(s.argv) for s in job.steps)])


class _StepWatcher:
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
            if line.startswith(_FAILED.encode()):
                parts = line.decode(errors="replace").split()
                self.failed = parts[1] if len(parts) > 1 else "?"


def _split_image(image: str) -> tuple[str, str | None]:
    """``repo[:tag]`` or ``repo@digest`` -> (repository, tag-or-digest)."""
    if "@" in image:
        repo, _, digest = image.partition("@")
        return repo, digest
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        repo, _, tag = image.rpartition(":")
        return repo, tag
    return image, "latest"


def _stop_reason(job: Job, errors: Sequence[BaseException], deadline: float | None) -> str | None:
    """Why a running job must be stopped now, if it must: its log pump failed, the user
    interrupted, or its time ran out."""
    if errors:
        return "error"
    if job.cancel.is_set():
        return "interrupted"
    if deadline is not None and time.monotonic() > deadline:
        return "timeout"
    return None


@dataclass
class DockerExecutor:
    """Runs jobs in containers of ``image`` on the engine ``docker.from_env()`` finds."""

    image: str
    name: str = "docker"
    user: str = field(default_factory=lambda: f"{os.getuid()}:{os.getgid()}")
    _client: Any = None
    _image_id: str | None = None

    def client(self) -> Any:
        if self._client is None:
            self._client = connect()
        return self._client

    def info(self, ui: UI) -> ExecutorInfo:
        client = self.client()
        try:
            image = client.images.get(self.image)
        except sdk_errors().ImageNotFound:
            image = self._pull(ui)
        except (sdk_errors().DockerException, OSError) as exc:
            raise engine_error(exc) from None
        self._image_id = image.id
        return ExecutorInfo(
            name=self.name,
            image=self.image,
            image_id=image.id,
            repo_digests=tuple(image.attrs.get("RepoDigests") or ()),
        )

    def _pull(self, ui: UI) -> Any:
        """Pull the image with a progress bar; a failed pull is one InfraError line."""
        repo, tag = _split_image(self.image)
        client = self.client()
        try:
            with ui.tracker() as tracker:
                task = tracker.add(f"pull {self.image}", total=None)
                layers: dict[str, tuple[int, int]] = {}
                for event in client.api.pull(repo, tag=tag, stream=True, decode=True):
                    if "error" in event:
                        raise sdk_errors().APIError(event["error"])
                    detail = event.get("progressDetail") or {}
                    if event.get("id") and detail.get("total"):
                        layers[event["id"]] = (int(detail.get("current", 0)), int(detail["total"]))
                        done = sum(c for c, _ in layers.values())
                        total = sum(t for _, t in layers.values())
                        tracker.advance(task, 0, status=f"{done / 1e6:.0f}/{total / 1e6:.0f} MB")
                tracker.done(task, "pulled")
            return client.images.get(self.image)
        except (sdk_errors().DockerException, OSError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InfraError(
                f"build image {self.image} is not available locally and pulling it failed: {reason[:200]}",
                hint="build it offline with `orch image build` (it tags the image under this name), "
                "or choose another with --image",
            ) from None

    def _mounts(self, job: Job) -> list[Any]:
        from docker.types import Mount

        return [Mount(target=str(b.path), source=str(b.path), type="bind", read_only=b.read_only)
                for b in job.binds]

    def _environment(self, job: Job) -> dict[str, str]:
        return {"HOME": CONTAINER_HOME, **job.env}

    def run(self, job: Job) -> JobOutcome:
        client = self.client()
        watcher = _StepWatcher(job.output)
        container = None
        try:
            container = client.containers.create(
                self._image_id or self.image,
                command=["sh", "-c", job_script(job)],
                user=self.user,
                working_dir=str(job.workdir),
                environment=self._environment(job),
                mounts=self._mounts(job),
                tmpfs={CONTAINER_HOME: "rw,exec,mode=1777"},
                network_disabled=True,
                labels=job.labels,
                detach=True,
            )
            container.start()
            return self._follow(container, job, watcher)
        except sdk_errors().ImageNotFound:
            raise InfraError(f"build image {self.image} disappeared from the engine") from None
        except (sdk_errors().DockerException, OSError) as exc:
            if isinstance(exc, OSError) and not isinstance(exc, ConnectionError):
                raise
            raise InfraError(f"the Docker engine failed running the build: {str(exc)[:300]}") from None
        finally:
            if container is not None:
                with contextlib.suppress(sdk_errors().DockerException, OSError):
                    container.remove(force=True)

    def _follow(self, container: Any, job: Job, watcher: _StepWatcher) -> JobOutcome:
        """Stream the logs until the container exits, the deadline passes or the job is
        cancelled; kill the container in the last two cases."""
        errors: list[BaseException] = []

        def pump() -> None:
            try:
                for chunk in container.logs(stream=True, follow=True):
                    watcher(chunk)
            except BaseException as exc:  # an OSError (ENOSPC) writing the log, a broken stream
                errors.append(exc)

        thread = threading.Thread(target=pump, name=f"logs-{job.name}", daemon=True)
        thread.start()
        deadline = None if job.timeout is None else time.monotonic() + job.timeout
        stopped: str | None = None
        while thread.is_alive():
            thread.join(_POLL)
            stopped = _stop_reason(job, errors, deadline)
            if stopped:
                with contextlib.suppress(sdk_errors().DockerException):
                    container.kill()
                thread.join(5)
                break
        if errors:
            raise errors[0]
        if stopped:
            return JobOutcome(exit_code=-1, timed_out=stopped == "timeout",
                              interrupted=stopped == "interrupted")
        status = container.wait()
        return JobOutcome(exit_code=int(status.get("StatusCode", -1)), failed_step=watcher.failed)

    def reproducer(self, job: Job) -> str:
        argv = ["docker", "run", "--rm", "--network", "none", "-u", self.user,
                "--tmpfs", f"{CONTAINER_HOME}:rw,exec,mode=1777"]
        for key, value in self._environment(job).items():
            argv += ["-e", f"{key}={value}"]
        for b in job.binds:
            argv += ["-v", f"{b.path}:{b.path}" + (":ro" if b.read_only else "")]
        argv += ["-w", str(job.workdir), self._image_id or self.image, "sh", "-c", plain_script(job)]
        return shlex.join(argv)


_HOST_TOOLS = ("cmake", "ninja", "aarch64-linux-gnu-gcc", "arm-linux-gnueabi-gcc", "riscv64-unknown-elf-gcc")


def _first_line(argv: list[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (proc.stdout or proc.stderr).strip()
    return text.splitlines()[0] if text else ""


def _session_members(sid: int) -> list[int]:
    """Processes of session ``sid`` (ninja runs each command in its own process group)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid:
                members.append(int(stat.parent.name))
    return members


def _stop_session(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the job's process group (ninja then stops its commands), then SIGKILL whatever
    is left of its session."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(3)
    for pid in [proc.pid, *_session_members(proc.pid)]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()


@dataclass
class HostExecutor:
    """Runs jobs directly on this machine with its own cmake, ninja and cross compilers."""

    name: str = "host"

    def info(self, ui: UI) -> ExecutorInfo:
        for tool in ("cmake", "ninja"):
            if shutil.which(tool) is None:
                raise InfraError(f"host executor: '{tool}' is not on PATH",
                                 hint="install it, or build in Docker (--executor docker)")
        versions = [f"{tool}: {_first_line([tool, '--version'])}"
                    for tool in _HOST_TOOLS if shutil.which(tool)]
        return ExecutorInfo(name=self.name, toolchain="\n".join(versions))

    def run(self, job: Job) -> JobOutcome:
        watcher = _StepWatcher(job.output)
        proc = subprocess.Popen(
            ["sh", "-c", job_script(job)],
            cwd=job.workdir,
            env={**os.environ, **job.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # so a kill reaches ninja and the compilers too
        )
        errors: list[BaseException] = []

        def pump() -> None:
            stream = proc.stdout
            assert stream is not None
            try:
                while chunk := os.read(stream.fileno(), 65536):
                    watcher(chunk)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=pump, name=f"out-{job.name}", daemon=True)
        thread.start()
        deadline = None if job.timeout is None else time.monotonic() + job.timeout
        stopped: str | None = None
        try:
            while proc.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(_POLL)
                stopped = _stop_reason(job, errors, deadline)
                if stopped:
                    break
        finally:
            if proc.poll() is None:
                _stop_session(proc)
            thread.join(5)
            if proc.stdout is not None:
                proc.stdout.close()
        if errors:
            raise errors[0]
        if stopped:
            return JobOutcome(exit_code=-1, timed_out=stopped == "timeout",
                              interrupted=stopped == "interrupted")
        return JobOutcome(exit_code=proc.returncode, failed_step=watcher.failed)

    def reproducer(self, job: Job) -> str:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in job.env.items())
        return f"{env} sh -c {shlex.quote(plain_script(job))}".strip()


def make_executor(name: str, image: str) -> Executor:
    """The executor called ``name`` (``docker`` or ``host``)."""
    if name == "docker":
        return DockerExecutor(image=image)
    if name == "host":
        return HostExecutor()
    raise InputError(f"unknown executor '{name}'", hint="use docker or host")

