"""`orch matrix --github PATCHSET`: the points of a build as a GitHub Actions job matrix (see
:mod:`orchestrator.cluster.matrix`)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from orchestrator.build.spec import override, spec_for
from orchestrator.cli.common import workspace_root
from orchestrator.cluster.matrix import (
    MatrixPoint,
    build_points,
    dumps_matrix,
    github_matrix,
    github_workflow,
    sweep_points,
)
from orchestrator.errors import InputError
from orchestrator.patchset.apply import load_patchset, patchset_search_path
from orchestrator.ui import UI


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "matrix",
        parents=[common],
        help="print a GitHub Actions job matrix with one job per point of a build",
        description="Print the JSON for `strategy.matrix`: one job per variant of a patchset (each "
        "runs `orch build --patchset P --point V --results DIR`), or one per grid point of a sweep "
        "(a sweep id or directory under .orch/sweeps/, e.g. one made with `orch sweep ... --matrix`; "
        "each job runs `orch sweep <its arguments> --point I --results DIR`). `orch report --merge "
        "DIR...` merges the uploaded directories. --workflow prints a whole workflow file instead.",
    )
    parser.add_argument("--github", required=True, metavar="PATCHSET|SWEEP",
                        help="the patchset whose variants, or the sweep whose grid points, to list")
    parser.add_argument("--variant", action="append", default=[], metavar="V", help="only these variants")
    parser.add_argument("--patchsets", action="append", default=[], metavar="DIR",
                        help="extra patchset directory (repeatable)")
    parser.add_argument("--workflow", action="store_true", help="print a workflow file using the matrix")
    parser.set_defaults(func=handle)


def matrix_points(target: str, args: argparse.Namespace) -> list[MatrixPoint]:
    """A patchset's variants, or (when TARGET names a sweep of this workspace) its grid points."""
    sweep = _sweep_directory(workspace_root(args), target)
    if sweep is not None:
        if args.variant:
            raise InputError("--variant goes with a patchset, not a sweep")
        from orchestrator.sweep.runner import stored_plan

        plan = stored_plan(sweep)
        return sweep_points(plan.cli_args(), plan.point_labels())
    search_path = [p.resolve() for p in patchset_search_path([Path(d) for d in args.patchsets], os.environ)]
    spec = override(spec_for(load_patchset(target, search_path)), variants=args.variant or None)
    return build_points(target, [v.name for v in spec.variants])


def _sweep_directory(root: Path, target: str) -> Path | None:
    from orchestrator.sweep.results import find_sweep

    as_path = Path(target)
    if (as_path / "plan.json").is_file():
        return as_path
    try:
        return find_sweep(root, target)  # a sweep id (or unique prefix) or 'latest'
    except InputError:
        return None  # not a sweep of this workspace: a patchset name


def handle(args: argparse.Namespace, ui: UI) -> int:
    matrix = github_matrix(matrix_points(args.github, args))
    if args.workflow:
        ui.out.print(github_workflow(args.github), markup=False, highlight=False, end="")
        return 0
    if ui.json:
        ui.result(matrix, "")
    else:
        ui.out.print(dumps_matrix(matrix), markup=False, highlight=False, soft_wrap=True)
    return 0
