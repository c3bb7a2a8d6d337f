"""The `repo` manifest model: parse, merge and validate manifest XML into resolved projects.

Follows `repo`'s parser (manifest_xml.py) element by element: ``remote``, ``default``,
``project`` (name, path, remote, revision, upstream, dest-branch, groups, clone-depth, sync-c,
sync-s, sync-tags, ``linkfile``, ``copyfile``), ``include`` (with its ``revision`` and
``groups`` inherited by what it includes), ``remove-project`` and ``extend-project`` (with
``base-rev``), ``notice``, and local manifests applied after the main one. Like repo, every
file is read first and then processed in phases (remotes, default, notice, then projects in
document order), so an element may refer to a remote defined further down.

Where repo is lax and orch deliberately stricter (README, "Differences from repo"), the
check says so in its message. Parsing goes through defusedxml (no entities, no external
references). Every problem becomes one :class:`InputError` line naming the file and element;
harmless oddities (an unknown element, an invalid boolean) become warnings on the result.
"""

from __future__ import annotations

import posixpath
import re
import sys
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import defusedxml
import defusedxml.ElementTree as SafeET

from orchestrator.errors import InputError
from orchestrator.layout import ORCH_DIR
from orchestrator.workspace import transport

_SHA_RE = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_KNOWN_IGNORED = {"manifest-server", "repo-hooks", "superproject", "contactinfo", "annotation",
                  "submanifest"}
_PROJECT_CHILDREN_IGNORED = {"annotation"}
_RESERVED_COMPONENTS = {".git", ORCH_DIR}  # and anything starting with .repo (as repo)
# Code points some filesystems (HFS+) drop when normalising names, so ".g\u200cit" is ".git"
# there: the set repo (and jgit) refuse.
_INVISIBLE = frozenset("\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                       "\u206a\u206b\u206c\u206d\u206e\u206f\ufeff")
LOCAL_GROUP_PREFIX = "local:"


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
    clone_depth: int | None = None  # shallow clone of this many commits
    sync_s: bool = False  # check out the project's submodules too
    sync_c: bool = False  # fetch only the pinned revision (orch always does after cloning)
    sync_tags: bool = True  # fetch tags
    declared_path: str | None = None  # the path before an extend-project dest-path moved it

    @property
    def all_groups(self) -> frozenset[str]:
        """The groups `repo` gives a project implicitly plus the declared ones. As in repo, the
        implicit ``path:`` group is the path the project was declared with, even after an
        extend-project ``dest-path`` moved it."""
        implicit = {"all", f"name:{self.name}", f"path:{self.declared_path or self.path}"}
        if "notdefault" not in self.groups:
            implicit.add("default")
        return frozenset(implicit | set(self.groups))

    def in_groups(self, groups: Sequence[str]) -> bool:
        """repo's ``-g`` rule: entries are read left to right and the last one that names a
        group of the project decides (``-x`` excludes, ``x`` includes); none -> not selected.
        No entries at all means ``default``."""
        mine = self.all_groups
        selected = False
        for group in groups or ("default",):
            if group.startswith("-") and group[1:] in mine:
                selected = False
            elif group in mine:
                selected = True
        return selected


@dataclass(frozen=True)
class Manifest:
    """The merged, validated manifest: projects in manifest order, keyed by path on lookup."""

    projects: tuple[Project, ...]
    remotes: dict[str, Remote] = field(default_factory=dict)
    default_remote: str | None = None
    default_revision: str | None = None
    notice: str | None = None  # the <notice> text, shown to the user like repo does
    warnings: tuple[str, ...] = ()  # one line each: ignored elements, invalid booleans

    def project(self, path: str) -> Project:
        for p in self.projects:
            if p.path == path:
                return p
        raise KeyError(path)

    def select_groups(self, groups: Sequence[str]) -> Manifest:
        """Only the projects ``groups`` selects (repo's ``-g``, see :meth:`Project.in_groups`)."""
        return replace(self, projects=tuple(p for p in self.projects if p.in_groups(groups)))


def parse_groups(text: str) -> list[str]:
    """A groups attribute or ``-g`` value: comma- and/or whitespace-separated, empties dropped."""
    return [g for g in re.split(r"[,\s]+", text) if g]


# --- messages --------------------------------------------------------------------------------


def quote(value: str) -> str:
    """``value`` safe to show on one terminal line: control and invisible characters escaped."""
    out = []
    for ch in value:
        if ch in _INVISIBLE or ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0:
            out.append(ch.encode("unicode_escape").decode("ascii"))
        else:
            out.append(ch)
    return "".join(out)


def describe(element: ET.Element) -> str:
    """``<project name="x" path="y">``: how an element is named in error messages."""
    keys = ("name", "path") if element.tag in ("project", "remove-project", "extend-project") else None
    attrs = [(k, v) for k, v in element.attrib.items() if keys is None or k in keys]
    text = " ".join(f'{k}="{quote(v)}"' for k, v in attrs[:3])
    return f"<{quote(str(element.tag))}{' ' + text if text else ''}>"


def _error(display: str, element: ET.Element | None, message: str, hint: str | None = None) -> InputError:
    where = f"{display}: {describe(element)}" if element is not None else display
    return InputError(f"{where}: {message}", hint=hint)


# --- reading files ---------------------------------------------------------------------------


def _read_xml(file: Path, display: str) -> ET.Element:
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{display}: manifest file not found") from None
    except OSError as exc:
        raise InputError(f"{display}: cannot read manifest: {exc.strerror}") from None
    try:
        # a DOCTYPE is harmless (repo accepts one); entity declarations and external
        # references are not: entity bombs, file reads
        root = SafeET.fromstring(data, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except defusedxml.DefusedXmlException as exc:
        raise InputError(
            f"{display}: refused: the XML declares entities or external references ({type(exc).__name__})",
            hint="manifests never need <!ENTITY>; this protects against entity bombs",
        ) from None
    except ET.ParseError as exc:
        line, col = exc.position
        raise InputError(f"{display}: malformed XML at line {line}, column {col + 1}: {exc}") from None
    if root.tag != "manifest":
        raise InputError(f"{display}: the root element is <{quote(str(root.tag))}>, expected <manifest>")
    return root


def local_path_problem(path: str, *, dir_ok: bool = False, cwd_dot_ok: bool = False) -> str | None:
    """Why ``path`` is unsafe as a path inside the workspace, or ``None``: repo's rules
    (``_CheckLocalPath``) plus ``.orch``, backslashes and drive letters. Case is ignored
    (``.GIT`` is ``.git`` on macOS and Windows)."""
    if not path:
        return "empty paths not allowed"
    if "~" in path:
        return "~ not allowed (Windows 8.3 short names like FOO~1 alias other names)"
    if _INVISIBLE & set(path):
        return "invisible Unicode characters not allowed (filesystems may drop them: .g\\u200cit is .git)"
    if "\r" in path or "\n" in path:
        return "newlines not allowed"
    if any(ord(c) < 0x20 for c in path):
        return "control characters not allowed"
    if "\\" in path or re.match(r"^[A-Za-z]:", path):
        return "backslashes and drive letters not allowed"
    lower = path.lower()
    parts = lower.rstrip("/").split("/")
    if not (cwd_dot_ok and parts == ["."]):
        for part in parts:
            if part in {".", ".."} or part in _RESERVED_COMPONENTS or part.startswith(".repo"):
                return f"bad component: {part}"
    if not dir_ok and lower.endswith("/"):
        return "a trailing / (directory) not allowed here"
    if lower.startswith("/"):
        return "path cannot be outside the workspace (absolute)"
    return None


def check_relative_path(display: str, element: ET.Element, attr: str, value: str | None, *,
                        dir_ok: bool = False, cwd_dot_ok: bool = False) -> str:
    """A path attribute that must stay inside its base directory; returns it normalised."""
    if value is None or value == "":
        raise _error(display, element, f"missing {attr}")
    problem = local_path_problem(value, dir_ok=dir_ok, cwd_dot_ok=cwd_dot_ok)
    if problem:
        raise _error(display, element, f'invalid {attr} "{quote(value)}": {problem}')
    return posixpath.normpath(value)


@dataclass
class _Node:
    """One top-level element of a manifest file, with the file it came from."""

    element: ET.Element
    display: str


@dataclass
class _Reader:
    """Reads a manifest file and its includes into a flat list of nodes, as repo does: an
    include's ``revision`` becomes the revision of the projects and includes inside it that
    have none, and its ``groups`` are added to the projects and extend-projects inside it."""

    include_root: Path
    warnings: list[str]
    nodes: list[_Node] = field(default_factory=list)

    def read(self, file: Path, display: str, groups: frozenset[str] = frozenset(),
             parent: ET.Element | None = None, stack: tuple[Path, ...] = ()) -> None:
        resolved = file.resolve()
        if resolved in stack:
            chain = " -> ".join(p.name for p in (*stack, resolved))
            raise InputError(f"{display}: include cycle: {chain}")
        root = _read_xml(file, display)
        for element in root:
            if not isinstance(element.tag, str):
                continue  # comments and processing instructions
            inherited = parent.get("revision") if parent is not None else None
            if inherited and element.tag in ("include", "project") and "revision" not in element.attrib:
                element.set("revision", inherited)
            if element.tag == "include":
                self._include(element, display, groups, (*stack, resolved))
                continue
            if groups and element.tag in ("project", "extend-project"):
                own = set(parse_groups(element.get("groups", "")))
                element.set("groups", ",".join(sorted(own | groups)))
            self.nodes.append(_Node(element, display))

    def _include(self, element: ET.Element, display: str, groups: frozenset[str],
                 stack: tuple[Path, ...]) -> None:
        name = element.get("name")
        if not name:
            raise _error(display, element, "an include needs a name")
        problem = local_path_problem(name)
        if problem:
            raise _error(display, element, f'invalid name "{quote(name)}": {problem} '
                         "(includes must stay inside the manifest repository)")
        target = self.include_root / name
        root = self.include_root.resolve()
        if not target.resolve().is_relative_to(root):
            raise _error(display, element, f"{quote(name)} resolves outside the manifest repository "
                         "(a symlink?); refused")
        if not target.is_file():
            raise _error(display, element, f"included file {quote(name)} does not exist or is not a file")
        more = frozenset(parse_groups(element.get("groups", "")))
        self.read(target, name, groups | more, element, stack)


# --- processing ------------------------------------------------------------------------------


@dataclass
class _RawProject:
    """A project while the manifest is processed (extend-project and remove-project edit it)."""

    name: str
    path: str
    remote: str
    revision: str
    upstream: str | None
    dest_branch: str | None
    groups: list[str]
    linkfiles: list[FileLink]
    copyfiles: list[FileLink]
    origin: str  # "file: <project ...>" for messages
    clone_depth: int | None = None
    sync_s: bool = False
    sync_c: bool = False
    sync_tags: bool = True
    declared_path: str | None = None


@dataclass
class _Default:
    remote: str | None = None
    revision: str | None = None
    upstream: str | None = None
    dest_branch: str | None = None
    sync_s: bool = False
    sync_c: bool = False
    sync_tags: bool = True


@dataclass
class _Builder:
    """Processes the nodes in repo's phases: remotes, default, notice, then projects,
    extend-project and remove-project in document order, then the base-rev checks."""

    warnings: list[str]
    remotes: dict[str, dict[str, str]] = field(default_factory=dict)
    remote_origin: dict[str, str] = field(default_factory=dict)
    default: _Default = field(default_factory=_Default)
    notice: str | None = None
    projects: list[_RawProject] = field(default_factory=list)
    base_rev_failures: list[str] = field(default_factory=list)

    def run(self, nodes: Sequence[_Node]) -> None:
        for node in nodes:
            if node.element.tag == "remote":
                self._remote(node)
        default_nodes = [n for n in nodes if n.element.tag == "default"]
        self._default(default_nodes)
        for node in nodes:
            if node.element.tag == "notice":
                if self.notice is not None:
                    raise _error(node.display, node.element, "a second <notice>")
                self.notice = _notice_text(node.element)
        handlers = {"project": self._project, "extend-project": self._extend,
                    "remove-project": self._remove}
        for node in nodes:
            tag = node.element.tag
            if tag in handlers:
                handlers[tag](node)
            elif tag not in ("remote", "default", "notice") and tag not in _KNOWN_IGNORED:
                self.warnings.append(f"{node.display}: {describe(node.element)}: unknown element, ignored")
        if self.base_rev_failures:
            raise InputError(f"base-rev check failed (rebase the local changes and update base-rev): "
                             f"{'; '.join(self.base_rev_failures)}")

    # remotes and default

    def _remote(self, node: _Node) -> None:
        element, display = node.element, node.display
        name = element.get("name")
        if not name or not element.get("fetch"):
            raise _error(display, element, "a remote needs name and fetch")
        attrs = dict(element.attrib)
        if name in self.remotes and self.remotes[name] != attrs:
            raise _error(display, element, f"remote '{quote(name)}' is already defined differently "
                         f"in {self.remote_origin[name]}")
        self.remotes.setdefault(name, attrs)
        self.remote_origin.setdefault(name, display)

    def _default(self, nodes: Sequence[_Node]) -> None:
        first: dict[str, str] | None = None
        for node in nodes:
            attrs = dict(node.element.attrib)
            if first is None:
                first = attrs
            elif attrs and attrs != first:
                raise _error(node.display, node.element, "a second, different <default>")
        if not nodes:
            return
        element, display = nodes[0].element, nodes[0].display
        assert first is not None
        remote = first.get("remote") or None
        if remote is not None and remote not in self.remotes:
            raise _error(display, element, f"unknown remote '{quote(remote)}'")
        for key in ("sync-j", "sync-j-max"):
            value = _xml_int(display, element, key)
            if value is not None and value <= 0:
                raise _error(display, element, f'{key} must be greater than 0, not "{value}"')
        self.default = _Default(
            remote=remote, revision=first.get("revision") or None,
            upstream=first.get("upstream") or None, dest_branch=first.get("dest-branch") or None,
            sync_s=self._bool(nodes[0], "sync-s", False),
            sync_c=self._bool(nodes[0], "sync-c", False),
            sync_tags=self._bool(nodes[0], "sync-tags", True),
        )

    def _bool(self, node: _Node, attr: str, default: bool) -> bool:
        value = node.element.get(attr, "").lower()
        if value == "":
            return default
        if value in ("yes", "true", "1"):
            return True
        if value in ("no", "false", "0"):
            return False
        self.warnings.append(f'{node.display}: {describe(node.element)}: {attr}="{quote(value)}" '
                             f"is not a boolean; ignored")
        return default

    def _remote_of(self, node: _Node, name: str | None) -> str:
        remote = name or self.default.remote
        if remote is None:
            raise _error(node.display, node.element, "no remote, and <default> names none")
        if remote not in self.remotes:
            known = ", ".join(sorted(self.remotes)) or "none"
            raise _error(node.display, node.element, f"unknown remote '{quote(remote)}'",
                         hint=f"defined remotes: {known}")
        return remote

    # projects

    def _project(self, node: _Node) -> None:
        element, display = node.element, node.display
        name = element.get("name")
        if not name:
            raise _error(display, element, "a project needs a name")
        name_problem = local_path_problem(name, dir_ok=True)
        if name_problem:
            raise _error(display, element, f'invalid name "{quote(name)}": {name_problem}')
        remote = self._remote_of(node, element.get("remote") or None)
        revision = (element.get("revision") or self.remotes[remote].get("revision")
                    or self.default.revision)
        if not revision:
            raise _error(display, element, "no revision, and neither its remote nor <default> gives one")
        raw_path = element.get("path") or name
        if raw_path.rstrip("/") == "." and element.get("path"):
            raise _error(display, element, 'path "." (a project at the workspace root) is not supported '
                         "by orch: the workspace root holds .orch/ and the other checkouts")
        path = check_relative_path(display, element, "path", raw_path, dir_ok=True)
        depth = _xml_int(display, element, "clone-depth")
        if depth is not None and depth <= 0:
            raise _error(display, element, f'clone-depth must be greater than 0, not "{depth}"')
        for child in element:
            if isinstance(child.tag, str) and child.tag == "project":
                raise _error(display, child, "nested projects (sub-projects) are not supported by orch")
        origin = f"{display}: {describe(element)}"
        raw = _RawProject(
            name=name, path=path, remote=remote, revision=revision,
            upstream=element.get("upstream") or self.default.upstream,
            dest_branch=element.get("dest-branch") or self.default.dest_branch,
            groups=list(dict.fromkeys(parse_groups(element.get("groups", "")))),
            linkfiles=[], copyfiles=[], origin=origin, clone_depth=depth,
            sync_s=self._bool(node, "sync-s", self.default.sync_s),
            sync_c=self._bool(node, "sync-c", self.default.sync_c),
            sync_tags=self._bool(node, "sync-tags", self.default.sync_tags),
        )
        self._file_links(node, raw)
        self._claim_path(raw, origin)
        self.projects.append(raw)

    def _claim_path(self, raw: _RawProject, blame: str, *, ignore: _RawProject | None = None) -> None:
        for other in self.projects:
            if other is not ignore and other.path == raw.path:
                what = "duplicate name and path" if other.name == raw.name else "duplicate path"
                raise InputError(f"{blame}: {what} \"{quote(raw.path)}\": already used by {other.origin}")

    def _file_links(self, node: _Node, raw: _RawProject) -> None:
        for child in node.element:
            if not isinstance(child.tag, str):
                continue
            if child.tag in ("linkfile", "copyfile"):
                link = child.tag == "linkfile"
                dest = check_relative_path(node.display, child, "dest", child.get("dest"))
                src = check_relative_path(node.display, child, "src", child.get("src"),
                                          dir_ok=link, cwd_dot_ok=link)
                target = raw.linkfiles if link else raw.copyfiles
                entry = FileLink(src, dest, copy=not link)
                if entry not in target:
                    target.append(entry)
            elif child.tag not in _PROJECT_CHILDREN_IGNORED and child.tag != "project":
                self.warnings.append(f"{node.display}: {describe(child)} inside {describe(node.element)}: "
                                     "unknown element, ignored")

    def _extend(self, node: _Node) -> None:
        element, display = node.element, node.display
        name = element.get("name")
        if not name:
            raise _error(display, element, "extend-project needs a name")
        named = [p for p in self.projects if p.name == name]
        if not named:
            raise _error(display, element, "no such project to extend")
        path = element.get("path") or None
        targets = [p for p in named if path is None or p.path == posixpath.normpath(path)]
        if not targets:
            raise _error(display, element, f'no project "{quote(name)}" at path "{quote(path or "")}" '
                         "to extend (orch refuses what repo silently ignores)")
        dest_path = element.get("dest-path") or None
        if dest_path and path is None and len(named) > 1:
            raise _error(display, element, "dest-path needs path= when several projects have this name")
        remote = self._remote_of(node, element.get("remote")) if element.get("remote") else None
        revision = element.get("revision") or None
        base_rev = element.get("base-rev") or None
        groups = parse_groups(element.get("groups", ""))
        blame = f"{display}: {describe(element)}"
        for raw in targets:
            raw.groups = [g for g in dict.fromkeys([*raw.groups, *groups])
                          if not g.startswith(LOCAL_GROUP_PREFIX)]
            if revision:
                if base_rev and raw.revision != base_rev:
                    self.base_rev_failures.append(
                        f"{blame}: base-rev {quote(base_rev)} but the project is at {quote(raw.revision)}")
                raw.revision = revision
            if remote:
                raw.remote = remote
            if element.get("dest-branch"):
                raw.dest_branch = element.get("dest-branch")
            if element.get("upstream"):
                raw.upstream = element.get("upstream")
            if dest_path:
                raw.declared_path = raw.declared_path or raw.path
                raw.path = check_relative_path(display, element, "dest-path", dest_path, dir_ok=True)
                self._claim_path(raw, blame, ignore=raw)
            self._file_links(node, raw)

    def _remove(self, node: _Node) -> None:
        element, display = node.element, node.display
        name = element.get("name") or None
        path = element.get("path") or None
        if name is None and path is None:
            raise _error(display, element, "remove-project needs name and/or path")
        base_rev = element.get("base-rev") or None
        norm = posixpath.normpath(path) if path else None
        gone = [p for p in self.projects
                if (name is not None and path is None and p.name == name)
                or (norm is not None and p.path == norm and (name is None or p.name == name))]
        blame = f"{display}: {describe(element)}"
        for raw in gone:
            if base_rev and raw.revision != base_rev:
                self.base_rev_failures.append(
                    f"{blame}: base-rev {quote(base_rev)} but the project is at {quote(raw.revision)}")
        if not gone and not self._bool(node, "optional", False):
            raise _error(display, element, "no such project to remove",
                         hint='add optional="true" if the project may be absent')
        self.projects = [p for p in self.projects if not any(p is g for g in gone)]


def _xml_int(display: str, element: ET.Element, attr: str) -> int | None:
    value = element.get(attr)
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise _error(display, element, f'{attr}="{quote(value)}" is not an integer') from None


def _notice_text(element: ET.Element) -> str:
    """The notice with its indentation removed the way repo does (like a docstring), and
    control and invisible characters dropped (it goes to the terminal)."""
    text = "".join(ch for ch in element.text or ""
                   if ch in "\n\t" or not (ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 or ch in _INVISIBLE))
    lines = text.splitlines()
    if not lines:
        return ""
    indent = min((len(line) - len(line.lstrip()) for line in lines[1:] if line.strip()), default=sys.maxsize)
    clean = [lines[0].strip(), *(line[indent:].rstrip() for line in lines[1:])]
    while clean and not clean[0]:
        clean.pop(0)
    while clean and not clean[-1]:
        clean.pop()
    return "\n".join(clean)


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


def _resolve_remotes(builder: _Builder, manifest_url: str | None) -> dict[str, Remote]:
    remotes: dict[str, Remote] = {}
    for name, attrs in builder.remotes.items():
        where = f"{builder.remote_origin[name]}: <remote name=\"{quote(name)}\">"
        try:
            url = resolve_fetch_url(attrs["fetch"], manifest_url)
        except ValueError:
            raise InputError(
                f"{where}: relative fetch \"{quote(attrs['fetch'])}\" needs the manifest repository URL",
                hint="sync from the manifest repository (-m URL) or pass --manifest-url URL",
            ) from None
        problem = transport.url_problem(url)
        if problem:
            raise InputError(f"{where}: fetch URL \"{quote(url)}\" refused: {problem}")
        remotes[name] = Remote(name, attrs["fetch"], url, attrs.get("revision"))
    return remotes


def _build(builder: _Builder, manifest_url: str | None) -> Manifest:
    remotes = _resolve_remotes(builder, manifest_url)
    projects = tuple(
        Project(
            name=raw.name, path=raw.path, remote=raw.remote,
            url=_project_url(remotes[raw.remote].url, raw.name), revision=raw.revision,
            upstream=raw.upstream, dest_branch=raw.dest_branch, groups=tuple(raw.groups),
            linkfiles=tuple(raw.linkfiles), copyfiles=tuple(raw.copyfiles), where=raw.origin,
            clone_depth=raw.clone_depth, sync_s=raw.sync_s, sync_c=raw.sync_c, sync_tags=raw.sync_tags,
            declared_path=raw.declared_path,
        )
        for raw in builder.projects
    )
    return Manifest(projects, remotes, builder.default.remote, builder.default.revision,
                    builder.notice, tuple(dict.fromkeys(builder.warnings)))


def load_manifest(
    file: Path,
    *,
    manifest_url: str | None = None,
    local_manifests: Iterable[Path] = (),
    display: str | None = None,
    include_root: Path | None = None,
) -> Manifest:
    """Parse ``file`` (with its includes), apply ``local_manifests`` in the given order, resolve
    remotes against ``manifest_url`` and validate. Raises :class:`InputError` on any problem.

    Includes are relative to ``include_root`` (default: the file's directory) and must stay
    inside it; a local manifest's includes are relative to its own directory. The projects of
    a local manifest ``NAME.xml`` get the group ``local::NAME``, as in repo."""
    warnings: list[str] = []
    reader = _Reader(include_root or file.parent, warnings)
    reader.read(file, display or file.name)
    for local in local_manifests:
        local_reader = _Reader(local.parent, warnings, reader.nodes)
        local_reader.read(local, f"{local.parent.name}/{local.name}",
                          frozenset({f"{LOCAL_GROUP_PREFIX}:{local.stem}"}))
    builder = _Builder(warnings)
    builder.run(reader.nodes)
    return _build(builder, manifest_url)


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
        if p.clone_depth:
            attrs["clone-depth"] = str(p.clone_depth)
        for key, value, unset in (("sync-s", p.sync_s, False), ("sync-c", p.sync_c, False),
                                  ("sync-tags", p.sync_tags, True)):
            if value != unset:
                attrs[key] = "true" if value else "false"
        element = ET.SubElement(root, "project", attrs)
        for link in p.linkfiles:
            ET.SubElement(element, "linkfile", {"src": link.src, "dest": link.dest})
        for copy in p.copyfiles:
            ET.SubElement(element, "copyfile", {"src": copy.src, "dest": copy.dest})
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
