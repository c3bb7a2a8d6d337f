"""CI as the other engine: the points of a run as a GitHub Actions job matrix.

`orch matrix --github PATCHSET` prints the JSON for ``strategy.matrix`` (``{"include": [...]}``,
one entry per point; GitHub allows at most 256 jobs per matrix), each job runs
``orch build --patchset PATCHSET --point ID --results DIR`` and uploads DIR, and a last job
merges the downloaded directories with ``orch report --merge``. `--workflow` prints a whole
workflow file doing that.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.errors import InputError

GITHUB_MATRIX_LIMIT = 256


@dataclass(frozen=True)
class MatrixPoint:
    """One job of the matrix: the point's id and what the job passes to orch."""

    point: str
    patchset: str

    def as_include(self) -> dict[str, str]:
        return {"point": self.point, "patchset": self.patchset}


def github_matrix(points: Sequence[MatrixPoint]) -> dict[str, list[dict[str, str]]]:
    """The ``strategy.matrix`` object; refuses more jobs than GitHub runs in one matrix."""
    if not points:
        raise InputError("the matrix has no points")
    if len(points) > GITHUB_MATRIX_LIMIT:
        raise InputError(f"{len(points)} points: a GitHub Actions matrix runs at most "
                         f"{GITHUB_MATRIX_LIMIT} jobs", hint="split the run (fewer grid values or variants)")
    ids = [p.point for p in points]
    duplicate = next((i for i in ids if ids.count(i) > 1), None)
    if duplicate is not None:
        raise InputError(f"point '{duplicate}' appears twice in the matrix")
    return {"include": [p.as_include() for p in points]}


def github_workflow(patchset: str, install: str = "pip install orch") -> str:
    """A workflow that plans the matrix, runs one job per point and merges the results."""
    matrix_expr = "${{ fromJSON(needs.plan.outputs.matrix) }}"
    return f"""name: orch {patchset}
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
        run: echo "matrix=$(orch matrix --github {patchset})" >> "$GITHUB_OUTPUT"
  point:
    needs: plan
    runs-on: ubuntu-latest
    strategy:
      fail-fast: false
      matrix: {matrix_expr}
    steps:
      - uses: actions/checkout@v4
      - run: {install}
      - run: >-
          orch build --patchset ${{{{ matrix.patchset }}}} --point ${{{{ matrix.point }}}}
          --results results/${{{{ matrix.point }}}}
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
