"""Errors orch raises, and the exit codes scripts (and ``git bisect run``) can rely on.

Every error a user can cause carries one line naming the file, element or hunk at fault,
and optionally a hint; the CLI prints exactly that and exits with the error's code.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

EXIT_OK = 0
EXIT_FAIL = 1  # a test failed, an expectation was not met, or a check found problems; nothing else
EXIT_USAGE = 2  # bad input (arguments, manifest, patch, config), or a workspace state to resolve
EXIT_CANNOT_TEST = 125  # infrastructure trouble: `git bisect run` skips this revision
EXIT_INTERNAL = 128  # a bug in orch (an uncaught exception): `git bisect run` aborts on any code
# above 127 (1-127 but 125 would mark the revision bad); 128 is also what git's own fatal errors exit
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # SIGTERM (128 + 15, as a shell reports a process it killed); aborts a bisect

# The worst code wins when several results make one: bad input, then cannot-test, then a failure.
_SEVERITY = (EXIT_INTERNAL, EXIT_USAGE, EXIT_CANNOT_TEST, EXIT_FAIL)


def exit_code_for_verdict(verdict: str | None) -> int:
    """A boot's verdict as an exit code: ``pass`` 0, ``error`` (nothing learnt about the image)
    125, anything else (``fail``, ``timeout``, no verdict) 1, as seL4's CI counts timeouts."""
    return {"pass": EXIT_OK, "error": EXIT_CANNOT_TEST}.get(verdict or "", EXIT_FAIL)


def combined_exit_code(codes: Iterable[int]) -> int:
    """One exit code for several results: the most severe of them (0 when there are none)."""
    present = set(codes)
    return next((code for code in _SEVERITY if code in present), EXIT_OK)


@dataclass
class OrchError(Exception):
    """A failure with one clear line for the user and an optional hint."""

    message: str
    hint: str | None = None
    exit_code: int = EXIT_USAGE

    def __str__(self) -> str:
        return self.message


@dataclass
class InputError(OrchError):
    """Broken or hostile user input: manifest XML, patch files, patchset config, CLI args."""


@dataclass
class WorkspaceError(OrchError):
    """The workspace is not in a state the operation can proceed from without losing work."""


@dataclass
class InfraError(OrchError):
    """The machinery failed (git remote, Docker daemon, QEMU missing): the result says nothing
    about the code under test, so `git bisect run` should skip (exit 125)."""

    exit_code: int = EXIT_CANNOT_TEST


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``): stopped like Ctrl-C, so whatever orch started (QEMU in
    its own session, containers, ``git am``) is stopped and journals are left consistent;
    exit :data:`EXIT_TERMINATED`."""
