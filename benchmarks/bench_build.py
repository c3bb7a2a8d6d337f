"""Benchmark (run by hand): orch's build overhead, and a cached no-op build.

On the test fixture workspace (tests/buildfixture.py) and the test build image:

1. a clean build of the ``largepage`` variant through orch's library (worktrees, patchsets,
   ``init-build.sh`` + ``ninja`` in a container, artifacts, metadata.json), against the same
   ``init-build.sh && ninja`` typed by hand as ``docker run`` in the same image on the same
   tree (the reproducer command from metadata.json). Target: at most 1.10x.
2. a cached no-op build of both variants (nothing changed): target under 2 s.

    python -m benchmarks.bench_build [--rounds 5]

Needs a Docker engine and the base image ``$ORCH_TEST_BASE_IMAGE``
(default ``orch-test-base:bookworm``); the build image is made from it like the tests do.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.common import build_image, git_identity
from orchestrator.build.builder import BuildContext, build_variant, build_variants, remove_variant
from orchestrator.runtime.docker import DockerRuntime
from tests.support.build import make_build_workspace


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    git_identity()
    image = build_image()
    with tempfile.TemporaryDirectory(prefix="orch-bench-") as tmp:
        ws = make_build_workspace(Path(tmp))
        spec = ws.spec()
        ctx = BuildContext(root=ws.root, tree=ws.tree, spec=spec, runtime=DockerRuntime(image=image),
                           rebuild=True)
        variant = spec.variant("largepage")
        patchsets = ws.chain(list(variant.patchsets))
        first = build_variant(ctx, variant, patchsets)  # warm-up: page cache, image layers
        reproducer = first.metadata["reproducer"]
        build_dir = ws.root / ".orch" / "variants" / "largepage" / "build"

        orch_times, hand_times = [], []
        for _ in range(args.rounds):
            remove_variant(ws.root, "largepage", ws.tree)  # orch starts from nothing
            start = time.perf_counter()
            result = build_variant(ctx, variant, patchsets)
            orch_times.append(time.perf_counter() - start)
            assert result.ok and result.metadata["configured"]

            shutil.rmtree(build_dir)  # by hand: the same tree, a fresh build dir
            build_dir.mkdir()
            start = time.perf_counter()
            subprocess.run(reproducer, shell=True, check=True, capture_output=True)
            hand_times.append(time.perf_counter() - start)

        ctx.rebuild = False
        build_variants(ctx, ws.variants())  # make sure both variants are cached
        noop_times = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            results = build_variants(ctx, ws.variants())
            noop_times.append(time.perf_counter() - start)
            assert all(r.cached for r in results)

    orch, hand, noop = (statistics.median(t) for t in (orch_times, hand_times, noop_times))
    ratio = orch / hand
    print(f"clean build, median of {args.rounds}: orch {orch:.2f} s, by hand (docker run) {hand:.2f} s, "
          f"ratio {ratio:.2f}x (target <= 1.10x) {'OK' if ratio <= 1.10 else 'OVER'}")
    print(f"cached no-op build of 2 variants, median: {noop:.3f} s (target < 2 s) "
          f"{'OK' if noop < 2 else 'OVER'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
