"""Where orch's shipped data lives: manifests/, patchsets/ and docker/ of the source tree,
or their copies inside the installed wheel (``orchestrator/_shipped``)."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def shipped_dir(name: str) -> Path:
    """The shipped ``name`` directory (``manifests``, ``patchsets`` or ``docker``)."""
    installed = _PACKAGE / "_shipped" / name
    if installed.is_dir():
        return installed
    return _PACKAGE.parent / name


def data_file(*parts: str) -> Path:
    """A data file inside the package itself (console rules and the like)."""
    return _PACKAGE.joinpath("data", *parts)
