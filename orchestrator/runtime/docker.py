"""The Docker runtime: the one place that talks to a Docker engine, through the Docker SDK.

The engine is found the way the ``docker`` CLI finds it: ``DOCKER_HOST`` (``unix://``,
``tcp://``, ``ssh://user@host`` through the system's ``ssh``), else ``DOCKER_CONTEXT``, else
the current context of the Docker config (``docker context use``), else the local socket.
Every container orch makes is created and removed here (:func:`create_container`,
:func:`remove_container`): labelled ``orch.kind`` (build, boot, probe), killed on timeout and
Ctrl-C, and always removed. Builds run as the invoking uid:gid with a tmpfs HOME and no
network; boots get an interactive attach stream (stdin in, stdout and stderr out,
demultiplexed) so the console is read as it comes and the login session can type into it.
Directories are bind-mounted at the same paths, so on a remote engine they must exist at
those paths on the engine's machine. The SDK is imported only when a command really talks to
Docker, so ``orch status`` and friends start fast.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import shlex
import socket
import ssl
import struct
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

from orchestrator.errors import InfraError
from orchestrator.runtime.base import (
    POLL,
    Bind,
    CommandNotFound,
    Job,
    JobOutcome,
    Output,
    Process,
    RuntimeInfo,
    Started,
    StepWatcher,
    job_script,
    plain_script,
    stop_reason,
    stopped_outcome,
)
from orchestrator.ui import UI

if TYPE_CHECKING:
    from docker.client import DockerClient

CONTAINER_HOME = "/orch-home"
LABEL_KIND = "orch.kind"
BOOT_NAME_PREFIX = "orch-run-"
DEFAULT_SOCKET = "unix:///var/run/docker.sock"


# -- the engine -----------------------------------------------------------------------------------

def sdk_errors() -> ModuleType:
    """``docker.errors``, imported on first use."""
    import docker.errors

    return cast(ModuleType, docker.errors)


@dataclass(frozen=True)
class Engine:
    """Which engine to talk to and why: ``DOCKER_HOST``, a context, or the default socket."""

    host: str
    source: str  # "DOCKER_HOST", "context NAME" or "default"
    tls: Any = None

    def describe(self) -> str:
        return self.host if self.source in ("DOCKER_HOST", "default") else f"{self.host} ({self.source})"


def _current_context_name() -> str:
    if os.environ.get("DOCKER_CONTEXT"):
        return os.environ["DOCKER_CONTEXT"]
    from docker.context.config import get_current_context_name

    return str(get_current_context_name() or "default")  # the Docker config's currentContext


def resolve_engine() -> Engine:
    """The engine the ``docker`` CLI would use in this environment (``DOCKER_CONFIG`` names
    the config directory holding the contexts, as for the CLI)."""
    if os.environ.get("DOCKER_HOST"):
        return Engine(os.environ["DOCKER_HOST"], "DOCKER_HOST")
    name = _current_context_name()
    if name == "default":
        return Engine(DEFAULT_SOCKET, "default")
    from docker.context.context import Context

    try:
        context = Context.load_context(name)
    except Exception as exc:  # the SDK's ContextException and friends: a broken meta.json
        raise InfraError(f"Docker context {name!r} cannot be read: {str(exc)[:200]}") from None
    if context is None or not context.Host:
        raise InfraError(f"Docker context {name!r} not found",
                         hint="list them with `docker context ls`; or set DOCKER_HOST")
    return Engine(str(context.Host), f"context {name}", context.TLSConfig or None)


def engine_error(exc: BaseException, engine: Engine | None = None) -> InfraError:
    """One clear line for an engine that cannot be reached or used."""
    where = (engine or _engine_or_default()).describe()
    if "Permission denied" in str(exc) or isinstance(exc, PermissionError):
        return InfraError(
            f"permission denied talking to the Docker engine at {where}",
            hint="add yourself to the 'docker' group (then log in again), or use --executor host",
        )
    return InfraError(
        f"cannot reach the Docker engine at {where}",
        hint="start it (systemctl start docker / dockerd), set DOCKER_HOST, or use --executor host",
    )


def _engine_or_default() -> Engine:
    try:
        return resolve_engine()
    except InfraError:
        return Engine(os.environ.get("DOCKER_HOST", DEFAULT_SOCKET), "default")


def connect() -> DockerClient:
    """A client for the engine :func:`resolve_engine` names, checked with a ping."""
    from docker.client import DockerClient

    engine = resolve_engine()
    try:
        client = DockerClient(base_url=engine.host, tls=engine.tls or False, version="auto",
                              use_ssh_client=True)
        client.ping()
    except (sdk_errors().DockerException, OSError) as exc:
        raise engine_error(exc, engine) from None
    return client


# -- the one place containers are made and removed ---------------------------------------------------

_MISSING_BIND = re.compile(r"bind source path does not exist: ([^\s\")]+)")


def create_container(client: Any, image: str, command: Sequence[str], kind: str, *,
                     labels: dict[str, str] | None = None, binds: Sequence[Bind] = (),
                     **options: Any) -> Any:
    """A created (not started) container of ``image``, labelled ``orch.kind=<kind>``, with
    ``binds`` mounted at the same paths and no network."""
    from docker.types import Mount

    mounts = [Mount(target=str(b.path), source=str(b.path), type="bind", read_only=b.read_only)
              for b in binds]
    try:
        return client.containers.create(
            image, command=list(command), labels={LABEL_KIND: kind, **(labels or {})}, mounts=mounts,
            network_disabled=True, detach=True, **options,
        )
    except sdk_errors().APIError as exc:
        missing = _MISSING_BIND.search(str(exc))
        if missing is None:
            raise
        where = _engine_or_default().describe()
        raise InfraError(
            f"{missing.group(1)}: not found on the Docker engine's machine ({where})",
            hint="a remote engine sees its own file system: the workspace must exist there at the same "
            "path (see the README: what a remote engine must share)",
        ) from None


def remove_container(container: Any) -> None:
    """Kill (if running) and remove ``container``; an engine that is gone is not an error here."""
    with contextlib.suppress(sdk_errors().DockerException, OSError):
        container.remove(force=True)


def run_captured(client: Any, image: str, argv: Sequence[str]) -> bytes:
    """Run ``argv`` in a fresh container of ``image`` and return its output (a quick probe)."""
    container = create_container(client, image, argv, "probe")
    try:
        container.start()
        status = container.wait()
        output = bytes(container.logs(stdout=True, stderr=True))
        if int(status.get("StatusCode", -1)) != 0:
            raise sdk_errors().ContainerError(container, status.get("StatusCode"), argv, image,
                                              output.decode(errors="replace"))
        return output
    finally:
        remove_container(container)


def _split_image(image: str) -> tuple[str, str | None]:
    """``repo[:tag]`` or ``repo@digest`` -> (repository, tag-or-digest)."""
    if "@" in image:
        repo, _, digest = image.partition("@")
        return repo, digest
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        repo, _, tag = image.rpartition(":")
        return repo, tag
    return image, "latest"


# -- an attached container: the interactive process ---------------------------------------------------

class _AttachSocket:
    """The raw stream of ``POST /containers/{id}/attach``, whatever carries it: a unix or TCP
    socket, TLS, the ``ssh`` client's pipes, or a paramiko channel."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._pipe_out: int | None = None
        if isinstance(raw, socket.SocketIO):
            self._sock: Any = raw._sock  # type: ignore[attr-defined]
        elif hasattr(raw, "proc") and getattr(raw, "proc", None) is not None:  # ssh client pipes
            self._sock = raw
            self._pipe_out = raw.proc.stdout.fileno()
        else:
            self._sock = raw

    def fileno(self) -> int:
        return self._pipe_out if self._pipe_out is not None else int(self._sock.fileno())

    def recv(self) -> bytes:
        if self._pipe_out is not None:
            return os.read(self._pipe_out, 65536)
        data = bytes(self._sock.recv(65536))
        while isinstance(self._sock, ssl.SSLSocket) and self._sock.pending():
            data += self._sock.recv(65536)
        return data

    def send(self, data: bytes) -> None:
        self._sock.sendall(data)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._raw.close()


class ContainerProcess:
    """A started container with its attach stream: Docker's frames (an 8-byte header naming
    stdout or stderr, then the payload) are split back into the two streams."""

    def __init__(self, container: Any, stream: _AttachSocket) -> None:
        self.container = container
        self._stream = stream
        self._selector = selectors.DefaultSelector()
        self._selector.register(stream.fileno(), selectors.EVENT_READ)
        self._pending = b""
        self._open = True
        self._returncode: int | None = None
        self._lock = threading.Lock()
        self._killed = False

    @property
    def stdout_open(self) -> bool:
        return self._open

    @property
    def streams_open(self) -> bool:
        return self._open

    @property
    def returncode(self) -> int | None:
        return self._returncode

    def read(self, timeout: float) -> Output:
        out = Output()
        if not self._open:
            time.sleep(max(timeout, 0.0))
            return out
        if not self._selector.select(timeout=max(timeout, 0.0)):
            return out
        try:
            data = self._stream.recv()
        except (BlockingIOError, InterruptedError):
            return out
        except OSError:
            data = b""
        if not data:
            self._open = False
            return out
        self._pending += data
        while len(self._pending) >= 8:
            kind, size = struct.unpack(">BxxxL", self._pending[:8])
            if len(self._pending) < 8 + size:
                break
            payload, self._pending = self._pending[8:8 + size], self._pending[8 + size:]
            if kind == 2:
                out.stderr += payload
            else:
                out.stdout += payload
        return out

    def write(self, data: bytes) -> bool:
        try:
            self._stream.send(data)
            return True
        except OSError:
            return False

    def poll(self) -> int | None:
        if self._returncode is None and not self._open:
            return self.wait(2.0)
        return self._returncode

    def wait(self, timeout: float) -> int | None:
        if self._returncode is not None:
            return self._returncode
        try:
            status = self.container.wait(timeout=timeout)
        except Exception:  # the SDK's timeout (a requests ConnectionError) or a vanished engine
            return None
        code = int(status.get("StatusCode", -1))
        # The engine reports a process killed by signal N as 128+N; say it as Popen does.
        self._returncode = -(code - 128) if 128 < code < 160 else code
        return self._returncode

    def kill(self) -> None:
        with self._lock:
            if self._killed:
                return
            self._killed = True
            with contextlib.suppress(sdk_errors().DockerException, OSError):
                self.container.kill()
            self.wait(10.0)
            remove_container(self.container)

    def close(self) -> None:
        self._selector.close()
        self._stream.close()


# -- the runtime --------------------------------------------------------------------------------------

def _local_os_error(exc: BaseException) -> bool:
    """An OSError of this machine, not the engine's API (the SDK's and requests' errors are
    OSErrors too)."""
    from requests import RequestException

    return isinstance(exc, OSError) and not isinstance(
        exc, (ConnectionError, RequestException, sdk_errors().DockerException))


def _is_missing_program(exc: BaseException) -> bool:
    text = str(exc)
    return "executable file not found" in text or "no such file or directory" in text


@dataclass
class DockerRuntime:
    """Runs commands in containers of ``image`` on the engine :func:`resolve_engine` finds."""

    image: str
    name: str = "docker"
    user: str = field(default_factory=lambda: f"{os.getuid()}:{os.getgid()}")
    _client: Any = None
    _image_id: str | None = None
    _started: Started = field(default_factory=Started)

    def client(self) -> Any:
        if self._client is None:
            self._client = connect()
        return self._client

    def describe(self) -> str:
        return f"docker:{self.image}"

    def info(self, ui: UI) -> RuntimeInfo:
        client = self.client()
        try:
            image = client.images.get(self.image)
        except sdk_errors().ImageNotFound:
            image = self._pull(ui)
        except (sdk_errors().DockerException, OSError) as exc:
            raise engine_error(exc) from None
        self._image_id = image.id
        return RuntimeInfo(
            name=self.name,
            image=self.image,
            image_id=image.id,
            repo_digests=tuple(image.attrs.get("RepoDigests") or ()),
        )

    def _pull(self, ui: UI) -> Any:
        """Pull the image with a progress bar; a failed pull is one InfraError line."""
        repo, tag = _split_image(self.image)
        client = self.client()
        try:
            with ui.tracker() as tracker:
                task = tracker.add(f"pull {self.image}", total=None)
                layers: dict[str, tuple[int, int]] = {}
                for event in client.api.pull(repo, tag=tag, stream=True, decode=True):
                    if "error" in event:
                        raise sdk_errors().APIError(event["error"])
                    detail = event.get("progressDetail") or {}
                    if event.get("id") and detail.get("total"):
                        layers[event["id"]] = (int(detail.get("current", 0)), int(detail["total"]))
                        done = sum(c for c, _ in layers.values())
                        total = sum(t for _, t in layers.values())
                        tracker.advance(task, 0, status=f"{done / 1e6:.0f}/{total / 1e6:.0f} MB")
                tracker.done(task, "pulled")
            return client.images.get(self.image)
        except (sdk_errors().DockerException, OSError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InfraError(
                f"build image {self.image} is not available locally and pulling it failed: {reason[:200]}",
                hint=("build one offline with `orch image build` and use it with --image "
                      "orch-toolchain:camkes (the tag it makes; `orch image build --tag "
                      f"{self.image}` to use this name), or choose another with --image"),
            ) from None

    def _environment(self, job: Job) -> dict[str, str]:
        return {"HOME": CONTAINER_HOME, **job.env}

    # -- batch jobs (builds) --

    def run(self, job: Job) -> JobOutcome:
        client = self.client()
        watcher = StepWatcher(job.output)
        container = None
        try:
            container = create_container(
                client, self._image_id or self.image, ["sh", "-c", job_script(job)], "build",
                labels=job.labels, binds=job.binds, user=self.user, working_dir=str(job.workdir),
                environment=self._environment(job), tmpfs={CONTAINER_HOME: "rw,exec,mode=1777"},
            )
            container.start()
            return self._follow(container, job, watcher)
        except sdk_errors().ImageNotFound:
            raise InfraError(f"build image {self.image} disappeared from the engine") from None
        except (sdk_errors().DockerException, OSError) as exc:
            if _local_os_error(exc):  # ENOSPC writing the log: the caller says "disk full"
                raise
            raise InfraError(f"the Docker engine failed running the build: {str(exc)[:300]}") from None
        finally:
            if container is not None:
                remove_container(container)

    def _follow(self, container: Any, job: Job, watcher: StepWatcher) -> JobOutcome:
        """Stream the logs until the container exits, the deadline passes or the job is
        cancelled; kill the container in the last two cases."""
        errors: list[BaseException] = []

        def pump() -> None:
            try:
                for chunk in container.logs(stream=True, follow=True):
                    watcher(chunk)
            except BaseException as exc:  # an OSError (ENOSPC) writing the log, a broken stream
                errors.append(exc)

        thread = threading.Thread(target=pump, name=f"logs-{job.name}", daemon=True)
        thread.start()
        deadline = None if job.timeout is None else time.monotonic() + job.timeout
        stopped: str | None = None
        while thread.is_alive():
            thread.join(POLL)
            stopped = stop_reason(job, errors, deadline)
            if stopped:
                with contextlib.suppress(sdk_errors().DockerException):
                    container.kill()
                thread.join(5)
                break
        if errors:
            raise errors[0]
        if stopped:
            return stopped_outcome(stopped)
        status = container.wait()
        return JobOutcome(exit_code=int(status.get("StatusCode", -1)), failed_step=watcher.failed)

    def reproducer(self, job: Job) -> str:
        argv = ["docker", "run", "--rm", "--network", "none", "-u", self.user,
                "--tmpfs", f"{CONTAINER_HOME}:rw,exec,mode=1777"]
        for key, value in self._environment(job).items():
            argv += ["-e", f"{key}={value}"]
        for b in job.binds:
            argv += ["-v", f"{b.path}:{b.path}" + (":ro" if b.read_only else "")]
        argv += ["-w", str(job.workdir), self._image_id or self.image, "sh", "-c", plain_script(job)]
        return shlex.join(argv)

    # -- interactive processes (boots) --

    def start(self, argv: Sequence[str], cwd: Path, binds: Sequence[Bind],
              labels: dict[str, str] | None = None) -> Process:
        return self._started.add(lambda: self._start(argv, cwd, binds, labels or {}))

    def _start(self, argv: Sequence[str], cwd: Path, binds: Sequence[Bind],
               labels: dict[str, str]) -> Process:
        client = self.client()
        options: dict[str, Any] = {
            "labels": labels, "binds": binds, "working_dir": str(cwd), "stdin_open": True, "tty": False,
            "name": f"{BOOT_NAME_PREFIX}{uuid.uuid4().hex[:12]}",
        }
        try:
            try:
                container = create_container(client, self.image, argv, "boot", **options)
            except sdk_errors().ImageNotFound:
                self._pull(UI.silent())
                container = create_container(client, self.image, argv, "boot", **options)
        except (sdk_errors().DockerException, OSError) as exc:
            if isinstance(exc, InfraError):
                raise
            raise InfraError(f"the Docker engine cannot create a container of {self.image}: "
                             f"{str(exc)[:300]}") from None
        try:
            # Attached before it starts, so not one byte of the console is missed.
            raw = client.api.attach_socket(container.id, params={
                "stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            container.start()
        except (sdk_errors().DockerException, OSError) as exc:
            remove_container(container)
            if _is_missing_program(exc):
                raise CommandNotFound(f"{argv[0]}: not found in {self.image}") from None
            raise InfraError(f"the Docker engine cannot start {argv[0]} in {self.image}: "
                             f"{str(exc)[:300]}") from None
        except BaseException:  # Ctrl-C while it starts: it must not outlive us
            remove_container(container)
            raise
        return ContainerProcess(container, _AttachSocket(raw))

    def stop_all(self) -> None:
        self._started.stop_all()
