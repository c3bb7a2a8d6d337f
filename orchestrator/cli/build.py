"""`orch build --patchset NAME`: sync, check, build every variant, boot each, compare (see
:mod:`orchestrator.job`); prints the comparison table and exits 0 when every variant
met its expectation, 1 when one did not, 125 when something could not be tested."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from orchestrator.cli.common import (
    add_build_options,
    add_manifest_options,
    check_build_options,
    positive,
    workspace_root,
)
from orchestrator.cluster.engine import cluster_address
from orchestrator.cluster.task import PointResult
from orchestrator.job import JobOptions, run_job
from orchestrator.report import render as report
from orchestrator.report.model import JobReport
from orchestrator.ui import UI


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "build",
        parents=[common],
        help="sync, apply a patchset's variants, build them, boot each in QEMU, compare",
        description="The whole job: sync the workspace if needed (the shipped default manifest "
        "unless -m), check every patchset, build each variant of the patchset's [variants] in "
        "Docker (or on the host), boot each in QEMU and print pass/fail and memory side by side. "
        "Reports go to .orch/results/<job>/ (results.json, summary.md, junit.xml).",
        epilog="exit codes: 0 every variant met its expectation (without one: passed), 1 one did "
        "not, 2 bad input, 125 could not test (git bisect run skips it), 130 interrupted",
    )
    parser.add_argument("--patchset", required=True, metavar="NAME",
                        help="the patchset whose variants to build")
    parser.add_argument("--variant", action="append", default=[], metavar="V",
                        help="only this variant (repeatable); NAME=PS1+PS2 defines one on the fly")
    parser.add_argument("--no-run", action="store_true", help="build only, do not boot")
    add_build_options(
        parser,
        image_help="build image (default: the patchset's, else trustworthysystems/camkes:latest)",
        boot_in_help="where QEMU runs (auto: the host if it has qemu-system-aarch64)",
        cmake_help="extra CMake option for every variant (repeatable)",
        patchsets_help="extra patchset directory (repeatable; searched before $ORCH_PATCHSETS "
        "and the shipped ones)")
    parser.add_argument("--rebuild", action="store_true", help="ignore cached builds")
    parser.add_argument("--rerun", action="store_true",
                        help="boot again even when an identical run is cached")
    parser.add_argument("-j", "--jobs", type=positive, default=1, metavar="N",
                        help="variants built at once (default 1)")
    parser.add_argument("--boot-jobs", type=positive, default=None, metavar="N",
                        help="variants booted at once (default: all)")
    add_manifest_options(parser)
    parser.add_argument("--sync", action="store_true", help="sync even if the workspace is already synced")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="params",
                        help="set a parameter the patchset declares ([params.NAME]) for every variant, "
                        "e.g. mempool=96M (repeatable); applied as a generated commit on top of the patches")
    parser.add_argument("--fail-grace", type=float, default=2.0, metavar="SECONDS",
                        help="after a fail verdict, keep reading the console this long for the lines "
                        "that follow (default 2; the verdict time is unchanged)")
    parser.add_argument("--results", type=Path, metavar="DIR",
                        help="write the reports here instead of .orch/results/<job>/")
    parser.add_argument("--point", action="append", default=[], metavar="ID",
                        help="run only this point (a variant name; what `orch matrix` jobs pass)")
    parser.add_argument("--cluster", metavar="ADDRESS",
                        help="run the variants on a Dask cluster (tcp://host:8786; also $ORCH_CLUSTER "
                        "or `cluster` in .orch/config.toml); see `orch worker`")
    points = parser.add_argument_group("which commits to build (default: the workspace's pins)")
    points.add_argument("--at", metavar="MANIFEST_REV",
                        help="the pins of this manifest repository revision (SHA, tag, branch, HEAD~N); "
                        "fetched as needed, your checkouts are not touched")
    points.add_argument("--pin", action="append", default=[], metavar="PATH=REV",
                        help="one project at another commit (repeatable)")
    points.add_argument("--use-checkouts", action="store_true",
                        help="build each project's checked-out HEAD instead of its pin (automatic for a "
                        "project where a git bisect is in progress)")
    parser.set_defaults(func=handle)


def _command_line(patchset: str) -> tuple[str, ...]:
    """The command as typed (for the report's reproducer line)."""
    if Path(sys.argv[0]).name == "orch" and "build" in sys.argv[1:]:
        return ("orch", *sys.argv[1:])
    return ("orch", "build", "--patchset", patchset)


def handle(args: argparse.Namespace, ui: UI) -> int:
    check_build_options(args)
    options = JobOptions(
        variants=tuple(args.variant) + tuple(args.point),
        boot=not args.no_run,
        executor=args.executor,
        toolchain_image=args.image,
        rebuild=args.rebuild,
        reboot=args.rerun,
        jobs=args.jobs,
        boot_jobs=args.boot_jobs or 0,
        boot_in=args.boot_in,
        patchset_dirs=tuple(Path(d) for d in args.patchsets),
        manifest=args.manifest,
        manifest_rev=args.manifest_rev,
        manifest_file=args.manifest_file,
        manifest_url=args.manifest_url,
        sync=args.sync,
        cmake=tuple(args.cmake),
        params=tuple(args.params),
        timeout=args.timeout,
        fail_grace=max(0.0, args.fail_grace),
        results_dir=args.results,
        at=args.at,
        pins=tuple(args.pin),
        use_checkouts=args.use_checkouts,
    )
    workspace, reproduce = workspace_root(args), _command_line(args.patchset)
    address = cluster_address(args.cluster, os.environ, workspace)
    if address is not None:
        job, directory = _run_on_cluster(args.patchset, workspace, options, reproduce, address, ui)
    else:
        outcome = run_job(args.patchset, workspace, options, ui, reproduce=reproduce)
        job, directory = outcome.report, outcome.directory
    ui.result(job, report.table(job))
    if not ui.json:
        ui.out.print(report.verdict_line(job), markup=False, highlight=False)
        ui.info(f"results: {directory}")
    return job.exit_code


def _run_on_cluster(patchset: str, workspace: Path, options: JobOptions, reproduce: Sequence[str],
                    address: str, ui: UI) -> tuple[JobReport, Path]:
    """Every variant as a point on the Dask cluster, merged into one job."""
    from orchestrator.cluster.engine import DaskEngine
    from orchestrator.cluster.fanout import run_distributed

    with DaskEngine(address) as engine:
        ui.info(f"running on {engine.describe()}")

        def on_result(result: PointResult) -> None:
            where = f" on {result.worker}" if result.worker else ""
            detail = f": {result.error}" if result.error else ""
            ui.info(f"point {result.point_id}: exit {result.exit_code}{where}{detail}")

        return run_distributed(patchset, workspace, options, engine, reproduce, on_result)
