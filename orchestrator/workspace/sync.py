"""A `repo`-style workspace: its state file, and sync / status over it.

The workspace root holds the checkouts at their manifest paths, each ``<path>/.git`` a gitfile
pointing at ``.orch/projects/<path>.git`` (never a directory); every ``.orch/`` path and ref
name is defined in :mod:`orchestrator.layout`.

Safety: a checkout with uncommitted changes, untracked files or local commits is skipped with
a reason unless ``force``; forcing keeps the work (``refs/orch/backup/<stamp>`` + a stash).
Clones land under a temporary name and are renamed into place; a checkout in progress is
journalled in its git directory, so an interrupted sync is repaired by the next one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from orchestrator import layout
from orchestrator.errors import (
    EXIT_CANNOT_TEST,
    EXIT_OK,
    EXIT_USAGE,
    InfraError,
    InputError,
    OrchError,
    WorkspaceError,
    combined_exit_code,
)
from orchestrator.layout import CHECKOUT_JOURNAL as JOURNAL
from orchestrator.layout import ORCH_DIR, PINNED_REF, STATE_FILE
from orchestrator.procs import process_exists
from orchestrator.ui import NULL_TRACKER, Tracker
from orchestrator.workspace import gitops, transport
from orchestrator.workspace.manifest import FileLink, Manifest, Project, Remote, is_sha, load_manifest, to_xml
from orchestrator.workspace.state import (
    ManifestRecord,
    ManifestSource,
    ProjectRecord,
    WorkspaceState,
    atomic_write,
    load_state,
    save_state,
)
from orchestrator.workspace.tree import ProjectCheckout, SourceTree

__all__ = ["ManifestSource", "ProjectRecord", "SyncReport", "Workspace", "WorkspaceState"]

# --- records ---------------------------------------------------------------------------------


def staging_dir(path: Path, suffix: str) -> Path:
    """``<path><suffix>.<pid>``: where this process builds ``path`` before renaming it into
    place. Named per process because a killed orch's git child can go on writing into its own
    staging directory for a while; those a dead orch left are removed here (and the one
    unnamed directory orch versions before this one used)."""
    shutil.rmtree(path.with_name(path.name + suffix), ignore_errors=True)
    for stale in path.parent.glob(f"{path.name}{suffix}.*"):
        pid = stale.name.rsplit(".", 1)[1]
        if pid.isdigit() and int(pid) != os.getpid() and not process_exists(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    return path.with_name(f"{path.name}{suffix}.{os.getpid()}")


def requested_source(ws: Workspace, manifest: str | None, revision: str | None, file: str | None,
                     manifest_url: str | None) -> ManifestSource | None:
    """The source ``-m/-b/--manifest-file/--manifest-url`` ask for; ``None`` means the recorded
    (or shipped) one. ``-b``/``--manifest-file`` alone change the recorded repository's."""
    if manifest:
        return ManifestSource.parse(manifest, revision, file, manifest_url)
    if not (revision or file):
        return None
    state = ws.load_state()
    base = state.manifest.source if state else ManifestSource.shipped_default()
    if base.url is None:
        raise InputError("-b/--manifest-file need a manifest repository, but this workspace syncs "
                         f"from the file {base.path}", hint="pass -m URL")
    return base.with_overrides(revision, file)


@dataclass
class ProjectResult:
    """What sync did to one project."""

    path: str
    name: str
    action: str  # cloned | updated | unchanged | forced | repaired | skipped | failed
    sha: str | None = None
    reason: str | None = None
    backup: list[str] = field(default_factory=list)
    exit_code: int = EXIT_OK


@dataclass
class LinkResult:
    kind: str  # linkfile | copyfile
    dest: str
    action: str  # created | unchanged | removed | skipped
    reason: str | None = None


@dataclass
class SyncReport:
    workspace: Path
    manifest: str
    manifest_commit: str | None
    projects: list[ProjectResult]
    links: list[LinkResult] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    manifest_backup: list[str] = field(default_factory=list)  # where --force kept manifest edits
    notice: str | None = None  # the manifest's <notice>
    warnings: list[str] = field(default_factory=list)  # what the manifest parser ignored

    @property
    def nothing_to_do(self) -> bool:
        return not self.manifest_backup and all(p.action == "unchanged" for p in self.projects) and all(
            link.action == "unchanged" for link in self.links)

    @property
    def exit_code(self) -> int:
        """The worst of the projects' codes; a skipped linkfile/copyfile is exit 2 like a
        skipped project (the workspace holds something orch will not overwrite), never 1,
        which means a test failed."""
        codes = {p.exit_code for p in self.projects}
        codes |= {EXIT_USAGE for x in self.links if x.action == "skipped"}
        return combined_exit_code(codes)


@dataclass
class ProjectStatus:
    """One row of ``orch status``. Other features add fields (keep it a flat record)."""

    path: str
    name: str
    pinned: str | None
    head: str | None
    branch: str | None
    at_pinned: bool
    dirty: bool
    modified: int
    untracked: int
    local_commits: int
    links_ok: bool
    problems: list[str] = field(default_factory=list)


# --- helpers ---------------------------------------------------------------------------------


def find_mirror(mirror: Path | None, name: str) -> Path | None:
    """``<mirror>/<name>`` as a bare repository, trying with and without ``.git``."""
    if mirror is None:
        return None
    base = name.removesuffix(".git")
    for candidate in (name, base + ".git", base):
        repo = mirror / candidate
        if (repo / "objects").is_dir() or (repo / ".git").exists():
            return repo
    return None


def wants_blobless(partial: bool | None, url: str, depth: int | None) -> bool:
    """Whether a new clone of ``url`` is partial (``--filter=blob:none``): as asked, or by
    default when it comes from a server (a URL, ``file://`` included) and is not shallow. A
    plain local path is cloned in full by default: git hard-links it, which beats any filter."""
    if partial is not None:
        return partial
    if depth is not None:
        return False
    return transport.transport_of(url) != "file" or url.lower().startswith("file://")


def clone_branch(project: Project) -> str | None:
    """The one branch a new clone fetches, the history the pin lies on: ``upstream``, else the
    revision when it names a branch or tag. ``None`` (everything) for a SHA without upstream,
    an abbreviated SHA, or a ref outside ``refs/heads/``."""
    for candidate in (project.upstream, None if is_sha(project.revision) else project.revision):
        if not candidate:
            continue
        if candidate.startswith("refs/heads/"):
            return candidate.removeprefix("refs/heads/")
        if candidate.startswith(("refs/", "-")) or _HEX_PREFIX.match(candidate) \
                or set("~^:@{") & set(candidate):
            return None
        return candidate
    return None


def _ref_candidates(revision: str) -> list[tuple[str, str]]:
    """(remote ref, local ref) pairs a non-SHA revision may name, in repo's order."""
    if revision.startswith("refs/heads/"):
        return [(revision, "refs/remotes/origin/" + revision.removeprefix("refs/heads/"))]
    if revision.startswith("refs/tags/"):
        return [(revision, revision)]
    if revision.startswith("refs/"):
        return [(revision, layout.remote_ref(revision))]
    return [(f"refs/heads/{revision}", f"refs/remotes/origin/{revision}"),
            (f"refs/tags/{revision}", f"refs/tags/{revision}")]


def resolve_revision(git_dir: Path, revision: str, *, upstream: str | None, sources: Sequence[str],
                     fetch_branches: bool, where: str, url: str, depth: int | None = None,
                     tags: bool = True) -> str:
    """The full SHA ``revision`` names, fetching only what is missing. A SHA already present
    (``cat-file -e``) costs nothing; otherwise the ``upstream`` branch, then the SHA itself, is
    fetched from each source in turn (a mirror first, then the network)."""
    missing = InputError(f"{where}: revision {revision} does not exist upstream ({url})",
                         hint="check the revision in the manifest, or whether it was pushed")
    if is_sha(revision):
        if gitops.has_commit(git_dir, revision):
            return revision
        for source in sources:
            wanted = [_ref_candidates(upstream)[0]] if upstream else []
            for remote_ref, local_ref in wanted:
                with contextlib.suppress(gitops.MissingRevision):
                    gitops.fetch(git_dir, source, [f"+{remote_ref}:{local_ref}"], what=where,
                                 depth=depth, tags=tags)
                if gitops.has_commit(git_dir, revision):
                    return revision
            with contextlib.suppress(gitops.MissingRevision):
                gitops.fetch(git_dir, source, [revision], what=where, depth=depth, tags=tags)
            if gitops.has_commit(git_dir, revision):
                return revision
        raise missing
    if _HEX_PREFIX.match(revision) and (known := resolve_unambiguous(git_dir, revision, where=where)):
        return known  # an abbreviated SHA already here names the same commit for ever: no fetch
    for remote_ref, local_ref in _ref_candidates(revision):
        if fetch_branches:
            try:
                gitops.fetch(git_dir, sources[-1], [f"+{remote_ref}:{local_ref}"], what=where,
                             depth=depth, tags=tags)
            except gitops.MissingRevision:
                continue
        sha = gitops.rev_parse(git_dir, local_ref)
        if sha:
            return sha
    if revision.startswith("-"):
        raise missing
    if fetch_branches:  # an abbreviated SHA or `tag~2` may name history of any branch or tag
        with contextlib.suppress(gitops.MissingRevision):
            gitops.fetch(git_dir, sources[-1], ["+refs/heads/*:refs/remotes/origin/*",
                                                "+refs/tags/*:refs/tags/*"], what=where)
    sha = resolve_unambiguous(git_dir, revision, where=where)
    if sha:
        return sha
    raise missing


_HEX_PREFIX = re.compile(r"^[0-9a-fA-F]{4,63}$")


def resolve_unambiguous(git_dir: Path, revision: str, *, where: str) -> str | None:
    """The commit any other revision git understands names (an abbreviated SHA, ``v1.0~2``,
    ``master^``), or ``None``; an abbreviated SHA that matches more than one commit is an
    :class:`InputError` listing them."""
    if _HEX_PREFIX.match(revision):
        listed = gitops.try_run(["rev-parse", f"--disambiguate={revision.lower()}"], git_dir=git_dir) or ""
        commits = sorted({sha for sha in (gitops.rev_parse(git_dir, c) for c in listed.split()) if sha})
        if len(commits) > 1:
            raise InputError(f"{where}: revision {revision} is ambiguous: it abbreviates "
                             + ", ".join(c[:12] for c in commits),
                             hint="give more digits of the SHA")
        if commits:
            return commits[0]
    return gitops.rev_parse(git_dir, revision)


# --- the workspace ---------------------------------------------------------------------------


@dataclass
class _Context:
    """What every project's sync needs to know."""

    mirror: Path | None
    force: bool
    previous: dict[str, ProjectRecord]
    stamp: str
    sparse: dict[str, list[str]] = field(default_factory=dict)
    partial_clone: bool | None = None  # None: partial from servers, full from local paths
    nested: dict[str, list[str]] = field(default_factory=dict)  # path -> projects inside it


def nested_projects(paths: Sequence[str]) -> dict[str, list[str]]:
    """Project path -> the paths (relative to it) of the projects checked out inside it."""
    inside: dict[str, list[str]] = {}
    for outer in paths:
        prefix = outer.rstrip("/") + "/"
        inner = sorted(p.removeprefix(prefix) for p in paths if p.startswith(prefix))
        if inner:
            inside[outer] = inner
    return inside


def nesting_depth(path: str, paths: Sequence[str]) -> int:
    """How many other projects ``path`` is checked out inside."""
    return sum(1 for other in paths if path.startswith(other.rstrip("/") + "/"))


def symlink_on_path(root: Path, rel: str) -> str | None:
    """The first component of ``root/rel`` that is a symlink (a checkout there would be written
    wherever the link points, maybe outside the workspace), else None."""
    current = root
    for part in Path(rel).parts:
        current = current / part
        if current.is_symlink():
            return current.relative_to(root).as_posix()
    return None


EXCLUDE_BEGIN = "# orch: projects checked out inside this one (begin)"
EXCLUDE_END = "# orch: (end)"


def exclude_nested(git_dir: Path, inner: Sequence[str]) -> None:
    """List the projects nested in this checkout in its ``info/exclude`` (orch's own block),
    so they do not make it look dirty."""
    exclude = git_dir / "info" / "exclude"
    try:
        text = exclude.read_text(encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        text = ""
    original = text
    if EXCLUDE_BEGIN in text:
        head, _, rest = text.partition(EXCLUDE_BEGIN)
        text = head + rest.partition(EXCLUDE_END + "\n")[2]
    block = "".join(f"/{p}/\n" for p in inner)
    new = text + (f"{EXCLUDE_BEGIN}\n{block}{EXCLUDE_END}\n" if inner else "")
    if new != original:
        exclude.parent.mkdir(parents=True, exist_ok=True)
        exclude.write_text(new, encoding="utf-8", errors="surrogateescape")


class Workspace:
    """A workspace rooted at ``root``; nothing is created until :meth:`sync`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    @classmethod
    def open(cls, root: Path) -> Workspace:
        """An existing (synced) workspace; :class:`WorkspaceError` if ``root`` has none."""
        ws = cls(root)
        if not ws.state_file.is_file():
            raise WorkspaceError(f"{ws.root}: not an orch workspace (no {ORCH_DIR}/{STATE_FILE})",
                                 hint="run `orch sync` first, or pass -w DIR")
        return ws

    # layout

    @property
    def meta_dir(self) -> Path:
        return layout.orch_dir(self.root)

    @property
    def state_file(self) -> Path:
        return layout.state_file(self.root)

    @property
    def local_manifests_dir(self) -> Path:
        return layout.local_manifests_dir(self.root)

    def git_dir(self, path: str) -> Path:
        """The git directory of the project at manifest path ``path``."""
        return layout.project_git_dir(self.root, path)

    def checkout_dir(self, path: str) -> Path:
        return self.root / path

    # state

    def load_state(self) -> WorkspaceState | None:
        return load_state(self.root)

    def state(self) -> WorkspaceState:
        state = self.load_state()
        if state is None:
            raise WorkspaceError(f"{self.root}: not synced yet (no {ORCH_DIR}/{STATE_FILE})",
                                 hint="run `orch sync` first, or pass -w DIR")
        return state

    def save_state(self, state: WorkspaceState) -> None:
        save_state(self.root, state)

    def configured_mirror(self, explicit: str | None = None) -> Path | None:
        """``--mirror`` if given, else ``$ORCH_MIRROR``, else ``mirror`` in ``.orch/config.toml``."""
        value = explicit or os.environ.get("ORCH_MIRROR")
        if not value:
            config = layout.config_file(self.root)
            if config.is_file():
                try:
                    value = tomllib.loads(config.read_text()).get("mirror")
                except tomllib.TOMLDecodeError as exc:
                    raise InputError(f"{config}: {exc}") from None
        if not value:
            return None
        mirror = Path(str(value)).expanduser().resolve()
        if not mirror.is_dir():
            raise InputError(f"mirror {value}: not a directory")
        return mirror

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.meta_dir.mkdir(parents=True, exist_ok=True)
        with open(layout.sync_lock(self.root), "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise WorkspaceError(f"{self.root}: another orch sync is running here") from None
            yield

    # manifest

    def _prepare_manifest(self, source: ManifestSource, force: bool = False,
                          backup: list[str] | None = None) -> tuple[Path, str, str | None, str | None]:
        """(manifest file, name for messages, URL relative remotes resolve against, commit).
        Edits or commits in the manifest checkout stop it unless ``force``, which backs them up
        (where to: appended to ``backup``)."""
        if source.path is not None:
            path = Path(source.path)
            base = source.manifest_url
            if base is None and path.is_file():
                base = gitops.try_run(["config", "remote.origin.url"], cwd=path.parent) or None
            return path, path.name, base, None
        assert source.url is not None
        git_dir = layout.manifest_git_dir(self.root)
        work = layout.manifest_checkout(self.root)
        where = f"manifest repository {source.url}"
        fresh = False
        if not git_dir.is_dir():
            self._clone_into(git_dir, source.url, shared=False, what=where)
            fresh = True
        elif gitops.try_run(["config", "remote.origin.url"], git_dir=git_dir) != source.url:
            gitops.run(["remote", "set-url", "--", "origin", source.url], git_dir=git_dir)
        if source.revision:
            commit = resolve_revision(git_dir, source.revision, upstream=None, sources=["origin"],
                                      fetch_branches=not fresh, where=where, url=source.url)
        else:
            if not fresh:
                gitops.fetch(git_dir, "origin", ["+HEAD:refs/remotes/origin/HEAD"], what=where)
            head = gitops.rev_parse(git_dir, "refs/remotes/origin/HEAD") or gitops.read_head(git_dir)
            if head is None:
                raise InputError(f"{where}: has no HEAD; pass -b REVISION")
            commit = head
        if gitops.read_head(git_dir) != commit or not (work / ".git").is_file():
            saved = self._keep_manifest_edits(git_dir, work, commit, force)
            if backup is not None:
                backup += saved
            gitops.write_gitfile(work, git_dir)
            gitops.run(["checkout", "-q", "-f", "--detach", commit], git_dir=git_dir, cwd=work)
        file = work / source.file
        return file, source.file, source.url, commit

    def _keep_manifest_edits(self, git_dir: Path, work: Path, commit: str, force: bool) -> list[str]:
        """Before the manifest checkout moves to ``commit``: refuse to overwrite edits or local
        commits there, or with ``force`` back them up like a project's (ref + stash)."""
        if not (work / ".git").is_file() or not (git_dir / "index").is_file():
            return []
        status = gitops.run([f"--work-tree={work}", "status", "--porcelain=v1", "--untracked-files=normal"],
                            git_dir=git_dir, cwd=work)
        files = [line[3:] for line in status.splitlines() if line.strip()]
        head = gitops.read_head(git_dir)
        local = gitops.local_commit_count(git_dir, head, [commit]) if head and head != commit else 0
        if not files and not local:
            return []
        if not force:
            what = f"edits to {', '.join(files[:3])}{' ...' if len(files) > 3 else ''}" if files else ""
            what += (" and " if what else "") + (f"{local} local commit{'s' * (local != 1)}" if local else "")
            raise WorkspaceError(
                f"{work}: {what} in the manifest checkout; sync would overwrite them",
                hint=f"put local changes in {self.local_manifests_dir}/*.xml instead, "
                     "or use --force to back them up and sync")
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        saved = gitops.backup_work(git_dir, work, head=head if local else None, dirty=bool(files),
                                   ref=layout.sync_backup_ref(stamp),
                                   message=f"orch sync backup {stamp}", stash=True)
        return [f"manifest: {where}" for where in saved]

    def load_manifest(self, source: ManifestSource, groups: Sequence[str] = ("default",), *,
                      force: bool = False, backup: list[str] | None = None
                      ) -> tuple[Manifest, str | None, str | None]:
        """(the manifest with only ``groups``, the manifest repository commit, the URL or path
        relative remotes resolved against)."""
        file, display, base, commit = self._prepare_manifest(source, force, backup)
        include_root = file.parent if source.path else layout.manifest_checkout(self.root)
        locals_ = sorted(self.local_manifests_dir.glob("*.xml")) if self.local_manifests_dir.is_dir() else []
        manifest = load_manifest(file, manifest_url=base, local_manifests=locals_, display=display,
                                 include_root=include_root)
        return manifest.select_groups(list(groups)), commit, base

    # sync

    def sync(
        self,
        source: ManifestSource | None = None,
        *,
        jobs: int | None = None,
        mirror: Path | None = None,
        force: bool = False,
        groups: Sequence[str] | None = None,
        tracker: Tracker = NULL_TRACKER,
        sparse: Mapping[str, Sequence[str]] | None = None,
        no_sparse: Sequence[str] = (),
        partial_clone: bool | None = None,
    ) -> SyncReport:
        """Bring every project to its pinned revision; see the module docstring for the rules.

        ``sparse`` (path -> directories) adds or changes sparse checkouts, ``no_sparse`` makes
        those projects full again; both are remembered, like ``partial_clone`` (which applies to
        projects cloned from now on)."""
        with self._lock():
            previous = self.load_state()
            if source is None:
                source = previous.manifest.source if previous else ManifestSource.shipped_default()
            groups = list(groups or (previous.manifest.groups if previous else ["default"]))
            manifest_backup: list[str] = []
            manifest, commit, base = self.load_manifest(source, groups, force=force, backup=manifest_backup)
            record = ManifestRecord(
                source=source, commit=commit, groups=groups,
                local_manifests=sorted(p.name for p in self.local_manifests_dir.glob("*.xml")),
                remotes={r.name: r.url for r in manifest.remotes.values()},
                default_remote=manifest.default_remote, default_revision=manifest.default_revision,
                remotes_base=base,
            )
            old_projects = previous.projects if previous else {}
            if previous is None or previous.manifest.source != source:
                early = WorkspaceState(record, old_projects, previous.synced_at if previous else None)
                self.save_state(early)  # so the next sync reuses the new source even if this one dies
            remembered = self._remembered_sparse(manifest, previous, sparse or {}, no_sparse)
            wanted_sparse = self._effective_sparse(manifest, remembered)
            partial = partial_clone if partial_clone is not None else (
                previous.partial_clone if previous else None)
            context = _Context(mirror, force, old_projects, datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ"),
                               wanted_sparse, partial,
                               nested_projects([p.path for p in manifest.projects]))
            results = self._sync_projects(manifest.projects, context, jobs or os.cpu_count() or 2, tracker)
            by_path = {r.path: r for r in results}
            synced = [p for p in manifest.projects if by_path[p.path].action not in ("failed",)]
            links = self._sync_links(manifest.projects, by_path, old_projects)
            orphans = sorted(set(old_projects) - {p.path for p in manifest.projects})
            state = WorkspaceState(record, {}, datetime.now(UTC).isoformat(timespec="seconds"),
                                   sparse=remembered, partial_clone=partial)
            for p in manifest.projects:
                result = by_path[p.path]
                if result.action == "failed" and p.path in old_projects:
                    state.projects[p.path] = old_projects[p.path]
                elif result.action == "failed":
                    state.failed[p.path] = result.reason or "failed"
                elif p in synced and result.sha:
                    state.projects[p.path] = self._record(p, result)
            report = SyncReport(self.root, source.describe(), commit, results, links, orphans,
                                manifest_backup, manifest.notice, list(manifest.warnings))
            if (not report.nothing_to_do or previous is None or previous.manifest != record
                    or previous.sparse != remembered or previous.partial_clone != partial):
                self.save_state(state)
            return report

    def configured_sparse(self) -> dict[str, list[str]]:
        """``[sparse]`` in ``.orch/config.toml``: project path -> directories."""
        config = layout.config_file(self.root)
        if not config.is_file():
            return {}
        try:
            table = tomllib.loads(config.read_text()).get("sparse", {})
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"{config}: {exc}") from None
        if not isinstance(table, dict) or not all(
                isinstance(v, list) and all(isinstance(d, str) for d in v) for v in table.values()):
            raise InputError(f"{config}: [sparse] maps project paths to lists of directories",
                             hint='e.g. "projects/vm-examples" = ["apps/Arm"]')
        return {str(k).strip("/"): list(v) for k, v in table.items()}

    def _remembered_sparse(self, manifest: Manifest, previous: WorkspaceState | None,
                           given: Mapping[str, Sequence[str]], off: Sequence[str]) -> dict[str, list[str]]:
        """``--sparse`` given now or before, less ``--no-sparse``; each a manifest project."""
        paths = {p.path for p in manifest.projects}
        configured = self.configured_sparse()
        for path in [*given, *off]:
            if path.strip("/") not in paths:
                raise InputError(f"--sparse {path}: no such project path in the manifest",
                                 hint="project paths: " + ", ".join(sorted(paths)[:8]))
            if path.strip("/") in configured:
                raise InputError(f"--sparse {path}: the project's sparse set is declared in "
                                 f"{layout.config_file(self.root)}", hint="change it there")
        remembered = {**(previous.sparse if previous else {}),
                      **{k.strip("/"): _clean_sparse_dirs(f"--sparse {k}", v) for k, v in given.items()}}
        for path in off:
            remembered.pop(path.strip("/"), None)
        return dict(sorted(remembered.items()))

    def _effective_sparse(self, manifest: Manifest,
                          remembered: Mapping[str, list[str]]) -> dict[str, list[str]]:
        """Every sparse project: what was given on the command line, and ``[sparse]`` in
        ``.orch/config.toml`` (which is read on every sync: remove a project there to make it
        full again)."""
        paths = {p.path for p in manifest.projects}
        configured = {k: _clean_sparse_dirs(f"[sparse] {k}", v) for k, v in self.configured_sparse().items()}
        return {path: dirs for path, dirs in {**remembered, **configured}.items() if path in paths}

    def _record(self, project: Project, result: ProjectResult) -> ProjectRecord:
        return ProjectRecord(
            name=project.name, path=project.path, remote=project.remote, url=project.url,
            revision=project.revision, sha=result.sha or "",
            head=gitops.read_head(self.git_dir(project.path)),
            upstream=project.upstream, dest_branch=project.dest_branch, groups=list(project.groups),
            linkfiles=[{"src": x.src, "dest": x.dest} for x in project.linkfiles],
            copyfiles=[{"src": x.src, "dest": x.dest} for x in project.copyfiles],
            skipped=result.reason if result.action == "skipped" else None,
            clone_depth=project.clone_depth, sync_s=project.sync_s, sync_c=project.sync_c,
            sync_tags=project.sync_tags,
            sparse=read_sparse_marker(self.git_dir(project.path)),
        )

    def _sync_projects(self, projects: Sequence[Project], context: _Context, jobs: int,
                       tracker: Tracker) -> list[ProjectResult]:
        overall = tracker.add("sync", total=len(projects)) if len(projects) > 1 else None
        tasks = {p.path: tracker.add(p.path, total=1) for p in projects}
        results: dict[str, ProjectResult] = {}
        pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="orch-sync")
        paths = [p.path for p in projects]
        depths = sorted({nesting_depth(path, paths) for path in paths})
        try:
            for depth in depths:  # outer projects are checked out before the ones inside them
                futures: dict[Future[ProjectResult], Project] = {
                    pool.submit(self._sync_one_safely, p, context): p for p in projects
                    if nesting_depth(p.path, paths) == depth}
                for future, project in futures.items():
                    result = future.result()
                    results[project.path] = result
                    label = result.action + (f" ({result.sha[:12]})" if result.sha else "")
                    tracker.done(tasks[project.path], label + (f": {result.reason}" if result.reason else ""))
                    if overall is not None:
                        tracker.advance(overall)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        return [results[p.path] for p in projects]

    def _sync_one_safely(self, project: Project, context: _Context) -> ProjectResult:
        try:
            return self._sync_one(project, context)
        except OrchError as error:
            reason = error.message + (f" (hint: {error.hint})" if error.hint else "")
            return ProjectResult(project.path, project.name, "failed", reason=reason,
                                 exit_code=error.exit_code)
        except gitops.GitError as error:
            return ProjectResult(project.path, project.name, "failed", reason=gitops.stderr_of(error),
                                 exit_code=EXIT_CANNOT_TEST)

    def _is_noop(self, project: Project, git_dir: Path, checkout: Path, sparse: list[str] | None) -> bool:
        return (
            is_sha(project.revision)
            and read_sparse_marker(git_dir) == sparse
            and (git_dir / "index").is_file()
            and not (git_dir / JOURNAL).exists()
            and (checkout / ".git").is_file()
            and gitops.read_head(git_dir) == project.revision
        )

    def _sync_one(self, project: Project, ctx: _Context) -> ProjectResult:
        git_dir = self.git_dir(project.path)
        checkout = self.checkout_dir(project.path)
        result = ProjectResult(project.path, project.name, "unchanged")
        if self._escapes(project, result):
            return result
        if self._is_noop(project, git_dir, checkout, ctx.sparse.get(project.path)):
            result.sha = project.revision
            return result
        gitfile = checkout / ".git"
        if gitfile.is_dir() or (gitfile.is_symlink() and gitfile.resolve() != git_dir.resolve()):
            return self._skip(result, f"{project.path}/.git is a directory, not an orch checkout; left alone")
        if not gitfile.exists() and checkout.is_dir() and any(checkout.iterdir()):
            return self._skip(result, f"{project.path} exists and is not an orch checkout; left alone")
        if gitfile.is_file() and not gitfile.is_symlink() and not _gitfile_points_at(gitfile, git_dir):
            return self._skip(result, f"{project.path}/.git points at another repository "
                              "(your own clone or worktree?), not an orch checkout; left alone")
        mirror = find_mirror(ctx.mirror, project.name)
        sources = [str(mirror), "origin"] if mirror else ["origin"]
        if not git_dir.is_dir():
            sha = self._clone_project(project, git_dir, mirror, partial=ctx.partial_clone)
            result.action = "cloned"
        else:
            sha = resolve_revision(git_dir, project.revision, upstream=project.upstream, sources=sources,
                                   fetch_branches=True, where=project.where, url=project.url,
                                   depth=project.clone_depth, tags=project.sync_tags)
            result.action = "updated"
        result.sha = sha
        return self._checkout(project, git_dir, checkout, sha, ctx, result)

    def _escapes(self, project: Project, result: ProjectResult) -> bool:
        """Refuse (exit 2) a project whose path runs through a symlink: the checkout would be
        written wherever it points. Checked before cloning and again just before checking out,
        when the projects it is nested in have been checked out (and could have added one)."""
        link = symlink_on_path(self.root, project.path)
        inside = self._inside_root(self.checkout_dir(project.path))
        if link is None and inside:
            return False
        where = f"{link} is a symlink" if link else "it resolves outside the workspace"
        self._skip(result, f"{project.path}: {where}; a checkout there could write outside the "
                   "workspace, so it was not checked out")
        result.action, result.exit_code = "failed", EXIT_USAGE
        return True

    def _skip(self, result: ProjectResult, reason: str) -> ProjectResult:
        """Leave the project alone (it holds the user's work, or is not orch's): exit 2, a
        workspace state the user has to resolve, as :class:`WorkspaceError` is."""
        result.action, result.reason, result.exit_code = "skipped", reason, EXIT_USAGE
        return result

    def _clone_into(self, git_dir: Path, source: str, *, shared: bool, what: str) -> Path:
        """Clone ``source`` whole into ``git_dir`` (the manifest repository): staged in
        ``<git_dir>.partial-clone.<pid>`` and renamed into place, so a git dir either exists
        complete or not at all."""
        staging = staging_dir(git_dir, ".partial-clone")
        try:
            os.rename(self._clone_staged(staging, source, shared=shared, what=what), git_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return git_dir

    def _clone_staged(self, staging: Path, source: str, *, shared: bool, what: str, depth: int | None = None,
                      tags: bool = True, blobless: bool = False, branch: str | None = None) -> Path:
        """Clone ``source`` without a checkout into the directory ``staging`` and return its git
        directory (``staging/.git``) for the caller to finish and rename into place. ``blobless``:
        a partial clone (``--filter=blob:none``; a local path goes through git's transport so
        the filter applies). ``branch``: fetch only that branch's history (and the tags in it);
        if the server has no such branch, everything, as without it."""
        shutil.rmtree(staging, ignore_errors=True)
        staging.parent.mkdir(parents=True, exist_ok=True)
        try:
            try:
                gitops.clone(source, staging, what=what, shared=shared, depth=depth, tags=tags,
                             blobless=blobless, branch=branch)
            except gitops.MissingRevision:
                shutil.rmtree(staging, ignore_errors=True)
                gitops.clone(source, staging, what=what, shared=shared, depth=depth, tags=tags,
                             blobless=blobless)
        except gitops.GitError as error:
            shutil.rmtree(staging, ignore_errors=True)
            raise clone_failure(what, source, error) from None
        return staging / ".git"

    def _clone_project(self, project: Project, git_dir: Path, mirror: Path | None, *,
                       partial: bool | None) -> str:
        """Clone the project, detach its HEAD at the pin, and only then rename its git dir into
        place: everything happens in ``<git_dir>.partial.<pid>`` (one staging level)."""
        staging = staging_dir(git_dir, ".partial")
        depth = None if mirror else project.clone_depth  # a mirror is local: nothing to save
        try:
            staged = self._clone_staged(
                staging, str(mirror) if mirror else project.url, shared=mirror is not None,
                what=project.where, depth=depth, tags=project.sync_tags,
                blobless=mirror is None and wants_blobless(partial, project.url, depth),
                branch=None if mirror or depth else clone_branch(project))
            if mirror is not None:
                gitops.run(["remote", "set-url", "--", "origin", project.url], git_dir=staged)
            sha = resolve_revision(staged, project.revision, upstream=project.upstream,
                                   sources=[str(mirror), "origin"] if mirror else ["origin"],
                                   fetch_branches=mirror is not None, where=project.where, url=project.url,
                                   depth=depth, tags=project.sync_tags)
            # detach HEAD at the pin and drop the branch clone made (a fresh clone has just the
            # one HEAD pointed at)
            branch = gitops.head_branch(staged)
            gitops.run(["update-ref", "--no-deref", "HEAD", sha], git_dir=staged)
            updates = f"update {PINNED_REF} {sha}\n"
            if branch:
                updates += f"delete refs/heads/{branch}\n"
            gitops.run(["update-ref", "--stdin"], git_dir=staged, stdin=updates)
            os.rename(staged, git_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return sha

    def _checkout(self, project: Project, git_dir: Path, checkout: Path, sha: str, ctx: _Context,
                  result: ProjectResult) -> ProjectResult:
        exclude_nested(git_dir, ctx.nested.get(project.path, []))
        journal = git_dir / JOURNAL
        interrupted = journal.exists()
        first = not (git_dir / "index").exists() or not (checkout / ".git").is_file()
        head = gitops.read_head(git_dir)
        sparse = ctx.sparse.get(project.path)
        resparse = read_sparse_marker(git_dir) != sparse
        if not first and not interrupted and head == sha and not resparse:
            gitops.run(["update-ref", PINNED_REF, sha], git_dir=git_dir)
            result.action = "unchanged"
            return result
        if interrupted:
            lock = git_dir / "index.lock"
            lock.unlink(missing_ok=True)  # left by the git we were running when killed
        remake_index = resparse and sparse is not None and (first or interrupted)
        if remake_index and (git_dir / "index").is_file():
            # a checkout that failed half-way (say, on a blob the repository lacks) left a full
            # index: narrow it first, so what lies outside the sparse set is no "change" to keep
            with contextlib.suppress(gitops.GitError):
                set_sparse(git_dir, checkout, sparse)
        problems: list[str] = []
        modified = untracked = 0
        if not first:
            modified, untracked = gitops.worktree_changes(git_dir, checkout)
            if modified:
                problems.append(f"{modified} uncommitted change{'s' * (modified != 1)}")
            if untracked:
                problems.append(f"{untracked} untracked file{'s' * (untracked != 1)}")
        previous = ctx.previous.get(project.path)
        known = [sha, PINNED_REF, *([previous.sha] if previous else [])]
        local = gitops.local_commit_count(git_dir, head, known) if head and head != sha else 0
        if local:
            problems.append(f"{local} local commit{'s' * (local != 1)} not upstream")
        if problems and not (ctx.force or interrupted):
            return self._skip(result, ", ".join(problems) + _how_to_proceed(git_dir))
        if problems or (interrupted and not first):
            result.backup = self._backup(git_dir, checkout, head, modified + untracked > 0, ctx.stamp)
            result.action = "repaired" if interrupted else "forced"
            result.reason = ", ".join(problems) if problems else "an interrupted checkout"
        if self._escapes(project, result):
            return result
        journal.write_text(sha + "\n")  # only its existence matters
        gitops.write_gitfile(checkout, git_dir)
        if remake_index:
            # that index still names blobs outside the sparse set, which may be missing: start
            # the index afresh from the pinned tree (the work was backed up above)
            (git_dir / "index").unlink(missing_ok=True)
        if resparse or first:
            set_sparse(git_dir, checkout, sparse)
            if resparse and result.reason is None:
                result.reason = (f"sparse: {', '.join(sparse) or 'top-level files only'}"
                                 if sparse is not None else "full checkout again (was sparse)")
        gitops.run(["checkout", "-q", *(["-f"] if first or remake_index else []), "--detach", sha],
                   git_dir=git_dir, cwd=checkout)
        if result.action != "cloned":  # a fresh clone set it already
            gitops.run(["update-ref", PINNED_REF, sha], git_dir=git_dir)
        journal.unlink()
        if project.sync_s and (checkout / ".gitmodules").is_file():
            gitops.update_submodules(git_dir, checkout, what=project.where)
        return result

    def _backup(self, git_dir: Path, checkout: Path, head: str | None, dirty: bool, stamp: str) -> list[str]:
        """Keep the user's work: HEAD under ``refs/orch/backup/<stamp>``, changes in a stash."""
        return gitops.backup_work(git_dir, checkout, head=head, dirty=dirty,
                                  ref=layout.sync_backup_ref(stamp),
                                  message=f"orch sync backup {stamp}", stash=True)

    # linkfile / copyfile

    def _sync_links(self, projects: Sequence[Project], results: dict[str, ProjectResult],
                    old: dict[str, ProjectRecord]) -> list[LinkResult]:
        out: list[LinkResult] = []
        wanted: set[str] = set()
        copies_before = {c["dest"] for rec in old.values() for c in rec.copyfiles}
        for project in projects:
            if results[project.path].action in ("failed",) or results[project.path].sha is None:
                continue
            for link in project.linkfiles:
                wanted.add(link.dest)
                out.append(self._linkfile(project, link))
            for copy in project.copyfiles:
                out.append(self._copyfile(project, copy, copies_before))
        for record in old.values():
            for old_link in record.linkfiles:
                dest = self.root / old_link["dest"]
                if old_link["dest"] not in wanted and dest.is_symlink():
                    dest.unlink()
                    out.append(LinkResult("linkfile", old_link["dest"], "removed"))
        return out

    def _inside_root(self, path: Path) -> bool:
        try:
            path.resolve().relative_to(self.root)
        except ValueError:
            return False
        return True

    def _linkfile(self, project: Project, link: FileLink) -> LinkResult:
        dest = self.root / link.dest
        target = os.path.relpath(self.root / project.path / link.src, dest.parent)
        if not self._inside_root(dest.parent):
            return LinkResult("linkfile", link.dest, "skipped", "dest leaves the workspace through a symlink")
        if dest.is_symlink() and os.readlink(dest) == target:
            return LinkResult("linkfile", link.dest, "unchanged")
        if dest.exists() and not dest.is_symlink():
            return LinkResult("linkfile", link.dest, "skipped",
                              f"{link.dest} exists and is not a symlink; left alone")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.orch-tmp")
        tmp.unlink(missing_ok=True)
        os.symlink(target, tmp)
        os.replace(tmp, dest)
        return LinkResult("linkfile", link.dest, "created")

    def _copyfile(self, project: Project, copy: FileLink, ours: set[str]) -> LinkResult:
        src = self.root / project.path / copy.src
        dest = self.root / copy.dest
        checkout = (self.root / project.path).resolve()
        if not src.resolve().is_relative_to(checkout) or not src.is_file():
            return LinkResult("copyfile", copy.dest, "skipped", f"{project.path}/{copy.src} is not a file "
                              "inside the project")
        if not self._inside_root(dest.parent):
            return LinkResult("copyfile", copy.dest, "skipped", "dest leaves the workspace through a symlink")
        data = src.read_bytes()
        if dest.is_file() and not dest.is_symlink() and dest.read_bytes() == data:
            return LinkResult("copyfile", copy.dest, "unchanged")
        if (dest.exists() or dest.is_symlink()) and copy.dest not in ours:
            return LinkResult("copyfile", copy.dest, "skipped", f"{copy.dest} exists and differs; left alone")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.orch-tmp")
        tmp.write_bytes(data)
        shutil.copymode(src, tmp)
        os.replace(tmp, dest)
        return LinkResult("copyfile", copy.dest, "created")

    # status, tree, pinned manifest

    def status(self, jobs: int | None = None) -> list[ProjectStatus]:
        state = self.state()
        records = list(state.projects.values())
        with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 2) as pool:
            rows = list(pool.map(self._project_status, records))
        return rows + [
            ProjectStatus(path, "", None, None, None, False, False, 0, 0, 0, False,
                          [f"never synced: {reason}"])
            for path, reason in state.failed.items()
        ]

    def _project_status(self, record: ProjectRecord) -> ProjectStatus:
        git_dir = self.git_dir(record.path)
        checkout = self.checkout_dir(record.path)
        row = ProjectStatus(record.path, record.name, record.sha, None, None, False, False, 0, 0, 0, True)
        if not git_dir.is_dir() or not (checkout / ".git").is_file():
            row.problems.append("checkout missing")
            row.links_ok = False
            return row
        row.head = gitops.read_head(git_dir)
        row.branch = gitops.head_branch(git_dir)
        row.at_pinned = row.head == record.sha
        try:
            row.modified, row.untracked = gitops.worktree_changes(git_dir, checkout)
        except gitops.GitError as error:
            row.problems.append(gitops.stderr_of(error))
        row.dirty = bool(row.modified or row.untracked)
        if row.head and not row.at_pinned:
            row.local_commits = gitops.local_commit_count(git_dir, row.head, [record.sha, PINNED_REF])
        for link in record.linkfiles:
            dest = self.root / link["dest"]
            expected = os.path.relpath(checkout / link["src"], dest.parent)
            if not (dest.is_symlink() and os.readlink(dest) == expected and dest.exists()):
                row.links_ok = False
                row.problems.append(f"linkfile {link['dest']} missing or wrong")
        if (git_dir / JOURNAL).exists():
            row.problems.append("interrupted sync: run `orch sync` to repair")
        if record.skipped:
            row.problems.append(f"last sync skipped it: {record.skipped}")
        return row

    def require_complete(self) -> None:
        """Refuse (exit 125) a workspace whose last sync left manifest projects without a
        checkout: a build from it would fail for reasons that say nothing about the code."""
        failed = self.state().failed
        if failed:
            path, reason = next(iter(failed.items()))
            more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            raise InfraError(f"{self.root}: {path} was never synced{more}: {reason}",
                             hint="fix the sync (`orch sync`), or remove the project with a local "
                                  f"manifest in {ORCH_DIR}/{layout.LOCAL_MANIFESTS}/")

    def tree(self) -> SourceTree:
        """The synced projects: manifest path, checkout directory and pinned SHA."""
        state = self.state()
        return SourceTree(self.root, {
            path: ProjectCheckout(path, self.checkout_dir(path), rec.sha)
            for path, rec in state.projects.items()
        })

    def manifest_from_state(self) -> Manifest:
        state = self.state()
        m = state.manifest
        remotes = {name: Remote(name, url, url) for name, url in m.remotes.items()}
        projects = tuple(rec.to_project() for rec in state.projects.values())
        return Manifest(projects, remotes, m.default_remote, m.default_revision)

    def pinned_manifest_xml(self) -> str:
        """The workspace as a fully pinned manifest, like ``repo manifest -r``."""
        state = self.state()
        xml = to_xml(self.manifest_from_state(), {p: rec.sha for p, rec in state.projects.items()})
        base = state.manifest.remotes_base
        if base is None:
            return xml
        declaration, _, rest = xml.partition("\n")
        note = f"<!-- relative remotes were resolved against {base.replace('--', '- -')} -->"
        return f"{declaration}\n{note}\n{rest}"


def read_sparse_marker(git_dir: Path) -> list[str] | None:
    """The directories the checkout was last made sparse on, ``None`` for a full checkout."""
    try:
        value = json.loads((git_dir / layout.SPARSE_MARKER).read_text())
    except (OSError, ValueError):
        return None
    return [str(x) for x in value] if isinstance(value, list) else None


def set_sparse(git_dir: Path, checkout: Path, directories: list[str] | None) -> None:
    """Make the checkout sparse on ``directories`` (cone mode with a sparse index: the
    top-level files plus those directories; blobs elsewhere are never read, so they may be
    missing from the repository), or full again with ``None`` (the promisor setting stays:
    blobs are then fetched from origin)."""
    marker = git_dir / layout.SPARSE_MARKER
    if directories is None:
        if marker.exists():
            gitops.run(["sparse-checkout", "disable"], git_dir=git_dir, cwd=checkout)
        marker.unlink(missing_ok=True)
        return
    # git tolerates a missing blob outside the sparse set only in a promisor repository (as a
    # partial clone is): say origin promises them, so they are fetched if ever needed
    for key, value in (("core.repositoryformatversion", "1"), ("extensions.partialClone", "origin"),
                       ("remote.origin.promisor", "true")):
        gitops.run(["config", key, value], git_dir=git_dir)
    gitops.run(["sparse-checkout", "set", "--cone", "--sparse-index", "--", *directories],
               git_dir=git_dir, cwd=checkout)
    atomic_write(marker, json.dumps(directories) + "\n")


def parse_sparse(items: Sequence[str]) -> dict[str, list[str]]:
    """``--sparse PATH=DIR[,DIR...]`` (an empty list: the top-level files only)."""
    out: dict[str, list[str]] = {}
    for item in items:
        path, eq, dirs = item.partition("=")
        if not eq or not path.strip("/"):
            raise InputError(f"--sparse {item}: expected PROJECT_PATH=DIR[,DIR...]",
                             hint="e.g. --sparse projects/vm-examples=apps/Arm")
        out[path.strip("/")] = [d for d in dirs.split(",") if d]
    return out


def _clean_sparse_dirs(where: str, directories: Sequence[str]) -> list[str]:
    out: list[str] = []
    for raw in directories:
        directory = raw.strip().strip("/")
        parts = directory.split("/")
        if not directory or any(p in ("", ".", "..") for p in parts) or directory.startswith("-") \
                or any(c in directory for c in "*?[]!\\"):
            raise InputError(f"{where}: sparse directory '{raw}' must be a plain relative directory "
                             "inside the project")
        out.append(directory)
    return sorted(set(out))


def _gitfile_points_at(gitfile: Path, git_dir: Path) -> bool:
    """``gitfile`` (a ``gitdir: PATH`` file) names ``git_dir``."""
    try:
        text = gitfile.read_text(errors="replace").strip()
    except OSError:
        return False
    if not text.startswith("gitdir:"):
        return False
    target = Path(text.removeprefix("gitdir:").strip())
    return (gitfile.parent / target).resolve() == git_dir.resolve()


def clone_failure(what: str, source: str, error: gitops.GitError) -> OrchError:
    return InfraError(f"{what}: cloning {source} failed: {gitops.stderr_of(error)}",
                      hint="check the URL and your network, or use --mirror DIR")


def _how_to_proceed(git_dir: Path) -> str:
    """The hint for a skipped project: take an applied patchset off, or --force a backup."""
    branch = gitops.head_branch(git_dir) or ""
    if branch.startswith(layout.PATCHSET_NAMESPACE + "/"):
        return (f" (patchset '{branch.removeprefix(layout.PATCHSET_NAMESPACE + '/')}' is applied: "
                "`orch patchset revert` first, or use --force to back up and sync)")
    return " (use --force to back them up and sync)"
