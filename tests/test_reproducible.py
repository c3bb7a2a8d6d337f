"""Bit-identical rebuilds: seL4's qemu-arm-virt build dumps the board DTB with QEMU, which puts
a random rng-seed and kaslr-seed into it; orch's QEMU wrapper turns that off for that one call."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from orchestrator.build.builder import deterministic_dtb_options

FAKE_QEMU = """#!/bin/sh
if [ "$*" = "-machine virt,help" ]; then
    [ -n "$KNOWS" ] && echo "virt-9.0.dtb-randomness=<bool>"
    exit 0
fi
echo "$@"
"""


@pytest.fixture
def wrapper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "qemu-system-aarch64"
    fake.write_text(FAKE_QEMU)
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    options = deterministic_dtb_options("qemu-arm-virt", ["-DAARCH64=1"], tmp_path / "variant")
    assert len(options) == 1 and options[0].startswith("-DQEMU_BINARY=")
    return Path(options[0].removeprefix("-DQEMU_BINARY="))


def run(wrapper: Path, *args: str, knows: bool = True) -> str:
    env = {**os.environ, **({"KNOWS": "1"} if knows else {})}
    return subprocess.run([str(wrapper), *args], capture_output=True, text=True, env=env,
                          check=True).stdout.strip()


def test_the_dtb_dump_goes_without_random_seeds(wrapper: Path) -> None:
    out = run(wrapper, "-machine", "virt,secure=off,dumpdtb=/b/qemu-arm-virt.dtb", "-m", "2048")
    assert out == "-machine virt,secure=off,dumpdtb=/b/qemu-arm-virt.dtb,dtb-randomness=off -m 2048"


def test_every_other_call_and_an_older_qemu_are_unchanged(wrapper: Path) -> None:
    assert run(wrapper, "-version") == "-version"
    assert run(wrapper, "-machine", "virt,dumpdtb=x.dtb", knows=False) == "-machine virt,dumpdtb=x.dtb"


def test_only_aarch64_qemu_arm_virt_and_never_over_the_users_choice(tmp_path: Path) -> None:
    assert deterministic_dtb_options("odroidc2", ["-DAARCH64=1"], tmp_path) == []
    assert deterministic_dtb_options("qemu-arm-virt", ["-DAARCH32=1"], tmp_path) == []
    assert deterministic_dtb_options("qemu-arm-virt", ["-DAARCH64=1", "-DQEMU_BINARY=/q"], tmp_path) == []
