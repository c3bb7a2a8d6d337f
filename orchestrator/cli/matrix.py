"""`orch matrix --github PATCHSET`: the points of a build as a GitHub Actions job matrix (see
:mod:`orchestrator.cluster.matrix`)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from orchestrator.build.spec import override, spec_for
from orchestrator.cluster.matrix import MatrixPoint, dumps_matrix, github_matrix, github_workflow
from orchestrator.patchset.apply import load_patchset, patchset_search_path
from orchestrator.ui import UI


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "matrix",
        parents=[common],
        help="print a GitHub Actions job matrix with one job per point of a build",
        description="Print the JSON for `strategy.matrix` (one job per variant of PATCHSET; each job "
        "runs `orch build --patchset P --point ID --results DIR`; `orch report --merge DIR...` "
        "merges the uploaded directories). --workflow prints a whole workflow file instead.",
    )
    parser.add_argument("--github", required=True, metavar="PATCHSET",
                        help="the patchset whose points to list")
    parser.add_argument("--variant", action="append", default=[], metavar="V", help="only these variants")
    parser.add_argument("--patchsets", action="append", default=[], metavar="DIR",
                        help="extra patchset directory (repeatable)")
    parser.add_argument("--workflow", action="store_true", help="print a workflow file using the matrix")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace, ui: UI) -> int:
    search_path = [p.resolve() for p in patchset_search_path([Path(d) for d in args.patchsets], os.environ)]
    spec = override(spec_for(load_patchset(args.github, search_path)), variants=args.variant or None)
    matrix = github_matrix([MatrixPoint(v.name, args.github) for v in spec.variants])
    if args.workflow:
        ui.out.print(github_workflow(args.github), markup=False, highlight=False, end="")
        return 0
    if ui.json:
        ui.result(matrix, "")
    else:
        ui.out.print(dumps_matrix(matrix), markup=False, highlight=False, soft_wrap=True)
    return 0
