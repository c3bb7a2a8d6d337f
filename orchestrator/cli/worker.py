"""`orch worker SCHEDULER`: start a Dask worker that can run orch's points (see
:mod:`orchestrator.cluster.worker`): `dask worker` with orch's cache directory and mirror in its
environment, one point at a time by default."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from orchestrator.cluster.worker import worker_command
from orchestrator.errors import EXIT_INTERRUPTED, InfraError, InputError
from orchestrator.sanitize import terminal_bytes
from orchestrator.ui import UI

STOP_SECONDS = 30.0  # a Ctrl-C'd dask worker's time to leave the scheduler


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "worker",
        parents=[common],
        help="start a Dask worker for `--cluster` runs of build, sweep and bisect",
        description="Start `dask worker SCHEDULER` with what orch's points need: ORCH_WORKER_DIR "
        "(cached workspaces and attempts; default ~/.cache/orch-worker) and ORCH_MIRROR (bare "
        "mirrors the workspaces sync from). The machine needs orch, git, and a Docker engine or "
        "the host build tools and QEMU. Start the scheduler with `dask scheduler` (port 8786).",
        epilog="example: dask scheduler & orch worker tcp://build-host:8786 --mirror /srv/seL4-mirror",
    )
    parser.add_argument("scheduler", metavar="SCHEDULER", help="the Dask scheduler, e.g. tcp://host:8786")
    parser.add_argument("--dir", type=Path, metavar="DIR", help="cache directory (ORCH_WORKER_DIR)")
    parser.add_argument("--mirror", metavar="DIR", help="bare mirrors to sync from (ORCH_MIRROR)")
    parser.add_argument("--name", metavar="NAME", help="the worker's name on the scheduler")
    parser.add_argument("--nthreads", type=int, default=1, metavar="N",
                        help="points at once on this worker (default 1)")
    parser.add_argument("--print", dest="print_only", action="store_true",
                        help="print the dask worker command and environment instead of running it")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace, ui: UI) -> int:
    if args.nthreads < 1:
        raise InputError(f"--nthreads {args.nthreads}: must be at least 1")
    directory = (args.dir or Path(os.environ.get("ORCH_WORKER_DIR") or
                                  Path.home() / ".cache" / "orch-worker")).expanduser().resolve()
    mirror = args.mirror or os.environ.get("ORCH_MIRROR")
    if mirror and not Path(mirror).expanduser().is_dir():
        raise InputError(f"--mirror {mirror}: not a directory")
    argv, env = worker_command(args.scheduler, args.name, directory, mirror, args.nthreads)
    if args.print_only:
        ui.result({"argv": argv, "ORCH_WORKER_DIR": env["ORCH_WORKER_DIR"],
                   "ORCH_MIRROR": env.get("ORCH_MIRROR")}, " ".join(argv))
        return 0
    directory.mkdir(parents=True, exist_ok=True)
    try:
        code = run_sanitized(argv, env)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except OSError as error:
        raise InfraError(f"cannot start the Dask worker ({argv[0]}): {error.strerror}") from None
    return worker_exit_code(code)


def run_sanitized(argv: list[str], env: dict[str, str]) -> int:
    """Run ``argv`` with its output (dask's log, which quotes tasks' errors: git's messages,
    patch text) passed line by line through the sanitizer to stderr; its exit status. On
    Ctrl-C (which reaches it too) it is given time to leave the scheduler, then killed."""
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            sys.stderr.write(terminal_bytes(line))
            sys.stderr.flush()
        return proc.wait()
    except KeyboardInterrupt:
        try:
            proc.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise


def worker_exit_code(code: int) -> int:
    """`dask worker`'s exit status as orch's: 0 and Ctrl-C (130, or killed by SIGINT) keep
    their meaning; anything else is infrastructure (125), never 1 ("test failed")."""
    if code in (0, EXIT_INTERRUPTED, -signal.SIGINT):
        return EXIT_INTERRUPTED if code else 0
    raise InfraError(f"the Dask worker exited with status {code}",
                     hint="its own messages above say why (scheduler unreachable, bad option)")
