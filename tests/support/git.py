"""Real git repositories for tests: bare "upstreams" under a server directory, and manifest
repositories whose remotes are relative (``fetch="../seL4"``), the way seL4's manifests are."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` and return its stdout, stripped; raise with stderr on failure."""
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} in {cwd} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


@dataclass
class Upstream:
    """A bare repository and the scratch clone used to write commits into it."""

    bare: Path
    scratch: Path
    commits: list[str] = field(default_factory=list)

    def commit(self, files: dict[str, str], message: str, *, branch: str = "master") -> str:
        """Write ``files`` (path -> text; None-like empty string keeps an empty file), commit, push."""
        git(self.scratch, "checkout", "-q", "-B", branch)
        for rel, text in files.items():
            target = self.scratch / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        git(self.scratch, "add", "-A")
        git(self.scratch, "commit", "-q", "--allow-empty", "-m", message)
        sha = git(self.scratch, "rev-parse", "HEAD")
        git(self.scratch, "push", "-q", "origin", f"{branch}:refs/heads/{branch}")
        self.commits.append(sha)
        return sha

    def tag(self, name: str, rev: str = "HEAD") -> None:
        git(self.scratch, "tag", name, rev)
        git(self.scratch, "push", "-q", "origin", f"refs/tags/{name}")

    def head(self, branch: str = "master") -> str:
        return git(self.bare, "rev-parse", f"refs/heads/{branch}")


def make_upstream(server: Path, name: str, files: dict[str, str], message: str = "initial") -> Upstream:
    """Create ``server/name`` (bare) with one commit of ``files`` on master."""
    bare = server / name
    bare.parent.mkdir(parents=True, exist_ok=True)
    git(server, "init", "-q", "--bare", "-b", "master", str(bare))
    scratch = server.parent / "scratch" / name
    scratch.parent.mkdir(parents=True, exist_ok=True)
    git(server.parent, "clone", "-q", str(bare), str(scratch))
    up = Upstream(bare=bare, scratch=scratch)
    up.commit(files, message)
    return up


def make_manifest_repo(server: Path, name: str, files: dict[str, str]) -> Upstream:
    """A manifest repository (``server/name``) holding XML files, e.g. {"default.xml": ...}."""
    return make_upstream(server, name, files, "manifest")
