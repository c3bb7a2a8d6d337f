"""`orch manifest`: print the workspace's manifest, fully pinned with --pinned (repo manifest -r),
or resolve any manifest without syncing with --resolve SOURCE (like `repo manifest` after
`repo init`)."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from orchestrator.cli.common import workspace_root
from orchestrator.cli.sync import show_manifest_notes
from orchestrator.errors import InputError
from orchestrator.sanitize import xml_for_terminal
from orchestrator.ui import UI
from orchestrator.workspace.manifest import Manifest, Project, parse_groups, quote, to_xml
from orchestrator.workspace.state import ManifestSource
from orchestrator.workspace.sync import Workspace


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("manifest", parents=[common], help="print the workspace manifest "
                            "(--pinned: every revision a SHA, like `repo manifest -r`; --resolve SOURCE: "
                            "any manifest, resolved without syncing)")
    parser.add_argument("-r", "--pinned", action="store_true", help="pin every project to its synced SHA")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the XML to FILE instead of stdout")
    parser.add_argument("--resolve", metavar="SOURCE",
                        help="resolve this manifest (XML file, manifest repository URL or path) with its "
                        "includes, the workspace's local manifests and -g, without syncing anything")
    parser.add_argument("-b", "--manifest-rev", metavar="REV",
                        help="with --resolve: manifest repository revision")
    parser.add_argument("--manifest-file", metavar="NAME",
                        help="with --resolve: manifest file in the repository (default: default.xml)")
    parser.add_argument("--manifest-url", metavar="URL",
                        help="with --resolve: URL relative remotes resolve against when SOURCE is a file")
    parser.add_argument("-g", "--groups", metavar="GROUPS",
                        help="with --resolve: manifest groups to keep (default: default)")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace, ui: UI) -> int:
    if args.resolve:
        return resolve(args, ui)
    for option, value in (("-b", args.manifest_rev), ("--manifest-file", args.manifest_file),
                          ("--manifest-url", args.manifest_url), ("-g", args.groups)):
        if value:
            raise InputError(f"{option} only goes with --resolve SOURCE")
    ws = Workspace.open(workspace_root(args))
    xml = ws.pinned_manifest_xml() if args.pinned else to_xml(ws.manifest_from_state())
    if args.output:
        Path(args.output).write_text(xml)
        ui.info(f"wrote {args.output}")
    if ui.json:
        state = ws.state()
        ui.result({"pinned": args.pinned, "xml": xml, "projects": list(state.projects.values())})
    elif not args.output:
        ui.out.file.write(xml_for_terminal(xml))
    return 0


def resolve(args: argparse.Namespace, ui: UI) -> int:
    """Fetch the manifest repository (if SOURCE is one) into a temporary directory, read the
    manifest as `sync` would, print every project; nothing is written to the workspace."""
    if args.pinned:
        raise InputError("--pinned needs a synced workspace; --resolve prints revisions as written")
    source = ManifestSource.parse(args.resolve, args.manifest_rev, args.manifest_file, args.manifest_url)
    groups = parse_groups(args.groups) if args.groups else ["default"]
    local_dir = Workspace(workspace_root(args)).local_manifests_dir
    with tempfile.TemporaryDirectory(prefix="orch-resolve-") as tmp:
        scratch = Workspace(Path(tmp))
        if local_dir.is_dir():
            scratch.local_manifests_dir.mkdir(parents=True)
            for local in sorted(local_dir.glob("*.xml")):
                shutil.copyfile(local, scratch.local_manifests_dir / local.name)
        manifest, commit, _base = scratch.load_manifest(source, groups)
    show_manifest_notes(ui, manifest.notice, list(manifest.warnings))
    rows = [project_row(p) for p in manifest.projects]
    if args.output:
        Path(args.output).write_text(to_xml(manifest))
        ui.info(f"wrote {args.output}")
    ui.result({"source": source.describe(), "manifest_commit": commit, "groups": groups,
               "notice": manifest.notice, "warnings": list(manifest.warnings), "projects": rows},
              None if args.output else resolved_table(manifest))
    return 0


def project_row(p: Project) -> dict[str, Any]:
    """The same keys for every project, set or not."""
    return {
        "name": p.name, "path": p.path, "remote": p.remote, "url": p.url, "revision": p.revision,
        "upstream": p.upstream, "dest_branch": p.dest_branch, "groups": list(p.groups),
        "linkfiles": [{"src": x.src, "dest": x.dest} for x in p.linkfiles],
        "copyfiles": [{"src": x.src, "dest": x.dest} for x in p.copyfiles],
        "clone_depth": p.clone_depth, "sync_s": p.sync_s, "sync_c": p.sync_c, "sync_tags": p.sync_tags,
    }


def resolved_table(manifest: Manifest) -> Table:
    table = Table("path", "name", "url", "revision", "upstream", "dest-branch", "groups", "links",
                  box=None, pad_edge=False)
    for p in manifest.projects:
        links = [f"{x.dest} -> {x.src}" for x in p.linkfiles] + [f"{x.dest} <= {x.src}" for x in p.copyfiles]
        table.add_row(*(Text(quote(v)) for v in (p.path, p.name, p.url, p.revision, p.upstream or "",
                                           p.dest_branch or "", ",".join(p.groups), "; ".join(links))))
    table.caption = f"{len(manifest.projects)} projects"
    return table
