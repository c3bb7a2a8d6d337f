#!/usr/bin/env python3
"""Benchmark a cold and a no-op `orch sync` against the plain tools, over git's pack transfer.

Builds, in a temporary directory, 11 bare repositories shaped like the camkes-vm workspace's
(seL4, seL4_libs, util_libs, musllibc, ...: about 6000 files and 3200 commits in all, each
commit editing a few blocks of lines in a few files, a tag every 100 commits; written with
`git fast-import`, packed with bitmaps as a server keeps them), served over ``file://`` URLs
(upload-pack and pack-objects run as for a server, unlike a plain path, which git copies or
hard-links; they answer partial clones, as GitHub and Gerrit do), and a manifest repository
holding ``default.xml`` (a relative remote, ``fetch="."``, each project pinned to a SHA below
its branch tip) and an equivalent ``west.yml``. Then times, in rounds whose order rotates
(the machine and its disk drift):

  * the plain loop: ``git clone URL DIR && git -C DIR checkout SHA``, one project after another
  * ``orch sync -j N -m MANIFEST_URL`` into an empty workspace (cold), then again (no-op)
  * ``repo init -u MANIFEST_URL && repo sync -j N``, when a ``repo`` launcher is found
  * ``west init -m MANIFEST_URL && west update``, when ``west`` is installed
  * with ``--floor``: git alone doing what orch asks of it, ``-j N`` projects at once (partial
    clones, and whole ones), with no orch around it: the floor of orch's strategy

and ``orch --version`` and the no-op sync as whole processes (wall time from outside), and
prints the median per-round ratio of orch's cold sync against each peer, in wall time and in
CPU time (user + system of every process a contender ran, git's server side included: on a
shared machine it drifts less). orch is byte-compiled first, as ``pip install`` does.
Targets: cold at most 0.6x the plain loop, no-op under 0.3 s, ``orch --version`` under 0.15 s.

``repo`` is looked up on PATH (or ``--repo PATH``); it fetches its own code at ``repo init``,
from ``--repo-url URL`` (e.g. a local clone of git-repo, ``file://...``, to run offline).
``--server DIR`` times bare repositories already in DIR (each ``NAME.git`` pinned at
``HEAD~5``) instead of generated ones.

    python -m benchmarks.bench_sync [--scale 1.0] [--jobs 2] [--repeat 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import isolate

# name, files at the root commit, commits: roughly the shape of the real repositories
REPOSITORIES: tuple[tuple[str, int, int], ...] = (
    ("seL4", 1200, 900), ("seL4_libs", 700, 300), ("util_libs", 800, 300), ("musllibc", 1500, 400),
    ("sel4runtime", 60, 60), ("seL4_tools", 300, 200), ("camkes-tool", 400, 400), ("capdl", 150, 150),
    ("seL4_projects_libs", 250, 150), ("camkes-vm", 300, 150), ("camkes-vm-examples", 200, 150),
)
WORDS = ("seL4_Word", "cap", "frame", "vspace", "untyped", "retype", "irq", "vcpu", "fault", "badge",
         "endpoint", "notification", "tcb", "cnode", "slot", "mapping", "region", "guest", "vmm",
         "if", "return", "struct", "static", "inline", "uint64_t", "void", "(", ")", "->", "&&")
PIN_BACK = 5  # the manifest pins each project this many commits below its branch tip


# --- the repositories --------------------------------------------------------------------------


def source_line(rng: random.Random) -> bytes:
    words = " ".join(rng.choices(WORDS, k=rng.randint(3, 10)))
    return f"    {words} x_{rng.randint(0, 999)} = {rng.randint(0, 1 << 16)};\n".encode()


def source_file(rng: random.Random) -> list[bytes]:
    return [source_line(rng) for _ in range(rng.randint(40, 160))]


class HistoryWriter:
    """A `git fast-import` stream: a root commit adding the files, then commits that each
    replace a few blocks of lines in a few files (now and then adding a file), and an annotated
    tag every 100 commits."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.files: dict[str, list[bytes]] = {}
        self.chunks: list[bytes] = []
        self.commits = 0

    def commit(self, touched: Sequence[str]) -> None:
        n = self.commits
        self.commits += 1
        message = f"change {n}: {' '.join(self.rng.choices(WORDS, k=6))}\n".encode()
        head = (f"commit refs/heads/master\nmark :{n + 1}\n"
                f"author Dev <dev@example.org> {1_500_000_000 + n * 3600} +0000\n"
                f"committer Dev <dev@example.org> {1_500_000_000 + n * 3600} +0000\n"
                f"data {len(message)}\n").encode() + message
        if n:
            head += f"from :{n}\n".encode()
        body = []
        for path in touched:
            data = b"".join(self.files[path])
            body.append(f"M 100644 inline {path}\ndata {len(data)}\n".encode() + data + b"\n")
        self.chunks.append(head + b"".join(body) + b"\n")
        if n and n % 100 == 0:
            note = f"release {n // 100}\n".encode()
            self.chunks.append(f"tag v{n // 100}.0\nfrom :{n + 1}\n"
                               f"tagger Dev <dev@example.org> {1_500_000_000 + n * 3600} +0000\n"
                               f"data {len(note)}\n".encode() + note + b"\n")

    def edit(self, path: str) -> None:
        lines = self.files[path]
        for _ in range(self.rng.randint(1, 3)):
            start = self.rng.randrange(len(lines))
            old = self.rng.randint(0, 12)
            lines[start:start + old] = [source_line(self.rng) for _ in range(self.rng.randint(1, 15))]

    def stream(self, files: int, commits: int) -> bytes:
        dirs = [f"{top}/{sub}" for top in ("src", "include", "libs", "tools") for sub in "abcdefghij"]
        paths = [f"{self.rng.choice(dirs)}/f{i:05d}.{self.rng.choice('cchS')}" for i in range(files)]
        for path in paths:
            self.files[path] = source_file(self.rng)
        self.commit(list(self.files))
        hot = paths[: max(8, len(paths) // 5)]  # most changes go to a fifth of the files
        for _ in range(commits - 1):
            touched: list[str] = []
            for _ in range(self.rng.randint(1, 6)):
                path = self.rng.choice(hot if self.rng.random() < 0.7 else paths)
                self.edit(path)
                touched.append(path)
            if self.rng.random() < 0.05:
                new = f"{self.rng.choice(dirs)}/n{self.commits:05d}.c"
                self.files[new] = source_file(self.rng)
                paths.append(new)
                touched.append(new)
            self.commit(sorted(set(touched)))
        return b"".join(self.chunks)


def git(*args: str, cwd: Path | None = None, stdin: bytes | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, input=stdin, capture_output=True, check=True)
    return proc.stdout.decode().strip()


def make_repository(server: Path, seed: int, name: str, files: int, commits: int) -> None:
    bare = server / f"{name}.git"
    git("init", "-q", "--bare", "-b", "master", str(bare))
    git("fast-import", "--quiet", cwd=bare, stdin=HistoryWriter(seed).stream(files, commits))
    git("repack", "-adq", "--write-bitmap-index", cwd=bare)


@dataclass
class Fixture:
    """The served repositories, their pins and the manifest repository's URL."""

    server: Path
    pins: dict[str, str] = field(default_factory=dict)  # project name -> pinned SHA

    def url(self, name: str) -> str:
        return (self.server / f"{name}.git").as_uri()

    @property
    def manifest_url(self) -> str:
        return self.url("manifest")


def read_pins(server: Path) -> Fixture:
    fixture = Fixture(server)
    for bare in sorted(server.glob("*.git")):
        if bare.name != "manifest.git":
            fixture.pins[bare.name.removesuffix(".git")] = git("rev-parse", f"HEAD~{PIN_BACK}", cwd=bare)
    return fixture


def repo_manifest(pins: dict[str, str]) -> str:
    projects = "".join(f'  <project name="{name}" path="projects/{name}" revision="{sha}" '
                       f'upstream="master" dest-branch="master"/>\n' for name, sha in pins.items())
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<manifest>\n'
            '  <remote name="origin" fetch="."/>\n  <default remote="origin" revision="master"/>\n'
            f"{projects}</manifest>\n")


def west_manifest(fixture: Fixture) -> str:
    projects = "".join(f"    - name: {name}\n      repo-path: {name}.git\n      path: projects/{name}\n"
                       f"      revision: {sha}\n" for name, sha in fixture.pins.items())
    return (f"manifest:\n  remotes:\n    - name: origin\n      url-base: {fixture.server.as_uri()}\n"
            f"  defaults:\n    remote: origin\n  projects:\n{projects}  self:\n    path: manifest\n")


def make_manifest_repository(fixture: Fixture, work: Path) -> None:
    """``manifest.git``: ``default.xml`` for orch and repo, ``west.yml`` for west."""
    shutil.rmtree(work, ignore_errors=True)
    git("init", "-q", "-b", "master", str(work))
    (work / "default.xml").write_text(repo_manifest(fixture.pins))
    (work / "west.yml").write_text(west_manifest(fixture))
    git("add", ".", cwd=work)
    git("-c", "user.name=Bench", "-c", "user.email=bench@example.org", "commit", "-qm", "manifest", cwd=work)
    bare = fixture.server / "manifest.git"
    shutil.rmtree(bare, ignore_errors=True)
    git("clone", "-q", "--bare", str(work), str(bare))


def serve_like_a_forge(base: Path) -> None:
    """The tests' git set-up (no user config), and served repositories that answer partial
    clones (``uploadpack.allowFilter``), as GitHub and Gerrit do; for every contender."""
    isolate(base / "home")
    with open(base / "home" / ".gitconfig", "a") as config:
        config.write("[uploadpack]\n\tallowFilter = true\n")


def build_fixture(base: Path, scale: float) -> Fixture:
    server = base / "server"
    shutil.rmtree(server, ignore_errors=True)
    server.mkdir(parents=True)
    shapes = [(name, max(10, int(files * scale)), max(10, int(commits * scale)))
              for name, files, commits in REPOSITORIES]
    print(f"creating {len(shapes)} repositories ({sum(s[1] for s in shapes)} files, "
          f"{sum(s[2] for s in shapes)} commits in all) ...", flush=True)
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(pool.map(lambda item: make_repository(server, item[0], *item[1]), enumerate(shapes)))
    fixture = read_pins(server)
    make_manifest_repository(fixture, base / "manifest-work")
    size = sum(f.stat().st_size for f in server.rglob("*.pack"))
    print(f"  done in {time.perf_counter() - start:.1f} s; packs {size / 2**20:.1f} MiB", flush=True)
    return fixture


# --- the contenders ----------------------------------------------------------------------------


def run_quiet(command: Sequence[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(list(command), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... exited {proc.returncode}: "
                           f"{proc.stderr.strip()[-400:]}")


def plain_loop(fixture: Fixture, dest: Path) -> None:
    for name, sha in fixture.pins.items():
        target = dest / "projects" / name
        run_quiet(["git", "clone", "-q", fixture.url(name), str(target)])
        run_quiet(["git", "-C", str(target), "checkout", "-q", sha])


def git_alone(fixture: Fixture, dest: Path, *, jobs: int, partial: bool) -> None:
    """What orch's cold sync asks of git and nothing more, ``jobs`` projects at once: a
    clone (partial: ``--filter=blob:none``, the blobs then fetched by the checkout) and a
    checkout of the pin. orch against this is orch's own cost; this against the plain loop is
    what the strategy can give at best."""
    def one(item: tuple[str, str]) -> None:
        name, sha = item
        target = dest / "projects" / name
        options = ["--filter=blob:none"] if partial else []
        run_quiet(["git", "clone", "-q", "--no-checkout", *options, fixture.url(name), str(target)])
        run_quiet(["git", "-C", str(target), "checkout", "-q", sha])
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(one, fixture.pins.items()))


def orch_command(ws: Path, fixture: Fixture, jobs: int, extra: Sequence[str] = ()) -> list[str]:
    return [sys.executable, "-m", "orchestrator", "sync", "-q", "-w", str(ws), "-m", fixture.manifest_url,
            "-j", str(jobs), *extra]


def repo_sync(launcher: str, repo_url: str | None, fixture: Fixture, ws: Path, jobs: int) -> None:
    ws.mkdir(parents=True)
    source = ["--repo-url", repo_url, "--repo-rev", "main", "--no-repo-verify"] if repo_url else []
    env = {**os.environ, "REPO_CONFIG_DIR": str(ws)}  # no ~/.repoconfig of the user's
    run_quiet([sys.executable, launcher, "init", "-q", "-u", fixture.manifest_url, "-b", "master",
               *source], cwd=ws, env=env)
    run_quiet([sys.executable, launcher, "sync", "-q", f"-j{jobs}"], cwd=ws, env=env)


def west_update(west: str, fixture: Fixture, ws: Path) -> None:
    run_quiet([west, "init", "-m", fixture.manifest_url, "--mr", "master", str(ws)])
    run_quiet([west, "update"], cwd=ws)


@dataclass
class Contender:
    label: str
    run: Callable[[Path], None]
    times: list[float] = field(default_factory=list)  # wall seconds per round
    cpu: list[float] = field(default_factory=list)  # user + system seconds of all its processes


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_cold(contender: Contender, dest: Path) -> None:
    """Time one cold run into an empty ``dest``, after flushing dirty pages (so the previous
    run's writeback is not billed to this one). CPU time is summed over every process it ran
    (git's server side too, on file://): on a shared machine it drifts less than wall time."""
    shutil.rmtree(dest, ignore_errors=True)
    os.sync()
    cpu, start = children_cpu(), time.perf_counter()
    contender.run(dest)
    contender.times.append(time.perf_counter() - start)
    contender.cpu.append(children_cpu() - cpu)
    print(f"  {contender.label:<36} {contender.times[-1]:7.2f} s  (cpu {contender.cpu[-1]:6.2f} s)",
          flush=True)


def process_wall_time(command: Sequence[str], runs: int) -> float:
    """The median wall time of ``command`` as a whole process, as a shell would see it."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run_quiet(command)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def find_repo_launcher(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    return shutil.which("repo")


def median_ratio(ours: list[float], theirs: list[float]) -> float:
    return statistics.median(o / t for o, t in zip(ours, theirs, strict=True))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="files and commits per repository, scaled")
    parser.add_argument("--jobs", type=int, default=2, help="-j for orch sync and repo sync")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the order rotates each round")
    parser.add_argument("--repo", help="the repo launcher (default: `repo` on PATH)")
    parser.add_argument("--repo-url", help="where `repo init` gets repo's own code (--repo-url)")
    parser.add_argument("--no-peers", action="store_true", help="time only orch and the plain loop")
    parser.add_argument("--orch-option", action="append", default=[], metavar="OPTION",
                        help="pass OPTION to the cold orch sync too, e.g. --orch-option=--no-partial-clone")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false",
                        help="skip the untimed first clone of every repository (which reads the "
                             "server's packs into the page cache before the first timed contender)")
    parser.add_argument("--floor", action="store_true",
                        help="also time git alone doing what orch asks of it (partial and whole clones, "
                             "-j N, no orch): the best the strategy can do")
    parser.add_argument("--server", type=Path, help="time these bare repositories (NAME.git) instead")
    parser.add_argument("--keep", type=Path, help="build in (and keep) this directory")
    args = parser.parse_args()

    base = (args.keep or Path(tempfile.mkdtemp(prefix="orch-bench-sync-"))).resolve()
    base.mkdir(parents=True, exist_ok=True)
    serve_like_a_forge(base)
    try:
        if args.server:
            fixture = read_pins(args.server.resolve())
            fixture.server = base / "server"
            shutil.rmtree(fixture.server, ignore_errors=True)
            fixture.server.mkdir()
            for name in fixture.pins:
                (fixture.server / f"{name}.git").symlink_to(args.server.resolve() / f"{name}.git")
            make_manifest_repository(fixture, base / "manifest-work")
        else:
            fixture = build_fixture(base, args.scale)
        return compare(fixture, base, args)
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)


def byte_compile_orch() -> None:
    """Byte-compile orch as ``pip install`` does: run from a source tree with
    ``PYTHONDONTWRITEBYTECODE`` set, every start would compile it all again."""
    where = subprocess.run([sys.executable, "-c", "import orchestrator; print(orchestrator.__file__)"],
                           check=True, capture_output=True, text=True).stdout.strip()
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(where).parent)], check=True,
                   stdout=subprocess.DEVNULL, env={k: v for k, v in os.environ.items()
                                                   if k != "PYTHONDONTWRITEBYTECODE"})


def compare(fixture: Fixture, base: Path, args: argparse.Namespace) -> int:
    byte_compile_orch()
    ws = base / "ws"
    orch = Contender(f"orch sync -j{args.jobs} (cold)",
                     lambda dest: run_quiet(orch_command(dest, fixture, args.jobs, args.orch_option)))
    loop = Contender("plain git clone + checkout loop", lambda dest: plain_loop(fixture, dest))
    peers = [loop]
    if args.floor:
        for partial in (True, False):
            kind = "partial" if partial else "whole"
            peers.append(Contender(
                f"git alone, {kind} clones -j{args.jobs}",
                functools.partial(git_alone, fixture, jobs=args.jobs, partial=partial)))
    launcher = None if args.no_peers else find_repo_launcher(args.repo)
    if launcher:
        peers.append(Contender(f"repo init + repo sync -j{args.jobs}",
                               lambda dest: repo_sync(launcher, args.repo_url, fixture, dest, args.jobs)))
    elif not args.no_peers:
        print("repo: no launcher on PATH (pass --repo PATH [--repo-url URL]); not timed")
    west = None if args.no_peers else shutil.which("west")
    if west:
        peers.append(Contender("west init + west update", lambda dest: west_update(west, fixture, dest)))
    elif not args.no_peers:
        print("west: not installed (pip install west); not timed")
    noops: list[float] = []
    contenders = [orch, *peers]
    if args.warmup:  # the server's packs into the page cache, so no contender pays for disk reads
        print("warm-up (not timed): a plain clone of every repository", flush=True)
        plain_loop(fixture, base / "warmup")
        shutil.rmtree(base / "warmup", ignore_errors=True)
    for round_ in range(args.repeat):
        print(f"round {round_ + 1}/{args.repeat} (load average {os.getloadavg()[0]:.2f}):", flush=True)
        shift = round_ % len(contenders)
        for contender in contenders[shift:] + contenders[:shift]:
            if contender is orch:
                timed_cold(orch, ws)
                noops.append(process_wall_time(orch_command(ws, fixture, args.jobs), 3))
                print(f"  {'orch sync (no-op, median of 3)':<36} {noops[-1]:7.2f} s", flush=True)
            else:
                timed_cold(contender, base / "peer")
                shutil.rmtree(base / "peer", ignore_errors=True)
    version = process_wall_time([sys.executable, "-m", "orchestrator", "--version"], 10)
    interpreter = process_wall_time([sys.executable, "-c", "pass"], 10)
    noop = statistics.median(noops)
    print(f"results (medians of {args.repeat} rounds; load average now "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs):")
    for contender in contenders:
        print(f"  {contender.label:<36} {statistics.median(contender.times):7.2f} s  "
              f"(cpu {statistics.median(contender.cpu):6.2f} s)")
    ratio_loop = median_ratio(orch.times, loop.times)
    for peer in peers:
        ratios = ", ".join(f"{o / t:.2f}x" for o, t in zip(orch.times, peer.times, strict=True))
        ratio = median_ratio(orch.times, peer.times)
        print(f"  orch cold / {peer.label:<32} {ratio:5.2f}x  (rounds: {ratios}; "
              f"cpu {median_ratio(orch.cpu, peer.cpu):.2f}x)")
    print(f"  no-op re-sync                           {noop:5.2f} s  (target < 0.30 s)")
    print(f"  orch --version                          {version:5.2f} s  (target < 0.15 s; "
          f"`python -c pass` {interpreter:.2f} s)")
    print(f"  cold / plain loop                       {ratio_loop:5.2f}x  (target <= 0.60x)")
    ok = ratio_loop <= 0.6 and noop < 0.3 and version < 0.15
    print("  PASS" if ok else "  MISSED TARGET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
