"""A sweep's grid points on a cluster: each :class:`~.plan.PointTask` travels as a cluster
task (:mod:`orchestrator.cluster.task`) and runs through the same :func:`~.probe.run_point` as
locally, on a worker whose own workspace is synced to this workspace's manifest pins.

On the worker, ``python -m orchestrator.sweep.distribute TASK RESULT WORKSPACE PATCHSETS`` reads
the grid point, points it at the worker's workspace and the shipped patchset files, runs it and
writes the :class:`~.plan.PointResult`. Records travel pickled, as Dask's own task arguments do,
between the same orch version on both ends.
"""

from __future__ import annotations

import pickle
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from orchestrator.build.spec import spec_for
from orchestrator.cluster.fanout import ManifestPin
from orchestrator.cluster.task import PatchFile, pack_patchsets
from orchestrator.cluster.task import PointResult as ClusterResult
from orchestrator.cluster.task import PointTask as ClusterTask
from orchestrator.cluster.worker import entry_main, write_result
from orchestrator.errors import InfraError, InputError
from orchestrator.patchset.apply import load_patchset, patchset_search_path, resolve
from orchestrator.sweep.plan import PointResult, PointTask, SweepPlan
from orchestrator.sweep.probe import run_point

ENTRY = "orchestrator.sweep.distribute"


def shipped_files(plan: SweepPlan) -> tuple[PatchFile, ...]:
    """The patchset and everything its variant needs, by value."""
    search_path = [p.resolve() for p in patchset_search_path(list(plan.patchset_dirs), {})]
    patchset = load_patchset(plan.patchset, search_path)
    variant = spec_for(patchset).variant(plan.variant)
    chain = resolve(list(variant.patchsets), search_path)
    return pack_patchsets(sorted({p.directory for p in [*chain, patchset]}))


def cluster_task(task: PointTask, run_id: str, pin: ManifestPin,
                 files: tuple[PatchFile, ...]) -> ClusterTask:
    """One grid point as a cluster task (its probes already done travel with it)."""
    return ClusterTask(
        run_id=run_id, point_id=f"point-{task.index}", patchset=task.patchset, manifest=pin.url,
        manifest_revision=pin.commit, manifest_file=pin.file, files=files, entry=ENTRY,
        payload=pickle.dumps(replace(task, workspace="", patchset_dirs=())))


def point_result(result: ClusterResult, task: PointTask) -> PointResult:
    """The grid point's result, or InfraError when no worker could run it (exit 125)."""
    data = result.files.get("result")
    if result.exit_code != 0 or data is None:
        raise InfraError(f"sweep point {task.label()}: could not be tested on the cluster: "
                         f"{result.error or f'exit {result.exit_code}'}",
                         hint="check the workers (`orch worker`), then `orch sweep --resume`")
    point = pickle.loads(data)
    if not isinstance(point, PointResult):
        raise InfraError(f"sweep point {task.label()}: the worker sent back no sweep result")
    return point


def run_on_worker(task_file: Path, result_file: Path, workspace: Path, patchsets: Path) -> None:
    """Worker side: the grid point in this worker's synced workspace and shipped patchsets."""
    task = pickle.loads(task_file.read_bytes())
    if not isinstance(task, PointTask):
        raise InputError(f"{task_file}: not a sweep grid point")
    placed = replace(task, workspace=str(workspace.resolve()), patchset_dirs=(str(patchsets.resolve()),),
                     tree=f"sweep-{task.variant}-0")
    result = run_point(placed)
    write_result(result_file, result)


def main(argv: Sequence[str]) -> int:
    return entry_main(ENTRY, argv, run_on_worker)


if __name__ == "__main__":
    # run the imported module, not this __main__ copy: its records are the classes pickled
    from orchestrator.sweep.distribute import main as _main

    raise SystemExit(_main(sys.argv[1:]))
