"""Helpers shared by the command modules: finding the workspace, reading global options."""

from __future__ import annotations

import argparse
from pathlib import Path

from orchestrator.errors import InputError

META_DIR = ".orch"


def workspace_root(args: argparse.Namespace) -> Path:
    """``-w DIR`` if given; else the nearest directory upward holding ``.orch/``; else ``.``."""
    explicit = getattr(args, "workspace", None)
    if explicit is not None:
        root = Path(explicit).expanduser().resolve()
        if root.exists() and not root.is_dir():
            raise InputError(f"--workspace {explicit}: not a directory")
        return root
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / META_DIR).is_dir():
            return candidate
    return here
