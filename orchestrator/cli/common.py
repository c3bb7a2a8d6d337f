"""Helpers shared by the command modules: finding the workspace, reading global options,
declaring the options several commands share."""

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


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def add_build_options(parser: argparse.ArgumentParser, *, image_help: str = "build image",
                      boot_in_help: str = "where QEMU runs",
                      cmake_help: str = "extra CMake option (repeatable)",
                      patchsets_help: str = "extra patchset directory (repeatable)") -> None:
    """``--executor/--image/--boot-in/--timeout/--cmake/--patchsets``: where and how the points of
    `build`, `bisect` and `sweep` are built and booted (checked by :func:`check_build_options`)."""
    parser.add_argument("--executor", choices=("docker", "host"), default="docker",
                        help="where builds run (default: docker)")
    parser.add_argument("--image", metavar="IMG", help=image_help)
    parser.add_argument("--boot-in", choices=("auto", "host", "docker"), default="auto", help=boot_in_help)
    parser.add_argument("--timeout", type=float, metavar="SECONDS", help="per-boot timeout")
    parser.add_argument("--cmake", action="append", default=[], metavar="-DNAME=VALUE", help=cmake_help)
    parser.add_argument("--patchsets", action="append", default=[], metavar="DIR", help=patchsets_help)


def check_build_options(args: argparse.Namespace) -> None:
    """The checks argparse cannot make on :func:`add_build_options`' values."""
    if args.timeout is not None and args.timeout <= 0:
        raise InputError(f"--timeout {args.timeout:g}: must be positive")
