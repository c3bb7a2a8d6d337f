"""Benchmark: `orch bisect` on the bisect fixture (tests/support/bisect.py), cold then warm.

The fixture: ten manifest snapshots after the good one over three projects, the regression
in the middle, one snapshot where the patchset stops applying and one commit that does not
build. Cold: a freshly synced workspace (nothing built). Warm: the same bisection again,
everything served from the build and boot caches. For each level it prints the candidates N,
the builds done and the skips against ceil(log2 N) (the steps a binary search takes without
skips), and the warm/cold time ratio. Rounds alternate fresh fixtures; each round is a real
`orch` process per run.

    python -m benchmarks.bench_bisect [--rounds 2] [--executor host|docker]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import build_image, isolate
from tests.support.bisect import make_bisect_fixture


def _orch(*args: str) -> int:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, check=False).returncode


def _bisect(args: list[str], workspace: Path) -> tuple[float, dict[str, Any], int]:
    start = time.perf_counter()
    code = _orch(*args)
    wall = time.perf_counter() - start
    record: dict[str, Any] = json.loads((workspace / ".orch/bisect/latest/bisect.json").read_text())
    return wall, record, code


def _levels(record: dict[str, Any]) -> str:
    return "; ".join(f"{lv['level']}s N={lv['points']}: {lv['builds']} builds + {lv['skips']} skips "
                     f"(ceil(log2 N) = {lv['bound']}, {lv['steps']} steps)" for lv in record["levels"])


def one_round(executor: str, image: str | None) -> tuple[float, float, dict[str, Any], dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="orch-bench-bisect-") as tmp:
        base = Path(tmp)
        isolate(base / "home")
        fx = make_bisect_fixture(base)
        if _orch("sync", "-q", "-w", str(fx.workspace), "-m", fx.manifest_url) != 0:
            raise SystemExit("sync failed")
        args = ["bisect", "--patchset", "largepage", "--patchsets", str(fx.patchsets),
                "-w", str(fx.workspace), "-q", "--executor", executor, "--boot-in", "host",
                "--good", fx.snapshots[0], "--bad", fx.snapshots[-1]]
        if image:
            args += ["--image", image]
        cold, cold_record, code = _bisect(args, fx.workspace)
        if code != 0 or cold_record["culprit"]["commit"] != fx.culprit:
            raise SystemExit(f"cold bisect: exit {code}, culprit {cold_record.get('culprit')}")
        warm, warm_record, code = _bisect(args, fx.workspace)
        if code != 0 or warm_record["culprit"]["commit"] != fx.culprit:
            raise SystemExit(f"warm bisect: exit {code}")
        return cold, warm, cold_record, warm_record


def main_bench() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--executor", choices=("host", "docker"), default="host")
    parsed = parser.parse_args()
    image = None
    if parsed.executor == "docker":
        image = build_image()
    colds, warms = [], []
    for number in range(1, parsed.rounds + 1):
        cold, warm, cold_record, warm_record = one_round(parsed.executor, image)
        colds.append(cold)
        warms.append(warm)
        print(f"round {number}: cold {cold:6.2f} s ({_levels(cold_record)})")
        print(f"         warm {warm:6.2f} s ({_levels(warm_record)})  warm/cold {warm / cold:.3f}")
    best_cold, best_warm = min(colds), min(warms)
    print(f"best of {parsed.rounds}: cold {best_cold:.2f} s, warm {best_warm:.2f} s, "
          f"warm/cold {best_warm / best_cold:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main_bench())
