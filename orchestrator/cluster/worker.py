"""The worker side of a distributed run: run one :class:`PointTask` on this machine.

A task runs `orch build` for its point in a subprocess (its own process group), in a cached
workspace of this worker (one per manifest source, under ``ORCH_WORKER_DIR``, synced to the
task's pins; ``ORCH_MIRROR`` points the sync at local bare mirrors), with the shipped patchset
files written into a fresh attempt directory. Every attempt has its own directory, so a task
retried after a worker died never reuses a half-written result; a half-built variant tree is
never reused because orch's build cache only takes builds marked complete.

Cancellation: the submitting side sets a Dask ``Event`` named after the run; a running task
polls it and interrupts its `orch build` process group as Ctrl-C would (orch's own handling
removes its containers and QEMU), so Ctrl-C on the client leaves nothing running on any
worker. A worker killed outright takes its `orch build` with it (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from orchestrator.cluster.task import (
    POINT_CANNOT_TEST,
    PointResult,
    PointTask,
    read_results,
    unpack_patchsets,
)
from orchestrator.digest import sha256_bytes
from orchestrator.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, OrchError
from orchestrator.sanitize import terminal_text

POLL_SECONDS = 0.5
PR_SET_PDEATHSIG = 1
KILL_GRACE_SECONDS = 10.0


def cancel_event_name(run_id: str) -> str:
    """The Dask Event a client sets to cancel every task of a run."""
    return f"orch-cancel-{run_id}"


def worker_dir(env: Mapping[str, str]) -> Path:
    """Where this worker keeps its workspaces and attempts."""
    configured = env.get("ORCH_WORKER_DIR")
    return Path(configured) if configured else Path(tempfile.gettempdir()) / "orch-worker"


def workspace_for(base: Path, task: PointTask) -> Path:
    """The cached workspace for the task's manifest source (pins change per task, the clone stays)."""
    digest = sha256_bytes(task.manifest)[:12]
    return base / "workspaces" / digest


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One task at a time in a workspace (a worker may run several threads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _dask_cancel_check(run_id: str) -> Callable[[], bool]:
    """A cheap 'was the run cancelled?' check when running inside a Dask worker, else never."""
    try:
        from distributed import Event, get_worker
        get_worker()
    except (ImportError, ValueError):
        return lambda: False
    event = Event(cancel_event_name(run_id))
    last = [0.0, False]

    def cancelled() -> bool:
        now = time.monotonic()
        if now - last[0] >= 1.0:
            last[0] = now
            try:
                last[1] = bool(event.is_set())
            except Exception:  # the scheduler went away: nobody is waiting for this result
                last[1] = True
        return bool(last[1])

    return cancelled


def _worker_name() -> str:
    try:
        from distributed import get_worker
        return str(get_worker().address)
    except (ImportError, ValueError):
        return socket.gethostname()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Interrupt the `orch build` process group as Ctrl-C does (orch removes its containers and
    stops QEMU), SIGKILL what is left after a grace period."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(KILL_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _die_with_parent() -> None:
    """In the `orch build` child: interrupt it when the worker dies (kill -9 included), as
    Ctrl-C would, so it stops its builds, containers and QEMU and a lost worker leaves nothing
    running behind it (Linux's PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGINT)


def run_orch(argv: list[str], workspace: Path, env: Mapping[str, str], log: Path,
             cancelled: Callable[[], bool]) -> int | None:
    """An `orch` command in the workspace, in its own process group; ``None`` when cancelled."""
    return run_python(["orchestrator", "-w", str(workspace), "--no-color", *argv], env, log, cancelled)


def run_python(module_argv: list[str], env: Mapping[str, str], log: Path,
               cancelled: Callable[[], bool]) -> int | None:
    """``python -m MODULE ARGS`` in its own process group, killed with the worker; ``None``
    when cancelled."""
    command = [sys.executable, "-m", *module_argv]
    with log.open("ab") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=dict(env), start_new_session=True, preexec_fn=_die_with_parent)
        try:
            while proc.poll() is None:
                if cancelled():
                    _stop(proc)
                    return None
                time.sleep(POLL_SECONDS)
        except BaseException:
            _stop(proc)
            raise
    return proc.returncode


def execute_task(task: PointTask, env: Mapping[str, str] | None = None) -> PointResult:
    """Run one point here and bring its results back. Raises on infrastructure trouble so the
    engine's retries (another worker) apply; a test verdict, good or bad, is a result."""
    env = dict(os.environ if env is None else env)
    base = worker_dir(env)
    attempt = f"{task.point_id}-{uuid.uuid4().hex[:8]}"
    attempt_dir = base / "attempts" / task.run_id / attempt
    attempt_dir.mkdir(parents=True)
    patchsets = unpack_patchsets(task.files, attempt_dir / "patchsets")
    results = attempt_dir / "results"
    workspace = workspace_for(base, task)
    workspace.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    log = attempt_dir / "orch.log"
    cancelled = _dask_cancel_check(task.run_id)
    with _locked(workspace.with_suffix(".lock")):
        if task.entry:
            code = _run_entry(task, workspace, patchsets, attempt_dir, env, cancelled)
        else:
            code = run_orch(task.build_argv(patchsets, results), workspace, env, log, cancelled)
    log_tail = _tail(log)
    if code is None:
        raise RuntimeError(f"point {task.point_id}: cancelled")
    produced = attempt_dir / "result" if task.entry else results / "results.json"
    if code == POINT_CANNOT_TEST or not produced.is_file():
        # Infrastructure trouble on this worker (Docker, QEMU, sync): let another worker try.
        raise RuntimeError(f"point {task.point_id} on {_worker_name()}: exit {code}: {log_tail}")
    files = {"result": produced.read_bytes()} if task.entry else read_results(results)
    files["orch.log"] = log.read_bytes()
    result = PointResult(point_id=task.point_id, exit_code=code, files=files, worker=_worker_name(),
                         attempt=attempt, seconds=round(time.monotonic() - started, 3))
    shutil.rmtree(attempt_dir, ignore_errors=True)
    return result


def _run_entry(task: PointTask, workspace: Path, patchsets: Path, attempt_dir: Path,
               env: Mapping[str, str], cancelled: Callable[[], bool]) -> int | None:
    """Sync the worker's workspace to the task's manifest pins, then run the task's module."""
    log = attempt_dir / "orch.log"
    sync = ["sync", "-q", "-m", task.manifest]
    if task.manifest_revision:
        sync += ["-b", task.manifest_revision]
    if task.manifest_file:
        sync += ["--manifest-file", task.manifest_file]
    code = run_orch(sync, workspace, env, log, cancelled)
    if code != 0:
        return POINT_CANNOT_TEST if code is not None else None
    (attempt_dir / "task").write_bytes(task.payload)
    return run_python([task.entry, str(attempt_dir / "task"), str(attempt_dir / "result"), str(workspace),
                       str(patchsets)], env, log, cancelled)


def _tail(log: Path, lines: int = 3) -> str:
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"


def worker_command(scheduler: str, name: str | None, directory: Path, mirror: str | None,
                   nthreads: int) -> tuple[list[str], dict[str, str]]:
    """`dask worker` with what orch needs: its cache directory and mirror in the environment.
    One thread per worker process by default: a point is a build plus a boot, already parallel."""
    argv = [sys.executable, "-m", "distributed.cli.dask_worker", scheduler, "--nthreads", str(nthreads),
            "--nworkers", "1", "--no-dashboard", "--local-directory", str(directory / "dask")]
    if name:
        argv += ["--name", name]
    env = dict(os.environ)
    env["ORCH_WORKER_DIR"] = str(directory)
    if mirror:
        env["ORCH_MIRROR"] = mirror
    return argv, env


WorkerSide = Callable[[Path, Path, Path, Path], None]


def entry_main(entry: str, argv: Sequence[str], run_on_worker: WorkerSide) -> int:
    """The ``python -m ENTRY TASK RESULT WORKSPACE PATCHSETS`` a task with an ``entry`` runs on
    a worker: one shape for every stage (sweep points, bisect steps); orch's errors keep their
    exit codes, any other exception is 128 (a bug), Ctrl-C (or the worker's death) is 130."""
    if len(argv) != 4:
        print(f"usage: python -m {entry} TASK RESULT WORKSPACE PATCHSETS", file=sys.stderr)
        return 2
    try:
        run_on_worker(*(Path(a) for a in argv))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except OrchError as error:
        print(f"error: {terminal_text(error.message)}", file=sys.stderr)
        return error.exit_code
    except Exception as error:  # a bug: 128, never 1 (a verdict) for the submitting side
        print(terminal_text(traceback.format_exc()), file=sys.stderr, end="")
        print(f"internal error: {terminal_text(f'{type(error).__name__}: {error}')}", file=sys.stderr)
        return EXIT_INTERNAL
    return 0


def write_result(result_file: Path, record: object) -> None:
    """The stage's result record, pickled, written whole or not at all."""
    tmp = result_file.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps(record))
    tmp.replace(result_file)
