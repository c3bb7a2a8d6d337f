"""`orch sweep`: build and boot a variant at many parameter values; binary-search the smallest
passing value per grid point (see :mod:`orchestrator.sweep`); prints the table, the fitted
bytes per frame and where the results (JSON, CSV, chart, Markdown) are."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from orchestrator.cli.common import add_build_options, check_build_options, positive, workspace_root
from orchestrator.cluster.engine import cluster_address
from orchestrator.cluster.matrix import dumps_matrix, github_matrix, sweep_points
from orchestrator.errors import EXIT_OK, InputError
from orchestrator.patchset.params import Setting, parse_value
from orchestrator.sweep import results
from orchestrator.sweep.plan import SweepPlan, parse_axis, parse_search
from orchestrator.sweep.runner import Request, run_sweep
from orchestrator.ui import UI


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "sweep",
        parents=[common],
        help="build and boot a variant at many parameter values; find the smallest that passes",
        description="Vary parameters a patchset declares ([params.NAME] in patchset.toml): "
        "--minimize binary-searches the smallest passing value of one (assuming a pass stays a "
        "pass above it) at every point of the --grid; --values probes every combination. Each "
        "probe is a build (incremental: only what depends on the edited files) and a boot. "
        "Results go to .orch/sweeps/<id>/ (sweep.json, sweep.csv, sweep.png/.svg, summary.md).",
        epilog="exit codes: 0 done, 2 bad input (or over --max-builds without --yes), "
        "125 could not test, 130 interrupted (resume with --resume)",
    )
    parser.add_argument("--patchset", metavar="NAME", help="the patchset declaring the parameters")
    parser.add_argument("--variant", metavar="V", help="the variant to build (default: its first)")
    parser.add_argument("--minimize", metavar="P=LO..HI", help="search the smallest passing value of P")
    parser.add_argument("--step", metavar="S", help="resolution of the search (default: (HI-LO)/256)")
    parser.add_argument("--grid", action="append", default=[], metavar="P=V1,V2",
                        help="a grid axis: the search runs at every point (repeatable)")
    parser.add_argument("--values", action="append", default=[], metavar="P=V1,V2",
                        help="probe each of these values (a plain grid, no search; repeatable)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="params",
                        help="a fixed parameter value for every probe (repeatable)")
    parser.add_argument("-j", "--jobs", type=positive, default=1, metavar="N",
                        help="grid points at once, each in its own variant tree (default 1)")
    add_build_options(parser)
    parser.add_argument("-m", "--manifest", metavar="SOURCE",
                        help="sync from this manifest first if never synced")
    parser.add_argument("--max-builds", type=positive, default=40, metavar="N",
                        help="ask for --yes when the sweep may need more builds than this (default 40)")
    parser.add_argument("--yes", action="store_true", help="go ahead above --max-builds")
    parser.add_argument("--cluster", metavar="ADDRESS",
                        help="run the grid points on a Dask cluster (tcp://host:8786; also $ORCH_CLUSTER "
                        "or `cluster` in .orch/config.toml); see `orch worker`")
    parser.add_argument("--point", action="append", type=int, default=[], metavar="I",
                        help="only grid point I (0-based, repeatable): what a CI matrix job runs")
    parser.add_argument("--results", type=Path, metavar="DIR",
                        help="the sweep's directory (default .orch/sweeps/<id>/); `orch report --merge` "
                        "joins several")
    parser.add_argument("--matrix", action="store_true",
                        help="print a GitHub Actions job matrix with one job per grid point instead of "
                        "running (see `orch matrix`)")
    parser.add_argument("--resume", nargs="?", const="latest", metavar="ID",
                        help="continue an interrupted sweep (default: the latest) without redoing its probes")
    parser.set_defaults(func=handle)


def _plan(args: argparse.Namespace) -> SweepPlan:
    if not args.patchset:
        raise InputError("--patchset NAME is required (or --resume)")
    fixed = []
    for text in args.params:
        name, sep, raw = text.partition("=")
        if not sep or not name:
            raise InputError(f"--set {text!r}: expected NAME=VALUE, e.g. ram=2G")
        fixed.append(Setting(name, parse_value(raw, f"--set {name}")))
    if args.step and not args.minimize:
        raise InputError("--step goes with --minimize")
    return SweepPlan(
        patchset=args.patchset,
        variant=args.variant or "",
        search=parse_search(args.minimize, args.step) if args.minimize else None,
        grid=tuple(parse_axis(g, "--grid") for g in args.grid),
        values=tuple(parse_axis(v, "--values") for v in args.values),
        fixed=tuple(fixed),
        patchset_dirs=tuple(str(Path(d).resolve()) for d in args.patchsets),
        executor=args.executor,
        image=args.image,
        cmake=tuple(args.cmake),
        timeout=args.timeout,
        boot_in=args.boot_in,
    )


def handle(args: argparse.Namespace, ui: UI) -> int:
    check_build_options(args)
    plan = None if args.resume else _plan(args)
    if args.matrix:
        return _print_matrix(plan, ui)
    command = ("orch", *sys.argv[1:]) if Path(sys.argv[0]).name == "orch" else ("orch", "sweep")
    root = workspace_root(args)
    request = Request(plan=plan, workspace=root, jobs=args.jobs, max_builds=args.max_builds,
                      yes=args.yes, resume=args.resume, manifest=args.manifest, command=command,
                      cluster=cluster_address(args.cluster, os.environ, root), points=tuple(args.point),
                      results_dir=args.results)
    outcome = run_sweep(request, ui)
    ui.result(results.to_json(outcome.result), results.table(outcome.result))
    if not ui.json:
        for line in results.findings(outcome.result):
            ui.out.print(line, markup=False, highlight=False)
        ui.info(f"results: {outcome.directory}")
    return EXIT_OK


def _print_matrix(plan: SweepPlan | None, ui: UI) -> int:
    """`--matrix`: one CI job per grid point, each running this sweep with ``--point I``."""
    if plan is None:
        raise InputError("--matrix needs the sweep's arguments (not --resume); or `orch matrix --github ID`")
    matrix = github_matrix(sweep_points(plan.cli_args(), plan.point_labels()))
    if ui.json:
        ui.result(matrix, "")
    else:
        ui.out.print(dumps_matrix(matrix), markup=False, highlight=False, soft_wrap=True)
    return EXIT_OK
