"""The ``orch`` command line: a thin layer that parses arguments, calls the library and prints.

Each command lives in its own module exposing ``register(subparsers, common)``; the module
sets ``func`` on its parser to a handler ``(args, ui) -> exit code``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from orchestrator import __version__
from orchestrator.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, OrchError

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
    words = list(sys.argv[1:] if argv is None else argv)
    if "--version" in words and wanted_command(words) is None:
        print(f"orch {__version__}")  # before any import: start-up is the whole cost
        return 0
    from orchestrator.ui import UI
    from orchestrator.workspace import gitops

    gitops.drop_repository_env(os.environ)  # e.g. GIT_DIR, exported by `git bisect run`
    parser = build_parser(words)
    args = parser.parse_args(words)
    ui = UI.create(
        quiet=getattr(args, "quiet", False),
        json_mode=getattr(args, "json", False),
        verbose=getattr(args, "verbose", False),
        color=not getattr(args, "no_color", False),
    )
    try:
        code: int = args.func(args, ui)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except OrchError as error:
        ui.error(error)
        return error.exit_code
    except KeyboardInterrupt:
        ui.err.print("interrupted", style="bold red")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return _stdout_closed()
    except Exception as error:  # a bug in orch: never exit 1 ("bad revision") for it
        return _internal_error(error, args, list(argv) if argv is not None else sys.argv[1:])


def _stdout_closed() -> int:
    """The reader went away (``orch status | head``): exit 0 quietly. stdout is pointed at
    /dev/null so the interpreter's last flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_OK


def _internal_error(error: Exception, args: argparse.Namespace, argv: list[str]) -> int:
    """One line on stderr naming the traceback file; exit 128 (aborts `git bisect run`)."""
    from orchestrator.cli.common import workspace_root
    from orchestrator.cli.crash import one_line, write_traceback

    try:
        root: Path | None = workspace_root(args)
    except Exception:  # the workspace option itself may be what is broken
        root = None
    path = write_traceback(error, root, argv)
    print(f"orch: internal error: {one_line(error)} (a bug in orch; traceback: {path})", file=sys.stderr)
    return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
