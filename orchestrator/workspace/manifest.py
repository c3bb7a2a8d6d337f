"""The `repo` manifest model: parse, merge and validate manifest XML into resolved projects.

Covers what seL4's manifests use and what `repo` users rely on: ``remote`` (with ``fetch``
relative to the manifest repository's own URL, like ``../seL4``), ``default``, ``project``
(name, path, remote, revision, upstream, dest-branch, groups, ``linkfile``, ``copyfile``),
``include``, ``remove-project``, ``extend-project``, and local manifests that are applied
after the main one. Parsing goes through defusedxml, so entity bombs are refused. Every
problem becomes one :class:`InputError` naming the file and the element.
"""

from __future__ import annotations

import posixpath
import re
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import defusedxml
import defusedxml.ElementTree as SafeET

from orchestrator.errors import InputError
from orchestrator.layout import ORCH_DIR

_SHA_RE = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_IGNORED_ELEMENTS = {"notice", "manifest-server", "repo-hooks", "superproject", "contactinfo", "annotation"}
_RESERVED_COMPONENTS = {".git", ORCH_DIR, ".repo"}


def is_sha(revision: str) -> bool:
    """True for a full object name (SHA-1 or SHA-256), which needs no resolving."""
    return bool(_SHA_RE.match(revision))


@dataclass(frozen=True)
class FileLink:
    """A ``linkfile`` (symlink) or ``copyfile`` (copy, ``copy`` True): ``src`` in the project,
    ``dest`` in the workspace root. ``project`` (its path) is set where links of several
    projects are listed together (a variant tree's links)."""

    src: str
    dest: str
    project: str = ""
    copy: bool = False


@dataclass(frozen=True)
class Remote:
    name: str
    fetch: str  # as written in the manifest
    url: str  # ``fetch`` resolved against the manifest repository URL
    revision: str | None = None


@dataclass(frozen=True)
class Project:
    """One project, with remote, URL and revision already resolved from the defaults."""

    name: str
    path: str
    remote: str
    url: str
    revision: str  # SHA, branch, tag or refs/... exactly as the manifest says
    upstream: str | None = None
    dest_branch: str | None = None
    groups: tuple[str, ...] = ()
    linkfiles: tuple[FileLink, ...] = ()
    copyfiles: tuple[FileLink, ...] = ()
    where: str = field(default="", compare=False)  # "default.xml: <project ...>" for messages

    @property
    def all_groups(self) -> frozenset[str]:
        """The groups `repo` gives a project implicitly plus the declared ones."""
        implicit = {"all", f"name:{self.name}", f"path:{self.path}"}
        if "notdefault" not in self.groups:
            implicit.add("default")
        return frozenset(implicit | set(self.groups))


@dataclass(frozen=True)
class Manifest:
    """The merged, validated manifest: projects in manifest order, keyed by path on lookup."""

    projects: tuple[Project, ...]
    remotes: dict[str, Remote] = field(default_factory=dict)
    default_remote: str | None = None
    default_revision: str | None = None

    def project(self, path: str) -> Project:
        for p in self.projects:
            if p.path == path:
                return p
        raise KeyError(path)

    def select_groups(self, groups: Sequence[str]) -> Manifest:
        """Only the projects in any of ``groups`` (repo's ``-g``; ``-name`` excludes)."""
        wanted = {g for g in groups if not g.startswith("-")}
        unwanted = {g[1:] for g in groups if g.startswith("-")}
        kept = tuple(
            p for p in self.projects
            if (not wanted or p.all_groups & wanted) and not p.all_groups & unwanted
        )
        return replace(self, projects=kept)


# --- raw parse -------------------------------------------------------------------------------


@dataclass
class _RawProject:
    attrs: dict[str, str]
    linkfiles: list[FileLink]
    copyfiles: list[FileLink]
    origin: str  # "file: <project ...>" for messages


@dataclass
class _Merge:
    """The state of a manifest while its files are read, in order."""

    remotes: dict[str, dict[str, str]] = field(default_factory=dict)
    remote_origin: dict[str, str] = field(default_factory=dict)
    default: dict[str, str] = field(default_factory=dict)
    projects: list[_RawProject] = field(default_factory=list)


def describe(element: ET.Element) -> str:
    """``<project name="x" path="y">``: how an element is named in error messages."""
    keys = ("name", "path") if element.tag in ("project", "remove-project", "extend-project") else None
    attrs = [(k, v) for k, v in element.attrib.items() if keys is None or k in keys]
    text = " ".join(f'{k}="{v}"' for k, v in attrs[:3])
    return f"<{element.tag}{' ' + text if text else ''}>"


def _error(display: str, element: ET.Element | None, message: str, hint: str | None = None) -> InputError:
    where = f"{display}: {describe(element)}" if element is not None else display
    return InputError(f"{where}: {message}", hint=hint)


def _read_xml(file: Path, display: str) -> ET.Element:
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{display}: manifest file not found") from None
    except OSError as exc:
        raise InputError(f"{display}: cannot read manifest: {exc.strerror}") from None
    try:
        root = SafeET.fromstring(data, forbid_dtd=True)
    except defusedxml.DefusedXmlException as exc:
        raise InputError(
            f"{display}: refused: the XML declares a DTD or entities ({type(exc).__name__})",
            hint="manifests never need <!DOCTYPE>/<!ENTITY>; this protects against entity bombs",
        ) from None
    except ET.ParseError as exc:
        line, col = exc.position
        raise InputError(f"{display}: malformed XML at line {line}, column {col + 1}: {exc}") from None
    if root.tag != "manifest":
        raise InputError(f"{display}: the root element is <{root.tag}>, expected <manifest>")
    return root


def check_relative_path(display: str, element: ET.Element, attr: str, value: str | None) -> str:
    """A path attribute that must be relative, normalised and stay inside its base directory."""
    if value is None or value.strip() == "":
        raise _error(display, element, f"missing {attr}")
    if "\\" in value or value.startswith(("/", "~")) or re.match(r"^[A-Za-z]:", value):
        raise _error(display, element, f"{attr} must be relative and stay inside the workspace")
    parts = PurePosixPath(value).parts
    if any(part == ".." for part in parts):
        raise _error(display, element, f"{attr} must be relative and stay inside the workspace")
    if any(part in _RESERVED_COMPONENTS for part in parts):
        raise _error(display, element, f"{attr} may not contain .git, .orch or .repo")
    normal = posixpath.normpath(value)
    if normal in (".", ""):
        raise _error(display, element, f"{attr} must name something inside the workspace")
    return normal


def _file_links(display: str, element: ET.Element) -> tuple[list[FileLink], list[FileLink]]:
    links: list[FileLink] = []
    copies: list[FileLink] = []
    for child in element:
        if child.tag in ("linkfile", "copyfile"):
            src = check_relative_path(display, child, "src", child.get("src"))
            dest = check_relative_path(display, child, "dest", child.get("dest"))
            copy = child.tag == "copyfile"
            (copies if copy else links).append(FileLink(src, dest, copy=copy))
        elif child.tag == "annotation":
            continue
        elif child.tag == "project":
            raise _error(display, child, "nested projects are not supported")
        else:
            raise _error(display, child, f"unknown element inside <{element.tag}>")
    return links, copies


def _apply_file(
    merge: _Merge, file: Path, display: str, include_root: Path, stack: tuple[Path, ...]
) -> None:
    resolved = file.resolve()
    if resolved in stack:
        chain = " -> ".join(p.name for p in (*stack, resolved))
        raise InputError(f"{display}: include cycle: {chain}")
    root = _read_xml(file, display)
    for element in root:
        if not isinstance(element.tag, str):
            continue  # comments and processing instructions
        _apply_element(merge, element, display, include_root, (*stack, resolved))


def _apply_element(
    merge: _Merge, element: ET.Element, display: str, include_root: Path, stack: tuple[Path, ...]
) -> None:
    tag = element.tag
    if tag == "remote":
        name = element.get("name")
        if not name or not element.get("fetch"):
            raise _error(display, element, "a remote needs name and fetch")
        if name in merge.remotes and merge.remotes[name] != dict(element.attrib):
            raise _error(display, element, f"remote '{name}' is already defined differently "
                         f"in {merge.remote_origin[name]}")
        merge.remotes[name] = dict(element.attrib)
        merge.remote_origin[name] = display
    elif tag == "default":
        if merge.default and merge.default != dict(element.attrib):
            raise _error(display, element, "a second, different <default>")
        merge.default = dict(element.attrib)
    elif tag == "project":
        name = element.get("name")
        if not name:
            raise _error(display, element, "a project needs a name")
        path = check_relative_path(display, element, "path", element.get("path", name))
        links, copies = _file_links(display, element)
        attrs = dict(element.attrib)
        attrs["path"] = path
        merge.projects.append(_RawProject(attrs, links, copies, f"{display}: {describe(element)}"))
    elif tag == "include":
        name = element.get("name")
        target = check_relative_path(display, element, "name", name)
        _apply_file(merge, include_root / target, target, include_root, stack)
    elif tag == "remove-project":
        _remove_project(merge, element, display)
    elif tag == "extend-project":
        _extend_project(merge, element, display)
    elif tag in _IGNORED_ELEMENTS:
        return
    else:
        raise _error(display, element, "unknown manifest element")


def _matches(raw: _RawProject, name: str | None, path: str | None) -> bool:
    return (name is None or raw.attrs["name"] == name) and (path is None or raw.attrs["path"] == path)


def _remove_project(merge: _Merge, element: ET.Element, display: str) -> None:
    name = element.get("name")
    path = element.get("path")
    if name is None and path is None:
        raise _error(display, element, "remove-project needs name or path")
    kept = [p for p in merge.projects if not _matches(p, name, path)]
    if len(kept) == len(merge.projects) and element.get("optional", "false") != "true":
        raise _error(display, element, "no such project to remove",
                     hint='add optional="true" if the project may be absent')
    merge.projects = kept


def _extend_project(merge: _Merge, element: ET.Element, display: str) -> None:
    name = element.get("name")
    if not name:
        raise _error(display, element, "extend-project needs a name")
    path = element.get("path")
    targets = [p for p in merge.projects if _matches(p, name, path)]
    if not targets:
        raise _error(display, element, "no such project to extend")
    links, copies = _file_links(display, element)
    for raw in targets:
        for key in ("revision", "remote", "upstream", "dest-branch"):
            if key in element.attrib:
                raw.attrs[key] = element.attrib[key]
        if "groups" in element.attrib:
            joined = (raw.attrs.get("groups", ""), element.attrib["groups"])
            raw.attrs["groups"] = ",".join(g for g in joined if g)
        if "dest-path" in element.attrib:
            dest_path = element.attrib["dest-path"]
            raw.attrs["path"] = check_relative_path(display, element, "dest-path", dest_path)
        raw.linkfiles.extend(links)
        raw.copyfiles.extend(copies)


# --- resolving -------------------------------------------------------------------------------


def resolve_fetch_url(fetch: str, manifest_url: str | None) -> str:
    """A remote's ``fetch`` made absolute the way `repo` does: relative to the manifest
    repository's own URL (``https://github.com/seL4/x-manifest.git`` + ``../seL4`` ->
    ``https://github.com/seL4``). Local paths resolve like paths."""
    fetch = fetch.rstrip("/")
    if not fetch.startswith("."):
        return fetch
    if manifest_url is None:
        raise ValueError(fetch)
    base = manifest_url.rstrip("/")
    if "://" in base:
        return urllib.parse.urljoin(base, fetch).rstrip("/")
    if re.match(r"^[^/:]+:", base):  # scp-like host:path
        host, _, rest = base.partition(":")
        return f"{host}:{posixpath.normpath(posixpath.join(posixpath.dirname(rest), fetch))}"
    return posixpath.normpath(posixpath.join(posixpath.dirname(base), fetch))


def _project_url(remote_url: str, name: str) -> str:
    return f"{remote_url.rstrip('/')}/{name}"


def _build(merge: _Merge, manifest_url: str | None) -> Manifest:
    remotes: dict[str, Remote] = {}
    for name, attrs in merge.remotes.items():
        try:
            url = resolve_fetch_url(attrs["fetch"], manifest_url)
        except ValueError:
            raise InputError(
                f"{merge.remote_origin[name]}: <remote name=\"{name}\">: relative fetch "
                f"\"{attrs['fetch']}\" needs the manifest repository URL",
                hint="sync from the manifest repository (-m URL) or pass --manifest-url URL",
            ) from None
        remotes[name] = Remote(name, attrs["fetch"], url, attrs.get("revision"))
    default = merge.default
    projects: list[Project] = []
    seen_paths: dict[str, str] = {}
    for raw in merge.projects:
        projects.append(_resolve_project(raw, remotes, default))
        path = raw.attrs["path"]
        if path in seen_paths:
            same_name = projects[-1].name == _name_of(seen_paths[path])
            what = "duplicate name and path" if same_name else "duplicate path"
            raise InputError(f"{raw.origin}: {what}: already used by {seen_paths[path]}")
        seen_paths[path] = raw.origin
    return Manifest(tuple(projects), remotes, default.get("remote"), default.get("revision"))


def _name_of(origin: str) -> str:
    match = re.search(r'name="([^"]*)"', origin)
    return match.group(1) if match else ""


def _resolve_project(raw: _RawProject, remotes: dict[str, Remote], default: dict[str, str]) -> Project:
    a = raw.attrs
    remote_name = a.get("remote") or default.get("remote")
    if remote_name is None:
        raise InputError(f"{raw.origin}: no remote, and <default> names none")
    if remote_name not in remotes:
        known = ", ".join(sorted(remotes)) or "none"
        raise InputError(f"{raw.origin}: unknown remote '{remote_name}'", hint=f"defined remotes: {known}")
    remote = remotes[remote_name]
    revision = a.get("revision") or remote.revision or default.get("revision")
    if not revision:
        raise InputError(f"{raw.origin}: no revision, and neither its remote nor <default> gives one")
    groups = tuple(g for g in re.split(r"[,\s]+", a.get("groups", "")) if g)
    return Project(
        name=a["name"],
        path=a["path"],
        remote=remote_name,
        url=_project_url(remote.url, a["name"]),
        revision=revision,
        upstream=a.get("upstream") or default.get("upstream"),
        dest_branch=a.get("dest-branch") or default.get("dest-branch"),
        groups=groups,
        linkfiles=tuple(raw.linkfiles),
        copyfiles=tuple(raw.copyfiles),
        where=raw.origin,
    )


def load_manifest(
    file: Path,
    *,
    manifest_url: str | None = None,
    local_manifests: Iterable[Path] = (),
    display: str | None = None,
    include_root: Path | None = None,
) -> Manifest:
    """Parse ``file`` (with its includes), apply ``local_manifests`` in the given order, resolve
    remotes against ``manifest_url`` and validate. Raises :class:`InputError` on any problem."""
    merge = _Merge()
    root_dir = include_root or file.parent
    _apply_file(merge, file, display or file.name, root_dir, ())
    for local in local_manifests:
        _apply_file(merge, local, f"{local.parent.name}/{local.name}", local.parent, ())
    return _build(merge, manifest_url)


# --- writing ---------------------------------------------------------------------------------


def to_xml(manifest: Manifest, pinned: dict[str, str] | None = None) -> str:
    """The manifest as XML; with ``pinned`` (path -> SHA) every revision becomes that SHA and the
    original revision moves to ``upstream``, like ``repo manifest -r``. Remotes are written with
    absolute fetch URLs so the result stands on its own."""
    root = ET.Element("manifest")
    for remote in manifest.remotes.values():
        ET.SubElement(root, "remote", {"name": remote.name, "fetch": remote.url})
    default: dict[str, str] = {}
    if manifest.default_remote:
        default["remote"] = manifest.default_remote
    if manifest.default_revision:
        default["revision"] = manifest.default_revision
    if default:
        ET.SubElement(root, "default", default)
    for p in manifest.projects:
        attrs = {"name": p.name, "path": p.path, "remote": p.remote, "revision": p.revision}
        upstream = p.upstream
        if pinned is not None and p.path in pinned:
            if not is_sha(p.revision):
                upstream = p.revision
            attrs["revision"] = pinned[p.path]
        if upstream:
            attrs["upstream"] = upstream
        if p.dest_branch:
            attrs["dest-branch"] = p.dest_branch
        if p.groups:
            attrs["groups"] = ",".join(p.groups)
        element = ET.SubElement(root, "project", attrs)
        for link in p.linkfiles:
            ET.SubElement(element, "linkfile", {"src": link.src, "dest": link.dest})
        for copy in p.copyfiles:
            ET.SubElement(element, "copyfile", {"src": copy.src, "dest": copy.dest})
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
