"""CI as the other engine: the points of a run as a GitHub Actions job matrix.

`orch matrix --github PATCHSET|SWEEP` prints the JSON for ``strategy.matrix``
(``{"include": [...]}``, one entry per point; GitHub allows at most 256 jobs per matrix): the
variants of a patchset (each job ``orch build --patchset P --point V``) or the grid points of a
sweep (each job ``orch sweep <the plan's arguments> --point I``); every job writes
``--results DIR`` and uploads it, and a last job merges the downloaded directories with
``orch report --merge``. `--workflow` prints a whole workflow file doing that.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.errors import InputError

GITHUB_MATRIX_LIMIT = 256


@dataclass(frozen=True)
class MatrixPoint:
    """One job of the matrix: the point's id and the orch command the job runs for it
    (``orch COMMAND ARGS --results results/POINT``)."""

    point: str
    command: str  # build | sweep
    args: str  # shell-quoted arguments
    label: str = ""

    def as_include(self) -> dict[str, str]:
        entry = {"point": self.point, "command": self.command, "args": self.args}
        if self.label:
            entry["label"] = self.label
        return entry


def build_points(patchset: str, variants: Sequence[str]) -> list[MatrixPoint]:
    """One job per variant of `orch build --patchset PATCHSET`."""
    return [MatrixPoint(v, "build", shlex.join(["--patchset", patchset, "--point", v])) for v in variants]


def sweep_points(cli_args: Sequence[str], labels: Sequence[str]) -> list[MatrixPoint]:
    """One job per grid point of a sweep (the plan's own arguments plus ``--point I``)."""
    return [MatrixPoint(f"point-{i}", "sweep", shlex.join([*cli_args, "--point", str(i), "--yes"]), label)
            for i, label in enumerate(labels)]


def github_matrix(points: Sequence[MatrixPoint]) -> dict[str, list[dict[str, str]]]:
    """The ``strategy.matrix`` object; refuses more jobs than GitHub runs in one matrix."""
    if not points:
        raise InputError("the matrix has no points")
    if len(points) > GITHUB_MATRIX_LIMIT:
        raise InputError(f"{len(points)} points: a GitHub Actions matrix runs at most "
                         f"{GITHUB_MATRIX_LIMIT} jobs", hint="split the run (fewer grid values or variants)")
    for p in points:
        if p.command not in ("build", "sweep"):
            raise InputError(f"point {p.point}: a matrix job runs `orch build` or `orch sweep`, "
                             f"not {p.command!r}")
    ids = [p.point for p in points]
    duplicate = next((i for i in ids if ids.count(i) > 1), None)
    if duplicate is not None:
        raise InputError(f"point '{duplicate}' appears twice in the matrix")
    return {"include": [p.as_include() for p in points]}


def github_workflow(target: str, install: str = "pip install orch") -> str:
    """A workflow that plans the matrix (`orch matrix --github TARGET`: a patchset or a sweep),
    runs one job per point and merges the results."""
    matrix_expr = "${{ fromJSON(needs.plan.outputs.matrix) }}"
    return f"""name: orch {target}
on:
  workflow_dispatch:
jobs:
  plan:
    runs-on: ubuntu-latest
    outputs:
      matrix: ${{{{ steps.plan.outputs.matrix }}}}
    steps:
      - uses: actions/checkout@v4
      - run: {install}
      - id: plan
        run: echo "matrix=$(orch matrix --github {target})" >> "$GITHUB_OUTPUT"
  point:
    needs: plan
    runs-on: ubuntu-latest
    strategy:
      fail-fast: false
      matrix: {matrix_expr}
    steps:
      - uses: actions/checkout@v4
      - run: {install}
      - run: orch ${{{{ matrix.command }}}} ${{{{ matrix.args }}}} --results results/${{{{ matrix.point }}}}
      - if: always()
        uses: actions/upload-artifact@v4
        with:
          name: orch-${{{{ matrix.point }}}}
          path: results/${{{{ matrix.point }}}}
  report:
    needs: point
    if: always()
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: {install}
      - uses: actions/download-artifact@v4
        with:
          pattern: orch-*
          path: results
      - run: orch report --merge results/* --results merged --markdown >> "$GITHUB_STEP_SUMMARY"
"""


def dumps_matrix(matrix: dict[str, list[dict[str, str]]]) -> str:
    """One line, as `$GITHUB_OUTPUT` wants it."""
    return json.dumps(matrix, separators=(",", ":"))
