"""A point to build: the exact project commits a variant tree is made of, when they are not
the workspace's own pins.

``orch build --at MANIFEST_REV`` takes the pins of another revision of the manifest
repository, ``--pin PATH=REV`` moves one project, ``--use-checkouts`` (or a ``git bisect`` in
progress in a project) takes what is checked out; ``orch bisect`` makes points of its own.
Nothing here touches the user's checkouts: the manifest at a revision is read from
``.orch/manifest.git`` into ``.orch/manifests/<sha>/``, a missing commit is fetched into the
project's git directory (``.orch/projects/<path>.git``, cloned there without a checkout for a
project the workspace does not have yet), and variant trees are worktrees of those.
"""

from __future__ import annotations

import io
import shutil
import tarfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from orchestrator import layout
from orchestrator.errors import InfraError, InputError
from orchestrator.workspace import gitops
from orchestrator.workspace.manifest import FileLink, Manifest, Project, is_sha, load_manifest
from orchestrator.workspace.sync import Workspace, find_mirror, resolve_revision, staging_dir
from orchestrator.workspace.tree import ProjectCheckout, SourceTree

Notify = Callable[[str], None]


@dataclass(frozen=True)
class Pin:
    """One project of a point: where it comes from and the commit it is built at."""

    path: str
    name: str
    url: str
    sha: str
    origin: str = "manifest"  # manifest | pin | checkout | bisect | workspace
    upstream: str | None = None
    linkfiles: tuple[FileLink, ...] = ()
    copyfiles: tuple[FileLink, ...] = ()


@dataclass(frozen=True)
class ManifestRev:
    """A commit of the manifest repository: a snapshot of every project's pin."""

    commit: str
    date: str  # committer date, ISO 8601
    subject: str


@dataclass(frozen=True)
class Point:
    """Every project's commit for one build, and where the set came from."""

    pins: Mapping[str, Pin]
    manifest: ManifestRev | None = None
    notes: tuple[str, ...] = ()  # what differs from the manifest, said to the user once
    in_bisect: tuple[str, ...] = ()  # projects where a `git bisect` is in progress (built at HEAD)

    def commits(self) -> dict[str, str]:
        return {path: pin.sha for path, pin in sorted(self.pins.items())}

    def with_pin(self, path: str, sha: str, origin: str, base: Pin | None = None) -> Point:
        """This point with ``path`` at ``sha`` (``base`` supplies name/URL/links for a project
        the point does not have yet)."""
        known = self.pins.get(path) or base
        if known is None:
            raise InputError(f"project '{path}' is not in the manifest at this point",
                             hint=f"known project paths: {', '.join(sorted(self.pins)) or 'none'}")
        pins = dict(self.pins)
        pins[path] = replace(known, sha=sha, origin=origin)
        return replace(self, pins=pins)

    def without(self, path: str) -> Point:
        pins = {p: pin for p, pin in self.pins.items() if p != path}
        return replace(self, pins=pins)

    def overrides(self) -> dict[str, str]:
        """path -> SHA of every project not at the manifest's pin (``--pin`` and the like)."""
        return {p: pin.sha for p, pin in sorted(self.pins.items())
                if pin.origin not in ("manifest", "workspace")}

    def record(self) -> dict[str, Any]:
        """What a build's metadata and results.json say about the point."""
        return {
            "manifest_commit": self.manifest.commit if self.manifest else None,
            "manifest_date": self.manifest.date if self.manifest else None,
            "pins": {p: {"sha": pin.sha, "origin": pin.origin, "name": pin.name}
                     for p, pin in sorted(self.pins.items())},
            "overrides": self.overrides(),
        }

    def links(self) -> list[FileLink]:
        """Every project's linkfiles and copyfiles, as a variant tree places them."""
        return [FileLink(link.src, link.dest, project=path, copy=copy)
                for path, pin in sorted(self.pins.items())
                for links, copy in ((pin.linkfiles, False), (pin.copyfiles, True))
                for link in links]


# --- the manifest repository at a revision -------------------------------------------------------


def _manifest_git_dir(workspace: Workspace) -> Path:
    state = workspace.state()
    if state.manifest.source.url is None:
        raise InputError(f"--at: the workspace was synced from the file {state.manifest.source.path}, "
                         "not a manifest repository",
                         hint="sync from the manifest repository (orch sync -m URL) to build its revisions")
    git_dir = layout.manifest_git_dir(workspace.root)
    if not git_dir.is_dir():
        raise InputError(f"--at: {workspace.root} has no manifest repository clone", hint="run `orch sync`")
    return git_dir


def resolve_manifest_rev(workspace: Workspace, rev: str) -> ManifestRev:
    """The manifest repository commit ``rev`` names (SHA, tag, branch, ``HEAD~3``), fetched
    from its origin when it is not here yet."""
    git_dir = _manifest_git_dir(workspace)
    source = workspace.state().manifest.source
    sha = gitops.rev_parse(git_dir, rev) or gitops.rev_parse(git_dir, f"refs/remotes/origin/{rev}")
    if sha is None:
        sha = resolve_revision(git_dir, rev, upstream=None, sources=["origin"], fetch_branches=True,
                               where=f"manifest repository {source.url}", url=str(source.url))
    return manifest_rev(git_dir, sha)


def manifest_rev(git_dir: Path, sha: str) -> ManifestRev:
    date, _, subject = gitops.run(["show", "-s", "--format=%cI%x00%s", sha], git_dir=git_dir).partition("\0")
    return ManifestRev(sha, date, subject)


def _files_at(git_dir: Path, sha: str, target: Path) -> Path:
    """The manifest repository's files at ``sha`` under ``target`` (extracted once)."""
    if (target / ".complete").is_file():
        return target
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    data = _git_bytes(git_dir, "archive", "--format=tar", sha)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(target, filter="data")
    (target / ".complete").write_text(sha + "\n")
    return target


def _git_bytes(git_dir: Path, *args: str) -> bytes:
    import subprocess

    proc = subprocess.run(["git", f"--git-dir={git_dir}", *args], capture_output=True)
    if proc.returncode != 0:
        raise InfraError(f"git {args[0]} in {git_dir} failed: {proc.stderr.decode(errors='replace')[:300]}")
    return proc.stdout


def manifest_at(workspace: Workspace, rev: ManifestRev) -> Manifest:
    """The workspace's manifest file (with its includes, local manifests and groups) as it was
    at manifest commit ``rev``, read without moving the workspace's manifest checkout."""
    git_dir = _manifest_git_dir(workspace)
    state = workspace.state()
    source = state.manifest.source
    files = _files_at(git_dir, rev.commit, layout.manifest_files_dir(workspace.root, rev.commit))
    file = files / source.file
    if not file.is_file():
        raise InputError(f"manifest commit {rev.commit[:12]} has no {source.file}")
    local = workspace.local_manifests_dir
    locals_ = sorted(local.glob("*.xml")) if local.is_dir() else []
    base = state.manifest.remotes_base or source.url  # what the sync resolved relative remotes against
    manifest = load_manifest(file, manifest_url=base, local_manifests=locals_,
                             display=f"{source.file}@{rev.commit[:12]}", include_root=files)
    return manifest.select_groups(state.manifest.groups)


# --- project commits -----------------------------------------------------------------------------


def _sources(workspace: Workspace, name: str) -> list[str]:
    mirror = find_mirror(workspace.configured_mirror(), name)
    return [str(mirror), "origin"] if mirror else ["origin"]


def ensure_project(workspace: Workspace, pin: Pin) -> Path:
    """The project's git directory holding ``pin.sha``: cloned without a checkout when the
    workspace never had the project, fetched into when the commit is missing."""
    git_dir = workspace.git_dir(pin.path)
    if not git_dir.is_dir():
        _clone_bare(workspace, pin, git_dir)
    if not gitops.has_commit(git_dir, pin.sha):
        resolve_revision(git_dir, pin.sha, upstream=pin.upstream, sources=_sources(workspace, pin.name),
                         fetch_branches=False, where=pin.path, url=pin.url)
    return git_dir


def _clone_bare(workspace: Workspace, pin: Pin, git_dir: Path) -> None:
    partial = staging_dir(git_dir, ".partial-point")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    mirror = find_mirror(workspace.configured_mirror(), pin.name)
    try:
        gitops.run_network(["clone", "--quiet", "--no-checkout", *(["--shared"] if mirror else []),
                            "--", str(mirror or pin.url), str(partial)], what=pin.path)
        if mirror:
            gitops.run(["remote", "set-url", "--", "origin", pin.url], cwd=partial)
    except gitops.GitError as error:
        shutil.rmtree(partial, ignore_errors=True)
        raise InfraError(f"{pin.path}: cloning {pin.url} failed: {gitops.stderr_of(error)}",
                         hint="check the URL and your network, or use --mirror DIR") from None
    (partial / ".git").rename(git_dir)
    shutil.rmtree(partial, ignore_errors=True)


def resolve_project_rev(workspace: Workspace, pin: Pin, rev: str) -> str:
    """The commit ``rev`` names in the project (local first, then fetched from its origin)."""
    git_dir = ensure_project(workspace, replace(pin, sha=pin.sha))
    for candidate in (rev, f"refs/remotes/origin/{rev}", f"refs/tags/{rev}"):
        sha = gitops.rev_parse(git_dir, candidate)
        if sha:
            return sha
    return resolve_revision(git_dir, rev, upstream=None, sources=_sources(workspace, pin.name),
                            fetch_branches=True, where=f"--pin {pin.path}={rev}", url=pin.url)


def pins_of_manifest(workspace: Workspace, manifest: Manifest) -> dict[str, Pin]:
    """Each project of ``manifest`` at the commit its revision names (branches resolved now)."""
    pins: dict[str, Pin] = {}
    for project in manifest.projects:
        pin = _pin_of(project, project.revision)
        if not is_sha(project.revision):
            git_dir = workspace.git_dir(project.path)
            if not git_dir.is_dir():
                _clone_bare(workspace, pin, git_dir)
            sha = resolve_revision(git_dir, project.revision, upstream=project.upstream,
                                   sources=_sources(workspace, project.name), fetch_branches=True,
                                   where=project.where, url=project.url)
            pin = replace(pin, sha=sha)
        pins[project.path] = pin
    return pins


def _pin_of(project: Project, sha: str, origin: str = "manifest") -> Pin:
    return Pin(project.path, project.name, project.url, sha, origin, project.upstream,
               project.linkfiles, project.copyfiles)


def workspace_point(workspace: Workspace) -> Point:
    """The workspace as last synced."""
    state = workspace.state()
    pins = {path: _pin_of(rec.to_project(), rec.sha, "workspace") for path, rec in state.projects.items()}
    manifest = None
    git_dir = layout.manifest_git_dir(workspace.root)
    if state.manifest.commit and git_dir.is_dir():
        manifest = manifest_rev(git_dir, state.manifest.commit)
    return Point(pins, manifest)


def manifest_point(workspace: Workspace, rev: str | ManifestRev) -> Point:
    """Every project at its pin in the manifest repository's revision ``rev``."""
    resolved = rev if isinstance(rev, ManifestRev) else resolve_manifest_rev(workspace, rev)
    return Point(pins_of_manifest(workspace, manifest_at(workspace, resolved)), resolved)


def parse_pin(text: str) -> tuple[str, str]:
    path, equals, rev = text.partition("=")
    if not equals or not path.strip("/") or not rev:
        raise InputError(f"--pin {text}: expected PATH=REV (a project path and a commit, tag or branch)")
    return path.strip("/"), rev


def apply_pins(workspace: Workspace, point: Point, pins: Sequence[str]) -> Point:
    """``--pin PATH=REV`` each, resolved in that project."""
    for text in pins:
        path, rev = parse_pin(text)
        if path not in point.pins:
            raise InputError(f"--pin {text}: no project '{path}' in the manifest",
                             hint=f"known project paths: {', '.join(sorted(point.pins))}")
        sha = resolve_project_rev(workspace, point.pins[path], rev)
        point = point.with_pin(path, sha, "pin")
        point = replace(point, notes=(*point.notes, f"{path} pinned to {sha[:12]} (--pin {text})"))
    return point


def bisecting(workspace: Workspace, path: str) -> bool:
    """A ``git bisect`` is in progress in the project's checkout."""
    return (workspace.git_dir(path) / "BISECT_START").is_file()


def checkout_pins(workspace: Workspace, point: Point, *, everything: bool) -> Point:
    """Projects at what is checked out: every project (``--use-checkouts``) or only those where
    a ``git bisect`` is in progress (what `git bisect run orch build` needs). Uncommitted
    edits are not built (a commit is); the note says so."""
    for path, pin in sorted(point.pins.items()):
        in_bisect = bisecting(workspace, path)
        if not (everything or in_bisect):
            continue
        git_dir = workspace.git_dir(path)
        head = gitops.read_head(git_dir) if git_dir.is_dir() else None
        if head is None:
            continue
        why = "a git bisect is in progress there" if in_bisect else "--use-checkouts"
        if in_bisect:
            point = replace(point, in_bisect=(*point.in_bisect, path))
        if head != pin.sha or in_bisect:
            point = point.with_pin(path, head, "checkout")
            point = replace(point, notes=(*point.notes, f"{path}: building its checked-out HEAD "
                                          f"{head[:12]} ({why})"))
        checkout = workspace.checkout_dir(path)
        if (checkout / ".git").is_file():
            modified, _untracked = gitops.worktree_changes(git_dir, checkout)
            if modified:
                point = replace(point, notes=(*point.notes, f"{path}: {modified} uncommitted "
                                              "change(s) are not built (commit them, or make a patchset)"))
    return point


def resolve_point(workspace: Workspace, *, at: str | None, pins: Sequence[str],
                  use_checkouts: bool) -> Point | None:
    """The point ``orch build`` was asked to build, or None for the workspace's own pins
    (which is also what comes back when nothing differs from them)."""
    auto = any(bisecting(workspace, path) for path in workspace.state().projects)
    if at is None and not pins and not use_checkouts and not auto:
        return None
    point = manifest_point(workspace, at) if at is not None else workspace_point(workspace)
    point = checkout_pins(workspace, point, everything=use_checkouts)
    return apply_pins(workspace, point, pins)


def source_tree(workspace: Workspace, point: Point) -> SourceTree:
    """A :class:`SourceTree` whose pins are the point's: each project's git directory holds the
    commit (fetched if needed); worktrees are made from the user's checkout, or from the git
    directory itself for a project with no checkout."""
    projects: dict[str, ProjectCheckout] = {}
    for path, pin in sorted(point.pins.items()):
        git_dir = ensure_project(workspace, pin)
        checkout = workspace.checkout_dir(path)
        directory = checkout if (checkout / ".git").is_file() else git_dir
        projects[path] = ProjectCheckout(path, directory, pin.sha)
    return SourceTree(workspace.root, projects)


@dataclass
class PointTree:
    """A point and its source tree, ready for :class:`orchestrator.build.builder.BuildContext`."""

    point: Point
    tree: SourceTree
    links: list[FileLink] = field(default_factory=list)


def prepare(workspace: Workspace, point: Point) -> PointTree:
    return PointTree(point, source_tree(workspace, point), point.links())
