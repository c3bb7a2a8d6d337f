"""The toolchain image: building orch's seL4/CAmkES build image from the shipped ``docker/``
directory with the Docker SDK, on any Debian bookworm base, with no Docker Hub access.

This module owns: preparing the Python wheels the ``camkes`` stage installs offline (built
on the host with ``pip wheel`` into a cache, because pip inside a container may not reach
the package index), assembling a build context, streaming the build, labelling the result
so an unchanged image is reused by tag, and listing/inspecting the images it made.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import parse_wheel_filename

from orchestrator.digest import Hasher, sha256_bytes
from orchestrator.errors import InfraError, InputError
from orchestrator.runtime.docker import connect, run_captured, sdk_errors
from orchestrator.shipped import shipped_dir
from orchestrator.ui import UI

if TYPE_CHECKING:
    from docker.client import DockerClient

STAGES = ("build-min", "camkes")
DEFAULT_TARGET = "camkes"
DEFAULT_BASE_IMAGE = "debian:bookworm"
DEFAULT_REPOSITORY = "orch-toolchain"
PYTHON_REQUIREMENTS = ("sel4-deps", "camkes-deps")
WHEEL_STAGES = frozenset({"camkes"})  # stages that install the wheels

LABEL_PREFIX = "org.orch.toolchain"
LABEL_KEY = f"{LABEL_PREFIX}.key"
LABEL_TARGET = f"{LABEL_PREFIX}.target"
LABEL_BASE = f"{LABEL_PREFIX}.base-image"
LABEL_BASE_ID = f"{LABEL_PREFIX}.base-image-id"
LABEL_CONTEXT = f"{LABEL_PREFIX}.context-sha256"
LABEL_WHEELS = f"{LABEL_PREFIX}.wheels"

LOG_TAIL_LINES = 20


@dataclass(frozen=True)
class ImageSpec:
    """What to build: the Dockerfile stage, its base, the tag, and where the wheels come from.

    ``wheels``: True prepares them on the host (``pip wheel``); False leaves the context's
    ``wheels/`` empty so the image's pip uses the package index. ``wheels_dir`` uses
    wheels already prepared there instead of running pip.
    """

    base_image: str = DEFAULT_BASE_IMAGE
    target: str = DEFAULT_TARGET
    tag: str | None = None
    wheels: bool = True
    wheels_dir: Path | None = None
    requirements: tuple[str, ...] = PYTHON_REQUIREMENTS
    docker_dir: Path = field(default_factory=lambda: shipped_dir("docker"))

    @property
    def resolved_tag(self) -> str:
        return self.tag or f"{DEFAULT_REPOSITORY}:{self.target}"

    @property
    def needs_wheels(self) -> bool:
        return self.target in WHEEL_STAGES and (self.wheels or self.wheels_dir is not None)


@dataclass(frozen=True)
class ToolchainImage:
    """A built (or reused) toolchain image."""

    tag: str
    image_id: str
    target: str
    base_image: str
    cached: bool
    duration_s: float
    size_bytes: int
    wheels: list[str]
    log_path: Path | None


def cache_root() -> Path:
    """orch's per-user cache directory (``$XDG_CACHE_HOME/orch`` or ``~/.cache/orch``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "orch"


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


# --- wheels -------------------------------------------------------------------------------


def wheel_cache_dir(requirements: Iterable[str], image_python: str) -> Path:
    """Where wheels for these requirements, the image's Python and this machine are kept."""
    key = sha256_bytes("\n".join(sorted(requirements)))[:16]
    return cache_root() / "wheels" / f"py{image_python}-{platform.machine()}-{key}"


def prepare_wheels(requirements: tuple[str, ...], image_python: str, ui: UI,
                   refresh: bool = False) -> Path:
    """Build wheels for ``requirements`` and all their dependencies with the host's pip,
    fit for the image's Python version ``image_python`` (e.g. ``3.11.2``), once; later
    calls reuse the cache. Returns the directory holding the ``.whl`` files."""
    target = wheel_cache_dir(requirements, image_python)
    complete = target / ".complete"
    if complete.is_file() and not refresh:
        ui.info(f"wheels: reusing {len(list_wheels(target))} cached in {target}")
        return target
    if sys.version_info[:2] != tuple(int(p) for p in image_python.split(".")[:2]):
        ui.warn(f"host Python is {platform.python_version()}, the image's {image_python}: "
                "binary wheels built on the host may not install in the image")
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        run_pip(["wheel", "--wheel-dir", str(staging), *requirements], ui, " ".join(requirements))
        fit_wheels_to_python(staging, image_python, ui)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    complete.write_text("\n".join(requirements) + "\n")
    return target


def run_pip(args: list[str], ui: UI, what: str) -> None:
    """Run the host's pip; ``what`` names the packages for the error line."""
    command = [sys.executable, "-m", "pip", *args]
    ui.info(f"wheels: pip {' '.join(args)}")
    result = subprocess.run(command, capture_output=True, text=True, errors="replace", check=False)
    if result.returncode != 0:
        tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-3:])
        raise InfraError(
            f"pip {args[0]} {what} failed on the host: {tail}",
            hint="give prepared wheels with --wheels-dir DIR, or --no-wheels if the "
            "container can reach the package index",
        )


def requires_python(wheel: Path) -> str | None:
    """A wheel's ``Requires-Python`` metadata, if it has one."""
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        if not names:
            return None
        for line in archive.read(names[0]).decode("utf-8", "replace").splitlines():
            if not line.strip():
                break
            if line.lower().startswith("requires-python:"):
                return line.split(":", 1)[1].strip()
    return None


def unfit_wheels(directory: Path, python_version: str) -> list[Path]:
    """Wheels whose ``Requires-Python`` excludes ``python_version``."""
    unfit = []
    for wheel in sorted(directory.glob("*.whl")):
        spec = requires_python(wheel)
        try:
            if spec and python_version not in SpecifierSet(spec):
                unfit.append(wheel)
        except InvalidSpecifier:
            continue
    return unfit


def fit_wheels_to_python(directory: Path, python_version: str, ui: UI) -> None:
    """Replace wheels the host's (newer) Python accepted but the image's rejects with the
    newest release of the same project that accepts it (pip decides, ``--no-deps``)."""
    for wheel in unfit_wheels(directory, python_version):
        project = str(parse_wheel_filename(wheel.name)[0])
        ui.info(f"wheels: {wheel.name} needs another Python than {python_version}: picking an older release")
        wheel.unlink()
        with tempfile.TemporaryDirectory(prefix="orch-wheel-") as tmp:
            download = ["download", "--no-deps", "--python-version", python_version, "--dest", tmp, project]
            run_pip(download, ui, project)
            for item in Path(tmp).iterdir():
                if item.suffix == ".whl":
                    shutil.copy2(item, directory / item.name)
                else:  # an sdist: build it
                    run_pip(["wheel", "--no-deps", "--wheel-dir", str(directory), str(item)], ui, project)
    still = unfit_wheels(directory, python_version)
    if still:
        raise InfraError(f"no release of {', '.join(w.name for w in still)} supports Python {python_version}")


def list_wheels(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.whl"))


# --- build context ------------------------------------------------------------------------


def context_files(docker_dir: Path) -> list[Path]:
    """The shipped files that make up the build context (never wheel files)."""
    if not (docker_dir / "Dockerfile").is_file():
        raise InputError(f"{docker_dir}: no Dockerfile there")
    return sorted(
        p for p in docker_dir.rglob("*")
        if p.is_file() and p.suffix != ".whl" and "__pycache__" not in p.parts
    )


def context_digest(docker_dir: Path, wheels: Iterable[str]) -> str:
    """sha256 over the Dockerfile directory's files and the names of the wheels used."""
    digest = Hasher()
    for path in context_files(docker_dir):
        digest.update(str(path.relative_to(docker_dir)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    for name in sorted(wheels):
        digest.update(b"wheel\0" + name.encode() + b"\0")
    return digest.hexdigest()


def assemble_context(docker_dir: Path, wheels_dir: Path | None, dest: Path) -> None:
    """Copy the Dockerfile directory into ``dest`` with ``wheels/`` holding exactly the
    wheels to install (none when ``wheels_dir`` is None)."""
    for path in context_files(docker_dir):
        out = dest / path.relative_to(docker_dir)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, out)
    wheels_out = dest / "wheels"
    wheels_out.mkdir(exist_ok=True)
    if wheels_dir is not None:
        for wheel in wheels_dir.glob("*.whl"):
            shutil.copy2(wheel, wheels_out / wheel.name)


# --- building -----------------------------------------------------------------------------


def resolve_base(client: DockerClient, base_image: str, ui: UI) -> str:
    """The base image's ID, pulling it when absent; a clear error when it can't be had."""
    try:
        return str(client.images.get(base_image).id)
    except sdk_errors().ImageNotFound:
        pass
    except sdk_errors().APIError as error:
        raise InfraError(f"docker: cannot inspect {base_image}: {first_line(str(error))}") from error
    ui.info(f"base image {base_image} not present: pulling")
    try:
        return str(client.images.pull(base_image).id)
    except sdk_errors().DockerException as error:
        raise InputError(
            f"base image {base_image} is not present and cannot be pulled: {first_line(str(error))}",
            hint="make one without a registry: debootstrap --variant=minbase bookworm DIR && "
            "tar -C DIR -c . | docker import - NAME, then --base-image NAME",
        ) from error


def find_image(client: DockerClient, tag: str) -> Any | None:
    try:
        return client.images.get(tag)
    except sdk_errors().ImageNotFound:
        return None


def ensure_image(spec: ImageSpec, ui: UI, *, rebuild: bool = False, no_cache: bool = False,
                 client: DockerClient | None = None) -> ToolchainImage:
    """Build ``spec`` unless an image with its tag and the same inputs (Dockerfile
    directory, base image ID, target, wheels) exists already; return it either way.
    ``no_cache`` rebuilds every layer (fresh apt packages), implying ``rebuild``."""
    if spec.target not in STAGES:
        raise InputError(f"--target {spec.target}: unknown stage (choose from {', '.join(STAGES)})")
    client = client or connect()
    base_id = resolve_base(client, spec.base_image, ui)
    wheels_dir = select_wheels(spec, ui, client)
    wheels = list_wheels(wheels_dir) if wheels_dir else []
    context_sha = context_digest(spec.docker_dir, wheels)
    key = sha256_bytes(f"{spec.target}\0{base_id}\0{context_sha}")
    tag = spec.resolved_tag
    existing = find_image(client, tag)
    if existing is not None and not (rebuild or no_cache) and existing.labels.get(LABEL_KEY) == key:
        ui.info(f"image {tag}: up to date ({short_id(existing.id)})")
        return describe(existing, tag, spec, wheels, cached=True, duration_s=0.0, log_path=None)
    labels = {
        LABEL_KEY: key,
        LABEL_TARGET: spec.target,
        LABEL_BASE: spec.base_image,
        LABEL_BASE_ID: base_id,
        LABEL_CONTEXT: context_sha,
        LABEL_WHEELS: str(len(wheels)),
    }
    log_path = cache_root() / "image-build" / f"{tag.replace('/', '_').replace(':', '_')}.log"
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="orch-image-") as tmp:
        context = Path(tmp)
        assemble_context(spec.docker_dir, wheels_dir, context)
        image_id = run_build(client, context, spec, tag, labels, log_path, ui, no_cache=no_cache)
    duration = time.monotonic() - started
    image = client.images.get(image_id)
    ui.info(f"image {tag}: built {short_id(image_id)} in {duration:.0f} s")
    return describe(image, tag, spec, wheels, cached=False, duration_s=duration, log_path=log_path)


def select_wheels(spec: ImageSpec, ui: UI, client: DockerClient | None = None) -> Path | None:
    """The directory of wheels the build installs, or None: given ones, or ones prepared
    on the host for the Python of the image's ``build-min`` stage (built first)."""
    if not spec.needs_wheels:
        return None
    if spec.wheels_dir is not None:
        if not list_wheels(spec.wheels_dir):
            raise InputError(f"--wheels-dir {spec.wheels_dir}: no .whl files there")
        return spec.wheels_dir
    client = client or connect()
    return prepare_wheels(spec.requirements, image_python_version(spec, ui, client), ui)


def image_python_version(spec: ImageSpec, ui: UI, client: DockerClient) -> str:
    """The Python version inside the stage the wheels go into: the ``build-min`` stage
    on the same base carries the same python3, and is quick to build (or reuse)."""
    minimal = ImageSpec(base_image=spec.base_image, target="build-min", docker_dir=spec.docker_dir)
    tag = ensure_image(minimal, ui, client=client).tag
    script = "import platform; print(platform.python_version())"
    try:
        output = run_captured(client, tag, ["python3", "-c", script])
    except sdk_errors().DockerException as error:
        raise InfraError(f"cannot run python3 in {tag}: {first_line(str(error))}") from error
    return bytes(output).decode().strip()


def run_build(client: DockerClient, context: Path, spec: ImageSpec, tag: str,
              labels: dict[str, str], log_path: Path, ui: UI, *, no_cache: bool = False) -> str:
    """Run the engine's build, streaming its output to the UI and a log file; the image ID."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
    image_id: str | None = None
    ui.info(f"building {tag} (target {spec.target}, base {spec.base_image}); log: {log_path}")
    try:
        stream = client.api.build(
            path=str(context), tag=tag, target=spec.target, buildargs={"BASE_IMAGE": spec.base_image},
            labels=labels, rm=True, forcerm=True, pull=False, decode=True, nocache=no_cache,
        )
        with log_path.open("w") as log:
            for line in stream_lines(stream):
                if line.kind == "id":
                    image_id = line.text
                    continue
                log.write(line.text + "\n")
                log.flush()
                tail.append(line.text)
                show_build_line(ui, line)
                if line.kind == "error":
                    raise build_failed(tag, line.text, tail, log_path)
    except sdk_errors().DockerException as error:
        raise InfraError(f"docker build of {tag} failed: {first_line(str(error))}",
                         hint=f"full log: {log_path}") from error
    if image_id is None:
        raise build_failed(tag, "the engine reported no image ID", tail, log_path)
    return image_id


@dataclass(frozen=True)
class BuildLine:
    kind: str  # "step", "output", "error", "id"
    text: str


def stream_lines(chunks: Iterable[dict[str, Any]]) -> Iterator[BuildLine]:
    """Turn the engine's JSON build messages into lines: steps, output, errors, the ID."""
    for chunk in chunks:
        if "error" in chunk:
            yield BuildLine("error", str(chunk["error"]).strip())
        elif "aux" in chunk and isinstance(chunk["aux"], dict) and "ID" in chunk["aux"]:
            yield BuildLine("id", str(chunk["aux"]["ID"]))
        elif "stream" in chunk:
            for text in str(chunk["stream"]).splitlines():
                if text.strip():
                    yield BuildLine("step" if text.startswith("Step ") else "output", text.rstrip())
        elif "status" in chunk:
            yield BuildLine("output", str(chunk["status"]))


def show_build_line(ui: UI, line: BuildLine) -> None:
    if ui.quiet or ui.json:
        return
    if line.kind == "step":
        ui.err.print(line.text, style="bold cyan", markup=False, highlight=False)
    elif line.kind == "error":
        ui.err.print(line.text, style="bold red", markup=False, highlight=False)
    elif ui.verbose or not ui.err.is_terminal:
        ui.err.print(line.text, style="dim", markup=False, highlight=False)
    else:
        ui.err.print(line.text[: max(ui.err.width - 1, 20)], style="dim", markup=False,
                     highlight=False, overflow="ellipsis", no_wrap=True)


def build_failed(tag: str, message: str, tail: Iterable[str], log_path: Path) -> InfraError:
    last = "\n  ".join(list(tail)[-8:])
    return InfraError(f"docker build of {tag} failed: {message}",
                      hint=f"last lines:\n  {last}\nfull log: {log_path}")


# --- describing ---------------------------------------------------------------------------


def short_id(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def describe(image: Any, tag: str, spec: ImageSpec, wheels: list[str], *, cached: bool,
             duration_s: float, log_path: Path | None) -> ToolchainImage:
    return ToolchainImage(
        tag=tag, image_id=str(image.id), target=spec.target, base_image=spec.base_image,
        cached=cached, duration_s=round(duration_s, 1), size_bytes=int(image.attrs.get("Size", 0)),
        wheels=wheels, log_path=log_path,
    )


@dataclass(frozen=True)
class ImageSummary:
    """One toolchain image orch built, as ``orch image list``/``inspect`` show it."""

    tags: list[str]
    image_id: str
    target: str
    base_image: str
    base_image_id: str
    created: str
    size_bytes: int
    wheels: int
    labels: dict[str, str]


def summarize(image: Any) -> ImageSummary:
    labels: dict[str, str] = dict(image.labels or {})
    return ImageSummary(
        tags=list(image.tags), image_id=str(image.id), target=labels.get(LABEL_TARGET, "?"),
        base_image=labels.get(LABEL_BASE, "?"), base_image_id=labels.get(LABEL_BASE_ID, "?"),
        created=str(image.attrs.get("Created", "")), size_bytes=int(image.attrs.get("Size", 0)),
        wheels=int(labels.get(LABEL_WHEELS, "0") or 0),
        labels={k: v for k, v in labels.items() if k.startswith(LABEL_PREFIX)},
    )


def list_images(client: DockerClient | None = None) -> list[ImageSummary]:
    """Every image on the engine that ``ensure_image`` built (newest first)."""
    client = client or connect()
    images = client.images.list(filters={"label": LABEL_KEY})
    return sorted((summarize(i) for i in images), key=lambda s: s.created, reverse=True)


def inspect_image(name: str, client: DockerClient | None = None) -> ImageSummary:
    client = client or connect()
    image = find_image(client, name)
    if image is None:
        raise InputError(f"image {name}: not found on the Docker engine", hint="orch image list")
    return summarize(image)
