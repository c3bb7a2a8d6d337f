"""A real Dask cluster on loopback for the tests: `dask scheduler` and `orch worker` processes,
each worker with its own cache directory, all killed (process groups) at the end."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Worker:
    name: str
    directory: Path
    proc: subprocess.Popen[bytes]

    def kill(self) -> None:
        """kill -9 the worker's whole process group (nanny and worker process)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


@dataclass
class Cluster:
    address: str
    base: Path
    scheduler: subprocess.Popen[bytes]
    workers: list[Worker] = field(default_factory=list)

    def add_worker(self, name: str, mirror: Path | None = None) -> Worker:
        directory = self.base / name
        directory.mkdir(parents=True)
        argv = [sys.executable, "-m", "orchestrator", "worker", self.address, "--dir", str(directory),
                "--name", name]
        if mirror is not None:
            argv += ["--mirror", str(mirror)]
        log = (self.base / f"{name}.log").open("wb")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        worker = Worker(name, directory, proc)
        self.workers.append(worker)
        return worker

    def wait_for_workers(self, count: int, timeout: float = 60.0) -> None:
        from distributed import Client

        with Client(self.address, timeout="20s", set_as_default=False) as client:
            client.wait_for_workers(count, timeout=timeout)

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.scheduler.pid, signal.SIGKILL)
        self.scheduler.wait()


@contextlib.contextmanager
def loopback_cluster(base: Path) -> Iterator[Cluster]:
    """A scheduler on 127.0.0.1 (no dashboard); add workers with :meth:`Cluster.add_worker`."""
    port = free_port()
    base.mkdir(parents=True, exist_ok=True)
    log = (base / "scheduler.log").open("wb")
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port),
         "--no-dashboard"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    cluster = Cluster(f"tcp://127.0.0.1:{port}", base, scheduler)
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline or scheduler.poll() is not None:
                log_text = (base / "scheduler.log").read_text()
                raise RuntimeError(f"the Dask scheduler did not start: {log_text}")
            time.sleep(0.2)
        yield cluster
    finally:
        cluster.close()


def processes_under(path: Path) -> list[str]:
    """Command lines of live processes that mention ``path`` (a worker's directory)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(path) in cmdline and "dask_worker" not in cmdline and " worker " not in cmdline:
            found.append(f"{proc.name}: {cmdline}")
    return found
