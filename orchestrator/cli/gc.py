"""`orch gc` / `orch clean`: free disk under .orch/ (variant trees, builds, boots, results,
analysis), never what a kept results directory refers to (see :mod:`orchestrator.gc.collect`)."""

from __future__ import annotations

import argparse
from typing import Any

from rich.markup import escape
from rich.table import Table

from orchestrator.cli.common import workspace_root
from orchestrator.errors import InputError
from orchestrator.gc import collect
from orchestrator.ui import UI


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    for name, help_text in (
        ("gc", "remove variant trees, builds, boots and results older than --older-than or beyond "
               "--max-size, never a build or boot a kept results directory refers to"),
        ("clean", "remove every variant tree, build, boot and result no kept results directory "
                  "needs (the latest results and what it refers to stay)"),
    ):
        parser = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        if name == "gc":
            parser.add_argument("--older-than", metavar="AGE", default="7d",
                                help="remove what is older than AGE: 7d, 12h, 30m (default 7d)")
            parser.add_argument("--max-size", metavar="SIZE",
                                help="then remove the oldest until .orch/ fits in SIZE (500M, 5G)")
        parser.add_argument("-n", "--dry-run", action="store_true", help="only say what would go")
        parser.set_defaults(func=handle, everything=name == "clean")


def _limits(args: argparse.Namespace) -> tuple[float | None, int | None]:
    if args.everything:
        return None, None
    try:
        age = collect.parse_age(args.older_than)
        size = collect.parse_size(args.max_size) if args.max_size else None
    except (ValueError, KeyError):
        raise InputError(f"orch gc: bad --older-than {args.older_than!r} or --max-size {args.max_size!r}",
                         hint="e.g. --older-than 7d --max-size 5G") from None
    return age, size


def handle(args: argparse.Namespace, ui: UI) -> int:
    from orchestrator.build.variant_tree import remove_variant_tree, variant_lock
    from orchestrator.workspace.sync import Workspace

    root = workspace_root(args)
    age, size = _limits(args)
    gc = collect.plan(root, older_than_days=age, max_bytes=size, everything=args.everything)
    removed = gc.remove
    if not args.dry_run and removed:
        workspace = Workspace.open(root)
        tree = workspace.tree()

        def remove_tree(name: str) -> None:
            with variant_lock(root, name):  # never under a build that is running
                remove_variant_tree(root, name, tree, warn=ui.warn)

        removed = collect.apply(gc, remove_tree)
    table = Table("kind", "path", "size", "age", box=None, pad_edge=False)
    for item in removed:
        table.add_row(item.kind, escape(str(item.path.relative_to(root))), collect.human(item.size),
                      f"{item.age_days:.1f} d")
    verb = "would free" if args.dry_run else "freed"
    table.caption = (f"{verb} {collect.human(sum(i.size for i in removed))} of "
                     f"{collect.human(gc.total())} in .orch/; kept "
                     f"{sum(1 for i in gc.items if i.keep)} referenced or newest item(s)")
    ui.result({"dry_run": args.dry_run, "removed": [_row(i, root) for i in removed],
               "freed": sum(i.size for i in removed), "total": gc.total(),
               "kept": [_row(i, root) for i in gc.items if i.keep]}, table)
    return 0


def _row(item: collect.Item, root: Any) -> dict[str, Any]:
    return {"kind": item.kind, "path": str(item.path.relative_to(root)), "size": item.size,
            "age_days": round(item.age_days, 2), "keep": item.keep}
