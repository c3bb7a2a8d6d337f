"""A unit of distributed work described by data only: one point (an `orch build` variant, a
sweep probe or grid point, a bisect step) with everything a machine needs to run it.

A :class:`PointTask` carries the manifest source and revision, the patchset files themselves
(bytes, each with its sha256), and either the `orch build` arguments that select the point
(variant, ``--at``/``--pin``, ``--set``, CMake options, image, timeouts) or an orch module
that runs a stage's own task record (a sweep's grid point) in the worker's synced workspace.
Nothing in it refers to the submitting machine's files, so any worker with orch, a Docker
engine (or the host tools) and access to the sources can run it. A :class:`PointResult`
brings back the point's whole results directory (``results.json``, per-variant
``console.log``, ``run.json``, ``metadata.json``), or the module's result record, so every
report reads a distributed run exactly as a local one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from orchestrator.digest import Hasher, sha256_bytes
from orchestrator.errors import InputError

# The exit code a point gets when it could not be tested (infrastructure on two workers).
POINT_CANNOT_TEST = 125


def _sha256(data: bytes) -> str:
    return sha256_bytes(data)


@dataclass(frozen=True)
class PatchFile:
    """One file of a patchset directory, shipped by value."""

    path: str  # relative to the patchsets directory: NAME/patchset.toml, NAME/<project>/0001-...
    data: bytes
    sha256: str

    @classmethod
    def of(cls, path: str, data: bytes) -> PatchFile:
        return cls(path=path, data=data, sha256=_sha256(data))

    def verified(self) -> PatchFile:
        """The file itself, after checking that it arrived whole."""
        if _sha256(self.data) != self.sha256:
            raise InputError(f"{self.path}: sha256 mismatch after transfer")
        parts = Path(self.path).parts
        if Path(self.path).is_absolute() or ".." in parts or not parts:
            raise InputError(f"{self.path}: a shipped patchset file must be a relative path inside it")
        return self


@dataclass(frozen=True)
class PointTask:
    """One point of a distributed run: data only, hashable into an idempotent task key."""

    run_id: str
    point_id: str
    patchset: str
    manifest: str  # a manifest repository URL or path the worker can reach (usually via a mirror)
    manifest_revision: str | None = None
    manifest_file: str | None = None
    build_args: tuple[str, ...] = ()  # `orch build` arguments that select the point
    files: tuple[PatchFile, ...] = ()
    entry: str = ""  # instead of `orch build`: a module `python -m ENTRY TASK RESULT WORKSPACE PATCHSETS`
    payload: bytes = b""  # ENTRY's task (its own serialized record), written to TASK

    def __post_init__(self) -> None:
        if self.entry and not self.entry.startswith("orchestrator."):
            raise InputError(f"point {self.point_id}: entry {self.entry!r} is not one of orch's modules")

    def digest(self) -> str:
        """Content hash: the same point with the same inputs is the same task everywhere."""
        h = Hasher()
        h.update(json.dumps({"patchset": self.patchset, "manifest": self.manifest,
                             "revision": self.manifest_revision, "file": self.manifest_file,
                             "args": list(self.build_args), "entry": self.entry},
                            sort_keys=True).encode())
        h.update(self.payload)
        for f in sorted(self.files, key=lambda f: f.path):
            h.update(f"{f.path}\0{f.sha256}\0".encode())
        return h.hexdigest()

    def key(self) -> str:
        """The scheduler key: a retried or resubmitted point never runs twice side by side."""
        return f"orch-{self.run_id}-{self.point_id}-{self.digest()[:12]}"

    def build_argv(self, patchsets_dir: Path, results_dir: Path) -> list[str]:
        """The `orch build` command line that runs this point on a worker."""
        argv = ["build", "--patchset", self.patchset, "--patchsets", str(patchsets_dir),
                "-m", self.manifest, "--results", str(results_dir), "-q"]
        if self.manifest_revision:
            argv += ["-b", self.manifest_revision]
        if self.manifest_file:
            argv += ["--manifest-file", self.manifest_file]
        return argv + list(self.build_args)


@dataclass
class PointResult:
    """What came back from one point: its results directory, file by file, and how it ended."""

    point_id: str
    exit_code: int
    files: dict[str, bytes] = field(default_factory=dict)  # relative path -> bytes
    worker: str = ""
    attempt: str = ""
    error: str | None = None  # infrastructure trouble, when exit_code is 125 for that reason
    seconds: float = 0.0

    def write(self, directory: Path) -> Path:
        """Lay the point's results directory out under ``directory`` (never outside it)."""
        directory.mkdir(parents=True, exist_ok=True)
        root = directory.resolve()
        for name, data in sorted(self.files.items()):
            target = (directory / name).resolve()
            if not target.is_relative_to(root):
                raise InputError(f"point {self.point_id}: result file {name!r} points outside {directory}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        (directory / "point.json").write_text(json.dumps(self.summary(), indent=2) + "\n")
        return directory

    def summary(self) -> dict[str, object]:
        data = asdict(self)
        data["files"] = sorted(self.files)
        return data


def pack_patchsets(directories: Iterable[Path]) -> tuple[PatchFile, ...]:
    """Every regular file of the given patchset directories (each ``.../NAME``), by value."""
    files: list[PatchFile] = []
    for directory in directories:
        for path in sorted(directory.rglob("*")):
            if path.is_file() and not path.is_symlink():
                rel = Path(directory.name) / path.relative_to(directory)
                files.append(PatchFile.of(rel.as_posix(), path.read_bytes()))
    return tuple(files)


def unpack_patchsets(files: Sequence[PatchFile], directory: Path) -> Path:
    """Write shipped patchset files under ``directory``, checking each one's sha256."""
    for shipped in files:
        f = shipped.verified()
        target = directory / f.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(f.data)
    return directory


def read_results(directory: Path) -> dict[str, bytes]:
    """A results directory as relative path -> bytes (symlinks such as ``latest`` left out)."""
    return {p.relative_to(directory).as_posix(): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file() and not p.is_symlink()}
