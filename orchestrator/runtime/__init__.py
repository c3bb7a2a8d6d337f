"""Where builds and boots run: the :class:`Runtime` protocol (``base``) and its two
implementations, ``host`` (this machine) and ``docker`` (containers of an image on the engine
the Docker CLI would use); ``toolchain_image`` builds that image."""

from __future__ import annotations

from orchestrator.errors import InputError
from orchestrator.runtime.base import Runtime

RUNTIMES = ("docker", "host")


def make_runtime(name: str, image: str) -> Runtime:
    """The runtime called ``name`` (``docker`` or ``host``); ``image`` is the container image."""
    if name == "docker":
        from orchestrator.runtime.docker import DockerRuntime

        return DockerRuntime(image=image)
    if name == "host":
        from orchestrator.runtime.host import HostRuntime

        return HostRuntime()
    raise InputError(f"unknown executor '{name}'", hint="use docker or host")
