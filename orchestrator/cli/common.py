"""Helpers shared by the command modules: finding the workspace, reading global options."""

from __future__ import annotations

import argparse
from pathlib import Path

from orchestrator.errors import InputError
from orchestrator.layout import is_workspace


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
        if is_workspace(candidate):
            return candidate
    return here


def add_manifest_options(parser: argparse.ArgumentParser) -> None:
    """``-m/-b/--manifest-file/--manifest-url``: the manifest options `sync` and `build` share."""
    parser.add_argument("-m", "--manifest", metavar="SOURCE",
                        help="a manifest XML file, or a manifest repository URL or path "
                        "(default: the recorded source, else the shipped seL4 camkes-vm-examples manifest)")
    parser.add_argument("-b", "--manifest-rev", metavar="REV",
                        help="manifest repository revision: a branch, tag, SHA (abbreviated too) "
                        "or anything git resolves unambiguously")
    parser.add_argument("--manifest-file", metavar="NAME", help="manifest file in the repository "
                        "(default: default.xml)")
    parser.add_argument("--manifest-url", metavar="URL",
                        help="URL relative remotes (fetch=\"../x\") resolve against when SOURCE is a file")
