"""Benchmark: `check` + `apply` + `revert` of the shipped ``largepage`` patchset (library calls)
against a plain shell loop of ``git am`` / ``git reset --hard`` over the same projects.

Run by hand from the repository root::

    python -m benchmarks.bench_patchset [--rounds N]

It syncs the seed fixture's manifest into a temporary workspace with ``orch sync`` (not
timed), then alternates the two contenders ``--rounds`` times and prints the medians and their
ratio. Targets: orch within 1.5x of the plain loop, and under 1 s in total.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import git_identity
from orchestrator.cli import main as orch_main
from orchestrator.patchset import apply as lib
from orchestrator.shipped import shipped_dir
from orchestrator.workspace.sync import Workspace
from orchestrator.workspace.tree import SourceTree
from tests.support.seed import make_seed_server

REPO = Path(__file__).resolve().parent.parent


def plain_loop_script(tree: SourceTree, series: dict[str, list[Path]]) -> str:
    """What a developer would type: git am in each project, then reset back to the pin."""
    lines = ["set -e"]
    for project, files in series.items():
        checkout = tree.project(project)
        lines.append(f"git -C '{checkout.directory}' am -q " + " ".join(f"'{f}'" for f in files))
    for project in series:
        checkout = tree.project(project)
        lines.append(f"git -C '{checkout.directory}' reset -q --hard {checkout.pinned}")
    return "\n".join(lines) + "\n"


def time_orch(tree: SourceTree, search: list[Path]) -> float:
    start = time.perf_counter()
    chain = lib.resolve(["largepage"], search)
    report = lib.check(tree, chain)
    assert report.ok, report
    applied = lib.apply(tree, chain)
    assert not applied.noop
    lib.revert(tree, chain)
    return time.perf_counter() - start


def time_plain(script: str) -> float:
    start = time.perf_counter()
    subprocess.run(["bash", "-c", script], check=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    git_identity()
    with tempfile.TemporaryDirectory(prefix="orch-bench-") as scratch:
        base = Path(scratch)
        manifest = make_seed_server(base)
        root = base / "ws"
        with contextlib.redirect_stdout(io.StringIO()):
            synced = orch_main(["sync", "-q", "-m", str(manifest), "-w", str(root)])
        if synced != 0:
            return 1
        tree = Workspace(root).tree()
        search = [shipped_dir("patchsets")]
        series: dict[str, list[Path]] = {}
        for ps in lib.resolve(["largepage"], search):
            for project, refs in ps.projects.items():
                series.setdefault(project, []).extend(r.path for r in refs)
        script = plain_loop_script(tree, series)
        orch_times, plain_times = [], []
        time_orch(tree, search)  # warm-up: imports, page cache
        time_plain(script)
        for _ in range(args.rounds):
            orch_times.append(time_orch(tree, search))
            plain_times.append(time_plain(script))
    orch_s, plain_s = statistics.median(orch_times), statistics.median(plain_times)
    ratio = orch_s / plain_s
    print(f"projects: {len(series)}, patches: {sum(len(v) for v in series.values())}, rounds: {args.rounds}")
    print(f"orch check+apply+revert (library): median {orch_s * 1000:.1f} ms "
          f"(min {min(orch_times) * 1000:.1f})")
    print(f"plain git am + git reset --hard loop: median {plain_s * 1000:.1f} ms "
          f"(min {min(plain_times) * 1000:.1f})")
    print(f"ratio orch/plain: {ratio:.2f}x (target <= 1.5x); orch total {orch_s:.3f} s (target < 1 s)")
    return 0 if ratio <= 1.5 and orch_s < 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
