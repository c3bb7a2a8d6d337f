"""A source tree: the project checkouts that patchsets apply to and builds read.

The user's synced workspace is one source tree; each build variant gets another, made of
cheap ``git worktree`` checkouts of the same projects. Patchset and build code take a
:class:`SourceTree`, so they never need to know which of the two they are working on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import InputError


@dataclass(frozen=True)
class ProjectCheckout:
    """One project of a tree: its manifest path, checkout directory and pinned SHA."""

    path: str  # the manifest's project path, e.g. "projects/seL4_projects_libs"
    directory: Path  # the checkout (its .git is a gitfile or symlink, never a directory)
    pinned: str  # the full SHA the manifest pins this project to, resolved at sync


@dataclass(frozen=True)
class SourceTree:
    """A set of project checkouts under one root, keyed by manifest path."""

    root: Path
    projects: dict[str, ProjectCheckout] = field(default_factory=dict)

    def project(self, path: str) -> ProjectCheckout:
        """The checkout for a manifest path; a clear error when the manifest has no such project."""
        key = path.strip("/")
        try:
            return self.projects[key]
        except KeyError:
            known = ", ".join(sorted(self.projects)) or "none"
            raise InputError(
                f"project '{key}' is not in the workspace manifest",
                hint=f"known project paths: {known}",
            ) from None
