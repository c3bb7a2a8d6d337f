"""The host runtime: commands run on this machine with its own cmake, ninja, cross compilers
and QEMU.

Every command runs in a session of its own, so a kill reaches everything it started (ninja's
compilers, QEMU) and the terminal's Ctrl-C reaches orch alone, which then stops it.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from orchestrator.errors import InfraError
from orchestrator.runtime.base import (
    POLL,
    Bind,
    CommandNotFound,
    Job,
    JobOutcome,
    Output,
    Process,
    RuntimeInfo,
    Started,
    StepWatcher,
    job_script,
    plain_script,
    stop_reason,
    stopped_outcome,
)
from orchestrator.ui import UI

HOST_TOOLS = ("cmake", "ninja", "aarch64-linux-gnu-gcc", "arm-linux-gnueabi-gcc", "riscv64-unknown-elf-gcc")
KILL_GRACE = 1.0  # seconds between SIGTERM and SIGKILL


def _first_line(argv: list[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (proc.stdout or proc.stderr).strip()
    return text.splitlines()[0] if text else ""


def _session_members(sid: int) -> list[int]:
    """Processes of session ``sid`` (ninja runs each command in its own process group)."""
    members: list[int] = []
    try:  # listed, not globbed: a process that exits meanwhile must not abort the scan
        pids = [name for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return members
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path("/proc", pid, "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid:
                members.append(int(pid))
    return members


def stop_session(proc: subprocess.Popen[bytes], grace: float = KILL_GRACE) -> None:
    """SIGTERM the process group (ninja then stops its commands; QEMU exits), wait ``grace``
    seconds, then SIGKILL whatever is left of its session and reap the leader."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace)
    for pid in [proc.pid, *_session_members(proc.pid)]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # anything the leader left behind in its group
    proc.wait()


class HostProcess:
    """An interactive command as a child session: pipes to its stdin, stdout and stderr."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self._selector = selectors.DefaultSelector()
        self._stdout_open = True
        self._lock = threading.Lock()
        assert proc.stdout is not None and proc.stderr is not None
        for stream in (proc.stdout, proc.stderr):
            os.set_blocking(stream.fileno(), False)
            self._selector.register(stream, selectors.EVENT_READ)

    @property
    def stdout_open(self) -> bool:
        return self._stdout_open

    @property
    def streams_open(self) -> bool:
        return bool(self._selector.get_map())

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def read(self, timeout: float) -> Output:
        out = Output()
        if not self._selector.get_map():
            time.sleep(max(timeout, 0.0))
            return out
        for key, _ in self._selector.select(timeout=max(timeout, 0.0)):
            stream: IO[bytes] = key.fileobj  # type: ignore[assignment]
            try:
                data = os.read(stream.fileno(), 65536)
            except BlockingIOError:
                continue
            if not data:
                self._selector.unregister(stream)
                if stream is self.proc.stdout:
                    self._stdout_open = False
            elif stream is self.proc.stderr:
                out.stderr += data
            else:
                out.stdout += data
        return out

    def write(self, data: bytes) -> bool:
        stdin = self.proc.stdin
        try:
            assert stdin is not None
            stdin.write(data)
            stdin.flush()
            return True
        except (BrokenPipeError, OSError):
            return False

    def poll(self) -> int | None:
        return self.proc.poll()

    def wait(self, timeout: float) -> int | None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            return self.proc.wait(timeout=timeout)
        return None

    def kill(self) -> None:
        with self._lock:
            stop_session(self.proc)

    def close(self) -> None:
        self._selector.close()


@dataclass
class HostRuntime:
    """Runs commands directly on this machine."""

    name: str = "host"
    _started: Started = field(default_factory=Started)

    def describe(self) -> str:
        return "host"

    def info(self, ui: UI) -> RuntimeInfo:
        for tool in ("cmake", "ninja"):
            if shutil.which(tool) is None:
                raise InfraError(f"host executor: '{tool}' is not on PATH",
                                 hint="install it, or build in Docker (--executor docker)")
        versions = [f"{tool}: {_first_line([tool, '--version'])}"
                    for tool in HOST_TOOLS if shutil.which(tool)]
        return RuntimeInfo(name=self.name, toolchain="\n".join(versions))

    def run(self, job: Job) -> JobOutcome:
        watcher = StepWatcher(job.output)
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
                    proc.wait(POLL)
                stopped = stop_reason(job, errors, deadline)
                if stopped:
                    break
        finally:
            if proc.poll() is None:
                stop_session(proc, grace=3.0)
            thread.join(5)
            if proc.stdout is not None:
                proc.stdout.close()
        if errors:
            raise errors[0]
        if stopped:
            return stopped_outcome(stopped)
        return JobOutcome(exit_code=proc.returncode, failed_step=watcher.failed)

    def reproducer(self, job: Job) -> str:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in job.env.items())
        return f"{env} sh -c {shlex.quote(plain_script(job))}".strip()

    def start(self, argv: Sequence[str], cwd: Path, binds: Sequence[Bind],
              labels: dict[str, str] | None = None) -> Process:
        def launch() -> Process:
            try:
                proc = subprocess.Popen(
                    list(argv), cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=True,  # its own process group: killed as a whole, immune to our ^C
                )
            except FileNotFoundError:
                raise CommandNotFound(f"{argv[0]}: not found") from None
            except OSError as err:
                raise InfraError(f"cannot start {argv[0]}: {err.strerror}") from None
            return HostProcess(proc)

        return self._started.add(launch)

    def stop_all(self) -> None:
        self._started.stop_all()
