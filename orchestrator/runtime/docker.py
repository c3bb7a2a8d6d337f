"""The Docker engine: the one place that imports the Docker SDK and connects to it.

The SDK (and the requests stack under it) is imported only when a command really talks to
Docker, so `orch status` and friends start fast. ``docker.from_env()`` honours DOCKER_HOST,
so a remote engine works like the local one; an engine that cannot be reached or used is
one clear :class:`InfraError` (exit 125: the revision could not be tested).
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import TYPE_CHECKING, cast

from orchestrator.errors import InfraError

if TYPE_CHECKING:
    from docker.client import DockerClient


def sdk_errors() -> ModuleType:
    """``docker.errors``, imported on first use."""
    import docker.errors

    return cast(ModuleType, docker.errors)


def engine_error(exc: BaseException) -> InfraError:
    """One clear line for an engine that cannot be reached or used."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if "Permission denied" in str(exc) or isinstance(exc, PermissionError):
        return InfraError(
            f"permission denied talking to the Docker engine at {host}",
            hint="add yourself to the 'docker' group (then log in again), or use --executor host",
        )
    return InfraError(
        f"cannot reach the Docker engine at {host}",
        hint="start it (systemctl start docker / dockerd), set DOCKER_HOST, or use --executor host",
    )


def connect() -> DockerClient:
    """A client for the engine DOCKER_HOST (or the local socket) names, checked with a ping."""
    from docker.client import DockerClient

    try:
        client = DockerClient.from_env()
        client.ping()
    except (sdk_errors().DockerException, OSError) as exc:
        raise engine_error(exc) from None
    return client
