"""What the CLI does with an exception nobody expected (a bug in orch): one line on stderr
saying where the traceback was written, and exit 128, which aborts a ``git bisect run`` instead
of marking the revision bad (1-127 but 125) or skipping it (125)."""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from datetime import UTC, datetime
from pathlib import Path

from orchestrator import __version__, layout
from orchestrator.sanitize import terminal_text


def write_traceback(error: BaseException, root: Path | None, argv: list[str]) -> Path:
    """The traceback, the command line and orch's version in ``<root>/.orch/crash/`` when
    ``root`` is a workspace, else in a new file in the temporary directory."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    text = (f"orch {__version__}, python {sys.version.split()[0]}\n"
            f"command: orch {' '.join(argv)}\n\n"
            + "".join(traceback.format_exception(error)))
    if root is not None and layout.is_workspace(root):
        try:
            directory = layout.crash_dir(root)
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / f"{stamp}-{os.getpid()}.txt"
            path.write_text(text)
            return path
        except OSError:
            pass  # a read-only workspace: fall back to the temporary directory
    handle, name = tempfile.mkstemp(prefix=f"orch-crash-{stamp}-", suffix=".txt")
    with os.fdopen(handle, "w") as out:
        out.write(text)
    return Path(name)


def one_line(error: BaseException) -> str:
    """``Type: message`` on one line, through the sanitizer (the message may quote outside
    text: a git error, a file name): no escape sequence or control character reaches stderr."""
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    first = text.splitlines()[0] if text.splitlines() else text
    return terminal_text(first.replace("\t", " "))[:300]
