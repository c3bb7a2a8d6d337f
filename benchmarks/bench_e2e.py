"""Benchmark: `orch build --patchset largepage` on the end-to-end fixture, cold then warm.

Cold: a fresh fixture workspace (sync, check, build both variants, boot both). Warm: the same
command again, everything cached. For each run it prints the wall time and how it splits
into sync (git), build tools (init-build.sh + ninja, from the build records), QEMU (from the
run records) and orch itself (the rest). Targets: warm run < 5 s; orch's own share of the
cold run < 5 %.

    python benchmarks/bench_e2e.py                    # host executor (cross gcc, cmake, ninja)
    python benchmarks/bench_e2e.py --executor docker  # needs ORCH_TEST_BASE_IMAGE (default
                                                      # orch-test-base:bookworm)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import build_image, isolate
from tests.support.e2e import make_e2e_fixture

ROOT = Path(__file__).resolve().parent.parent


def _run(args: list[str], workspace: Path) -> tuple[float, dict[str, float], int]:
    start = time.perf_counter()  # a real `orch` process: interpreter start-up and imports count
    code = subprocess.run([sys.executable, "-m", "orchestrator", *args], stdout=subprocess.DEVNULL,
                          check=False).returncode
    wall = time.perf_counter() - start
    results = json.loads((workspace / ".orch/results/latest/results.json").read_text())
    return wall, results["timings"], code


def _own(wall: float, t: dict[str, float]) -> float:
    """Wall time not spent in git sync, build tools or QEMU: orch itself, start-up included."""
    external = min(t.get("build_stage", 0.0), t.get("build_tools", 0.0)) + min(
        t.get("boot_stage", 0.0), t.get("qemu", 0.0))
    return max(0.0, wall - t.get("sync", 0.0) - external)


def _line(label: str, wall: float, t: dict[str, float]) -> str:
    own = _own(wall, t)
    startup = max(0.0, wall - t.get("total", 0.0))
    share = 100 * own / max(wall - t.get("sync", 0.0), 1e-9)
    return (f"{label:5s} wall {wall:6.2f} s | sync {t.get('sync', 0.0):5.2f} s | build tools "
            f"{t.get('build_tools', 0.0):5.2f} s | QEMU {t.get('qemu', 0.0):5.2f} s | orch {own:5.2f} s "
            f"(of which process start-up {startup:4.2f} s; {share:4.1f} % of the wall time without sync)")


def main_bench() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--executor", choices=("host", "docker"), default="host")
    parsed = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="orch-bench-") as tmp:
        base = Path(tmp)
        isolate(base / "home")
        fx = make_e2e_fixture(base)
        args = ["build", "--patchset", "largepage", "--patchsets", str(fx.patchsets), "-w", str(fx.workspace),
                "-q", "--executor", parsed.executor, "--boot-in", "host"]
        if parsed.executor == "docker":
            args += ["--image", build_image()]
        cold_wall, cold, code_cold = _run([*args, "-m", fx.manifest_url], fx.workspace)
        warm_wall, warm, code_warm = _run(args, fx.workspace)
    print(f"orch build --patchset largepage on the e2e fixture ({parsed.executor} executor)")
    print(_line("cold", cold_wall, cold))
    print(_line("warm", warm_wall, warm))
    own_cold = _own(cold_wall, cold) / max(cold_wall - cold.get("sync", 0.0), 1e-9)
    print(f"warm run {warm_wall:.2f} s (target < 5 s: {'ok' if warm_wall < 5 else 'MISSED'}); "
          f"orch's share of the cold run {100 * own_cold:.1f} % excluding sync "
          f"(target < 5 %: {'ok' if own_cold < 0.05 else 'MISSED'}); exit codes {code_cold}/{code_warm}")
    # The fixture's "build" is a half-second cross compile, so a fixed overhead weighs a lot
    # here; project it onto the real job (issue 5: ~45 s clean vm_minimal build per variant,
    # builds sequential; boots in parallel, ~30 s to a Buildroot login).
    real = 2 * 45.0 + 30.0
    fixed = _own(cold_wall, cold)
    print(f"orch's own cold-run time {fixed:.2f} s; against a real vm_minimal job (~{real:.0f} s of "
          f"build + QEMU) that would be {100 * fixed / (real + fixed):.1f} % (projection)")
    return 0 if code_cold == code_warm == 0 else 1


if __name__ == "__main__":
    sys.exit(main_bench())
