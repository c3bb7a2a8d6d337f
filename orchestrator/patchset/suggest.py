"""When a patch does not apply (a hunk "needs fuzz" or its context is missing), the patchset it
was made on top of is often one the checked patchset forgot to require: find the available
patchsets that change the same files and with which, applied first, the check passes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from orchestrator.errors import OrchError
from orchestrator.patchset import apply as lib
from orchestrator.patchset.config import Patchset, available_patchsets, load_patchset
from orchestrator.patchset.dryrun import CheckReport, Status
from orchestrator.patchset.patchfile import parse_patch_file
from orchestrator.workspace.tree import SourceTree


def _touches(patchset: Patchset) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for project, refs in patchset.projects.items():
        for ref in refs:
            try:
                out |= {(project, change.path) for change in parse_patch_file(ref.path).changes}
            except OrchError:
                continue
    return out


def missing_requires(tree: SourceTree, chain: Sequence[Patchset], report: CheckReport,
                     search_path: Sequence[Path]) -> list[str]:
    """Patchsets not in ``chain`` that change a file a failing hunk is in and with which (applied
    first, with their own requirements) every patch of ``chain`` applies."""
    failing = {(p.project, h.file) for p in report.patches for h in p.hunks if h.status is Status.FAILS}
    if not failing:
        return []
    names = {p.name for p in chain}
    found: dict[str, set[str]] = {}  # name -> the patchsets it brings along
    for name in sorted(available_patchsets(search_path)):
        if name in names:
            continue
        try:
            other = load_patchset(name, list(search_path))
            if not _touches(other) & failing:
                continue
            brings = lib.resolve([name], search_path)
            trial = lib.check(tree, [*brings, *(p for p in chain if p.name != name)])
        except OrchError:
            continue
        if trial.ok:
            found[name] = {p.name for p in brings} - {name}
    # the smallest answer: drop one that needs another of the answers anyway
    return [n for n in found if not any(other in found[n] for other in found if other != n)]
