#!/usr/bin/env python3
"""Benchmark `orch sync` against the plain sequential `git clone` + `git checkout SHA` loop.

Builds 19 local bare repositories of realistic size (a few thousand files and a few hundred
commits each, written with `git fast-import`), a manifest pinning each one to a SHA that is
not its branch tip, then times in one run:

  * the sequential loop: `git clone URL DIR && git -C DIR checkout SHA`, one project after another
  * `orch sync -j N` into an empty workspace (cold)
  * `orch sync` again (no-op re-sync)

and prints the ratios. Targets on a 2-core machine: cold <= 0.6x the loop, no-op < 1 s.

    python -m benchmarks.bench_sync [--files 2500] [--commits 300] [--jobs N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PROJECTS = 19
WORDS = ["seL4_Word", "cap", "frame", "vspace", "untyped", "retype", "irq", "vcpu", "fault", "badge",
         "endpoint", "notification", "tcb", "cnode", "slot", "mapping", "region", "guest", "vmm"]


def source_file(rng: random.Random, lines: int) -> bytes:
    out = []
    for i in range(lines):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9)))
        out.append(f"    /* {i}: {words} */ x_{rng.randint(0, 9999)} = {rng.randint(0, 1 << 20)};\n")
    return "".join(out).encode()


def fast_import_stream(seed: int, files: int, commits: int) -> bytes:
    """A fast-import stream: one commit adding ``files`` files, then ``commits - 1`` commits
    each touching a handful of them."""
    rng = random.Random(seed)
    paths = [f"src/d{i % 40:02d}/file{i:05d}.c" for i in range(files)]
    chunks: list[bytes] = []
    when = 1_600_000_000

    def commit(n: int, changes: list[tuple[str, bytes]]) -> None:
        message = f"commit {n}\n".encode()
        head = (f"commit refs/heads/master\nmark :{n + 1}\n"
                f"committer Bench <bench@example.org> {when + n * 60} +0000\n"
                f"data {len(message)}\n").encode() + message
        if n:
            head += f"from :{n}\n".encode()
        body = b"".join(f"M 100644 inline {p}\ndata {len(d)}\n".encode() + d + b"\n" for p, d in changes)
        chunks.append(head + body + b"\n")

    commit(0, [(p, source_file(rng, rng.randint(20, 60))) for p in paths])
    for n in range(1, commits):
        touched = rng.sample(paths, 4)
        commit(n, [(p, source_file(rng, rng.randint(20, 60))) for p in touched])
    return b"".join(chunks)


def make_repo(server: Path, index: int, files: int, commits: int) -> tuple[str, str]:
    name = f"project{index:02d}.git"
    bare = server / name
    subprocess.run(["git", "init", "-q", "--bare", "-b", "master", str(bare)], check=True)
    subprocess.run(["git", "fast-import", "--quiet"], cwd=bare, check=True,
                   input=fast_import_stream(index, files, commits))
    subprocess.run(["git", "repack", "-adq"], cwd=bare, check=True)
    pin = subprocess.run(["git", "rev-parse", "master~5"], cwd=bare, check=True, capture_output=True,
                         text=True).stdout.strip()
    return name, pin


def timed(label: str, func: Callable[[], None], clean: Path | None = None) -> float:
    """Time ``func`` after removing ``clean`` and flushing dirty pages (so the previous step's
    writeback is not billed to this one)."""
    if clean is not None:
        shutil.rmtree(clean, ignore_errors=True)
    os.sync()
    start = time.perf_counter()
    func()
    elapsed = time.perf_counter() - start
    print(f"  {label:<34} {elapsed:7.2f} s", flush=True)
    return elapsed


def sequential_loop(server: Path, pins: dict[str, str], dest: Path) -> None:
    for name, sha in pins.items():
        target = dest / name.removesuffix(".git")
        subprocess.run(["git", "clone", "-q", str(server / name), str(target)], check=True)
        subprocess.run(["git", "-C", str(target), "checkout", "-q", sha], check=True)


def orch_sync(ws: Path, manifest: Path, jobs: int) -> None:
    subprocess.run([sys.executable, "-m", "orchestrator", "sync", "-q", "-w", str(ws), "-m", str(manifest),
                    "-j", str(jobs)], check=True, stdout=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=2500, help="files per repository")
    parser.add_argument("--commits", type=int, default=300, help="commits per repository")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="orch sync -j")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds, order alternating; "
                        "the median per-round ratio is compared")
    parser.add_argument("--keep", type=Path, help="build in (and keep) this directory")
    args = parser.parse_args()

    base = args.keep or Path(tempfile.mkdtemp(prefix="orch-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    try:
        server = base / "server"
        if server.exists():
            shutil.rmtree(server)
        server.mkdir()
        print(f"creating {PROJECTS} repositories ({args.files} files, {args.commits} commits each) ...",
              flush=True)
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            made = list(pool.map(lambda i: make_repo(server, i, args.files, args.commits), range(PROJECTS)))
        print(f"  done in {time.perf_counter() - start:.1f} s", flush=True)
        pins = dict(made)
        manifest = base / "bench.xml"
        projects = "\n".join(f'  <project name="{n}" path="projects/{n.removesuffix(".git")}" revision="{s}" '
                             f'upstream="master" dest-branch="master"/>' for n, s in pins.items())
        manifest.write_text(f'<manifest>\n  <remote name="local" fetch="{server}"/>\n'
                            f'  <default remote="local" revision="master"/>\n{projects}\n</manifest>\n')

        loops: list[float] = []
        colds: list[float] = []
        noops: list[float] = []
        for round_ in range(1, args.repeat + 1):
            # The disk of a shared machine drifts over minutes: alternate which side goes first
            # and compare each round's pair, so drift is not billed to one side.
            print(f"round {round_}/{args.repeat}:")

            def loop_side() -> None:
                loops.append(timed("sequential git clone + checkout",
                                   lambda: sequential_loop(server, pins, base / "loop"), base / "loop"))

            def orch_side() -> None:
                colds.append(timed(f"orch sync -j {args.jobs} (cold)",
                                   lambda: orch_sync(base / "ws", manifest, args.jobs), base / "ws"))
                noops.append(timed("orch sync (no-op re-sync)",
                                   lambda: orch_sync(base / "ws", manifest, args.jobs)))

            for side in (loop_side, orch_side) if round_ % 2 else (orch_side, loop_side):
                side()
        loop, cold, noop = statistics.median(loops), statistics.median(colds), statistics.median(noops)
        ratios = [c / lo for c, lo in zip(colds, loops, strict=True)]
        ratio = statistics.median(ratios)
        print(f"medians: loop {loop:.2f} s, cold sync {cold:.2f} s, no-op {noop:.2f} s "
              f"(load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
        print(f"per-round cold/loop ratios: {', '.join(f'{r:.2f}x' for r in ratios)}")
        print("results:")
        print(f"  cold sync / sequential loop      {ratio:7.2f}x   (median of the rounds; target <= 0.60x)")
        print(f"  no-op re-sync                    {noop:7.2f} s   (target < 1 s)")
        ok = ratio <= 0.6 and noop < 1.0
        print("  PASS" if ok else "  MISSED TARGET")
        return 0 if ok else 1
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
