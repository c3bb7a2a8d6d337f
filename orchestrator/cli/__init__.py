"""The ``orch`` command line: a thin layer that parses arguments, calls the library and prints.

Each command lives in its own module exposing ``register(subparsers, common)``; the module
sets ``func`` on its parser to a handler ``(args, ui) -> exit code``.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator import __version__

if TYPE_CHECKING:  # `orch --version` imports neither
    import argparse
    from types import FrameType

# command -> the module under orchestrator.cli that registers it, imported only when needed:
# `orch --version` and `orch sync` do not pay for Docker, QEMU or dask imports
COMMANDS: dict[str, str] = {
    "sync": "sync", "status": "status", "manifest": "manifest", "patchset": "patchset",
    "build": "build", "sweep": "sweep", "run": "run", "report": "report", "image": "image",
    "worker": "worker", "matrix": "matrix", "upstream": "upstream", "bisect": "bisect", "gc": "gc",
    "clean": "gc",
}
_VALUE_OPTIONS = frozenset({"-w", "--workspace"})  # global options that take a value


def wanted_command(argv: Sequence[str]) -> str | None:
    """The command named on the command line (the first word that is not an option)."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _VALUE_OPTIONS:
            skip = True
        elif arg == "--" or not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def common_options() -> argparse.ArgumentParser:
    """Options every command takes, before or after its name (``orch --json status`` or
    ``orch status --json``)."""
    import argparse

    common = argparse.ArgumentParser(add_help=False)
    s = argparse.SUPPRESS
    common.add_argument("-w", "--workspace", metavar="DIR", default=s,
                        help="workspace root (default: nearest directory upward holding .orch/, else .)")
    common.add_argument("--json", action="store_true", default=s, help="print a JSON document on stdout")
    common.add_argument("-q", "--quiet", action="store_true", default=s, help="no progress output")
    common.add_argument("-v", "--verbose", action="store_true", default=s, help="more output")
    common.add_argument("--no-color", action="store_true", default=s,
                        help="no colours or styles (also: NO_COLOR=1)")
    return common


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with ``argv`` naming a command, only that command's module is imported."""
    import argparse

    common = common_options()
    parser = argparse.ArgumentParser(
        prog="orch",
        parents=[common],
        description="Sync seL4 manifests, apply patchsets, build variants in Docker, boot them in QEMU.",
        epilog="exit codes: 0 ok/pass, 1 test failed or expectation unmet, 2 bad input, "
        "125 could not test (infrastructure), 128 internal error (a bug in orch), 130 interrupted",
    )
    parser.add_argument("--version", action="version", version=f"orch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = wanted_command(argv) if argv is not None else None
    modules = [COMMANDS[wanted]] if wanted else list(dict.fromkeys(COMMANDS.values()))
    for name in modules:
        importlib.import_module(f"orchestrator.cli.{name}").register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one orch command; its exit code. Whatever goes wrong, the code keeps its meaning for
    `git bisect run`: 1 only for a test that failed, 2 bad input (argparse's own errors too),
    125 could not test, 128 a bug in orch (any exception nobody expected, also while starting
    up or parsing), 130 interrupted, 143 terminated (SIGTERM)."""
    words = list(sys.argv[1:] if argv is None else argv)
    if "--version" in words and wanted_command(words) is None:
        print(f"orch {__version__}")  # before any import: start-up is the whole cost
        return 0
    with _sigterm_raises_terminated():
        return _main(words)


def _main(words: list[str]) -> int:
    from orchestrator.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated

    args: argparse.Namespace | None = None
    try:
        from orchestrator.workspace import gitops

        gitops.drop_repository_env(os.environ)  # e.g. GIT_DIR, exported by `git bisect run`
        parser = build_parser(words)
        args = parser.parse_args(words)  # SystemExit 2 on bad arguments, 0 after --help
        return _run(args)
    except Terminated:
        print("terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # a bug in orch: never exit 1 ("bad revision") for it
        return _internal_error(error, args, words)


@contextlib.contextmanager
def _sigterm_raises_terminated() -> Iterator[None]:
    """SIGTERM becomes :class:`Terminated` (a KeyboardInterrupt), so it is handled as Ctrl-C is:
    QEMU, which runs in a session of its own, was left running when orch simply died."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    from orchestrator.errors import Terminated

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    from orchestrator.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED, OrchError, Terminated
    from orchestrator.ui import UI

    ui = UI.create(
        quiet=getattr(args, "quiet", False),
        json_mode=getattr(args, "json", False),
        verbose=getattr(args, "verbose", False),
        color=not (getattr(args, "no_color", False) or os.environ.get("NO_COLOR")),
    )
    try:
        code: int = args.func(args, ui)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except OrchError as error:
        ui.error(error)
        return error.exit_code
    except Terminated:
        ui.err.print("terminated", style="bold red")
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        ui.err.print("interrupted", style="bold red")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return _stdout_closed()
    except SystemExit as stop:  # sys.exit() deep in a library: its code means nothing to a bisect
        if stop.code in (None, EXIT_OK):
            return EXIT_OK
        raise RuntimeError(f"a library called sys.exit({stop.code!r})") from stop


def _stdout_closed() -> int:
    """The reader went away (``orch status | head``): exit 0 quietly. stdout is pointed at
    /dev/null so the interpreter's last flush does not fail again."""
    from orchestrator.errors import EXIT_OK

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_OK


def _internal_error(error: Exception, args: argparse.Namespace | None, argv: list[str]) -> int:
    """One line on stderr naming the traceback file; exit 128 (aborts `git bisect run`). Never
    raises: whatever fails here (a read-only disk, a closed stderr) still ends in 128."""
    from orchestrator.cli.common import workspace_root
    from orchestrator.cli.crash import one_line, write_traceback
    from orchestrator.errors import EXIT_INTERNAL

    root: Path | None = None
    if args is not None:
        try:
            root = workspace_root(args)
        except Exception:  # the workspace option itself may be what is broken
            root = None
    try:
        where = f"traceback: {write_traceback(error, root, argv)}"
    except Exception:
        where = "the traceback could not be written"
    with contextlib.suppress(Exception):  # stderr is gone: the exit code still says it
        print(f"orch: internal error: {one_line(error)} (a bug in orch; {where})", file=sys.stderr)
    return EXIT_INTERNAL

if __name__ == "__main__":
    sys.exit(main())
