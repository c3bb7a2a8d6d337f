"""`orch sync`: check out every project of the manifest at its pinned revision."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from orchestrator import layout
from orchestrator.cli.common import add_manifest_options, workspace_root
from orchestrator.errors import InputError
from orchestrator.ui import UI
from orchestrator.workspace.manifest import parse_groups
from orchestrator.workspace.sync import ManifestSource, SyncReport, Workspace, parse_sparse, requested_source

if TYPE_CHECKING:
    from rich.table import Table


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "sync", parents=[common], help="clone/update every manifest project to its pinned revision",
        description="Check out a repo-manifest workspace: like `repo init -u URL -b REV -m FILE && "
        "repo sync`, with each git dir under .orch/projects/. Later syncs reuse the recorded source.",
    )
    add_manifest_options(parser)
    parser.add_argument("-j", "--jobs", type=int, metavar="N", default=os.cpu_count() or 2,
                        help="parallel clones/fetches/checkouts (default: CPU count)")
    parser.add_argument("--mirror", metavar="DIR", help="directory of bare repositories named after "
                        "the projects, tried before the network (also $ORCH_MIRROR, or mirror = in "
                        f"{layout.ORCH_DIR}/{layout.CONFIG_FILE})")
    parser.add_argument("-g", "--groups", metavar="GROUPS",
                        help="manifest groups, separated by commas and/or whitespace as in repo "
                        "(default: the recorded ones, else 'default')")
    parser.add_argument("--force", action="store_true",
                        help="also move projects with local changes/commits, after backing them up "
                        f"({layout.SYNC_BACKUP_PREFIX}<stamp> and a stash)")
    parser.add_argument("--sparse", action="append", default=[], metavar="PATH=DIR[,DIR...]",
                        help="check project PATH out sparsely: its top-level files and these directories "
                        "(cone mode, sparse index; blobs elsewhere are never read). Remembered; also "
                        f"[sparse] in {layout.ORCH_DIR}/{layout.CONFIG_FILE}. Repeatable")
    parser.add_argument("--no-sparse", action="append", default=[], metavar="PATH",
                        help="check project PATH out in full again (repeatable)")
    parser.add_argument("--partial-clone", action=argparse.BooleanOptionalAction, default=None,
                        help="clone new projects with --filter=blob:none (every commit and tree; blobs "
                        "are fetched when checked out). Default: partial from a server (any URL, file:// "
                        "too), full from a local path. Remembered")
    parser.set_defaults(func=handle)


def manifest_source(args: argparse.Namespace, ws: Workspace) -> ManifestSource | None:
    """The source the arguments ask for; ``None`` means the recorded (or shipped) one."""
    return requested_source(ws, args.manifest, args.manifest_rev, args.manifest_file, args.manifest_url)


def report_table(report: SyncReport) -> Table | str:
    if report.nothing_to_do:
        return f"nothing to do: {len(report.projects)} projects already at their pinned revisions"
    from rich.table import Table

    table = Table("project", "action", "revision", "note", box=None, pad_edge=False)
    for p in report.projects:
        if p.action != "unchanged":
            note = "; ".join(filter(None, [p.reason, *(f"backup: {b}" for b in p.backup)]))
            table.add_row(escape(p.path), p.action, (p.sha or "")[:12], escape(note))
    for link in report.links:
        if link.action != "unchanged":
            table.add_row(escape(link.dest), f"{link.kind} {link.action}", "", escape(link.reason or ""))
    for where in report.manifest_backup:
        table.add_row(f"{layout.ORCH_DIR}/{layout.MANIFEST_CHECKOUT}", "forced", "", f"backup: {where}")
    for orphan in report.orphans:
        table.add_row(escape(orphan), "orphaned", "", "no longer in the manifest; left in place")
    unchanged = sum(p.action == "unchanged" for p in report.projects)
    table.caption = f"{len(report.projects)} projects, {unchanged} unchanged"
    return table


def handle(args: argparse.Namespace, ui: UI) -> int:
    if args.jobs < 1:
        raise InputError(f"-j {args.jobs}: needs at least 1")
    ws = Workspace(workspace_root(args))
    source = manifest_source(args, ws)
    groups = parse_groups(args.groups) if args.groups else None
    with ui.tracker() as tracker:
        report = ws.sync(source, jobs=args.jobs, mirror=ws.configured_mirror(args.mirror), force=args.force,
                         groups=groups, tracker=tracker, sparse=parse_sparse(args.sparse),
                         no_sparse=args.no_sparse, partial_clone=args.partial_clone)
    show_manifest_notes(ui, report.notice, report.warnings)
    ui.result({"nothing_to_do": report.nothing_to_do, "exit_code": report.exit_code, **vars_of(report)},
              report_table(report))
    for p in report.projects:
        if p.action in ("skipped", "failed"):
            ui.err.print(f"{p.action}: {p.path}: {p.reason}", highlight=False, markup=False)
    return report.exit_code


def show_manifest_notes(ui: UI, notice: str | None, warnings: list[str]) -> None:
    """The manifest's ``<notice>`` (repo shows it on sync) and the parser's warnings, on stderr."""
    for warning in warnings:
        ui.err.print(f"warning: {warning}", markup=False, highlight=False)
    if notice and not ui.quiet:
        ui.err.print(notice, markup=False, highlight=False)


def vars_of(report: SyncReport) -> dict[str, Any]:
    return {"workspace": report.workspace, "manifest": report.manifest,
            "manifest_commit": report.manifest_commit, "projects": report.projects,
            "links": report.links, "orphans": report.orphans,
            "manifest_backup": report.manifest_backup, "notice": report.notice,
            "warnings": report.warnings}
