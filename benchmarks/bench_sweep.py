"""Benchmark (run by hand): a sweep probe's build against a clean build of the same point.

On the sweep fixture (tests/support/sweep.py, host executor: cmake, ninja, the aarch64 cross
compiler), alternating rounds of:

1. a clean build: a fresh variant tree, ``init-build.sh`` + ``ninja`` from nothing, with
   ``mempool`` set;
2. a probe build: the same variant tree as the round before, only ``mempool`` changed (the
   generated parameter commit rewrites devices.camkes; ninja rebuilds the header generated
   from it, the one file that includes it, the link and the image).

Prints each round's pair and the median ratio probe / clean (the point of reusing trees:
well under 1).

    python -m benchmarks.bench_sweep [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from benchmarks.common import git_identity
from orchestrator.build.builder import BuildContext, BuildResult, build_variant
from orchestrator.build.spec import override, spec_for
from orchestrator.patchset.apply import load_patchset
from orchestrator.runtime import make_runtime
from orchestrator.ui import UI
from orchestrator.workspace.sync import ManifestSource, Workspace
from tests.support.sweep import make_sweep_fixture


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    git_identity()
    with tempfile.TemporaryDirectory(prefix="orch-bench-") as tmp:
        fx = make_sweep_fixture(Path(tmp))
        fx.workspace.mkdir()
        workspace = Workspace(fx.workspace)
        workspace.sync(ManifestSource.parse(fx.manifest_url))
        spec = spec_for(load_patchset("sweep", [fx.patchsets]))
        ctx = BuildContext(root=workspace.root, tree=workspace.tree(), spec=spec,
                           runtime=make_runtime("host", ""), ui=UI.silent())

        def build(tree: str, mempool_mib: int) -> tuple[float, BuildResult]:
            chosen = override(spec, params=[f"mempool={mempool_mib}M"])
            variant = replace(chosen.variants[0], name=tree)
            started = time.monotonic()
            result = build_variant(replace(ctx, spec=replace(chosen, variants=(variant,))), variant, [])
            assert result.ok and not result.cached, result.log
            return time.monotonic() - started, result

        build("warm-up", 10)
        ratios = []
        for index in range(args.rounds):
            clean, first = build(f"clean-{index}", 20 + index)
            probe, second = build(f"clean-{index}", 40 + index)
            assert first.metadata["configured"] and not second.metadata["configured"]
            ratios.append(probe / clean)
            print(f"round {index + 1}: clean {clean:.2f} s, probe {probe:.2f} s ({probe / clean:.2f}x)")
        print(f"median probe / clean: {statistics.median(ratios):.2f}x over {args.rounds} rounds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
