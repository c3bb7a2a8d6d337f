"""Behaviours a review found untested: each test here fails on a realistic planted bug."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from orchestrator.analysis.memory import MemoryEstimate, Sourced
from orchestrator.boot.cache import remembered_boot
from orchestrator.boot.console import parse_free, strip_ansi
from orchestrator.boot.qemu import RECORD_NAME, RunRecord
from orchestrator.build.variant_tree import variant_lock
from orchestrator.errors import InputError, WorkspaceError
from orchestrator.patchset import apply as lib
from orchestrator.patchset.dryrun import parse_series
from orchestrator.ui import to_jsonable
from orchestrator.workspace.manifest import load_manifest
from tests.test_patchset import make_patchset, simple_patch


def test_every_patch_checksum_is_verified_not_only_the_first(tmp_path: Path) -> None:
    patches = {f"000{i}-p.patch": simple_patch(f"f{i}.txt", "a", "b") for i in range(1, 4)}
    make_patchset(tmp_path, "three", {"kernel": patches})
    config = tmp_path / "three" / "patchset.toml"
    (tmp_path / "three" / "kernel" / "0003-p.patch").write_text(patches["0003-p.patch"] + "tampered\n")
    with pytest.raises(InputError) as error:
        parse_series(lib.resolve(["three"], [tmp_path]))
    assert "checksum mismatch for kernel/0003-p.patch" in error.value.message
    assert config.is_file()


@pytest.mark.parametrize("sequence", ["\x1bc", "\x1b7", "\x1b8", "\x1bM", "\x1b=", "\x1b>", "\x1b(B"])
def test_two_byte_escape_sequences_are_stripped(sequence: str) -> None:
    assert strip_ansi(f"a{sequence}b") == "ab"


def test_the_last_free_table_is_the_one_parsed() -> None:
    header = "               total        used        free      shared  buff/cache   available\n"
    text = (header + "Mem:           1983          26        1954           1           1        1925\n"
            + "# free -m\n" + header
            + "Mem:           1983         500        1480           1           3        1400\n")
    free = parse_free(text)
    assert free is not None and (free.used_mib, free.free_mib, free.available_mib) == (500, 1480, 1400)


def sourced(value: int) -> Sourced:
    return Sourced(value, "test")


@pytest.mark.parametrize(("metadata", "fits"), [(1000, True), (1001, False), (999, True)])
def test_fits_boundary(metadata: int, fits: bool) -> None:
    estimate = MemoryEstimate(sourced(1 << 30), sourced(4096), sourced(1000), 262144, metadata)
    assert estimate.fits is fits
    assert estimate.headroom == 1000 - metadata


@pytest.mark.parametrize(("verdict", "served"), [("pass", True), ("fail", True), ("timeout", False),
                                                  ("error", False)])
def test_only_pass_and_fail_boots_are_served_from_the_cache(tmp_path: Path, verdict: str,
                                                           served: bool) -> None:
    record = RunRecord(image="x.elf", image_sha256="abc", platform="qemu-arm-virt", verdict=verdict)  # type: ignore[arg-type]
    (tmp_path / RECORD_NAME).write_text(json.dumps(to_jsonable(record)))
    assert (remembered_boot(tmp_path, "abc") is not None) is served
    assert remembered_boot(tmp_path, "other image") is None


def test_the_variant_lock_excludes_a_second_orch_process(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from pathlib import Path
            from orchestrator.build.variant_tree import variant_lock
            with variant_lock(Path({str(tmp_path)!r}), "4k"):
                print("held", flush=True)
                sys.stdin.readline()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(WorkspaceError) as error, variant_lock(tmp_path, "4k"):
            pass
        assert "variant '4k' is being built by another orch process" in error.value.message
        with variant_lock(tmp_path, "other"):  # another variant is free
            pass
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait()
    with variant_lock(tmp_path, "4k"):  # released when the holder ends
        pass


def test_remove_project_with_name_and_path_removes_only_that_checkout(tmp_path: Path) -> None:
    manifest = tmp_path / "default.xml"
    manifest.write_text(textwrap.dedent("""\
        <manifest>
          <remote name="r" fetch="https://example.org/"/>
          <default remote="r" revision="master"/>
          <project name="tools" path="tools/a"/>
          <project name="tools" path="tools/b"/>
          <project name="other" path="other"/>
          <remove-project name="tools" path="tools/b"/>
        </manifest>
        """))
    projects = {p.path for p in load_manifest(manifest).projects}
    assert projects == {"tools/a", "other"}


def test_to_xml_keeps_every_attribute_and_pins_like_repo(tmp_path: Path) -> None:
    from dataclasses import replace

    from orchestrator.workspace.manifest import to_xml

    source = tmp_path / "default.xml"
    source.write_text(textwrap.dedent("""\
        <manifest>
          <remote name="r" fetch="https://example.org/git/"/>
          <remote name="other" fetch="https://other.example.org/"/>
          <default remote="r" revision="main"/>
          <project name="a" path="pa" revision="dev" upstream="up" dest-branch="db" groups="g1,g2"
                   clone-depth="3" sync-s="true" sync-c="true" sync-tags="false">
            <linkfile src="l1" dest="d1"/>
            <copyfile src="c1" dest="e1"/>
          </project>
          <project name="b" remote="other" revision="1111111111111111111111111111111111111111"/>
        </manifest>
        """))
    manifest = load_manifest(source)
    plain = tmp_path / "plain.xml"
    plain.write_text(to_xml(manifest))
    again = load_manifest(plain)
    strip = [replace(p, where="") for p in manifest.projects]
    assert [replace(p, where="") for p in again.projects] == strip
    assert (again.default_remote, again.default_revision) == ("r", "main")
    urls = {r.name: r.url for r in manifest.remotes.values()}
    assert {r.name: r.url for r in again.remotes.values()} == urls
    sha = "2" * 40
    pinned = tmp_path / "pinned.xml"
    pinned.write_text(to_xml(manifest, {"pa": sha, "b": sha}))
    a, b = load_manifest(pinned).projects
    assert (a.revision, a.upstream) == (sha, "dev")  # the branch moves to upstream, as repo does
    assert (b.revision, b.upstream) == (sha, None)  # a SHA pin was no branch
    assert (a.sync_s, a.sync_c, a.sync_tags, a.clone_depth) == (True, True, False, 3)
    assert (b.sync_s, b.sync_c, b.sync_tags, b.clone_depth) == (False, False, True, None)
    assert 'sync-tags="false"' in pinned.read_text() and "sync-s" not in pinned.read_text().split('"b"')[1]
