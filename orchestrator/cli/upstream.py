"""`orch upstream check|prepare|open`: the CLI over orchestrator.upstream."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from orchestrator.cli.common import workspace_root
from orchestrator.errors import EXIT_FAIL, EXIT_OK, InputError
from orchestrator.patchset import apply as patchsets
from orchestrator.ui import UI, to_jsonable
from orchestrator.upstream import checks, fix, opener, prepare, series, tools
from orchestrator.workspace.sync import Workspace

_CELL_STYLE = {checks.OK: "green", checks.FAILED: "bold red", checks.NOT_APPLICABLE: "dim"}


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "upstream", parents=[common], help="check a patchset the way seL4's CI does, prepare and open PRs",
        description="From a patchset to upstream pull requests: check (seL4's PR checks, locally), "
        "prepare (rebase, fork branches, PR bodies), open (GitHub REST API).",
    )
    parser.set_defaults(func=_usage(parser))
    cmds = parser.add_subparsers(dest="upstream_command", metavar="SUBCOMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = cmds.add_parser(name, parents=[common], help=help_text,
                                                     description=help_text)
        p.add_argument("--patchset", required=True, metavar="NAME",
                       help="the patchset (with what it requires)")
        p.add_argument("--patchsets", metavar="DIR", action="append", dest="patchset_dirs", default=None,
                       help="a directory of patchsets searched first (repeatable)")
        return p

    p = add("check", "run seL4's PR checks on the patchset's commits: gitlint, DCO, whitespace, style, "
                     "license, shell")
    p.add_argument("--fix", action="store_true",
                   help="fold the style tools' changes and whitespace fixes into the commits, add your own "
                        "missing Signed-off-by, and rewrite the patch files (refresh)")
    p.add_argument("--tools", metavar="DIR", type=Path,
                   help="a seL4_tools checkout to take the rules from (default: the workspace's tools/seL4)")
    p.set_defaults(func=handle_check)
    p = add("prepare", "rebase onto upstream, make orch/upstream/NAME branches, push them to your forks, "
                       "write PR titles and bodies")
    p.add_argument("--onto", metavar="[PROJECT=]REV", action="append", default=[],
                   help="rebase onto REV instead of the manifest's dest-branch/upstream tip (repeatable, "
                        "PROJECT=REV for one project)")
    p.add_argument("--fork", metavar="URL_TEMPLATE",
                   help="your fork's URL, {name} standing for the repository name, e.g. "
                        "git@github.com:USER/{name}.git (default: [upstream] fork in .orch/config.toml)")
    p.add_argument("--order", metavar="PROJECT,...",
                   help="merge order of the projects (default: kernel, then libraries and tools, then "
                        "applications and examples)")
    p.add_argument("--no-push", action="store_true", help="make the branches and bodies, push nothing")
    p.set_defaults(func=handle_prepare)
    p = add("open", "open the prepared PRs on GitHub in merge order and cross-link them")
    p.add_argument("--dry-run", action="store_true", help="print each request instead of sending it")
    p.add_argument("--api", metavar="URL", help=f"GitHub API base (default: ${opener.API_ENV} or "
                                                f"{opener.DEFAULT_API})")
    p.set_defaults(func=handle_open)


def _usage(parser: argparse.ArgumentParser) -> Any:
    def handle(args: argparse.Namespace, ui: UI) -> int:
        raise InputError("orch upstream: missing subcommand", hint=parser.format_usage().strip())
    return handle


def _chain(args: argparse.Namespace) -> list[patchsets.Patchset]:
    search = patchsets.patchset_search_path(args.patchset_dirs, os.environ)
    return patchsets.resolve([args.patchset], search)


def _names(workspace: Workspace) -> dict[str, str]:
    return {path: rec.name for path, rec in workspace.state().projects.items()}


# --------------------------------------------------------------------------- check


def check_table(report: checks.UpstreamCheckReport) -> Table:
    table = Table(title=f"upstream check {report.patchset} (rules: {report.rules_from})")
    table.add_column("project", overflow="fold")
    for name in checks.CHECKS:
        table.add_column(name, overflow="fold")
    for project in report.projects:
        cells = []
        for name in checks.CHECKS:
            result = report.result(project, name)
            cell = f"[{_CELL_STYLE[result.status]}]{result.status}[/]"
            if result.findings:
                first = result.findings[0]
                cell += f"\n{first.commit[:12]}\n{escape(_printable(first.first))}"
                if len(result.findings) > 1:
                    cell += f"\n(+{len(result.findings) - 1} more)"
            cells.append(cell)
        table.add_row(project, *cells)
    return table


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() or ch == "\n" else "?" for ch in text)


def handle_check(args: argparse.Namespace, ui: UI) -> int:
    workspace = Workspace.open(workspace_root(args))
    tree = workspace.tree()
    toolset = tools.find_toolset(tree, _names(workspace), args.tools)
    tools.require_programs(toolset)
    chain = _chain(args)
    fixed: fix.FixReport | None = None
    with series.applied_chain(workspace.root, tree, chain) as applied:
        if args.fix:
            ui.info(f"fixing {args.patchset} ...")
            fixed = fix.fix_chain(applied, toolset, fix.user_identity(workspace.root))
        ui.info(f"checking {', '.join(applied.series)} ...")
        report = checks.check_chain(applied, toolset)
    if fixed is not None:
        report.fixed, report.refreshed = fixed.changes, fixed.refreshed
    ui.result({"ok": report.ok, **to_jsonable(report)}, check_table(report))
    if not ui.json:
        _print_findings(report, ui)
    return EXIT_OK if report.ok else EXIT_FAIL


def _print_findings(report: checks.UpstreamCheckReport, ui: UI) -> None:
    for line in report.fixed:
        ui.out.print(f"fixed: {_printable(line)}", markup=False, highlight=False)
    for line in report.refreshed:
        ui.out.print(f"rewrote: {line}", markup=False, highlight=False)
    for result in report.results:
        for f in result.findings:
            where = f"{f.project} {f.commit[:12]} ({f.patchset}/{f.patch})"
            ui.out.print(f"{f.check}: {where}: {_printable(f.first)}", markup=False, highlight=False)
            if f.check == "style" and f.detail:
                ui.out.print(_printable(f.detail), markup=False, highlight=False)
    if report.fixed and not report.ok:
        ui.info("what is left needs a person: titles and bodies (gitlint), other authors' "
                "Signed-off-by, SPDX headers (license)")
    if report.refreshed:
        ui.info(f"the patch files changed: re-apply to see them in the workspace "
                f"(orch patchset revert {report.patchset}; orch patchset apply {report.patchset})")


# --------------------------------------------------------------------------- prepare / open


def handle_prepare(args: argparse.Namespace, ui: UI) -> int:
    workspace = Workspace.open(workspace_root(args))
    options = prepare.PrepareOptions(
        onto=prepare.parse_onto(args.onto), fork=args.fork,
        order=[p.strip() for p in args.order.split(",")] if args.order else None, push=not args.no_push)
    result = prepare.prepare(workspace, _chain(args), options)
    ui.result({"ok": result.ok, **to_jsonable(result)}, prepare.result_table(result))
    return result.exit_code


def handle_open(args: argparse.Namespace, ui: UI) -> int:
    workspace = Workspace.open(workspace_root(args))
    result = opener.open_pulls(workspace.root, args.patchset, api=args.api, dry_run=args.dry_run,
                               env=os.environ)
    if args.dry_run and not ui.json:
        for request in result.requests:
            ui.out.print(_printable(request), markup=False, highlight=False)
    ui.result(result, opener.result_table(result))
    return EXIT_OK
