"""A bisection's probes on a cluster: with P workers every search step judges P points at
once (a k-ary search: about log_{P+1} N steps instead of log2 N), each point on a worker
through the same :class:`~.oracle.PipelineOracle` as locally.

A step travels as a cluster task (:mod:`orchestrator.cluster.task`): the oracle's settings, the
point (every project's commit) and the build image, with the patchset files by value and this
workspace's manifest pins, so the worker's own workspace is synced to the same manifest first.
On the worker, ``python -m orchestrator.bisect.distribute TASK RESULT WORKSPACE PATCHSETS`` runs
the oracle there and writes its :class:`~.oracle.StepOutcome`. A point no worker could judge
(infrastructure on two workers) is a skip with cause ``infra-error``, never a verdict.
"""

from __future__ import annotations

import os
import pickle
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from orchestrator import layout
from orchestrator.bisect.oracle import INFRA, OracleSettings, PipelineOracle, StepOutcome
from orchestrator.bisect.search import SKIP
from orchestrator.build.spec import spec_for
from orchestrator.cluster.fanout import ManifestPin
from orchestrator.cluster.task import PatchFile, pack_patchsets
from orchestrator.cluster.task import PointResult as ClusterResult
from orchestrator.cluster.task import PointTask as ClusterTask
from orchestrator.cluster.worker import entry_main, write_result
from orchestrator.errors import InputError
from orchestrator.patchset.apply import load_patchset, patchset_search_path, resolve
from orchestrator.ui import UI
from orchestrator.workspace.point import Point

ENTRY = "orchestrator.bisect.distribute"


@dataclass(frozen=True)
class StepTask:
    """One point for a worker's oracle (settings without this machine's paths)."""

    settings: OracleSettings
    point: Point
    image: str | None


def shipped_files(settings: OracleSettings) -> tuple[PatchFile, ...]:
    """The patchset and everything the bisected variant needs, by value."""
    search_path = [p.resolve() for p in patchset_search_path(list(settings.patchset_dirs), settings.env)]
    patchset = load_patchset(settings.patchset, search_path)
    variant = spec_for(patchset).variant(settings.variant)
    chain = resolve(list(variant.patchsets), search_path)
    return pack_patchsets(sorted({p.directory for p in [*chain, patchset]}))


def cluster_task(run_id: str, step_id: str, settings: OracleSettings, point: Point, image: str | None,
                 pin: ManifestPin, files: tuple[PatchFile, ...]) -> ClusterTask:
    portable = replace(settings, workspace=Path(), patchset_dirs=(), env={})
    return ClusterTask(run_id=run_id, point_id=step_id, patchset=settings.patchset, manifest=pin.url,
                       manifest_revision=pin.commit, manifest_file=pin.file, files=files, entry=ENTRY,
                       payload=pickle.dumps(StepTask(portable, point, image)))


def outcome_of(result: ClusterResult) -> StepOutcome:
    """The worker's verdict; a point no worker could judge is a skip (infrastructure)."""
    data = result.files.get("result")
    if result.exit_code == 0 and data is not None:
        outcome = pickle.loads(data)
        if isinstance(outcome, StepOutcome):
            return outcome
    detail = result.error or f"exit {result.exit_code} on the cluster"
    return StepOutcome(SKIP, INFRA, detail=detail, attempts=2)


def run_on_worker(task_file: Path, result_file: Path, workspace: Path, patchsets: Path) -> None:
    """Worker side: judge the point in this worker's synced workspace."""
    step = pickle.loads(task_file.read_bytes())
    if not isinstance(step, StepTask):
        raise InputError(f"{task_file}: not a bisect step")
    settings = replace(step.settings, workspace=workspace.resolve(), patchset_dirs=(patchsets.resolve(),),
                       env=dict(os.environ))
    results = layout.bisect_dir(workspace) / "remote" / uuid.uuid4().hex[:12]
    outcome = PipelineOracle(settings, UI.silent()).judge(step.point, step.image, results)
    write_result(result_file, outcome)


def main(argv: Sequence[str]) -> int:
    return entry_main(ENTRY, argv, run_on_worker)


if __name__ == "__main__":
    # run the imported module, not this __main__ copy: its records are the classes pickled
    from orchestrator.bisect.distribute import main as _main

    raise SystemExit(_main(sys.argv[1:]))
