"""Benchmark: points through a real Dask scheduler against the same points run locally.

Two figures, both taken from outside orch (wall clock around the engine call that a user's
command makes), on the end-to-end fixture (host executor: cross gcc, cmake, ninja, QEMU):

* per-task overhead of going through the scheduler: one warm point (its build and boot cached
  on the worker) run by the local engine and by a one-worker Dask cluster, in alternating
  rounds; the overhead is the median of the per-round differences (target < 100 ms);
* speedup: N distinct points (each its own build and boot, cold worker caches) locally and on
  1, 2 and 3 loopback workers.

    python -m benchmarks.bench_cluster [--points 6] [--rounds 5]

On a 2-core machine the speedup is bounded by the cores: each point is a parallel build plus a
QEMU boot, so more workers than cores only queue for the CPU.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import isolate
from orchestrator.cluster.engine import DaskEngine, LocalEngine
from orchestrator.cluster.task import PointTask, pack_patchsets
from tests.support.build import make_patch
from tests.support.cluster import loopback_cluster
from tests.support.e2e import LARGEPAGE_TOML, E2EFixture, make_e2e_fixture


def add_point_patchsets(fx: E2EFixture, count: int) -> str:
    """``points``: a patchset with ``count`` variants, each a distinct build that boots to login."""
    variants = []
    for n in range(count):
        name = f"p{n}"
        edit = ("#ifdef BREAK_BUILD", f"#define POINT {n}\n#ifdef BREAK_BUILD")
        patch = make_patch(fx.kernel.scratch, {"src/check.c": edit}, f"point {n}")
        directory = fx.patchsets / name / "kernel"
        directory.mkdir(parents=True)
        (directory / "0001.patch").write_text(patch)
        sha = hashlib.sha256(patch.encode()).hexdigest()
        (fx.patchsets / name / "patchset.toml").write_text(
            f'description = "point {n}"\n[projects."kernel"]\n'
            f'patches = [{{ file = "0001.patch", sha256 = "{sha}" }}]\n')
        variants.append(f'[variants.{name}]\npatchsets = ["vm-2g", "{name}", "largepage"]\n')
    head = LARGEPAGE_TOML.split("[variants.4k]")[0].replace('requires = ["vm-2g"]\n', "")
    (fx.patchsets / "points").mkdir()
    (fx.patchsets / "points" / "patchset.toml").write_text(head + "\n".join(variants))
    return "points"


def tasks_for(fx: E2EFixture, run_id: str, names: list[str]) -> list[PointTask]:
    files = pack_patchsets(sorted(p for p in fx.patchsets.iterdir() if p.is_dir()))
    return [PointTask(run_id, name, "points", fx.manifest_url, files=files,
                      build_args=("--variant", name, "--executor", "host")) for name in names]


def timed(engine: LocalEngine | DaskEngine, tasks: list[PointTask]) -> float:
    start = time.perf_counter()
    results = engine.run(tasks)
    seconds = time.perf_counter() - start
    bad = [r for r in results if r.exit_code != 0]
    assert not bad, [(r.point_id, r.exit_code, r.error) for r in bad]
    return seconds


def overhead(fx: E2EFixture, base: Path, rounds: int) -> None:
    env = dict(os.environ, ORCH_WORKER_DIR=str(base / "local-warm"))
    local = LocalEngine(env)
    with loopback_cluster(base / "c1") as cluster:
        cluster.add_worker("w")
        cluster.wait_for_workers(1)
        with DaskEngine(cluster.address) as dask:
            timed(local, tasks_for(fx, "warm-local", ["p0"]))
            timed(dask, tasks_for(fx, "warm-dask", ["p0"]))
            diffs, l_all, d_all = [], [], []
            for r in range(rounds):
                pair: list[tuple[str, LocalEngine | DaskEngine]] = [("local", local), ("dask", dask)]
                order = pair if r % 2 == 0 else pair[::-1]
                got = {label: timed(engine, tasks_for(fx, f"r{r}-{label}", ["p0"]))
                       for label, engine in order}
                diffs.append(got["dask"] - got["local"])
                l_all.append(got["local"])
                d_all.append(got["dask"])
                print(f"round {r + 1}: local {got['local']:.3f} s, dask {got['dask']:.3f} s, "
                      f"overhead {1000 * diffs[-1]:+.0f} ms")
        null = []
        with DaskEngine(cluster.address) as dask:
            for _ in range(30):
                start = time.perf_counter()
                dask.client.submit(os.getpid, pure=False).result()
                null.append(time.perf_counter() - start)
    print(f"scheduler round trip of an empty task: median {1000 * statistics.median(null):.1f} ms, "
          f"max {1000 * max(null):.1f} ms (30 tasks)")
    print(f"warm point: local median {statistics.median(l_all):.3f} s, through the scheduler "
          f"{statistics.median(d_all):.3f} s; per-task overhead median "
          f"{1000 * statistics.median(diffs):.0f} ms (target < 100 ms)")


def speedup(fx: E2EFixture, base: Path, points: int) -> None:
    names = [f"p{n}" for n in range(points)]
    env = dict(os.environ, ORCH_WORKER_DIR=str(base / "local-cold"))
    local = timed(LocalEngine(env), tasks_for(fx, "cold-local", names))
    print(f"{points} cold points locally (one after the other): {local:.1f} s")
    for workers in (1, 2, 3):
        with loopback_cluster(base / f"cold{workers}") as cluster:
            for w in range(workers):
                cluster.add_worker(f"w{w}")
            cluster.wait_for_workers(workers)
            with DaskEngine(cluster.address) as dask:
                seconds = timed(dask, tasks_for(fx, f"cold-{workers}", names))
        print(f"{points} cold points on {workers} worker(s): {seconds:.1f} s, "
              f"speedup {local / seconds:.2f}x against local ({os.cpu_count()} cores)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="orch-bench-cluster-") as tmp:
        base = Path(tmp)
        isolate(base / "home")
        os.environ["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
        fx = make_e2e_fixture(base / "fx")
        add_point_patchsets(fx, args.points)
        overhead(fx, base, args.rounds)
        speedup(fx, base, args.points)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
