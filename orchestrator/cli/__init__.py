"""The ``orch`` command line: a thin layer that parses arguments, calls the library and prints.

Each command lives in its own module exposing ``register(subparsers, common)``; the module
sets ``func`` on its parser to a handler ``(args, ui) -> exit code``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from orchestrator import __version__
from orchestrator.cli import (
    bisect,
    build,
    image,
    manifest,
    matrix,
    patchset,
    report,
    run,
    status,
    sweep,
    sync,
    upstream,
    worker,
)
from orchestrator.errors import EXIT_INTERRUPTED, EXIT_USAGE, OrchError
from orchestrator.ui import UI
from orchestrator.workspace import gitops

COMMAND_MODULES = (sync, status, manifest, patchset, build, sweep, bisect, run, report, image, worker, matrix,
                   upstream)


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


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    parser = argparse.ArgumentParser(
        prog="orch",
        parents=[common],
        description="Sync seL4 manifests, apply patchsets, build variants in Docker, boot them in QEMU.",
        epilog="exit codes: 0 ok/pass, 1 test failed or expectation unmet, 2 bad input, "
        "125 could not test (infrastructure), 130 interrupted",
    )
    parser.add_argument("--version", action="version", version=f"orch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.register(sub, common)
    return parser




def main(argv: Sequence[str] | None = None) -> int:
    gitops.drop_repository_env(os.environ)  # e.g. GIT_DIR, exported by `git bisect run`
    parser = build_parser()
    args = parser.parse_args(argv)
    ui = UI.create(
        quiet=getattr(args, "quiet", False),
        json_mode=getattr(args, "json", False),
        verbose=getattr(args, "verbose", False),
        color=not getattr(args, "no_color", False),
    )
    try:
        code: int = args.func(args, ui)
        return code
    except OrchError as error:
        ui.error(error)
        return error.exit_code
    except KeyboardInterrupt:
        ui.err.print("interrupted", style="bold red")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
