"""Dry-run of patchsets against a source tree, hunk by hunk, without touching git.

Each project's files are read from its checkout once and every patch of the series is
applied in memory, so each hunk is judged against the content it would really meet:
``applies`` (possibly at an offset, which ``git am`` accepts), ``already-applied``, or
``fails`` with the reason (file missing, context not found, needs fuzz — which ``git am``
does not do). Paths are checked to stay inside the checkout, symlinks included.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import InputError
from orchestrator.patchset.config import PatchRef, Patchset, verify_checksums
from orchestrator.patchset.patchfile import FileChange, Hunk, ParsedPatch, parse_patch_file
from orchestrator.workspace.tree import SourceTree


class Status(enum.Enum):
    APPLIES = "applies"
    ALREADY_APPLIED = "already-applied"
    FAILS = "fails"


@dataclass(frozen=True)
class HunkResult:
    file: str
    header: str
    status: Status
    reason: str = ""  # why it fails, or the offset it needs
    offset: int = 0


@dataclass(frozen=True)
class PatchResult:
    patchset: str
    project: str
    patch: str  # the patch file name
    subject: str
    status: Status
    hunks: list[HunkResult] = field(default_factory=list)

    def first_failure(self) -> HunkResult | None:
        return next((h for h in self.hunks if h.status is Status.FAILS), None)


@dataclass(frozen=True)
class CheckReport:
    patches: list[PatchResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(p.status is not Status.FAILS for p in self.patches)

    def failures(self) -> list[PatchResult]:
        return [p for p in self.patches if p.status is Status.FAILS]


def safe_path(checkout: Path, rel: str, label: str) -> Path:
    """``checkout/rel``, refusing one that a symlink inside the checkout leads outside it."""
    root = checkout.resolve()
    target = (checkout / rel).resolve(strict=False)
    if target != root and root not in target.parents:
        raise InputError(f"{label}: path '{rel}' leads outside its project through a symlink")
    return checkout / rel


@dataclass
class _Content:
    lines: list[str]
    trailing_newline: bool = True


def _read(path: Path) -> _Content | None:
    if not path.is_file():
        return None
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    trailing = text.endswith("\n")
    lines = text.split("\n")
    if trailing:
        lines.pop()
    return _Content(lines, trailing)


def _matches(lines: list[str], at: int, image: Sequence[str]) -> bool:
    return at >= 0 and at + len(image) <= len(lines) and lines[at : at + len(image)] == list(image)


def _find(lines: list[str], expected: int, image: Sequence[str]) -> int | None:
    """The match of ``image`` nearest to ``expected``, searching both ways like git apply."""
    if not image:
        return max(0, min(expected, len(lines)))
    limit = max(expected, len(lines) - expected) + 1
    for distance in range(limit):
        for at in (expected - distance, expected + distance) if distance else (expected,):
            if _matches(lines, at, image):
                return at
    return None


def _needs_fuzz(lines: list[str], expected: int, hunk: Hunk) -> int:
    """The fuzz factor (1 or 2) at which the hunk would apply with context trimmed, else 0."""
    for fuzz in (1, 2):
        top = min(fuzz, hunk.leading_context)
        bottom = min(fuzz, hunk.trailing_context)
        trimmed = hunk.before[top : len(hunk.before) - bottom]
        if (top or bottom) and trimmed and _find(lines, expected + top, trimmed) is not None:
            return fuzz
    return 0


@dataclass
class _ProjectState:
    """The in-memory files of one project as the series goes on."""

    checkout: Path
    files: dict[str, _Content | None] = field(default_factory=dict)
    links: dict[str, bool] = field(default_factory=dict)  # path -> is a symlink (as the series goes)

    def is_link(self, rel: str) -> bool:
        if rel not in self.links:
            self.links[rel] = (self.checkout / rel).is_symlink()
        return self.links[rel]

    def link_above(self, rel: str) -> str | None:
        """A directory of ``rel`` that is a symlink (in the checkout, or made by the series)."""
        parts = rel.split("/")
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            if self.is_link(prefix):
                return prefix
        return None

    def get(self, rel: str, label: str) -> _Content | None:
        if rel not in self.files:
            self.files[rel] = _read(safe_path(self.checkout, rel, label))
        return self.files[rel]


def _check_new_file(state: _ProjectState, change: FileChange, label: str) -> list[HunkResult]:
    assert change.target is not None
    existing = state.get(change.target, label)
    after = [line for h in change.hunks for line in h.after]
    header = change.hunks[0].header if change.hunks else "(new file)"
    if existing is None:
        state.files[change.target] = _Content(after)
        return [HunkResult(change.target, header, Status.APPLIES)]
    if existing.lines == after:
        return [HunkResult(change.target, header, Status.ALREADY_APPLIED)]
    return [HunkResult(change.target, header, Status.FAILS, "file already exists")]


def _check_change(state: _ProjectState, change: FileChange, label: str) -> list[HunkResult]:
    for rel in (change.source, change.target):
        link = state.link_above(rel) if rel is not None else None
        if link is not None:  # git apply: "affected file ... is beyond a symbolic link"
            why = f"beyond a symbolic link ({link})"
            return [HunkResult(change.path, h.header, Status.FAILS, why) for h in change.hunks] or [
                HunkResult(change.path, "(file)", Status.FAILS, why)]
    results = _check_content(state, change, label)
    if change.source is not None:
        state.links[change.source] = False
    if change.target is not None:
        state.links[change.target] = change.symlink
    return results


def _check_content(state: _ProjectState, change: FileChange, label: str) -> list[HunkResult]:
    if change.source is None:
        return _check_new_file(state, change, label)
    content = state.get(change.source, label)
    shown = change.path
    if content is None:
        if change.target is None or (change.target != change.source and state.get(change.target, label)):
            return [HunkResult(shown, h.header, Status.ALREADY_APPLIED) for h in change.hunks] or [
                HunkResult(shown, "(delete)", Status.ALREADY_APPLIED)
            ]
        return [HunkResult(shown, h.header, Status.FAILS, "file missing") for h in change.hunks] or [
            HunkResult(shown, "(rename)", Status.FAILS, "file missing")
        ]
    lines = list(content.lines)
    results: list[HunkResult] = []
    delta = 0
    for hunk in change.hunks:
        expected = max(hunk.source_start - 1, 0) + delta if hunk.source_length else hunk.source_start + delta
        at = _find(lines, expected, hunk.before)
        if at is not None:
            lines[at : at + len(hunk.before)] = list(hunk.after)
            delta += len(hunk.after) - len(hunk.before)
            offset = at - expected
            reason = f"offset {offset:+d} lines" if offset else ""
            results.append(HunkResult(shown, hunk.header, Status.APPLIES, reason, offset))
        elif _find(lines, expected, hunk.after) is not None:
            results.append(HunkResult(shown, hunk.header, Status.ALREADY_APPLIED))
        elif fuzz := _needs_fuzz(lines, expected, hunk):
            why = f"needs fuzz {fuzz} (git am does not fuzz)"
            results.append(HunkResult(shown, hunk.header, Status.FAILS, why))
        else:
            results.append(HunkResult(shown, hunk.header, Status.FAILS, "context not found"))
    if change.target is None:
        state.files[change.source] = None
    else:
        if change.target != change.source:
            state.files[change.source] = None
        state.files[change.target] = _Content(lines, content.trailing_newline)
    return results


def _overall(hunks: list[HunkResult]) -> Status:
    statuses = {h.status for h in hunks}
    if Status.FAILS in statuses:
        return Status.FAILS
    if statuses == {Status.ALREADY_APPLIED}:
        return Status.ALREADY_APPLIED
    if Status.ALREADY_APPLIED in statuses:
        return Status.FAILS  # partly applied: git am would stop here
    return Status.APPLIES


def check_patch(state: _ProjectState, patchset: str, ref: PatchRef, parsed: ParsedPatch) -> PatchResult:
    hunks: list[HunkResult] = []
    label = f"{patchset}: {ref.project}/{ref.file}"
    for change in parsed.changes:
        hunks.extend(_check_change(state, change, label))
    status = _overall(hunks)
    if status is Status.FAILS and all(h.status is not Status.FAILS for h in hunks):
        hunks = [
            HunkResult(h.file, h.header, Status.FAILS, "partly applied") if h.status is Status.APPLIES else h
            for h in hunks
        ]
    return PatchResult(patchset, ref.project, ref.file, parsed.subject, status, hunks)


def parse_series(patchsets: Sequence[Patchset]) -> dict[tuple[str, str, str], ParsedPatch]:
    """Verify checksums and parse every patch: (patchset, project, file) -> parsed patch."""
    verify_checksums(patchsets)
    parsed: dict[tuple[str, str, str], ParsedPatch] = {}
    for ps in patchsets:
        for ref in ps.patches():
            parsed[(ps.name, ref.project, ref.file)] = parse_patch_file(
                ref.path, f"{ps.name}: {ref.project}/{ref.file}")
    return parsed


def check_parsed(
    tree: SourceTree,
    patchsets: Sequence[Patchset],
    parsed: dict[tuple[str, str, str], ParsedPatch],
) -> CheckReport:
    states: dict[str, _ProjectState] = {}
    results: list[PatchResult] = []
    for ps in patchsets:
        for project, refs in ps.projects.items():
            state = states.setdefault(project, _ProjectState(tree.project(project).directory))
            for ref in refs:
                results.append(check_patch(state, ps.name, ref, parsed[(ps.name, ref.project, ref.file)]))
    return CheckReport(results)
