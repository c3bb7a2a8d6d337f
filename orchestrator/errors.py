"""Errors orch raises, and the exit codes scripts (and ``git bisect run``) can rely on.

Every error a user can cause carries one line naming the file, element or hunk at fault,
and optionally a hint; the CLI prints exactly that and exits with the error's code.
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_FAIL = 1  # a test failed, or an expectation was not met
EXIT_USAGE = 2  # bad input: arguments, manifest, patch, config
EXIT_CANNOT_TEST = 125  # infrastructure trouble: `git bisect run` skips this revision
EXIT_INTERRUPTED = 130


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
