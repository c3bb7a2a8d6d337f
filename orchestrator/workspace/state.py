"""The workspace's state file, ``.orch/state.json``: what the last sync did (manifest source,
per project the pinned SHA, linkfiles, copyfiles; projects that failed). This module is its
only reader and writer; everyone else asks for records or for the few facts they need."""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator import layout
from orchestrator.errors import InputError, WorkspaceError
from orchestrator.shipped import shipped_dir
from orchestrator.ui import to_jsonable
from orchestrator.workspace import transport
from orchestrator.workspace.manifest import FileLink, Project

STATE_VERSION = 1


@dataclass(frozen=True)
class ManifestSource:
    """Where the manifest comes from: a manifest repository (``url`` + ``revision`` + ``file``,
    repo's ``-u/-b/-m``) or a local XML ``path``. ``manifest_url`` is what relative remotes
    resolve against for a local file."""

    url: str | None = None
    path: str | None = None
    revision: str | None = None
    file: str = "default.xml"
    manifest_url: str | None = None

    @classmethod
    def parse(cls, source: str, revision: str | None = None, file: str | None = None,
              manifest_url: str | None = None) -> ManifestSource:
        """``-m SOURCE``: an XML file, a local manifest repository, or a git URL."""
        local = Path(source).expanduser()
        if local.is_file():
            if revision:
                raise InputError(f"-b {revision}: a revision needs a manifest repository, "
                                 f"but {source} is a file")
            return cls(path=as_given(local), manifest_url=manifest_url)
        if not local.is_dir() and not looks_like_url(source):
            raise InputError(f"-m {source}: no such manifest file or repository directory",
                             hint="give an XML file, a manifest repository directory, or a git URL")
        url = as_given(local) if local.is_dir() else source
        problem = transport.url_problem(url)
        if problem:
            raise InputError(f"-m {source}: {problem}")
        return cls(url=url, revision=revision, file=file or "default.xml")

    @classmethod
    def shipped_default(cls) -> ManifestSource:
        """The manifest orch syncs when given none: ``manifests/default.toml``."""
        spec = shipped_dir("manifests") / "default.toml"
        data = tomllib.loads(spec.read_text())
        return cls(url=data["url"], revision=data.get("revision"), file=data.get("file", "default.xml"))

    def with_overrides(self, revision: str | None, file: str | None) -> ManifestSource:
        if self.url is None:
            return self
        return ManifestSource(url=self.url, revision=revision or self.revision, file=file or self.file)

    def describe(self) -> str:
        if self.path:
            return self.path
        return f"{self.url} ({self.file} @ {self.revision or 'HEAD'})"


def as_given(path: Path) -> str:
    """``path`` made absolute the way the user wrote it: symlinks are kept (not ``resolve()``d),
    so a relative remote (``../seL4``) resolves next to the path the user named, as with `repo`."""
    return os.path.normpath(os.path.join(os.getcwd(), path))


def looks_like_url(source: str) -> bool:
    """A git URL: ``scheme://...`` or scp-like ``[user@]host:path`` (what git itself accepts)."""
    if "://" in source:
        return True
    head, colon, _ = source.partition(":")
    return bool(colon) and "/" not in head and len(head) > 1


@dataclass
class ProjectRecord:
    """One synced project, as recorded in ``state.json`` (a build's metadata copies this)."""

    name: str
    path: str
    remote: str
    url: str
    revision: str
    sha: str  # the pinned revision resolved to a full SHA
    head: str | None = None  # what the checkout was left at
    upstream: str | None = None
    dest_branch: str | None = None
    groups: list[str] = field(default_factory=list)
    linkfiles: list[dict[str, str]] = field(default_factory=list)
    copyfiles: list[dict[str, str]] = field(default_factory=list)
    skipped: str | None = None
    clone_depth: int | None = None
    sync_s: bool = False
    sync_c: bool = False
    sync_tags: bool = True
    sparse: list[str] | None = None  # checked out sparsely: top-level files plus these directories

    def to_project(self) -> Project:
        return Project(
            name=self.name, path=self.path, remote=self.remote, url=self.url, revision=self.revision,
            upstream=self.upstream, dest_branch=self.dest_branch, groups=tuple(self.groups),
            linkfiles=tuple(FileLink(x["src"], x["dest"]) for x in self.linkfiles),
            copyfiles=tuple(FileLink(x["src"], x["dest"], copy=True) for x in self.copyfiles),
            clone_depth=self.clone_depth, sync_s=self.sync_s, sync_c=self.sync_c, sync_tags=self.sync_tags,
        )


@dataclass
class ManifestRecord:
    source: ManifestSource
    commit: str | None  # the manifest repository commit used
    groups: list[str] = field(default_factory=lambda: ["default"])
    local_manifests: list[str] = field(default_factory=list)
    remotes: dict[str, str] = field(default_factory=dict)  # name -> resolved fetch URL
    default_remote: str | None = None
    default_revision: str | None = None
    remotes_base: str | None = None
    """The URL or path, as the user gave it, that relative remotes (``../seL4``) resolved against."""


@dataclass
class WorkspaceState:
    manifest: ManifestRecord
    projects: dict[str, ProjectRecord] = field(default_factory=dict)
    synced_at: str | None = None
    version: int = STATE_VERSION
    failed: dict[str, str] = field(default_factory=dict)
    """Manifest projects (path -> why) the last sync could not check out and that have no earlier
    good checkout: the workspace lacks them, so a build from it would be incomplete."""
    sparse: dict[str, list[str]] = field(default_factory=dict)
    """``--sparse`` as given so far (path -> directories), remembered for later syncs; each
    project's record says what it was checked out with (``[sparse]`` in config.toml too)."""
    partial_clone: bool | None = None
    """``True``: new clones fetch commits and trees only (``--filter=blob:none``), blobs come on
    demand; ``False``: full clones; ``None`` (the default): partial for projects fetched from a
    server (any URL, ``file://`` too), full for plain local paths (git hard-links those)."""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkspaceState:
        m = dict(data["manifest"])
        m["source"] = ManifestSource(**m["source"])
        projects = {k: ProjectRecord(**v) for k, v in data.get("projects", {}).items()}
        return cls(ManifestRecord(**m), projects, data.get("synced_at"), data.get("version", STATE_VERSION),
                   dict(data.get("failed", {})), {k: list(v) for k, v in data.get("sparse", {}).items()},
                   _optional_bool(data.get("partial_clone")))


def _optional_bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def load_state(root: Path) -> WorkspaceState | None:
    """The recorded state, or None before the first sync; :class:`WorkspaceError` if unreadable."""
    path = layout.state_file(root)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise WorkspaceError(f"{path}: unreadable state ({exc})",
                             hint="run `orch sync -m SOURCE` to rebuild it") from None
    try:
        return WorkspaceState.from_json(data)
    except (KeyError, TypeError, AttributeError) as exc:
        raise WorkspaceError(f"{path}: unreadable state ({exc})",
                             hint="run `orch sync -m SOURCE` to rebuild it") from None


def save_state(root: Path, state: WorkspaceState) -> None:
    """Write the state atomically (readers never see half a file)."""
    atomic_write(layout.state_file(root), json.dumps(to_jsonable(state), indent=2) + "\n")


def _raw(root: Path) -> dict[str, Any]:
    """The state file as plain JSON, leniently ({} when absent or unreadable): for readers that
    want one fact and must also accept a partial file written by other tools or tests."""
    try:
        data = json.loads(layout.state_file(root).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def recorded_manifest(root: Path) -> dict[str, Any]:
    """The manifest record of the last sync (source, commit, groups, ...) as JSON, or {}."""
    manifest = _raw(root).get("manifest")
    return manifest if isinstance(manifest, dict) else {}


def recorded_links(root: Path) -> list[FileLink] | None:
    """Every linkfile and copyfile the last sync placed (with its project), or None when the
    workspace has no recorded projects."""
    projects = _raw(root).get("projects")
    if not isinstance(projects, dict) or not projects:
        return None
    links: list[FileLink] = []
    for path, record in projects.items():
        if not isinstance(record, dict) or record.get("skipped"):
            continue
        for kind, copy in (("linkfiles", False), ("copyfiles", True)):
            for entry in record.get(kind) or []:
                links.append(FileLink(str(entry["src"]), str(entry["dest"]), project=str(path), copy=copy))
    return links


def atomic_write(path: Path, text: str) -> None:
    """Write via a temporary file and ``os.replace`` so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
