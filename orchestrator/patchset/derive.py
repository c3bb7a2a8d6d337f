"""The ``[build]`` table an imported patchset gets: app, platform and CMake options read from
the files its patches touch (``apps/<arch>/<app>/<platform>/...`` in camkes-vm-examples), else
the shipped patchsets' (vm_minimal on qemu-arm-virt), with a baseline variant without it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

DEFAULT_APP = "vm_minimal"
DEFAULT_PLATFORM = "qemu-arm-virt"
KNOWN_PLATFORMS = ("qemu-arm-virt", "odroidc2", "exynos5422", "exynos5410", "tx1", "tx2", "zcu102",
                   "rpi4", "imx8mm-evk", "maaxboard", "pc99")


@dataclass(frozen=True)
class DerivedBuild:
    build: dict[str, Any]
    variants: dict[str, Any]
    reason: str  # what it was read from, for the message


def _from_paths(paths: Iterable[str]) -> tuple[str | None, str | None, str | None]:
    """(app, arch, platform) from ``apps/<arch>/<app>/[<platform>/]...`` paths."""
    app = arch = platform = None
    for path in paths:
        parts = PurePosixPath(path).parts
        if len(parts) >= 3 and parts[0] == "apps":
            arch, app = parts[1], parts[2]
            platform = next((p for p in parts[3:] if p in KNOWN_PLATFORMS), platform)
    return app, arch, platform


def derive_build(name: str, requires: list[str], touched: Iterable[str]) -> DerivedBuild:
    """The ``[build]`` table and variants for patchset ``name`` touching ``touched`` paths."""
    app, arch, platform = _from_paths(touched)
    said = []
    if app:
        said.append(f"app {app} from apps/{arch}/{app}/")
    if platform:
        said.append(f"platform {platform} from the files it touches")
    app, platform = app or DEFAULT_APP, platform or DEFAULT_PLATFORM
    if len(said) < 2:
        said.append("the rest as the shipped patchsets (vm_minimal on qemu-arm-virt)")
    cmake = [f"-DCAMKES_VM_APP={app}", f"-DPLATFORM={platform}"]
    if arch != "x86" and platform != "pc99":
        cmake.append("-DAARCH64=1")
    variants = {"base": {"patchsets": list(requires)}, name: {"patchsets": [*requires, name]}}
    return DerivedBuild({"app": app, "platform": platform, "cmake": cmake}, variants,
                        "; ".join(said) + f"; variants: base ({', '.join(requires) or 'no patchset'})"
                        f" and {name}")
