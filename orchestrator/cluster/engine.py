"""Where points run: in this process, or on a Dask distributed cluster.

Both engines take the same :class:`PointTask` list and call back with one
:class:`PointResult` per point, as each finishes. The Dask engine is Dask's own scheduling,
worker-loss handling and result transfer: orch adds only what Dask cannot know:

* a task key made of the run, the point and its content hash, so a point is never run twice
  side by side and a result is never counted twice;
* one retry on another worker for infrastructure trouble (``retries=1``); a point that fails
  that way twice, or whose workers keep dying (Dask's ``KilledWorker``), comes back as exit
  125 for that point, never as a verdict;
* cancellation: Ctrl-C sets the run's cancel Event (tasks already running kill their `orch
  build` process group) and cancels every future still queued.
"""

from __future__ import annotations

import logging
import os
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from orchestrator.cluster.task import POINT_CANNOT_TEST, PointResult, PointTask
from orchestrator.cluster.worker import cancel_event_name, execute_task
from orchestrator.errors import InfraError, InputError
from orchestrator.layout import config_file
from orchestrator.sanitize import terminal_text

ResultCallback = Callable[[PointResult], None]
CONNECT_TIMEOUT = "15s"


class Engine(Protocol):
    """Runs points; calls ``on_result`` once per point as each finishes."""

    def describe(self) -> str: ...

    def workers(self) -> int: ...

    def run(self, tasks: Sequence[PointTask],
            on_result: ResultCallback | None = None) -> list[PointResult]: ...


@dataclass
class LocalEngine:
    """Points one after the other on this machine, through the same task code as a worker."""

    env: Mapping[str, str] | None = None

    def describe(self) -> str:
        return "local"

    def workers(self) -> int:
        return 1

    def run(self, tasks: Sequence[PointTask],
            on_result: ResultCallback | None = None) -> list[PointResult]:
        results = []
        for task in tasks:
            try:
                result = execute_task(task, self.env)
            except RuntimeError as error:
                result = PointResult(point_id=task.point_id, exit_code=POINT_CANNOT_TEST, error=str(error))
            results.append(result)
            if on_result:
                on_result(result)
        return results


def cluster_address(given: str | None, env: Mapping[str, str], workspace: Path | None = None) -> str | None:
    """``--cluster`` first, then ``ORCH_CLUSTER``, then ``cluster`` in the workspace's
    ``.orch/config.toml``; checked so a typo is bad input, not a hang."""
    address = given or env.get("ORCH_CLUSTER") or _configured(workspace)
    if address is None:
        return None
    if "://" not in address:
        address = f"tcp://{address}"
    scheme = address.split("://", 1)[0]
    if scheme not in ("tcp", "tls", "inproc", "ucx", "ws", "wss"):
        raise InputError(f"--cluster {address}: not a Dask scheduler address",
                         hint="e.g. tcp://build-host:8786 (see `orch worker --help`)")
    return address


def _configured(workspace: Path | None) -> str | None:
    config = config_file(workspace) if workspace else None
    if config is None or not config.is_file():
        return None
    try:
        value = tomllib.loads(config.read_text()).get("cluster")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{config}: {exc}") from None
    if value is not None and not isinstance(value, str):
        raise InputError(f"{config}: cluster must be a string like 'tcp://host:8786'")
    return value or None


class _SanitizingFormatter(logging.Formatter):
    """Dask's own log formatter, its output (which quotes workers' errors and tracebacks)
    passed through the sanitizer."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        return terminal_text(self.inner.format(record))


def sanitize_dask_logging() -> None:
    """Dask's client logs to stderr through its own handler (a worker's exception, a lost
    worker): make that handler's text go through the sanitizer like all of orch's output."""
    for handler in logging.getLogger("distributed").handlers:
        if not isinstance(handler.formatter, _SanitizingFormatter):
            handler.setFormatter(_SanitizingFormatter(handler.formatter))


class DaskEngine:
    """Points on a Dask distributed cluster (a running scheduler with `orch worker`s)."""

    def __init__(self, address: str, *, retries: int = 1) -> None:
        try:
            from distributed import Client
        except ImportError as error:  # pragma: no cover - a dependency of orch
            raise InfraError("--cluster needs Dask distributed: pip install 'dask[distributed]'") from error
        sanitize_dask_logging()
        try:
            self.client: Any = Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
        except OSError as error:
            raise InfraError(f"--cluster {address}: no Dask scheduler answers ({error})",
                             hint="start one with `dask scheduler` and workers with `orch worker ADDRESS`",
                             ) from error
        self.address = address
        self.retries = retries

    def describe(self) -> str:
        return f"dask {self.address} ({self.workers()} workers)"

    def workers(self) -> int:
        return max(1, len(self.client.scheduler_info(n_workers=-1).get("workers", {})))

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> DaskEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, tasks: Sequence[PointTask],
            on_result: ResultCallback | None = None) -> list[PointResult]:
        from distributed import Event, as_completed

        by_key = {task.key(): task for task in tasks}
        if len(by_key) != len(tasks):
            raise InputError("two points of this run are the same point (same id and inputs)")
        futures = [self.client.submit(execute_task, task, key=key, pure=False, retries=self.retries)
                   for key, task in by_key.items()]
        done: dict[str, PointResult] = {}
        try:
            for future in as_completed(futures, loop=self.client.loop):
                task = by_key[future.key]
                result = self._result_of(future, task)
                if task.point_id in done:  # never count a point twice
                    continue
                done[task.point_id] = result
                if on_result:
                    on_result(result)
        except BaseException:
            Event(cancel_event_name(tasks[0].run_id), client=self.client).set()
            self.client.cancel(futures, force=True)
            raise
        return [done[t.point_id] for t in tasks if t.point_id in done]

    @staticmethod
    def _result_of(future: Any, task: PointTask) -> PointResult:
        if future.status == "finished":
            result: PointResult = future.result()
            return result
        error = future.exception()
        return PointResult(point_id=task.point_id, exit_code=POINT_CANNOT_TEST,
                           error=f"{type(error).__name__}: {error}")


def make_engine(cluster: str | None, env: Mapping[str, str] | None = None,
                workspace: Path | None = None) -> Engine:
    """The Dask engine when a cluster is named (``--cluster`` / ``ORCH_CLUSTER`` / config), else local."""
    env = dict(os.environ if env is None else env)
    address = cluster_address(cluster, env, workspace)
    return DaskEngine(address) if address else LocalEngine(env)


def wait_for_workers(engine: DaskEngine, count: int, timeout: float = 60.0) -> None:
    """Block until ``count`` workers have joined (used by tests and `orch worker --wait`)."""
    deadline = time.monotonic() + timeout
    while len(engine.client.scheduler_info(n_workers=-1).get("workers", {})) < count:
        if time.monotonic() > deadline:
            raise InfraError(f"only {engine.workers()} of {count} Dask workers joined in {timeout:.0f} s")
        time.sleep(0.2)
