"""`orch manifest`: print the workspace's manifest, fully pinned with --pinned (repo manifest -r)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from orchestrator.cli.common import workspace_root
from orchestrator.ui import UI
from orchestrator.workspace.manifest import to_xml
from orchestrator.workspace.sync import Workspace


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("manifest", parents=[common], help="print the workspace manifest "
                            "(--pinned: every revision a SHA, like `repo manifest -r`)")
    parser.add_argument("-r", "--pinned", action="store_true", help="pin every project to its synced SHA")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the XML to FILE instead of stdout")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace, ui: UI) -> int:
    ws = Workspace.open(workspace_root(args))
    xml = ws.pinned_manifest_xml() if args.pinned else to_xml(ws.manifest_from_state())
    if args.output:
        Path(args.output).write_text(xml)
        ui.info(f"wrote {args.output}")
    if ui.json:
        state = ws.state()
        ui.result({"pinned": args.pinned, "xml": xml, "projects": list(state.projects.values())})
    elif not args.output:
        ui.out.file.write(xml)
    return 0
