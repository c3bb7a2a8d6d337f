"""`orch status`: per project, the pinned revision, HEAD, local changes and commits, linkfiles."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from orchestrator.cli.common import workspace_root
from orchestrator.errors import WorkspaceError
from orchestrator.gc import collect
from orchestrator.patchset.apply import applied_patchsets, recover_interrupted
from orchestrator.ui import UI
from orchestrator.workspace.sync import ProjectStatus, Workspace


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("status", parents=[common], help="per-project pinned revision, HEAD, "
                            "local changes and commits, linkfiles")
    parser.set_defaults(func=handle)


def _short(sha: str | None) -> str:
    return sha[:12] if sha else "-"


def status_table(rows: Sequence[ProjectStatus], applied: Mapping[str, Sequence[str]] | None = None) -> Table:
    """The human table; one place to add a column."""
    table = Table("project", "pinned", "HEAD", "dirty", "local commits", "patchsets", "links", "notes",
                  box=None, pad_edge=False)
    for r in rows:
        head = _short(r.head) if not r.at_pinned else "= pinned"
        if r.branch:
            head += f" ({r.branch})"
        dirty = f"{r.modified} modified, {r.untracked} untracked" if r.dirty else "clean"
        patchsets = ", ".join((applied or {}).get(r.path, [])) or "-"
        table.add_row(r.path, _short(r.pinned), head, dirty, str(r.local_commits), patchsets,
                      "ok" if r.links_ok else "broken", escape("; ".join(r.problems)))
    # never squeeze project paths and SHAs into "projects/se…" on a narrow or piped (80-column)
    # output: the notes column wraps instead
    table.columns[0].min_width = max((len(r.path) for r in rows), default=0)
    table.columns[1].min_width = 12
    return table


def handle(args: argparse.Namespace, ui: UI) -> int:
    workspace = Workspace.open(workspace_root(args))
    state = workspace.state()
    if state.synced_at is None and not state.projects:
        raise WorkspaceError(
            f"{workspace.root}: no sync has completed here (the first `orch sync` was interrupted "
            "or is still running)",
            hint="run `orch sync` again: it picks up where the interrupted one stopped",
        )
    for operation in recover_interrupted(workspace.tree()):
        ui.warn(operation.describe())
        for note in operation.notes:
            ui.warn(f"  {note}")
    rows = workspace.status()
    ui.result(rows, status_table(rows, applied_patchsets(workspace.tree())))
    if not ui.json:
        ui.info(disk_line(workspace.root))
    return 0


def disk_line(root: Path) -> str:
    """``disk: variant trees 3.1 GiB, builds ...`` for .orch/ (what `orch gc` can free)."""
    items = collect.inventory(root)
    parts = [f"{kind} {collect.human(sum(i.size for i in items if i.kind == kind))}"
             for kind in collect.KINDS if any(i.kind == kind for i in items)]
    total = collect.human(sum(i.size for i in items))
    return f"disk (.orch/): {', '.join(parts) or 'nothing built yet'}; total {total}"
