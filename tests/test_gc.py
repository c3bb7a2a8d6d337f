"""`orch gc` / `orch clean` on a workspace's .orch/: age and size rules, and never a build or
boot a kept results directory refers to."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.gc import collect


def make(path: Path, size: int = 4096, age_days: float = 0.0, metadata: dict[str, str] | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "blob").write_bytes(b"x" * size)
    if metadata is not None:
        (path / "metadata.json").write_text(json.dumps(metadata))
    stamp = time.time() - age_days * 86400
    for p in (path / "blob", path / "metadata.json", path):
        if p.exists():
            os.utime(p, (stamp, stamp))
    return path


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    """Two runs 10 days apart; the old one refers to an old build and boot, the new one to new ones."""
    root = tmp_path / "ws"
    orch = root / ".orch"
    old_build = make(orch / "builds/4k/aaaa", 100_000, 10, {"status": "pass"})
    new_build = make(orch / "builds/4k/bbbb", 100_000, 0, {"status": "pass"})
    make(orch / "builds/4k/cccc", 50_000, 9, {"status": "fail"})
    renamed = make(orch / "builds/other/dddd", 50_000, 20, {"status": "pass"})
    old_boot = make(orch / "runs/20240101-4k", 1000, 10)
    new_boot = make(orch / "runs/20240111-4k", 1000, 0)
    make(orch / "variants/4k", 300_000, 10)
    runs = (("20240101-x", old_build, old_boot, 10), ("20240111-x", new_build, new_boot, 0))
    for name, build, boot, age in runs:
        result = make(orch / "results" / name, 10, age)
        (result / "results.json").write_text(json.dumps({"variants": [
            {"build": {"build_dir": str(build), "image": str(build / "image")},
             "run": {"console_log": str(boot / "console.log")}}]}))
        os.utime(result, (time.time() - age * 86400,) * 2)
    (orch / "results/latest").symlink_to("20240111-x")
    del renamed
    return root


def names(items: list[collect.Item]) -> set[str]:
    return {str(i.path.relative_to(i.path.parents[1])) for i in items}


def test_age_rule_keeps_what_the_kept_results_refer_to(ws: Path) -> None:
    gc = collect.plan(ws, older_than_days=7)
    assert names(gc.remove) == {"results/20240101-x", "4k/aaaa", "4k/cccc", "other/dddd",
                                "runs/20240101-4k", "variants/4k"}
    kept = {i.path.name: i.keep for i in gc.items if i.keep}
    assert kept["bbbb"] == "a kept results directory refers to it"
    assert kept["20240111-x"] == "the latest results"


def test_an_old_build_a_kept_result_refers_to_stays(ws: Path) -> None:
    gc = collect.plan(ws, older_than_days=30)  # nothing old enough but... nothing is 30 days old
    assert gc.remove == []
    gc = collect.plan(ws, older_than_days=15)
    assert names(gc.remove) == {"other/dddd"}, "aaaa is old but results/20240101-x (kept) refers to it"


def test_size_rule_removes_the_oldest_unreferenced_first(ws: Path) -> None:
    total = collect.plan(ws).total()
    gc = collect.plan(ws, max_bytes=total - 1)
    assert names(gc.remove) == {"other/dddd"}, "the oldest unreferenced item goes first"
    gc = collect.plan(ws, max_bytes=0)
    assert {i.path.name for i in gc.items if i.keep} == {"20240111-x", "bbbb", "20240111-4k"}


def test_cli_gc_dry_run_then_clean(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (ws / ".orch/state.json").write_text(json.dumps({"manifest": {"source": {}, "commit": None},
                                                     "projects": {}}))
    assert main(["gc", "-w", str(ws), "--older-than", "7d", "--dry-run", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dry_run"] and len(report["removed"]) == 6 and (ws / ".orch/builds/4k/aaaa").is_dir()
    assert main(["clean", "-w", str(ws), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    left = sorted(str(p.relative_to(ws / ".orch")) for p in (ws / ".orch").glob("*/*")
                  if p.is_dir() and not p.is_symlink())
    assert left == ["builds/4k", "builds/other", "results/20240111-x", "runs/20240111-4k"]
    assert (ws / ".orch/builds/4k/bbbb/metadata.json").is_file()
    assert main(["gc", "-w", str(ws), "--older-than", "soon"]) == 2


def test_sizes_parse() -> None:
    assert collect.parse_size("5G") == 5 * 1024**3 and collect.parse_size("500MiB") == 500 * 1024**2
    assert collect.parse_age("12h") == 0.5 and collect.parse_age("7") == 7.0
