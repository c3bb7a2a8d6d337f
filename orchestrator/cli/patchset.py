"""`orch patchset list|show|check|apply|revert|refresh|import`: the CLI over orchestrator.patchset."""

from __future__ import annotations

import argparse
import difflib
import os
import re
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from orchestrator.cli.common import workspace_root
from orchestrator.errors import EXIT_FAIL, EXIT_OK, EXIT_USAGE, InputError
from orchestrator.patchset import apply as lib
from orchestrator.patchset.dryrun import CheckReport, Status
from orchestrator.patchset.journal import Interrupted
from orchestrator.patchset.suggest import missing_requires
from orchestrator.sanitize import terminal_text
from orchestrator.ui import UI
from orchestrator.workspace.tree import SourceTree

_STATUS_STYLE = {Status.APPLIES: "green", Status.ALREADY_APPLIED: "cyan", Status.FAILS: "bold red"}


def _dirs_option(parser: argparse.ArgumentParser, dest: str) -> None:
    parser.add_argument(
        "--patchsets", metavar="DIR", action="append", dest=dest, default=None,
        help="a directory of patchsets searched before $ORCH_PATCHSETS and the shipped ones "
        "(repeatable)",
    )


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "patchset", parents=[common], help="import, check, apply, revert and refresh named patchsets",
        description="Named multi-project patchsets: patchsets/NAME/patchset.toml + format-patch files.",
    )
    _dirs_option(parser, "patchset_dirs_top")
    parser.set_defaults(func=_usage(parser))
    cmds = parser.add_subparsers(dest="patchset_command", metavar="SUBCOMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = cmds.add_parser(
            name, parents=[common], help=help_text, description=help_text
        )
        _dirs_option(p, "patchset_dirs")
        return p

    add("list", "list the patchsets on the search path").set_defaults(func=handle_list)
    p = add("show", "show a patchset's config and patches")
    p.add_argument("name")
    p.set_defaults(func=handle_show)
    p = add("check", "dry run against the workspace: per patch, per hunk")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.set_defaults(func=handle_check)
    p = add("apply", "apply patchsets (requirements first) as commits on orch/NAME branches")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument("--3way", dest="three_way", action="store_true",
                   help="fall back to a three-way merge when the context drifted")
    p.set_defaults(func=handle_apply)
    p = add("revert", "put the projects a patchset touches back on their pinned revisions")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("--all", action="store_true", help="every project of the workspace")
    p.set_defaults(func=handle_revert)
    p = add("refresh", "regenerate a patchset's patch files and sha256s from its branches")
    p.add_argument("name")
    p.set_defaults(func=handle_refresh)
    p = add("import", "create a patchset from `repo diff` output or a directory of format-patch files")
    p.add_argument("name")
    p.add_argument("source", type=Path, metavar="FILE|DIR")
    p.add_argument("--project", metavar="PATH", help="the project a plain diff or a flat directory is for")
    p.add_argument("--description", help="the patchset's description")
    p.add_argument("--subject", help="commit subject for patches made from a diff")
    p.add_argument("--force", action="store_true", help="replace an existing patchset of that name")
    p.set_defaults(func=handle_import)


def _usage(parser: argparse.ArgumentParser) -> Any:
    def handle(args: argparse.Namespace, ui: UI) -> int:
        raise InputError("orch patchset: missing subcommand", hint=parser.format_usage().strip())
    return handle


def _cli_dirs(args: argparse.Namespace) -> list[str]:
    return [*(getattr(args, "patchset_dirs_top", None) or []), *(getattr(args, "patchset_dirs", None) or [])]


def _search_path(args: argparse.Namespace) -> list[Path]:
    return lib.patchset_search_path(_cli_dirs(args), os.environ)


def _warn_about(patchsets: list[lib.Patchset], ui: UI) -> None:
    for ps in patchsets:
        for warning in ps.warnings:
            ui.warn(warning)


def _resolve(args: argparse.Namespace, ui: UI) -> list[lib.Patchset]:
    chain = lib.resolve(args.names, _search_path(args))
    _warn_about(chain, ui)
    return chain


def _load(args: argparse.Namespace, ui: UI) -> lib.Patchset:
    ps = lib.load_patchset(args.name, _search_path(args))
    _warn_about([ps], ui)
    return ps


def _tree(args: argparse.Namespace) -> SourceTree:
    from orchestrator.workspace.sync import Workspace  # lazily: the workspace module is optional here

    tree: SourceTree = Workspace(workspace_root(args)).tree()
    return tree


# --------------------------------------------------------------------------- list / show


def handle_list(args: argparse.Namespace, ui: UI) -> int:
    search = _search_path(args)
    rows: list[dict[str, Any]] = []
    table = _table("patchsets", "patchset", "requires", "projects", "description", "from")
    for name, directory in lib.available_patchsets(search).items():
        try:
            ps = lib.load_patchset(name, [directory.parent])
            _warn_about([ps], ui)
        except InputError as error:  # list the others; this one shows its error, and exit 2
            rows.append({"name": name, "error": error.message, "directory": str(directory)})
            table.add_row(name, "", "", f"[red]broken:[/] {escape(error.message)}", str(directory))
            continue
        rows.append({"name": name, "description": ps.description, "requires": ps.requires,
                     "projects": list(ps.projects), "directory": str(directory)})
        table.add_row(name, ", ".join(ps.requires), "\n".join(ps.projects), escape(ps.description),
                      escape(str(directory)))
    ui.result({"search_path": [str(p) for p in search], "patchsets": rows},
              table if rows else "no patchsets found on " + os.pathsep.join(map(str, search)))
    broken = [row for row in rows if "error" in row]
    for row in broken:
        ui.err.print(f"error: {row['error']}", highlight=False, markup=False)
    return EXIT_USAGE if broken else EXIT_OK


def handle_show(args: argparse.Namespace, ui: UI) -> int:
    from orchestrator.patchset.patchfile import parse_patch_file

    ps = _load(args, ui)
    patches = []
    for ref in ps.patches():
        subject = parse_patch_file(ref.path).subject if ref.path.is_file() else "(missing)"
        patches.append({"project": ref.project, "file": ref.file, "sha256": ref.sha256, "subject": subject})
    data = {"name": ps.name, "directory": str(ps.directory), "description": ps.description,
            "requires": ps.requires, "patches": patches, "build": ps.build, "variants": ps.variants}
    table = _table(f"{ps.name}: {ps.description}", "project", "patch", "subject", "sha256")
    for p in patches:
        table.add_row(*(_text(p[key]) for key in ("project", "file", "subject")), p["sha256"][:12])
    if ps.requires:
        table.caption = f"requires: {', '.join(ps.requires)}"
    ui.result(data, table)
    return EXIT_OK


# --------------------------------------------------------------------------- check / apply


def _text(outside: str) -> str:
    """Text from a patch or config for a table cell: sanitized, and shown as it is (no markup)."""
    return escape(terminal_text(outside))


def _table(title: str, *columns: str) -> Table:
    """A table whose cells wrap instead of being cut off on narrow terminals and in logs."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def check_table(report: CheckReport) -> Table:
    table = _table("patchset check", "patch", "file / hunk", "result")
    for patch in report.patches:
        for i, hunk in enumerate(patch.hunks):
            style = _STATUS_STYLE[hunk.status]
            result = f"[{style}]{hunk.status.value}[/]" + (f"\n{_text(hunk.reason)}" if hunk.reason else "")
            where = _text(f"{patch.patchset}: {patch.project}\n{patch.patch}") if i == 0 else ""
            table.add_row(where, _text(f"{hunk.file}\n{hunk.header}"), result)
    return table


def handle_check(args: argparse.Namespace, ui: UI) -> int:
    chain = _resolve(args, ui)
    tree = _tree(args)
    report = lib.check(tree, chain)
    suggested = [] if report.ok else missing_requires(tree, chain, report, _search_path(args))
    ui.result({"ok": report.ok, "patches": report.patches, "suggested_requires": suggested},
              check_table(report))
    if suggested:
        ui.info(f"hint: with {', '.join(suggested)} applied first every patch applies: add "
                f"requires = [{', '.join(repr(n).replace(chr(39), chr(34)) for n in suggested)}] to "
                f"{chain[-1].config_path} if {chain[-1].name} builds on it")
    return EXIT_OK if report.ok else EXIT_FAIL


def handle_apply(args: argparse.Namespace, ui: UI) -> int:
    chain = _resolve(args, ui)
    tree = _tree(args)
    _say_recovered(ui, lib.recover_interrupted(tree))
    report = lib.apply(tree, chain, three_way=args.three_way)
    table = _table("patchset apply", "project", "branch", "new commits", "notes")
    for proj in report.projects:
        commits = "\n".join(f"{c.commit[:12]} {c.patchset}" for c in proj.commits) or "-"
        notes = [f"already applied: {', '.join(proj.already_applied)}"] if proj.already_applied else []
        notes += [f"3-way merged {m}" for m in proj.merged]
        table.add_row(proj.project, proj.branch, commits, escape("\n".join(notes)))
    if report.noop:
        ui.info(f"{', '.join(report.patchsets)}: already applied, nothing to do")
    for proj in report.projects:
        for backup in proj.backups:
            ui.warn(f"{proj.project}: the old branch was kept as {backup}")
    ui.result({"noop": report.noop, "patchsets": report.patchsets, "projects": report.projects}, table)
    return EXIT_OK


def _say_recovered(ui: UI, recovered: list[Interrupted]) -> None:
    for operation in recovered:
        ui.warn(operation.describe())
        for note in operation.notes:
            ui.warn(f"  {note}")


# --------------------------------------------------------------------------- revert / refresh / import


def handle_revert(args: argparse.Namespace, ui: UI) -> int:
    if not args.names and not args.all:
        raise InputError("orch patchset revert: name a patchset, or pass --all")
    chain = None if args.all else _resolve(args, ui)
    tree = _tree(args)
    _say_recovered(ui, lib.recover_interrupted(tree))
    report = lib.revert(tree, chain)
    table = _table("patchset revert", "project", "was on", "now at", "note")
    for proj in report.projects:
        note = f"kept commits on {proj.backup}" if proj.backup else ("" if proj.changed else "already pinned")
        if proj.warning:
            ui.warn(f"{proj.project}: {proj.warning}")
        was = proj.was[:12] if re.fullmatch(r"[0-9a-f]{40}", proj.was) else proj.was  # a SHA, or a branch
        table.add_row(proj.project, was, proj.now[:12], note)
    ui.result(report, table)
    return EXIT_OK


def handle_refresh(args: argparse.Namespace, ui: UI) -> int:
    ps = _load(args, ui)
    report = lib.refresh(_tree(args), ps)
    table = _table(f"refresh {ps.name} ({ps.directory})", "project", "patch", "status", "sha256")
    for p in report.patches:
        table.add_row(p.project, p.file, p.status, p.sha256[:12])
    if not report.changed:
        ui.info(f"{ps.name}: patch files already match the branch commits")
    ui.result(report, table)
    return EXIT_OK


def handle_import(args: argparse.Namespace, ui: UI) -> int:
    target = lib.import_target_dir(_cli_dirs(args), os.environ)
    ps = lib.import_patchset(args.name, args.source, target, project=args.project,
                             description=args.description, subject=args.subject, force=args.force)
    table = _table(f"imported {ps.name} into {ps.directory}", "project", "patch", "sha256")
    for ref in ps.patches():
        table.add_row(ref.project, ref.file, ref.sha256[:12])
    ui.result({"name": ps.name, "directory": str(ps.directory),
               "patches": [{"project": r.project, "file": r.file, "sha256": r.sha256} for r in ps.patches()]},
              table)
    build = ps.build
    ui.info(f"[build]: app {build.get('app')}, platform {build.get('platform')}, cmake "
            f"{' '.join(build.get('cmake', []))}; variants {', '.join(ps.variants)} "
            f"(edit {ps.config_path} to change)")
    _warn_unknown_projects(args, ps, ui)
    ui.info(_after_import(ps.name, target, _search_path(args)))
    return EXIT_OK


def _warn_unknown_projects(args: argparse.Namespace, ps: lib.Patchset, ui: UI) -> None:
    """Imported projects the workspace's manifest lacks (a typo, or another manifest's path):
    apply would refuse them, so say so now. Nothing to compare with outside a workspace."""
    from orchestrator.errors import OrchError
    from orchestrator.workspace.sync import Workspace

    try:
        known = Workspace.open(workspace_root(args)).tree().projects
    except OrchError:
        return
    for project in ps.projects:
        if project not in known:
            close = difflib.get_close_matches(project, list(known), n=1)
            guess = f" (did you mean '{close[0]}'?)" if close else ""
            ui.warn(f"{ps.name}: project '{project}' is not in the workspace's manifest{guess}; "
                    "apply will refuse it")


def _after_import(name: str, target: Path, search_path: list[Path]) -> str:
    """The next step after an import; says how to reach ``target`` when it is not searched."""
    if target in search_path:
        return f"next: orch patchset check {name}"
    return (f"{target} is not on the patchset search path: next, "
            f"export ORCH_PATCHSETS={target.resolve()} (or pass --patchsets {target}), "
            f"then orch patchset check {name}")
