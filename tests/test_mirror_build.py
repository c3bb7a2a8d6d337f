"""A ``--mirror`` workspace borrows objects through alternates: the build container must see
the mirror's object directories at the same paths, or git inside it (seL4's memoize step runs
``git diff HEAD``) finds no objects and every variant rebuilds capDL-tool and musllibc."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.build.builder import alternates_binds
from orchestrator.cli import main
from orchestrator.runtime import make_runtime
from orchestrator.runtime.base import Bind, Job, Step
from tests.support.git import git, make_upstream
from tests.support.seed import make_seed_server


@pytest.fixture
def mirrored(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    """A workspace synced with ``--mirror``: (workspace, mirror)."""
    manifest = make_seed_server(tmp_path)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for bare in manifest.parent.glob("*.git"):
        git(tmp_path, "clone", "-q", "--mirror", str(bare), str(mirror / bare.name))
    ws = tmp_path / "ws"
    assert main(["sync", "-q", "-m", str(manifest), "-w", str(ws), "--mirror", str(mirror)]) == 0
    capsys.readouterr()
    return ws, mirror


def projects_of(ws: Path) -> list[str]:
    return list(json.loads((ws / ".orch/state.json").read_text())["projects"])


def test_mirror_object_dirs_are_bound_read_only_at_their_paths(mirrored: tuple[Path, Path]) -> None:
    ws, mirror = mirrored
    binds = alternates_binds(ws, projects_of(ws))
    assert binds and all(b.read_only for b in binds)
    assert {b.path for b in binds} == {m / "objects" for m in mirror.glob("*.git")}


def test_alternates_of_alternates_are_bound_too(tmp_path: Path, mirrored: tuple[Path, Path]) -> None:
    ws, mirror = mirrored
    deeper = make_upstream(tmp_path / "deeper", "objects-home.git", {"x": "y\n"})
    some = next(mirror.glob("*.git"))
    (some / "objects/info/alternates").write_text(f"{deeper.bare / 'objects'}\n")
    assert deeper.bare / "objects" in {b.path for b in alternates_binds(ws, projects_of(ws))}


def test_a_workspace_without_a_mirror_binds_nothing_more(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    manifest = make_seed_server(tmp_path)
    ws = tmp_path / "ws"
    assert main(["sync", "-q", "-m", str(manifest), "-w", str(ws)]) == 0
    assert alternates_binds(ws, projects_of(ws)) == []


@pytest.mark.docker
def test_the_container_reads_the_mirror_objects(mirrored: tuple[Path, Path], build_image: str) -> None:
    ws, _ = mirrored
    binds = alternates_binds(ws, projects_of(ws))
    packs = [str(p) for b in binds for p in sorted(b.path.rglob("*")) if p.is_file()][:20]
    assert packs
    output = bytearray()
    job = Job(name="orch-test-alternates", workdir=ws, output=output.extend,
              steps=[Step("read", ("sh", "-c", "cat \"$@\" > /dev/null && echo readable", "sh", *packs))],
              binds=[Bind(ws.resolve()), *binds])
    outcome = make_runtime("docker", build_image).run(job)
    assert outcome.exit_code == 0, output.decode(errors="replace")
    assert b"readable" in output
