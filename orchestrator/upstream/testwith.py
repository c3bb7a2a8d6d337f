"""The "Test with:" lines seL4's CI reads (seL4/ci-actions ``scripts/get-prs``).

get-prs only looks at lines that *start* with ``Test with:`` (or ``test with``): a line
indented by even one space is ignored. References are ``org/repo#N`` for a pull request or
``org/repo@branch`` for a branch (a branch may contain ``/``, must start with a letter, digit
or ``_``); a list is separated by ``", "`` (``and`` is accepted too). We write the plain
comma-separated form only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_BRANCH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]*$")
PREFIX = "Test with:"


@dataclass(frozen=True)
class Ref:
    """A companion: a pull request (``number``) or, before it is opened, a branch."""

    repo: str  # "org/repo"
    number: int | None = None
    branch: str | None = None

    def render(self) -> str:
        if self.number is not None:
            return f"{self.repo}#{self.number}"
        if self.branch is None:
            raise ValueError(f"{self.repo}: a reference needs a PR number or a branch")
        return f"{self.repo}@{self.branch}"


def valid_repo(repo: str) -> bool:
    """``org/repo`` in the characters get-prs accepts."""
    parts = repo.split("/")
    return len(parts) == 2 and all(_NAME.match(p) for p in parts)


def valid_branch(branch: str) -> bool:
    return bool(_BRANCH.match(branch))


def render_line(refs: list[Ref]) -> str:
    """One line at column 0, or "" when there are no companions."""
    if not refs:
        return ""
    return f"{PREFIX} " + ", ".join(ref.render() for ref in refs)


def replace_line(body: str, line: str) -> str:
    """``body`` with its (first) column-0 "Test with:" line replaced by ``line`` (appended
    when it has none); other lines are kept as they are."""
    lines = body.splitlines()
    for i, existing in enumerate(lines):
        if existing.startswith(PREFIX):
            lines[i] = line
            return "\n".join(lines) + "\n"
    return body.rstrip("\n") + ("\n\n" + line if line else "") + "\n"
