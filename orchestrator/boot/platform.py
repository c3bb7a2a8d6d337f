"""Platforms: how to start QEMU for a board, as data (``orchestrator/data/platforms/<name>.toml``:
the QEMU binary, its arguments, the default guest memory). Its console rules are separate
(``data/rules/<name>.toml``, read by :mod:`orchestrator.boot.console`)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import InputError
from orchestrator.shipped import data_file


@dataclass(frozen=True)
class PlatformSpec:
    """How to start QEMU for a platform."""

    name: str
    qemu: str
    args: tuple[str, ...]
    memory: str


def known_platforms() -> list[str]:
    return sorted(p.stem for p in data_file("platforms").glob("*.toml"))


def platform_file(platform: str) -> Path:
    """``data/platforms/<platform>.toml``; an unknown platform is bad input naming the known ones."""
    path = data_file("platforms", f"{platform}.toml")
    if not path.is_file():
        raise InputError(f"unknown platform {platform!r}",
                         hint=f"known platforms: {', '.join(known_platforms())}")
    return path


def load_platform(platform: str) -> PlatformSpec:
    """The QEMU settings of a shipped platform."""
    path = platform_file(platform)
    try:
        with path.open("rb") as handle:
            table = tomllib.load(handle)
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"{path}: not valid TOML: {err}") from None
    if not isinstance(table.get("qemu"), str):
        raise InputError(f"{path}: 'qemu' (the QEMU binary) is missing")
    return PlatformSpec(
        name=str(table.get("name", platform)),
        qemu=str(table["qemu"]),
        args=tuple(str(a) for a in table.get("args", [])),
        memory=str(table.get("memory", "1024")),
    )
