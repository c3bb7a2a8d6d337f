"""End to end: `orch build --patchset largepage` on a fixture workspace (real git, a real
cross build, real QEMU): the baseline fails like the seed, the patched variant passes with a
`free -m` answer; the table, exit codes, reports and the reuse of builds and runs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from defusedxml import ElementTree as SafeET

from orchestrator.runtime.base import LABEL_WORKSPACE
from tests.conftest import require_tools
from tests.support.cli import orch
from tests.support.e2e import E2EFixture, make_e2e_fixture

HOST_TOOLS = ("qemu-system-aarch64", "aarch64-linux-gnu-gcc", "cmake", "ninja")


def build_args(fx: E2EFixture, *extra: str) -> list[str]:
    return ["build", "--patchset", "largepage", "--patchsets", str(fx.patchsets), "-w", str(fx.workspace),
            *extra]


@pytest.fixture
def fx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> E2EFixture:
    monkeypatch.setenv("COLUMNS", "200")
    return make_e2e_fixture(tmp_path)


@pytest.mark.qemu
def test_host_build_end_to_end(fx: E2EFixture, capsys: pytest.CaptureFixture[str]) -> None:
    require_tools(*HOST_TOOLS)
    code, out, err = orch(capsys, *build_args(fx, "-m", fx.manifest_url, "--executor", "host"))
    assert code == 0, out + err
    # the table, side by side
    assert "FAIL (vmm-allocation)" in out and "PASS" in out
    assert "expected: fail (vmm-allocation)" in out and "expected: pass" in out
    assert "2048 / 26 / 1954 / 1925" in out  # the fixture guest's `free -m`
    assert "80 MiB (console.elf, .bss)" in out and "1 MiB (console.elf, .bss)" in out
    assert "2 GiB / 4 KiB = 524288" in out and "2 GiB / 2 MiB = 1024" in out
    assert "120 MiB EXCEEDS 80 MiB pool" in out and "240 KiB fits in 1 MiB pool" in out
    assert "Failed to allocate page" in out
    assert "-> exit 0" in out

    latest = fx.workspace / ".orch" / "results" / "latest"
    results = json.loads((latest / "results.json").read_text())
    assert results["exit_code"] == 0 and results["patchset"] == "largepage"
    by_name = {v["name"]: v for v in results["variants"]}
    four_k, large = by_name["4k"], by_name["largepage"]
    assert four_k["boot"]["verdict"] == "fail" and four_k["boot"]["cause"] == "vmm-allocation"
    assert four_k["outcome"] == "expected" and large["outcome"] == "expected"
    guest = large["boot"]["guest"]
    figures = (guest["total_mib"], guest["used_mib"], guest["free_mib"], guest["available_mib"])
    assert figures == (2048, 26, 1954, 1925)
    assert large["boot"]["login_seconds"] is not None
    assert four_k["build"]["status"] == "built" and large["build"]["status"] == "built"
    assert four_k["build_record"]["patchsets"] == ["vm-2g"]
    assert fx.kernel.head() in json.dumps(large["build_record"]["projects"])
    assert large["boot_record"]["image_sha256"] == large["build"]["boot_image_sha256"]
    assert four_k["memory"]["guest_ram_source"].endswith("devices.camkes:3")
    assert "seL4_LargePageBits" in large["memory"]["frame_size_source"]
    assert results["timings"]["total"] >= results["timings"]["orch"] >= 0
    for name in ("4k", "largepage"):
        assert (latest / name / "console.log").stat().st_size > 0
        assert json.loads((latest / name / "metadata.json").read_text())["status"] == "pass"

    suite = SafeET.parse(latest / "junit.xml").getroot()
    assert suite is not None
    assert suite.get("tests") == "2" and suite.get("failures") == "0" and suite.get("errors") == "0"
    assert {c.get("name") for c in suite.iter("testcase")} == {"4k", "largepage"}

    md = (latest / "summary.md").read_text()
    assert "| verdict | **FAIL (vmm-allocation)** | **PASS** |" in md
    assert "orch build --patchset largepage" in md

    # a second run reuses every build and every boot
    first = latest.resolve()
    code, out, err = orch(capsys, *build_args(fx, "--executor", "host"))
    assert code == 0, out + err
    again = json.loads((latest / "results.json").read_text())
    assert latest.resolve() != first
    assert [v["build"]["status"] for v in again["variants"]] == ["cached", "cached"]
    assert [v["boot"]["status"] for v in again["variants"]] == ["cached", "cached"]
    assert "workspace reused" in err

    # orch report shows it again, and the diff of the two runs has no changed figure
    code, out, _ = orch(capsys, "report", "-w", str(fx.workspace))
    assert code == 0 and "FAIL (vmm-allocation)" in out and again["id"] in out
    code, out, _ = orch(capsys, "report", "-w", str(fx.workspace), "--json", "--diff", first.name, "latest")
    assert code == 0
    changed = {(d["variant"], d["field"]) for d in json.loads(out)["differences"]}
    assert ("4k", "verdict") not in changed
    assert ("largepage", "guest MiB total/used/free/avail") not in changed

    # an expectation that is not met: exit 1, marked in the table and in JUnit
    code, out, _ = orch(capsys, *build_args(fx, "--executor", "host", "--variant", "4k=vm-2g"))
    assert code == 1  # a variant defined on the fly has no expectation and fails
    assert "fail (no expectation)" in out


@pytest.mark.qemu
def test_host_build_without_expectations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_tools(*HOST_TOOLS)
    fx = make_e2e_fixture(tmp_path, expectations=False)
    args = build_args(fx, "-m", fx.manifest_url, "--executor", "host", "--json", "-q")
    code, out, err = orch(capsys, *args)
    assert code == 1, err  # without expectations only an all-pass run exits 0
    data = json.loads(out)
    assert [v["outcome"] for v in data["variants"]] == ["fail", "pass"]
    junit = SafeET.parse(fx.workspace / ".orch/results/latest/junit.xml").getroot()
    assert junit is not None
    assert junit.get("failures") == "1"
    code, _out, _err = orch(capsys, *build_args(fx, "--executor", "host", "--variant", "largepage", "-q"))
    assert code == 0


@pytest.mark.qemu
def test_build_only_and_a_patch_that_does_not_apply(
    fx: E2EFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    require_tools("aarch64-linux-gnu-gcc", "cmake", "ninja")
    code, out, err = orch(capsys, *build_args(fx, "-m", fx.manifest_url, "--executor", "host", "--no-run"))
    assert code == 0, out + err
    assert "built (not booted)" in out
    assert not (fx.workspace / ".orch" / "runs").exists()

    patch = fx.patchsets / "largepage" / "kernel" / "0001-largepage.patch"
    text = patch.read_text().replace("-#define FRAME_SIZE_BITS 12", "-#define FRAME_SIZE_BITS 13")
    patch.write_text(text)
    toml = fx.patchsets / "largepage" / "patchset.toml"
    old = toml.read_text()
    start = old.index('sha256 = "') + len('sha256 = "')
    toml.write_text(old[:start] + hashlib.sha256(text.encode()).hexdigest() + old[start + 64:])
    builds_before = sorted(p.name for p in (fx.workspace / ".orch" / "builds").iterdir())
    code, _out, err = orch(capsys, *build_args(fx, "--executor", "host", "--rebuild"))
    assert code == 2
    assert "variant 'largepage': largepage: kernel/0001-largepage.patch: src/frames.h: hunk" in err
    assert sorted(p.name for p in (fx.workspace / ".orch" / "builds").iterdir()) == builds_before


@pytest.mark.docker
def test_docker_build_end_to_end(fx: E2EFixture, capsys: pytest.CaptureFixture[str], docker_client: Any,
                                 build_image: str) -> None:
    require_tools("qemu-system-aarch64")
    args = build_args(fx, "-m", fx.manifest_url, "--image", build_image, "--boot-in", "host")
    code, out, err = orch(capsys, *args)
    assert code == 0, out + err
    assert "FAIL (vmm-allocation)" in out and "2048 / 26 / 1954 / 1925" in out
    results = json.loads((fx.workspace / ".orch/results/latest/results.json").read_text())
    assert all(v["build_record"]["executor"]["name"] == "docker" for v in results["variants"])
    code, out, err = orch(capsys, *args)
    assert code == 0, out + err
    again = json.loads((fx.workspace / ".orch/results/latest/results.json").read_text())
    assert [v["build"]["status"] for v in again["variants"]] == ["cached", "cached"]
    assert [v["boot"]["status"] for v in again["variants"]] == ["cached", "cached"]
    label = f"{LABEL_WORKSPACE}={fx.workspace.resolve()}"
    leftover = docker_client.containers.list(all=True, filters={"label": label})
    assert leftover == []


@pytest.mark.docker
def test_boots_in_docker_end_to_end(fx: E2EFixture, capsys: pytest.CaptureFixture[str], qemu_image: str,
                                    docker_client: object) -> None:
    """`--boot-in docker`: the same verdicts and guest memory with QEMU in a container of the
    image (here one with Debian's QEMU; builds on the host), and no boot container left."""
    require_tools(*HOST_TOOLS)

    def boot_containers() -> set[str]:
        return {c.id for c in docker_client.containers.list(  # type: ignore[attr-defined]
            all=True, filters={"label": "orch.kind=boot"})}

    before = boot_containers()
    args = build_args(fx, "-m", fx.manifest_url, "--executor", "host", "--image", qemu_image,
                      "--boot-in", "docker")
    code, out, err = orch(capsys, *args)
    assert code == 0, out + err
    assert "FAIL (vmm-allocation)" in out and "2048 / 26 / 1954 / 1925" in out
    results = json.loads((fx.workspace / ".orch/results/latest/results.json").read_text())
    assert {v["boot_record"]["launcher"] for v in results["variants"]} == {f"docker:{qemu_image}"}
    assert boot_containers() <= before
