"""`orch bisect`: find the manifest snapshot, then the project commit, that broke a variant
(see :mod:`orchestrator.bisect.bisector`); prints every step, the answer and the command that
reproduces the bad point. Exit 0 culprit found, 1 no regression, 2 bad input, 125 all skipped."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from orchestrator import layout
from orchestrator.bisect.bisector import BisectRequest, run_bisect
from orchestrator.bisect.log import read_log
from orchestrator.bisect.oracle import OracleSettings
from orchestrator.bisect.record import BisectRecord
from orchestrator.build.spec import spec_for
from orchestrator.cli.common import add_build_options, check_build_options, positive, workspace_root
from orchestrator.cluster.engine import cluster_address
from orchestrator.errors import InputError
from orchestrator.patchset.apply import load_patchset, patchset_search_path
from orchestrator.sanitize import terminal_text
from orchestrator.ui import UI, to_jsonable


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "bisect",
        parents=[common],
        help="find the manifest snapshot, then the project commit, that broke a variant",
        description="Bisect the manifest repository's snapshots between --good and --bad (first-parent "
        "commits changing the manifest file), then every commit of the projects whose pins changed "
        "between the last good and the first bad snapshot; or, with --project, one project's commits. "
        "Each point is built (through the build cache) with the patchsets re-applied and judged by the "
        "variant's expectation or --test CMD.",
        epilog="exit codes: 0 culprit found, 1 no regression (bad is good), 2 bad input (or good is bad), "
        "125 every candidate was skipped or skips hide the answer",
    )
    parser.add_argument("--patchset", metavar="NAME", help="the patchset whose variant to bisect")
    parser.add_argument("--variant", metavar="V",
                        help="the variant judged (default: the one named like the patchset, else the last)")
    parser.add_argument("--good", metavar="REV", help="a manifest revision (or --project commit) that works")
    parser.add_argument("--bad", metavar="REV", help="a later one that does not")
    parser.add_argument("--project", metavar="PATH",
                        help="bisect this project's commits only; the others stay at the workspace's pins")
    parser.add_argument("--test", metavar="CMD",
                        help="judge each build with this shell command instead of booting it (git bisect's "
                        "exit codes: 0 good, 125 skip, 1-127 bad, above 127 abort; $ORCH_IMAGE, "
                        "$ORCH_BUILD_DIR, $ORCH_RESULTS are set)")
    parser.add_argument("--build-failure", choices=("skip", "bad"), default="skip",
                        help="a point that does not build is skipped (default) or counts as bad")
    parser.add_argument("--retries", type=positive, default=1, metavar="N",
                        help="boot each point N times and take the majority (flaky boots)")
    add_build_options(parser, image_help="build image for every point (default: the patchset's, or its "
                      "[[build.images]] rules)")
    parser.set_defaults(executor=None)  # unset: a --replay takes the logged one, else docker
    parser.add_argument("--cluster", metavar="ADDRESS",
                        help="judge each step's points on a Dask cluster (tcp://host:8786; $ORCH_CLUSTER "
                        "or `cluster` in .orch/config.toml): a k-ary search, one point per worker")
    parser.add_argument("--width", type=positive, default=1, metavar="N",
                        help="points judged per step (default 1: binary search; --cluster: one per worker)")
    parser.add_argument("--replay", type=Path, metavar="FILE",
                        help="repeat a bisection from its log without building (its arguments by default)")
    parser.add_argument("--log", action="store_true", help="print the latest bisection's log")
    parser.set_defaults(func=handle)


def _default_variant(patchset: str, dirs: list[str], env: dict[str, str]) -> str:
    search_path = patchset_search_path([Path(d) for d in dirs], env)
    spec = spec_for(load_patchset(patchset, search_path))
    names = [v.name for v in spec.variants]
    return patchset if patchset in names else names[-1]


def _latest(root: Path, name: str) -> Path:
    path = layout.bisect_dir(root) / layout.LATEST / name
    if not path.is_file():
        raise InputError(f"no bisection in {root} yet (no {path})",
                         hint="run orch bisect --patchset NAME --good REV --bad REV first")
    return path


def handle(args: argparse.Namespace, ui: UI) -> int:
    root = workspace_root(args)
    if args.log:
        # the log quotes commit subjects (outside text): through the sanitizer like all output
        sys.stdout.write(terminal_text(_latest(root, "bisect.log").read_text(errors="replace")))
        return 0
    replay = read_log(args.replay) if args.replay else None
    start = replay.start if replay else {}
    patchset = args.patchset or start.get("patchset")
    good, bad = args.good or start.get("good"), args.bad or start.get("bad")
    if ui.json and not (patchset or good or bad):  # `orch bisect --json`: the latest record
        sys.stdout.write(_latest(root, "bisect.json").read_text())
        return 0
    if not patchset or not good or not bad:
        raise InputError("orch bisect needs --patchset NAME, --good REV and --bad REV (or --replay FILE)")
    check_build_options(args)
    env = dict(os.environ)
    variant = args.variant or start.get("variant") or _default_variant(patchset, args.patchsets, env)
    settings = OracleSettings(
        patchset=patchset, variant=variant, workspace=root,
        patchset_dirs=tuple(Path(d).resolve() for d in args.patchsets),
        executor=args.executor or start.get("executor") or "docker",
        boot_in=args.boot_in, cmake=tuple(args.cmake or start.get("cmake") or ()), timeout=args.timeout,
        test=args.test or start.get("test"), build_failure=start.get("build_failure") or args.build_failure,
        retries=args.retries, env=env)
    request = BisectRequest(settings, str(good), str(bad), project=args.project or start.get("project"),
                            image=args.image or start.get("image"),
                            command=("orch", *sys.argv[1:]) if sys.argv[1:] else ("orch",),
                            replay=replay, width=args.width,
                            cluster=cluster_address(args.cluster, env, root))
    record = run_bisect(request, ui)
    ui.result(to_jsonable(record), steps_table(record))
    if not ui.json:
        for line in answer_lines(record):
            ui.out.print(line, highlight=False)
    return record.exit_code


def steps_table(record: BisectRecord) -> Table:
    table = Table(title=f"orch bisect --patchset {record.patchset} --variant {record.variant}")
    for column in ("#", "level", "point", "verdict", "cause", "build", "boot", "image", "time"):
        table.add_column(column, justify="right" if column in ("#", "time") else "left")
    for step in record.steps:
        point = f"{step.rev[:12]} {step.subject[:48]}"
        if step.project:
            point = f"{step.project}: {point}"
        build = step.built + (f" {step.build_seconds:.1f} s" if step.built in ("built", "failed")
                              and step.build_seconds else "")
        boot = step.boot + (f" {step.boot_seconds:.1f} s" if step.boot == "ran" and step.boot_seconds else "")
        verdict = {"good": "[green]good[/]", "bad": "[red]BAD[/]", "skip": "[yellow]skip[/]"}[step.verdict]
        cause = step.cause + (f": {step.detail[:60]}" if step.detail and step.verdict == "skip" else "")
        table.add_row(str(step.number), step.level, escape(point), verdict, escape(cause), build, boot,
                      escape(step.image or "-"), f"{step.seconds:.1f} s")
    return table


def answer_lines(record: BisectRecord) -> list[str]:
    lines = [f"{level.level}s: {level.points} candidates, {level.steps} steps, {level.builds} builds, "
             f"{level.skips} skipped (binary search bound ceil(log2 N) = {level.bound}): {level.status}"
             for level in record.levels]
    if record.first_bad_manifest:
        m = record.first_bad_manifest
        lines.append(f"first bad snapshot: {escape(m.rev)} ({escape(m.date)}) {escape(m.subject)}")
    if record.culprit:
        c = record.culprit
        lines.append(f"culprit: {escape(c.project)} {escape(c.commit)}")
        lines.append(f"    {escape(c.subject)}")
        lines.append(f"    {escape(c.author)}, {c.date}")
        if c.url:
            lines.append(f"    {escape(c.url)}")
    status = record.status
    if status == "no-regression":
        lines.append("no regression: the bad end is good")
    elif status == "good-is-bad":
        lines.append("the good end is bad: the regression is older than --good")
    elif status in ("ambiguous", "all-skipped"):
        suspects = record.levels[-1].suspects if record.levels else []
        why = "every candidate was skipped" if status == "all-skipped" else "skipped points hide the answer"
        lines.append(f"{why}; the first bad point is one of {len(suspects)}:")
        lines += [f"    {escape(s)}" for s in suspects]
    if record.reproduce:
        lines.append(f"reproduce: {escape(record.reproduce)}")
    lines.append(f"bisect.json and bisect.log: {escape(str(Path(record.log or '').parent))}  "
                 f"-> exit {record.exit_code}")
    return lines
