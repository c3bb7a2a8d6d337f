"""A Docker engine that is not the local default socket: builds and boots both reach it the
way the ``docker`` CLI would (``DOCKER_HOST=tcp://``, ``DOCKER_HOST=ssh://`` through the
system's ssh client, the current Docker context), and the workspace is mounted at the same
path there. The "remote" engine is this machine's, behind a TCP relay (counting its
connections, so a test knows the traffic went through it) or behind an ``ssh`` stand-in that
runs ``docker system dial-stdio`` locally."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.boot.qemu import RunSpec, run_image
from orchestrator.build.builder import BuildContext, build_variant
from orchestrator.errors import InfraError
from orchestrator.runtime.base import Bind, Job, Step
from orchestrator.runtime.docker import DockerRuntime, resolve_engine
from orchestrator.ui import UI
from tests.conftest import require_tools
from tests.support.baremetal import build_scenario
from tests.support.build import make_build_workspace

pytestmark = pytest.mark.docker

LOCAL_SOCKET = "/var/run/docker.sock"


class Relay:
    """A loopback TCP port relaying every connection to the local engine's unix socket."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections = 0
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            engine = socket.socket(socket.AF_UNIX)
            engine.connect(LOCAL_SOCKET)
            for a, b in ((client, engine), (engine, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._stop = True
        self.server.close()


@pytest.fixture
def relay(docker_client: object) -> Iterator[Relay]:
    if not Path(LOCAL_SOCKET).exists():
        pytest.skip(f"the relay needs the engine at {LOCAL_SOCKET}")
    relay = Relay()
    yield relay
    relay.close()


def build_and_boot(base: Path, build_image: str, qemu_image: str) -> None:
    """One build in a container and one boot of its image in a container, on whatever engine
    the environment names; both must work and leave the image in the workspace."""
    require_tools("qemu-system-aarch64")
    ws = make_build_workspace(base)
    ctx = BuildContext(root=ws.root, tree=ws.tree, spec=ws.spec(), runtime=DockerRuntime(image=build_image))
    result = build_variant(ctx, ws.spec().variant("largepage"), ws.chain(["vm-2g", "largepage"]))
    assert result.ok and result.boot_image is not None  # written through the bind mount, same path
    assert result.metadata["executor"]["name"] == "docker"
    record = run_image(RunSpec(image=result.boot_image, memory="2048", login=None,
                               runtime=DockerRuntime(image=qemu_image)), UI.silent())
    assert (record.verdict, record.launcher) == ("pass", f"docker:{qemu_image}")


def test_docker_host_tcp_is_used_by_builds_and_boots(relay: Relay, build_image: str, qemu_image: str,
                                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", relay.url)
    assert resolve_engine().host == relay.url
    build_and_boot(tmp_path, build_image, qemu_image)
    assert relay.connections >= 2


def test_the_current_docker_context_is_used(relay: Relay, qemu_image: str, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "docker-config"
    meta = config / "contexts" / "meta" / hashlib.sha256(b"orch-remote").hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps({
        "Name": "orch-remote", "Metadata": {},
        "Endpoints": {"docker": {"Host": relay.url, "SkipTLSVerify": False}}}))
    (config / "config.json").write_text(json.dumps({"currentContext": "orch-remote"}))
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    engine = resolve_engine()
    assert (engine.host, engine.source) == (relay.url, "context orch-remote")
    require_tools("aarch64-linux-gnu-gcc")
    image = build_scenario("login", tmp_path)
    record = run_image(RunSpec(image=image, memory="512", login=None,
                               runtime=DockerRuntime(image=qemu_image)), UI.silent())
    assert record.verdict == "pass"
    assert relay.connections >= 1
    # DOCKER_CONTEXT names another one, which does not exist: one clear line
    monkeypatch.setenv("DOCKER_CONTEXT", "no-such-context")
    with pytest.raises(InfraError, match="Docker context 'no-such-context' not found"):
        resolve_engine()


FAKE_SSH = """#!/bin/sh
# Stands in for ssh: drops the options and the host, runs the remote command here.
echo "$@" >> "$(dirname "$0")/calls"
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do shift; done
shift; shift
unset DOCKER_HOST DOCKER_CONTEXT
exec sh -c "$1"
"""


def test_docker_host_ssh_goes_through_the_ssh_client(build_image: str, qemu_image: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    require_tools("docker")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(FAKE_SSH)
    (bin_dir / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DOCKER_HOST", "ssh://builder@engine.example")
    build_and_boot(tmp_path / "work", build_image, qemu_image)
    calls = (bin_dir / "calls").read_text().splitlines()
    assert calls and all("engine.example docker system dial-stdio" in c for c in calls)


def test_a_path_the_engine_cannot_see_is_one_infra_line(base_image: str, tmp_path: Path) -> None:
    """What a remote engine without the shared workspace does: the engine has no such path."""
    unseen = tmp_path / "not-on-the-engine"
    job = Job(name="x", workdir=Path("/"), steps=[Step("s", ("true",))], output=lambda _: None,
              binds=[Bind(unseen)])
    runtime = DockerRuntime(image=base_image)
    for attempt in (lambda: runtime.run(job), lambda: runtime.start(["true"], Path("/"), [Bind(unseen)])):
        with pytest.raises(InfraError) as caught:
            attempt()
        assert caught.value.message.startswith(f"{unseen}: not found on the Docker engine's machine")
        assert caught.value.hint and "same path" in caught.value.hint
