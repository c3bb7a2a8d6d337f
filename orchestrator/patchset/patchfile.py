"""Patch files: parsing ``git format-patch`` mails and ``repo diff`` output, and writing mails.

Everything here is text in, records out: diffs are parsed with unidiff, and every path a
patch touches is checked to stay inside its project (no absolute paths, no ``..``). Nothing
here touches a repository; checking a patch against a checkout lives in ``patchcheck``.
"""

from __future__ import annotations

import email.parser
import email.policy
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from unidiff.errors import UnidiffParseError
from unidiff.patch import PatchSet

from orchestrator.errors import InputError

DEV_NULL = "/dev/null"
_PROJECT_HEADER = re.compile(r"^project (?P<path>\S+?)/?\s*$")
_DIFF_START = re.compile(r"^(diff --git |--- )")


@dataclass(frozen=True)
class Hunk:
    """One hunk: its ``@@`` header and its pre-image and post-image lines (no newlines)."""

    header: str
    source_start: int
    source_length: int
    before: tuple[str, ...]
    after: tuple[str, ...]
    leading_context: int  # context lines before the first change
    trailing_context: int  # context lines after the last change


@dataclass(frozen=True)
class FileChange:
    """What a patch does to one file."""

    source: str | None  # path before, None for a new file
    target: str | None  # path after, None for a deleted file
    hunks: tuple[Hunk, ...]
    symlink: bool = False  # the file after the patch is a symbolic link (mode 120000)

    @property
    def path(self) -> str:
        return self.target or self.source or "?"


@dataclass(frozen=True)
class ParsedPatch:
    """A patch file: where it came from, its mail headers if any, and its file changes."""

    label: str  # the file name, for messages
    subject: str
    author: str
    changes: tuple[FileChange, ...] = field(default_factory=tuple)


_SYMLINK_MODE = re.compile(r"^(?:new file mode|new mode) 120000$", re.MULTILINE)


def _strip_prefix(name: str, prefix: str) -> str | None:
    name = name.split("\t", 1)[0].strip()
    if name == DEV_NULL:
        return None
    if name.startswith('"') and name.endswith('"'):
        name = name[1:-1]
    return name[len(prefix):] if name.startswith(prefix) else name


def check_relative_path(path: str, label: str) -> None:
    """Refuse a path that is absolute or climbs out of its project with ``..``."""
    pure = PurePosixPath(path)
    if pure.is_absolute() or path.startswith("\\") or re.match(r"^[A-Za-z]:", path):
        raise InputError(f"{label}: path '{path}' is absolute; a patch may only touch its own project")
    if ".." in pure.parts or path in ("", "."):
        raise InputError(f"{label}: path '{path}' leaves its project ('..'); refusing it")
    if ".git" in pure.parts:
        raise InputError(f"{label}: path '{path}' is inside .git; refusing it")


def _hunk_record(hunk: object) -> Hunk:
    before: list[str] = []
    after: list[str] = []
    kinds: list[str] = []
    for line in hunk:  # type: ignore[attr-defined]
        kind = line.line_type
        value = line.value[:-1] if line.value.endswith("\n") else line.value
        if kind == " ":
            before.append(value)
            after.append(value)
        elif kind == "-":
            before.append(value)
        elif kind == "+":
            after.append(value)
        else:
            continue
        kinds.append(kind)
    leading = next((i for i, k in enumerate(kinds) if k != " "), len(kinds))
    trailing = next((i for i, k in enumerate(reversed(kinds)) if k != " "), len(kinds))
    h = hunk
    header = f"@@ -{h.source_start},{h.source_length} +{h.target_start},{h.target_length} @@"  # type: ignore[attr-defined]
    if h.section_header:  # type: ignore[attr-defined]
        header += f" {h.section_header}"  # type: ignore[attr-defined]
    return Hunk(
        header=header,
        source_start=h.source_start,  # type: ignore[attr-defined]
        source_length=h.source_length,  # type: ignore[attr-defined]
        before=tuple(before),
        after=tuple(after),
        leading_context=leading,
        trailing_context=trailing,
    )


def parse_diff(text: str, label: str) -> tuple[FileChange, ...]:
    """Parse the diff part of ``text`` (prose and mail headers around it are ignored)."""
    if "GIT binary patch" in text:
        raise InputError(f"{label}: binary diffs are not supported (GIT binary patch)")
    try:
        patch = PatchSet(text)
    except UnidiffParseError as error:
        raise InputError(f"{label}: malformed diff: {error}") from None
    if len(patch) == 0:
        raise InputError(f"{label}: no diff found (expected 'diff --git' / '---' / '+++' / '@@' lines)")
    changes: list[FileChange] = []
    for pfile in patch:
        source = _strip_prefix(pfile.source_file, "a/")
        target = _strip_prefix(pfile.target_file, "b/")
        if pfile.is_binary_file:
            raise InputError(f"{label}: {target or source}: binary diffs are not supported")
        for path in (source, target):
            if path is not None:
                check_relative_path(path, label)
        if source is None and target is None:
            raise InputError(f"{label}: a file diff has neither source nor target path")
        symlink = bool(_SYMLINK_MODE.search(str(pfile.patch_info or "")))
        changes.append(FileChange(source, target, tuple(_hunk_record(h) for h in pfile), symlink))
    return tuple(changes)


def parse_patch_text(text: str, label: str) -> ParsedPatch:
    """A ``git format-patch`` mail (or a bare diff): subject, author and file changes."""
    subject, author = "", ""
    if text.startswith("From "):
        head = text.split("\n\n", 1)[0] + "\n\n"
        msg = email.parser.Parser(policy=email.policy.default).parsestr(head, headersonly=True)
        subject = re.sub(r"^\[PATCH[^\]]*\]\s*", "", str(msg.get("Subject", "")).replace("\n", " "))
        author = str(msg.get("From", ""))
    return ParsedPatch(label=label, subject=subject, author=author, changes=parse_diff(text, label))


def commit_message(text: str) -> str:
    """The message part of a mail: from after the headers to the ``---`` line."""
    body = text.split("\n\n", 1)[1] if "\n\n" in text else ""
    return body.split("\n---\n", 1)[0].strip()


def same_patch(old: str, new: str) -> bool:
    """Whether two mails carry the same commit: subject, author, message and diff."""
    try:
        a, b = parse_patch_text(old, "old"), parse_patch_text(new, "new")
    except InputError:
        return False
    return (a.subject, a.author, a.changes, commit_message(old)) == (
        b.subject, b.author, b.changes, commit_message(new))


def parse_patch_file(path: Path, label: str | None = None) -> ParsedPatch:
    """Parse a patch file; errors start with ``label`` (default: the file's name)."""
    try:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as error:
        raise InputError(f"{path}: cannot read patch: {error.strerror}") from None
    return parse_patch_text(text, label or path.name)


def split_repo_diff(text: str, label: str) -> dict[str, str]:
    """``repo diff`` output -> {project path: its diff text}, in order of appearance.

    A section starts at a ``project PATH/`` line; the diff in it starts at its first
    ``diff --git`` line. Prose before, between and after the diffs is dropped.
    """
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines(keepends=True):
        match = _PROJECT_HEADER.match(line.rstrip("\n"))
        if match:
            path = match.group("path").strip("/")
            check_relative_path(path, f"{label}: project header")
            if path in sections:
                raise InputError(f"{label}: project '{path}' appears twice")
            current = sections[path] = []
        elif current is not None:
            current.append(line)
    if not sections:
        raise InputError(f"{label}: no 'project PATH/' header found (expected `repo diff` output)")
    result: dict[str, str] = {}
    for path, lines in sections.items():
        start = next((i for i, ln in enumerate(lines) if _DIFF_START.match(ln)), None)
        if start is None:
            raise InputError(f"{label}: project '{path}' has no diff")
        body = "".join(lines[start:])
        changes = parse_diff(body, f"{label}: project {path}")
        result[path] = render_changes(body, changes)
    return result


def render_changes(text: str, changes: tuple[FileChange, ...]) -> str:
    """The diff text unidiff found in ``text``, without the prose after it."""
    patch = PatchSet(text)
    rendered = "".join(str(pfile) for pfile in patch)
    return rendered.rstrip("\n") + "\n"


def patch_file_name(number: int, subject: str) -> str:
    """The name ``git format-patch`` would give: ``0001-subject-words.patch`` (52-char slug)."""
    slug = re.sub(r"[^A-Za-z0-9_.]+", "-", subject).strip("-.")[:52].rstrip("-.") or "patch"
    return f"{number:04d}-{slug}.patch"


def format_mail(diff: str, *, subject: str, body: str, author: str, date: datetime | None = None) -> str:
    """A ``git format-patch``-style mail for ``diff`` with a Signed-off-by line by ``author``."""
    when = (date or datetime.now(UTC)).strftime("%a, %d %b %Y %H:%M:%S %z")
    message = body.strip()
    signoff = f"Signed-off-by: {author}"
    text = f"{message}\n\n{signoff}" if message else signoff
    return (
        "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n"
        f"From: {author}\nDate: {when}\nSubject: [PATCH] {subject}\n\n{text}\n---\n\n{diff}"
    )
