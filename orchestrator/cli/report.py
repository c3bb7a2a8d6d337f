"""`orch report [JOB]` and `orch report --diff JOB_A JOB_B`: show or compare earlier jobs of
`orch build` from their results.json (JOB: a job id or prefix, a results directory, or
``latest``)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.cli.common import workspace_root
from orchestrator.errors import EXIT_OK, InputError
from orchestrator.report import render as report
from orchestrator.report import store
from orchestrator.report.merge import is_sweep, merge_directories, merge_sweep_directories
from orchestrator.report.model import JobReport
from orchestrator.ui import UI

if TYPE_CHECKING:
    from orchestrator.sweep.results import SweepResult


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "report",
        parents=[common],
        help="show an earlier `orch build` job again, or compare two",
        description="Show the comparison table of an earlier `orch build` job (default: the latest), "
        "or with --diff every figure that changed between two jobs. JOB is a job id (or a unique "
        "prefix) under .orch/results/, a results directory, or 'latest'.",
    )
    parser.add_argument("job", nargs="?", metavar="JOB", help="the job to show (default: latest)")
    parser.add_argument("--diff", nargs=2, metavar=("JOB_A", "JOB_B"), help="compare two jobs")
    parser.add_argument("--markdown", action="store_true", help="print the Markdown summary instead")
    parser.add_argument("--sweep", nargs="?", const="latest", metavar="ID",
                        help="show an `orch sweep` instead (default: the latest): table, fit, warnings")
    parser.add_argument("--merge", nargs="+", type=Path, metavar="DIR",
                        help="merge these results directories (a matrix's or a cluster's points) into one")
    parser.add_argument("--results", type=Path, metavar="DIR",
                        help="with --merge: where the merged run goes (default: a new .orch/results/ run)")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace, ui: UI) -> int:
    root = workspace_root(args)
    if args.merge:
        return _merge(args, root, ui)
    if args.results is not None:
        raise InputError("--results goes with --merge")
    if args.sweep is not None:
        return _sweep(args, root, ui)
    if args.diff:
        a = store.read_results(store.find_job(root, args.diff[0]))
        b = store.read_results(store.find_job(root, args.diff[1]))
        differences = report.diff(a, b)
        ui.result({"a": a.id, "b": b.id, "differences": differences}, report.diff_table(a, b, differences))
        return EXIT_OK
    directory = store.find_job(root, args.job)
    _show_job(store.read_results(directory), directory, ui, markdown=args.markdown)
    return EXIT_OK


def _show_job(job: JobReport, directory: Path, ui: UI, *, markdown: bool) -> None:
    """A job's table and verdict line (or its Markdown summary, or its JSON)."""
    if markdown and not ui.json:
        ui.out.print(report.markdown(job), markup=False, highlight=False)
        return
    ui.result(job, report.table(job))
    if not ui.json:
        ui.out.print(report.verdict_line(job), markup=False, highlight=False)
        ui.info(f"results: {directory}")


def _show_sweep(result: SweepResult, directory: Path, ui: UI, *, markdown: bool) -> None:
    """A sweep's table and findings (or its Markdown summary, or its JSON)."""
    from orchestrator.sweep import results as sweep_results

    if markdown and not ui.json:
        ui.out.print(sweep_results.markdown(result, chart=(directory / "sweep.png").is_file()),
                     markup=False, highlight=False)
        return
    ui.result(sweep_results.to_json(result), sweep_results.table(result))
    if not ui.json:
        for line in sweep_results.findings(result):
            ui.out.print(line, markup=False, highlight=False)
        ui.info(f"results: {directory}")


def _sweep(args: argparse.Namespace, root: Path, ui: UI) -> int:
    """`--sweep [ID]`: an earlier sweep's table and findings (or its Markdown, or its JSON)."""
    from orchestrator.sweep import results as sweep_results

    if args.diff or args.job:
        raise InputError("--sweep takes a sweep id, not JOB or --diff")
    directory = sweep_results.find_sweep(root, args.sweep)
    _show_sweep(sweep_results.read(directory), directory, ui, markdown=args.markdown)
    return EXIT_OK


def _merge(args: argparse.Namespace, root: Path, ui: UI) -> int:
    """`--merge DIR...`: one run from split results; exits with the merged run's exit code."""
    if args.diff or args.job:
        raise InputError("--merge takes only result directories (not JOB or --diff)")
    sweeps = [is_sweep(d) for d in args.merge]
    if any(sweeps):
        return _merge_sweeps(args, root, ui, sweeps)
    for directory in args.merge:
        if not (directory / "results.json").is_file():
            raise InputError(f"{directory}: no results.json or sweep.json (not an orch results directory)")
    run_id = datetime.now(UTC).strftime("%Y%m%d-%H%M%S") + "-merged"
    out = args.results or store.new_job_dir(root, run_id)
    merged = merge_directories(list(args.merge), out, ["orch", "report", "--merge", *map(str, args.merge)])
    _show_job(merged, out, ui, markdown=args.markdown)
    return merged.exit_code


def _merge_sweeps(args: argparse.Namespace, root: Path, ui: UI, sweeps: list[bool]) -> int:
    """`--merge` of sweep directories (a matrix's grid points): one sweep with its chart."""
    from orchestrator.sweep.runner import sweeps_root

    if not all(sweeps):
        odd = args.merge[sweeps.index(False)]
        raise InputError(f"{odd}: not a sweep directory (no sweep.json), but others are: merge one kind")
    out = args.results or sweeps_root(root) / (datetime.now(UTC).strftime("%Y%m%d-%H%M%S") + "-merged")
    merged = merge_sweep_directories(list(args.merge), out,
                                     ["orch", "report", "--merge", *map(str, args.merge)])
    _show_sweep(merged, out, ui, markdown=False)  # a merge of sweeps always shows the table
    return EXIT_OK
