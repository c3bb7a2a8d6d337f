"""Verdict latency of ``orch run``: how long after the decisive console line the verdict comes
and QEMU is gone, for the seed's failure console and for the Buildroot login console.

Run by hand (needs qemu-system-aarch64 and aarch64-linux-gnu-gcc):

    python -m benchmarks.bench_run [--repeat 5] [--delay-ms 1500]

The bare-metal console scripts of tests/baremetal/ print their decisive line DELAY ms after
booting. Two measures, both differences rather than absolute boot times:

* in-run: verdict time minus the time orch received the decisive line, and the time QEMU was
  gone minus that same moment (from the run record);
* reference: a plain reader with no rules timestamps the decisive line in a separate QEMU run
  of the same image; orch's verdict time (since QEMU start) minus that reference time.

Target: every verdict within 0.5 s of the decisive line, and the failure case (QEMU keeps
running after it) never waiting for the 60 s timeout.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from orchestrator.boot.platform import load_platform
from orchestrator.boot.qemu import RunSpec, run_image
from orchestrator.ui import UI
from tests.support.baremetal import build_scenario

TARGET = 0.5
TIMEOUT = 60.0
CASES = {"failure": ("fail", b"Failed to allocate page"), "login": ("login", b"buildroot login:")}


def reference_time(image: Path, marker: bytes) -> float:
    """Seconds from QEMU start until ``marker`` arrives on a plain pipe (no rules, no orch)."""
    platform = load_platform("qemu-arm-virt")
    argv = [platform.qemu, *platform.args, "-m", platform.memory, "-kernel", str(image)]
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    seen = b""
    try:
        assert proc.stdout is not None
        while marker not in seen:
            chunk = proc.stdout.read1(65536)
            if not chunk:
                raise RuntimeError("QEMU ended before the marker")
            seen += chunk
        return time.monotonic() - start
    finally:
        proc.kill()
        proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--delay-ms", type=int, default=1500, help="delay before the decisive line")
    args = parser.parse_args()
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'case':8} {'verdict':8} {'line->verdict':>14} {'line->QEMU gone':>16} "
              f"{'vs reference':>13} {'run total':>10}")
        for case, (scenario, marker) in CASES.items():
            image = build_scenario(scenario, Path(tmp), DECISIVE_DELAY_MS=args.delay_ms)
            refs = [reference_time(image, marker) for _ in range(args.repeat)]
            to_verdict, to_gone, vs_ref, totals = [], [], [], []
            for _ in range(args.repeat):
                spec = RunSpec(image=image, timeout=TIMEOUT, boot_timeout=TIMEOUT, login=None)
                record = run_image(spec, UI.silent())
                assert record.matched_at is not None and record.verdict_at is not None
                assert record.stopped_at is not None
                to_verdict.append(record.verdict_at - record.matched_at)
                to_gone.append(record.stopped_at - record.matched_at)
                vs_ref.append(record.verdict_at - statistics.median(refs))
                totals.append(record.duration)
                ok &= record.verdict == ("fail" if case == "failure" else "pass")
            worst = max(max(to_verdict), max(vs_ref))
            ok &= worst <= TARGET and max(totals) < TIMEOUT / 2
            print(f"{case:8} {record.verdict:8} {max(to_verdict) * 1000:11.1f} ms "
                  f"{max(to_gone) * 1000:13.1f} ms "
                  f"{statistics.median(vs_ref) * 1000:+10.1f} ms {max(totals):8.2f} s")
    print(f"(worst of {args.repeat} runs; 'vs reference' is the median; decisive line printed "
          f"{args.delay_ms} ms into the guest; timeout {TIMEOUT:g} s)")
    print(f"target: verdict within {TARGET * 1000:.0f} ms of the decisive line, no timeout waited: "
          + ("MET" if ok else "MISSED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
